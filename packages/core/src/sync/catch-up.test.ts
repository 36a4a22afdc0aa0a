// Catch-up rounds: the start-up round (rescans, then an exchange), the periodic round, and cancellation through the signal.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {CatchUp, type CatchUpOptions} from './catch-up.js'

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

function recorder(over: Partial<CatchUpOptions> = {}) {
  const log: string[] = []
  const c = new CatchUp({
    folders: () => ['A', 'B'],
    rescan: async (f) => void log.push(`rescan ${f}`),
    exchange: async (folders, _stopping, quiet) => void log.push(`exchange ${folders.join(',')}${quiet ? ' quiet' : ''}`),
    intervalMs: 0,
    graceMs: 60_000,
    ...over,
  })
  return {log, c}
}

describe('CatchUp', () => {
  it('at start: every folder rescanned, then one exchange; the periodic round follows; stop leaves no timer or round', async () => {
    const {log, c} = recorder({intervalMs: 20})
    await c.start(new AbortController().signal)
    assert.equal(c.timers, 1)
    await until('two periodic rounds', () => log.filter((l) => l.endsWith('quiet')).length >= 2)
    assert.deepEqual(log.slice(0, 3), ['rescan A', 'rescan B', 'exchange A,B'])
    await c.stop()
    assert.equal(c.timers, 0)
    assert.equal(c.running, 0)
    const n = log.length
    await new Promise((r) => setTimeout(r, 60))
    assert.equal(log.length, n, 'no round after stop')
    await c.stop()
  })

  it('intervalMs 0: only the start-up round, no timer', async () => {
    const {log, c} = recorder()
    await c.start(new AbortController().signal)
    assert.equal(c.timers, 0)
    await until('the start-up round', () => log.length === 3)
    await c.stop()
  })

  it('abort cancels a round under way: stop waits for it to end, not for its work to finish', async () => {
    let cut = 0
    const {c} = recorder({
      // An exchange with a hung peer: only the signal ends it.
      exchange: (_f, stopping) =>
        new Promise<void>((resolve) => {
          const poll = setInterval(() => {
            if (!stopping()) return
            clearInterval(poll)
            cut++
            resolve()
          }, 5)
        }),
    })
    const ac = new AbortController()
    await c.start(ac.signal)
    await until('the round to be under way', () => c.running === 1)
    ac.abort()
    assert.equal(c.timers, 0)
    await c.stop()
    assert.equal(c.running, 0)
    assert.equal(cut, 1)
  })

  it('stop before start: start runs no round', async () => {
    const {log, c} = recorder({intervalMs: 20})
    await c.stop()
    await c.start(new AbortController().signal)
    assert.equal(c.timers, 0)
    assert.equal(c.running, 0)
    assert.deepEqual(log, [])
  })
})
