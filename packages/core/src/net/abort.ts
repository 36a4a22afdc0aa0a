// Per-operation abort signals tied to a long-lived one: the long-lived signal holds one listener per operation under way, never one per operation ever run.
import {setMaxListeners} from 'node:events'

/** Listeners one operation's signal may hold before Node warns: its parts at once, bounded by its concurrency. */
export const OPERATION_MAX_LISTENERS = 64

/** A signal for one operation, and the function that lets go of its parent when the operation ends. */
export interface ScopedSignal {
  readonly signal: AbortSignal
  /** Removes the one listener this scope put on its parent; call it when the operation ends, however it ends. Idempotent. */
  release(): void
}

/**
 * A child of `parent` for one operation: aborted (with the parent's reason) when the parent
 * aborts. Whatever the operation's parts hang on the child (an HTTP client's listener on a
 * response it read to the end, a pause) is let go with the child, so a node's lifetime signal
 * (aborted only at stop) does not collect listeners from every fetch and push it ever ran
 * (MaxListenersExceededWarning, and memory that grows with the work done). Not
 * `AbortSignal.any`: a long-lived source keeps every dependent it ever had (nodejs/node#55351).
 */
export function scopedSignal(parent: AbortSignal | undefined): ScopedSignal {
  const ctl = new AbortController()
  // One operation's parts listen side by side (a fetch of 8 files at once, each with its own request and pause).
  setMaxListeners(OPERATION_MAX_LISTENERS, ctl.signal)
  if (!parent) return {signal: ctl.signal, release: () => {}}
  if (parent.aborted) {
    ctl.abort(parent.reason)
    return {signal: ctl.signal, release: () => {}}
  }
  const onAbort = () => ctl.abort(parent.reason)
  parent.addEventListener('abort', onAbort, {once: true})
  return {signal: ctl.signal, release: () => parent.removeEventListener('abort', onAbort)}
}

/** Runs `fn` with a child of `parent` (see scopedSignal), released when `fn` settles. */
export async function withScopedSignal<T>(parent: AbortSignal | undefined, fn: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
  if (!parent) return fn(undefined)
  const scope = scopedSignal(parent)
  try {
    return await fn(scope.signal)
  } finally {
    scope.release()
  }
}

/**
 * Settles as `work` does, or rejects with `reason(signal)` as soon as `signal` aborts, for
 * waits that take no signal of their own (a message from a peer, a connect). What `work`
 * settles with after the abort goes to `late` (a client to close), else is dropped. The
 * listener is removed when either happens.
 */
export function untilAborted<T>(
  work: Promise<T>,
  signal: AbortSignal | undefined,
  reason: (signal: AbortSignal) => unknown,
  late?: (value: T) => void,
): Promise<T> {
  if (!signal) return work
  let cut = false
  const settleLate = (value: T) => {
    if (cut) late?.(value)
    return value
  }
  if (signal.aborted) {
    cut = true
    work.then(settleLate, () => {})
    return Promise.reject(reason(signal))
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      cut = true
      reject(reason(signal))
    }
    signal.addEventListener('abort', onAbort, {once: true})
    work.then(settleLate).then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}
