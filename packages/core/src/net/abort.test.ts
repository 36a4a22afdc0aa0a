// Unit tests of per-operation signals: many operations on one long-lived signal leave it one listener per operation under way, none after.
import assert from 'node:assert/strict'
import {getEventListeners, setMaxListeners} from 'node:events'
import {describe, it} from 'node:test'
import {FpeerError} from '../errors.js'
import {pause} from './retry.js'
import {scopedSignal, untilAborted, withScopedSignal} from './abort.js'

/**
 * One operation as the transfer layers run it: a pause (which removes its listener) and a
 * listener that is never removed, as an HTTP client's on a response it read to the end.
 */
async function operation(signal: AbortSignal | undefined): Promise<void> {
  signal?.addEventListener('abort', () => {})
  await pause(1, signal)
}

/** Runs `n` operations, `parallel` at a time, on `parent`; returns the most listeners `parent` held at once. */
async function many(parent: AbortSignal, n: number, parallel: number, run: (parent: AbortSignal) => Promise<void>): Promise<number> {
  let most = 0
  let next = 0
  const worker = async () => {
    while (next < n) {
      next++
      const op = run(parent)
      most = Math.max(most, getEventListeners(parent, 'abort').length)
      await op
    }
  }
  await Promise.all(Array.from({length: parallel}, worker))
  return most
}

describe('scopedSignal', () => {
  it('leaves a long-lived signal at most one listener per operation under way, and none after 500 operations', async () => {
    const node = new AbortController()
    const most = await many(node.signal, 500, 8, (parent) => withScopedSignal(parent, operation))
    assert.ok(most <= 8, `${most} listeners at once`)
    assert.equal(getEventListeners(node.signal, 'abort').length, 0)
  })

  it('is what keeps the count bounded: the same operations on the signal itself leave one listener each', async () => {
    const node = new AbortController()
    // The leak on purpose: no MaxListenersExceededWarning in the test's output.
    setMaxListeners(200, node.signal)
    await many(node.signal, 100, 8, (parent) => operation(parent))
    assert.equal(getEventListeners(node.signal, 'abort').length, 100)
  })

  it('aborts operations under way with the parent’s reason, and a child of an aborted parent starts aborted', async () => {
    const node = new AbortController()
    const scope = scopedSignal(node.signal)
    const reason = new FpeerError('E_INTERRUPTED', 'stopping')
    node.abort(reason)
    assert.equal(scope.signal.aborted, true)
    assert.equal(scope.signal.reason, reason)
    const late = scopedSignal(node.signal)
    assert.equal(late.signal.reason, reason)
    scope.release()
    late.release()
  })

  describe('untilAborted', () => {
    const why = () => new FpeerError('E_INTERRUPTED', 'stopping')
    it('settles as the work does, and leaves no listener', async () => {
      const ac = new AbortController()
      assert.equal(await untilAborted(Promise.resolve(7), ac.signal, why), 7)
      await assert.rejects(untilAborted(Promise.reject(new FpeerError('E_TIMEOUT', 'slow')), ac.signal, why), {code: 'E_TIMEOUT'})
      assert.equal(getEventListeners(ac.signal, 'abort').length, 0)
    })
    it('rejects with the reason once the signal aborts, and hands what the work settles with later to `late`', async () => {
      const ac = new AbortController()
      let finish: (v: number) => void = () => {}
      const late: number[] = []
      const run = untilAborted(new Promise<number>((r) => (finish = r)), ac.signal, why, (v) => late.push(v))
      ac.abort()
      await assert.rejects(run, {code: 'E_INTERRUPTED'})
      finish(3)
      await new Promise((r) => setImmediate(r))
      assert.deepEqual(late, [3])
      // Already aborted: rejects at once, and still hands on what comes later.
      await assert.rejects(
        untilAborted(Promise.resolve(4), ac.signal, why, (v) => late.push(v)),
        {code: 'E_INTERRUPTED'},
      )
      await new Promise((r) => setImmediate(r))
      assert.deepEqual(late, [3, 4])
    })
  })
})
