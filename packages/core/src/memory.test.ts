// The idle reclaim: after work that grew the heap, an idle process collects once and gives the memory back; busy or unchanged, it does not.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {getHeapStatistics} from 'node:v8'
import {IdleReclaim, type Reclaimed} from './memory.js'

/** Resolves once `cond()` holds, checking every 20 ms; fails after `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Grows the heap by at least `bytes` of objects that are garbage once this returns (what a burst of work leaves). */
function growHeap(bytes: number): number {
  const before = getHeapStatistics().total_heap_size
  const keep: unknown[] = []
  while (getHeapStatistics().total_heap_size < before + bytes) {
    for (let i = 0; i < 10_000; i++) keep.push({i, s: `entry ${i}`, a: [i, i + 1, i + 2]})
  }
  return getHeapStatistics().total_heap_size - before
}

/** Keeps the event loop busy (most of each tick) for `ms`, yielding to timers in between. */
async function busyFor(ms: number): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    const spin = Date.now() + 15
    while (Date.now() < spin);
    await new Promise((r) => setImmediate(r))
  }
}

describe('IdleReclaim', () => {
  it('collects once the loop is idle after the heap grew, and gives the heap back', async () => {
    const done: Reclaimed[] = []
    const r = new IdleReclaim({idleMs: 200, tickMs: 50, growthBytes: 4 << 20, onReclaim: (x) => done.push(x)})
    const ac = new AbortController()
    await r.start(ac.signal)
    try {
      assert.equal(r.timers, 1)
      assert.ok(growHeap(16 << 20) >= 16 << 20)
      await until(() => done.length > 0, 20_000, 'a reclaim')
      assert.equal(done.length, 1)
      assert.ok(done[0]!.after < done[0]!.before, `the heap shrank: ${done[0]!.before} → ${done[0]!.after}`)
      assert.equal(r.reclaims.count, 1)
      assert.ok(r.reclaims.lastAt! <= Date.now())
    } finally {
      await r.stop()
    }
    assert.equal(r.timers, 0)
  })

  it('does not collect while the loop is busy, nor again when the heap has not grown since', async () => {
    const done: Reclaimed[] = []
    const r = new IdleReclaim({idleMs: 300, tickMs: 50, growthBytes: 4 << 20, onReclaim: (x) => done.push(x)})
    await r.start(new AbortController().signal)
    try {
      growHeap(16 << 20)
      // Busy for far longer than idleMs: every tick sees a busy loop.
      await busyFor(1200)
      assert.equal(done.length, 0, 'no reclaim while busy')
      await until(() => done.length === 1, 20_000, 'the reclaim after the busy stretch')
      // Idle for many more idle periods without growth: nothing more to give back.
      const ticks = 40
      await new Promise((res) => setTimeout(res, ticks * 50))
      assert.equal(done.length, 1, 'one reclaim per growth')
      // Growth again: another one.
      growHeap(16 << 20)
      await until(() => done.length === 2, 20_000, 'the reclaim after new growth')
    } finally {
      await r.stop()
    }
  })

  it('off with idleMs 0, and nothing runs after the signal is aborted or stop()', async () => {
    const off = new IdleReclaim({idleMs: 0})
    await off.start(new AbortController().signal)
    assert.equal(off.timers, 0)

    const ac = new AbortController()
    ac.abort()
    const aborted = new IdleReclaim({idleMs: 100})
    await aborted.start(ac.signal)
    assert.equal(aborted.timers, 0)

    const ac2 = new AbortController()
    const r = new IdleReclaim({idleMs: 100, tickMs: 20})
    await r.start(ac2.signal)
    assert.equal(r.timers, 1)
    ac2.abort()
    assert.equal(r.timers, 0, 'the abort alone clears the timer')
    await r.stop()
    await r.stop()
    // A stopped part does not start again.
    await r.start(new AbortController().signal)
    assert.equal(r.timers, 0)
  })
})
