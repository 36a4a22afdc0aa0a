// The replay guard: replays and stale messages refused by code, and what it remembers costs a key's bytes, not the message's.
import assert from 'node:assert/strict'
import {setFlagsFromString} from 'node:v8'
import {runInNewContext} from 'node:vm'
import {describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {generateKeyPair, PeerId} from '../identity.js'
import {parseMessage} from '../wire/codec.js'
import {ReplayGuard} from './replay-guard.js'

const NOW = 1_800_000_000_000
const sender = PeerId.fromPublicKey(generateKeyPair().publicKey)

/** A BePeerRequest parsed from its text, as the control connection gets it: `meta` values are slices of that text. */
function opening(nonce: string, ts = NOW, pad = ''): ReturnType<typeof parseMessage> {
  return parseMessage(`BePeerRequest\tfpeer=1\tnonce=${nonce}${pad ? `\tpad=${pad}` : ''}\tts=${ts}\nshare\n\n`)
}

describe('ReplayGuard', () => {
  it('accepts a nonce once and refuses its replay (E_REPLAY) and a message outside the window (E_STALE_MESSAGE)', () => {
    const guard = new ReplayGuard()
    guard.check(opening('1234567890abcdef'), sender, NOW)
    assert.throws(
      () => guard.check(opening('1234567890abcdef'), sender, NOW + 1000),
      (e) => isFpeerError(e, 'E_REPLAY'),
    )
    assert.throws(
      () => guard.check(opening('fedcba0987654321', NOW - guard.windowMs - 1), sender, NOW),
      (e) => isFpeerError(e, 'E_STALE_MESSAGE'),
    )
    assert.equal(guard.size, 1)
  })

  it('remembers a nonce in about a hundred bytes, not the message text it came in nor a chain of string pieces', () => {
    // Only this test's process measures its heap: a full GC before each reading.
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const guard = new ReplayGuard()
    const N = 4000
    const fill = (from: number) => {
      for (let i = from; i < from + N; i++) {
        // Each message from a new PeerId, as each verified message names its sender anew.
        const from = PeerId.fromPublicKey(sender.publicKey)
        guard.check(opening(String(i).padStart(16, '0'), NOW, 'x'.repeat(2000) + String(i)), from, NOW)
      }
    }
    // Warm up first (code, the map's first growth), then measure N more.
    fill(0)
    gc()
    const before = process.memoryUsage().heapUsed
    fill(N)
    gc()
    const perEntry = (process.memoryUsage().heapUsed - before) / N
    assert.equal(guard.size, 2 * N)
    // Before: the 2 KB line each nonce was sliced from, and 40 cons cells of the sender's ID, per entry (about 3.4 KB).
    assert.ok(perEntry < 400, `${Math.round(perEntry)} bytes per remembered nonce`)
  })
})
