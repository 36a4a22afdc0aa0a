// Unit tests for the one retry/backoff policy: which failures it retries, how many times, and that an abort ends its wait.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FpeerError} from '../errors.js'
import {backoffMs, pause, retry, shouldRetry} from './retry.js'

/** Pauses of 0 ms: these tests count attempts and never measure time. */
const QUICK = {retries: 3, baseMs: 0, maxMs: 0}

describe('backoffMs', () => {
  it('doubles from the base and stops at the cap', () => {
    const policy = {baseMs: 100, maxMs: 2000}
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((a) => backoffMs(policy, a)),
      [100, 200, 400, 800, 1600, 2000],
    )
  })
  it('never overflows for a long-lived queue', () => {
    assert.equal(backoffMs({baseMs: 2000, maxMs: 60_000}, 5000), 60_000)
    assert.equal(backoffMs({baseMs: 2000, maxMs: 60_000}, -1), 2000)
  })
})

describe('retry', () => {
  it('returns the first success', async () => {
    let calls = 0
    assert.equal(await retry(async () => ++calls, {policy: QUICK}), 1)
  })
  it('retries a network failure until it succeeds, telling each retry', async () => {
    const told: number[] = []
    const got = await retry(
      async (attempt) => {
        if (attempt < 2) throw new FpeerError('E_CONNECTION_LOST', 'x')
        return attempt
      },
      {policy: QUICK, onRetry: (_e, a) => told.push(a)},
    )
    assert.equal(got, 2)
    assert.deepEqual(told, [1, 2])
  })
  it('gives up after the policy’s retries with the last failure', async () => {
    let calls = 0
    await assert.rejects(
      retry(
        async () => {
          calls++
          throw new FpeerError('E_TIMEOUT', `attempt ${calls}`)
        },
        {policy: QUICK},
      ),
      (e: FpeerError) => e.code === 'E_TIMEOUT' && e.message === 'attempt 4',
    )
    assert.equal(calls, 4)
  })
  it('does not retry a verdict on the content', async () => {
    let calls = 0
    await assert.rejects(
      retry(
        async () => {
          calls++
          throw new FpeerError('E_HASH_MISMATCH', 'x')
        },
        {policy: QUICK},
      ),
      {code: 'E_HASH_MISMATCH'},
    )
    assert.equal(calls, 1)
  })
  it('takes a decision of its own', async () => {
    let calls = 0
    await assert.rejects(
      retry(
        async () => {
          calls++
          throw new FpeerError('E_BUSY', 'x')
        },
        {policy: QUICK, shouldRetry: (e) => (e as FpeerError).code === 'E_BUSY'},
      ),
      {code: 'E_BUSY'},
    )
    assert.equal(calls, 4)
  })
  it('stops waiting when aborted and reports the failure that led there', async () => {
    const ac = new AbortController()
    let calls = 0
    const run = retry(
      async () => {
        calls++
        throw new FpeerError('E_CONNECTION_LOST', 'x')
      },
      // An hour's pause: only the abort can end it.
      {policy: {retries: 3, baseMs: 3_600_000, maxMs: 3_600_000}, signal: ac.signal, onRetry: () => ac.abort()},
    )
    await assert.rejects(run, {code: 'E_CONNECTION_LOST'})
    assert.equal(calls, 1)
  })
  it('makes no attempt after an abort', () => {
    const ac = new AbortController()
    ac.abort()
    assert.equal(shouldRetry(new FpeerError('E_TIMEOUT', 'x'), 0, {policy: QUICK, signal: ac.signal}), false)
  })
})

describe('pause', () => {
  it('resolves at once for an aborted signal', async () => {
    const ac = new AbortController()
    ac.abort()
    await pause(3_600_000, ac.signal)
  })
  it('resolves when the signal aborts during the wait', async () => {
    const ac = new AbortController()
    const p = pause(3_600_000, ac.signal)
    ac.abort()
    await p
  })
})
