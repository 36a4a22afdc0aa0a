// The one retry/backoff policy: attempts, exponential pauses with a cap, and an abortable wait (rclone's lib/pacer).
import {isRetryable} from './errors-map.js'

/** How often and how patiently to try again. */
export interface RetryPolicy {
  /** Attempts after the first. */
  retries: number
  /** The pause before the first retry, in ms; each later one doubles it. */
  baseMs: number
  /** No pause is longer than this, in ms. */
  maxMs: number
}

/** A fetch from a peer: a dropped connection usually mends within a second or two. */
export const FETCH_RETRY: Readonly<RetryPolicy> = {retries: 3, baseMs: 100, maxMs: 2000}

/** The pause before retry number `attempt + 1` (attempt counts from 0). */
export function backoffMs(policy: Pick<RetryPolicy, 'baseMs' | 'maxMs'>, attempt: number): number {
  // Capped before the power, so a long-lived queue never overflows to Infinity.
  return Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(Math.max(0, attempt), 30))
}

/** Waits `ms`, or less when `signal` aborts: the caller checks `signal.aborted` after. Never rejects. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted || ms <= 0) return Promise.resolve()
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, {once: true})
  })
}

export interface RetryOptions {
  policy: Readonly<RetryPolicy>
  signal?: AbortSignal
  /** Whether a failure is worth another attempt; the default is the one decision, isRetryable. */
  shouldRetry?(err: unknown): boolean
  /** Told before each pause, with the attempt about to be made (1 for the first retry). */
  onRetry?(err: unknown, attempt: number): void
}

/**
 * Whether to try again after attempt `attempt` (from 0) failed with `err`: a retryable
 * failure, attempts left, and not aborted. For loops that cannot be a `retry()` call.
 */
export function shouldRetry(err: unknown, attempt: number, options: Pick<RetryOptions, 'policy' | 'signal' | 'shouldRetry'>): boolean {
  return (options.shouldRetry ?? isRetryable)(err) && attempt < options.policy.retries && !options.signal?.aborted
}

/**
 * Runs `attempt` until it resolves, a failure is not worth retrying, the attempts run out
 * or `signal` aborts; throws the last failure. Pauses between attempts by `backoffMs`.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt)
    } catch (err) {
      if (!shouldRetry(err, attempt, options)) throw err
      options.onRetry?.(err, attempt + 1)
      await pause(backoffMs(options.policy, attempt), options.signal)
      // Aborted while waiting: the failure that led here is the one to report.
      if (options.signal?.aborted) throw err
    }
  }
}
