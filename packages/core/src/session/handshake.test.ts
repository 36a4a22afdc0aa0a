// Unit tests of the reply checks both sides share: which refusals a peer signed for us (10.6).
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FpeerError, isFpeerError} from '../errors.js'
import {Identity, generateKeyPair} from '../identity.js'
import {signMessage} from '../wire/signing.js'
import type {PeerError} from '../wire/types.js'
import {type Asked, JOIN_GRACE_MS, expectType, isSignedRefusal, refusalEndsTrust, refusedBy, sameFiles} from './handshake.js'

const peer = new Identity(generateKeyPair())
const me = new Identity(generateKeyPair())
const stranger = new Identity(generateKeyPair())
const asked: Asked = {peer: peer.id, nonce: 'our-nonce', self: me.id}

function refusal(meta: Record<string, string>, code = 'E_NOT_ALLOWED'): PeerError {
  return {type: 'PeerError', folder: 'docs', code, text: 'not a confirmed peer', meta}
}
const good = () => signMessage(refusal({nonce: 'theirs', re: 'our-nonce', to: me.id.compact}), peer)

describe('signed refusals (handshake.ts)', () => {
  const cases: Array<[string, PeerError, boolean]> = [
    ['signed by the peer asked, answering our nonce, naming us', good(), true],
    ['unsigned (anybody on the path can send it)', refusal({re: 'our-nonce', to: me.id.compact}), false],
    ['signed by another peer', signMessage(refusal({nonce: 'theirs', re: 'our-nonce', to: me.id.compact}), stranger), false],
    ['answering another nonce (a replay)', signMessage(refusal({nonce: 'theirs', re: 'old-nonce', to: me.id.compact}), peer), false],
    ['naming another requester', signMessage(refusal({nonce: 'theirs', re: 'our-nonce', to: stranger.id.compact}), peer), false],
    ['naming nobody', signMessage(refusal({nonce: 'theirs', re: 'our-nonce'}), peer), false],
    ['another code', signMessage(refusal({nonce: 'theirs', re: 'our-nonce', to: me.id.compact}, 'E_BUSY'), peer), false],
    ['altered after signing', {...good(), text: 'something else'}, false],
  ]
  for (const [what, msg, want] of cases) {
    it(`${want ? 'is' : 'is not'} a signed refusal: ${what}`, () => {
      assert.equal(isSignedRefusal(msg, asked), want)
    })
  }

  it('expectType reports a signed refusal with refusedBy, and an unsigned one without', () => {
    const check = (msg: PeerError, by: string | undefined) => {
      assert.throws(
        () => expectType(msg, 'FilesUpdated', 'docs', asked),
        (e: unknown) => isFpeerError(e, 'E_NOT_ALLOWED') && refusedBy(e) === by,
      )
    }
    check(good(), peer.id.toString())
    check(refusal({re: 'our-nonce', to: me.id.compact}), undefined)
    // Without knowing whom we asked, no refusal is taken as signed.
    assert.throws(
      () => expectType(good(), 'FilesUpdated', 'docs'),
      (e: unknown) => isFpeerError(e, 'E_NOT_ALLOWED') && refusedBy(e) === undefined,
    )
  })

  it('refusedBy is undefined for every other error', () => {
    assert.equal(refusedBy(new FpeerError('E_CONNECT', 'refused', {details: {refusedBy: peer.id.toString()}})), undefined)
    assert.equal(refusedBy(new Error('x')), undefined)
  })

  it('a refusal ends the trust in a peer we joined at once, in one that joined us only after the grace', () => {
    const now = Date.parse('2026-11-30T00:00:00.000Z')
    const at = (ms: number) => new Date(now - ms).toISOString()
    assert.equal(refusalEndsTrust({role: 'host', confirmedAt: at(0)}, now), true)
    // It joined us a moment ago: it records us only after our confirmation arrives and its files are recorded.
    assert.equal(refusalEndsTrust({role: 'member', confirmedAt: at(1000)}, now), false)
    assert.equal(refusalEndsTrust({role: 'member', confirmedAt: at(JOIN_GRACE_MS - 1)}, now), false)
    assert.equal(refusalEndsTrust({role: 'member', confirmedAt: at(JOIN_GRACE_MS)}, now), true)
    // A record whose time cannot be read, or lies far ahead (a clock set back), gives no grace.
    assert.equal(refusalEndsTrust({role: 'member', confirmedAt: 'not a time'}, now), true)
    assert.equal(refusalEndsTrust({role: 'member', confirmedAt: at(-2 * JOIN_GRACE_MS)}, now), true)
  })
})

describe('sameFiles', () => {
  const h = (c: string) => c.repeat(64)
  const a = [
    {path: 'x', sha256: h('a'), size: 1},
    {path: 'y', sha256: h('b'), size: 2},
    {path: 'z', size: 3},
  ]
  it('takes the same files in the same order, or in another, with attributes left out', () => {
    assert.equal(
      sameFiles(
        a,
        a.map((f) => ({...f})),
      ),
      true,
    )
    assert.equal(sameFiles(a, [a[2]!, a[0]!, a[1]!]), true)
    assert.equal(sameFiles(a, [{path: 'x'}, {path: 'y', size: 2}, {path: 'z', sha256: h('c')}]), true)
  })
  it('refuses another hash, another size, another name or another count, wherever it is', () => {
    assert.equal(sameFiles(a, [a[0]!, {...a[1]!, sha256: h('c')}, a[2]!]), false)
    assert.equal(sameFiles(a, [a[0]!, a[1]!, {...a[2]!, size: 4}]), false)
    assert.equal(sameFiles(a, [{...a[0]!, path: 'w'}, a[1]!, a[2]!]), false)
    assert.equal(sameFiles(a, [a[2]!, {...a[0]!, sha256: h('c')}, a[1]!]), false)
    assert.equal(sameFiles(a, a.slice(1)), false)
  })
})
