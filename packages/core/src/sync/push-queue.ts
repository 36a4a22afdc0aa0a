// Pushes to peers, bounded per peer and folder: a few in flight, later versions coalesced (the newest per path), failures retried with the shared backoff.
import {FpeerError, isFpeerError} from '../errors.js'
import {type RetryPolicy, backoffMs} from '../net/retry.js'
import type {PeerRecord} from '../store/peerfile.js'
import type {Logger} from '../transport.js'
import type {FileVersion} from './version.js'

/** Pushes to one peer of one folder under way at once; more versions wait and go together. */
export const PUSHES_IN_FLIGHT = 2

/**
 * Pushes to a peer that could not be reached: 2 s, 4 s, … 60 s, 8 tries; past that the
 * periodic catch-up and the peer's own state exchange at its start take over.
 */
export const PUSH_RETRY: Readonly<RetryPolicy> = {retries: 8, baseMs: 2000, maxMs: 60_000}

/** Failures worth pushing again: the peer was unreachable or dropped, not one that refused. */
export const RETRY_CODES: ReadonlySet<string> = new Set(['E_CONNECT', 'E_TIMEOUT', 'E_CONNECTION_LOST'])

/**
 * What a receiver answers when a file of the push changed at our side while it fetched
 * (deleted, renamed, rewritten): the push is refused whole, so the other versions it carried
 * would wait for the periodic catch-up (minutes; never with it off). They go again, with the
 * versions still our newest only: the changed file's new version goes in a push of its own.
 */
export const SOURCE_CHANGED: ReadonlySet<string> = new Set(['E_NOT_FOUND', 'E_SIZE_MISMATCH', 'E_HASH_MISMATCH'])

/** The code a peer answered with, when the push failed on its PeerError. */
function peerCodeOf(err: unknown): string | undefined {
  if (!isFpeerError(err) || err.code !== 'E_PEER_ERROR') return undefined
  const peerCode = err.details?.['peerCode']
  return typeof peerCode === 'string' ? peerCode : undefined
}

/** A refusal that says the source moved under the receiver's fetch (SOURCE_CHANGED), not that it refused the versions. */
export function sourceChanged(err: unknown): boolean {
  const peerCode = peerCodeOf(err)
  return peerCode !== undefined && SOURCE_CHANGED.has(peerCode)
}

/**
 * Failures that end a push for good: the peer no longer takes us (it leaves the peerlist, 10.6),
 * or we are stopping. Every other failure (a busy peer, a grant that ran out while a loaded
 * machine fetched, a stall) is worth another try: under churn each of them dropped versions
 * that then waited for the periodic catch-up (for ever with it off).
 */
export const FINAL_CODES: ReadonlySet<string> = new Set(['E_NOT_ALLOWED', 'E_INTERRUPTED'])

export interface PushQueueDeps {
  log: Logger
  /** One push exchange of `versions` (the update flow, 10.2); throws its typed error. */
  deliver(folder: string, peer: PeerRecord, versions: FileVersion[]): Promise<void>
  /** The peer's record now; undefined once it is no longer a peer of the folder (its queue is dropped). */
  peer(folder: string, id: string): PeerRecord | undefined
  /** A push failed for want of a connection (before its retry is scheduled). */
  lost?(folder: string, id: string): void
  /**
   * The versions of `versions` to offer `peer` now: still this node's newest of their paths
   * (and not known to be held by the peer). Every push offers these only (a push a reached
   * peer refused goes again with these only). Without it versions go as queued, and a push a
   * reached peer refused is not retried.
   */
  current?(folder: string, peer: string, versions: FileVersion[]): Promise<FileVersion[]>
  /** Keeps a delivery in the owner's work under way (stop waits for it, briefly). */
  track?<T>(p: Promise<T>): Promise<T>
}

export interface PushQueueOptions {
  /** Pushes in flight per peer and folder (default PUSHES_IN_FLIGHT). */
  inFlight?: number
  /** Retry unreachable peers (the daemon); false: a failure is only reported (one-shot `fpeer push`). */
  retry?: boolean
  policy?: Readonly<RetryPolicy>
}

interface Waiter {
  resolve(): void
  reject(err: unknown): void
}

/** One peer of one folder: what is waiting to go, what is under way, and its backoff. */
interface Lane {
  readonly folder: string
  readonly peer: string
  /** Path → the newest version not yet sent (or sent and failed): at most one per path. */
  readonly pending: Map<string, FileVersion>
  /** Callers whose versions are in `pending`, told how the push that carries them ends. */
  waiters: Waiter[]
  inFlight: number
  /** Failed pushes in a row (the backoff's attempt). */
  failures: number
  /** Set while the lane waits out a backoff: nothing is sent to the peer until it fires. */
  timer: NodeJS.Timeout | undefined
  lastError: unknown
}

/** Whether `v` supersedes `old` as the version of the path to send (newer lamport, then origin). */
function supersedes(v: FileVersion, old: FileVersion | undefined): boolean {
  return !old || v.lamport > old.lamport || (v.lamport === old.lamport && v.origin > old.origin)
}

/**
 * Outgoing pushes of a node. Each peer of each folder has a lane: at most `inFlight`
 * pushes to it at once; versions that arrive meanwhile wait in the lane, one per path (a
 * newer version replaces a waiting older one), and go as one push when a slot frees. A push
 * that fails for want of a connection puts its versions back (unless newer ones wait) and the
 * lane waits out the shared backoff (net/retry.ts) before sending again: a peer that is down
 * or drowning costs one timer and one version per path, however many changes pile up, and
 * never more pushes than slots. Callers wait for the first push that carries their versions;
 * retries go on without them.
 */
export class PushQueue {
  readonly #deps: PushQueueDeps
  readonly #inFlight: number
  readonly #retry: boolean
  readonly #policy: Readonly<RetryPolicy>
  readonly #lanes = new Map<string, Lane>()
  #stopped = false
  #signal: AbortSignal | undefined
  readonly #onAbort = () => this.stop()

  constructor(deps: PushQueueDeps, options: PushQueueOptions = {}) {
    this.#deps = deps
    this.#inFlight = Math.max(1, options.inFlight ?? PUSHES_IN_FLIGHT)
    this.#retry = options.retry ?? true
    this.#policy = options.policy ?? PUSH_RETRY
  }

  /** Starts taking pushes; `signal` (the node's) stops the queue when it aborts. */
  start(signal?: AbortSignal): void {
    this.#stopped = false
    this.#signal = signal
    if (signal?.aborted) this.stop()
    else signal?.addEventListener('abort', this.#onAbort, {once: true})
  }

  /** Drops every waiting version and backoff; pushes under way end with the node's signal. Callers still waiting are told E_INTERRUPTED. */
  stop(): void {
    this.#stopped = true
    this.#signal?.removeEventListener('abort', this.#onAbort)
    this.#signal = undefined
    const stopped = new FpeerError('E_INTERRUPTED', 'the peer is stopping: push not sent')
    for (const lane of this.#lanes.values()) {
      clearTimeout(lane.timer)
      lane.timer = undefined
      lane.pending.clear()
      for (const w of lane.waiters.splice(0)) w.reject(stopped)
    }
    this.#lanes.clear()
  }

  /**
   * Pushes `versions` to `peer`; resolves when a push carrying them was confirmed, rejects with
   * that push's error (or at once with the last one while the lane backs off: the versions wait
   * for its retry). Errors: those of `deliver`, E_INTERRUPTED.
   */
  push(folder: string, peer: PeerRecord, versions: readonly FileVersion[]): Promise<void> {
    if (this.#stopped) return Promise.reject(new FpeerError('E_INTERRUPTED', 'the peer is stopping: push not sent'))
    if (versions.length === 0) return Promise.resolve()
    const lane = this.#lane(folder, peer.id)
    for (const v of versions) if (supersedes(v, lane.pending.get(v.path))) lane.pending.set(v.path, v)
    if (lane.timer) return Promise.reject(lane.lastError)
    const done = new Promise<void>((resolve, reject) => lane.waiters.push({resolve, reject}))
    this.#pump(lane)
    return done
  }

  /**
   * The peer answered us another way (a catch-up pull from it went through): a backoff on its
   * lane ends now and what waits is sent, instead of sitting out the rest of up to a minute.
   */
  reachable(folder: string, peer: string): void {
    const lane = this.#lanes.get(`${folder}\0${peer}`)
    if (!lane?.timer) return
    clearTimeout(lane.timer)
    lane.timer = undefined
    // Still a retry (logged as one when it lands); the backoff starts over only once a push goes through.
    this.#pump(lane)
    this.#tidy(lane)
  }

  /** Versions waiting (not under way) and pushes under way, over every lane: what bounds the queue's memory. */
  get size(): {lanes: number; pending: number; inFlight: number; backingOff: number} {
    let pending = 0
    let inFlight = 0
    let backingOff = 0
    for (const l of this.#lanes.values()) {
      pending += l.pending.size
      inFlight += l.inFlight
      if (l.timer) backingOff++
    }
    return {lanes: this.#lanes.size, pending, inFlight, backingOff}
  }

  #lane(folder: string, peer: string): Lane {
    const key = `${folder}\0${peer}`
    let lane = this.#lanes.get(key)
    if (!lane) {
      lane = {folder, peer, pending: new Map(), waiters: [], inFlight: 0, failures: 0, timer: undefined, lastError: undefined}
      this.#lanes.set(key, lane)
    }
    return lane
  }

  /** Sends what waits while a slot is free and the lane is not backing off. */
  #pump(lane: Lane): void {
    while (!this.#stopped && !lane.timer && lane.inFlight < this.#inFlight && lane.pending.size > 0) {
      const peer = this.#deps.peer(lane.folder, lane.peer)
      if (!peer) {
        this.#drop(lane, new FpeerError('E_NOT_ALLOWED', `${lane.peer.slice(0, 7)} is no longer a peer of ${lane.folder}`))
        return
      }
      const batch = [...lane.pending.values()]
      const waiters = lane.waiters
      lane.pending.clear()
      lane.waiters = []
      const retried = lane.failures > 0
      lane.inFlight++
      // Every push offers only what is still our newest of its paths. A version that waited (a
      // backoff, a slot) while a newer one of its path arrived from the very peer it was to go
      // to is not replaced in the lane, and the peer's fetch would find other bytes here: under
      // churn such stale offers were a third of the refused pushes, each putting the lane into
      // backoff with the good versions it carried. Superseded versions are dropped here; their
      // newer ones went (or go) on their own.
      const current = this.#deps.current
      const sent = current ? current(lane.folder, lane.peer, batch) : Promise.resolve(batch)
      const run = sent
        .then((b) => (b.length > 0 ? this.#deps.deliver(lane.folder, peer, b) : undefined))
        .then(
          () => {
            lane.failures = 0
            for (const w of waiters) w.resolve()
            if (retried) this.#deps.log.info('retried push delivered', {folder: lane.folder, peer: lane.peer.slice(0, 7), versions: batch.length})
          },
          (err: unknown) => {
            for (const w of waiters) w.reject(err)
            this.#failed(lane, batch, err)
          },
        )
      const settled = run.finally(() => {
        lane.inFlight--
        this.#pump(lane)
        this.#tidy(lane)
      })
      void (this.#deps.track ? this.#deps.track(settled) : settled).catch(() => {})
    }
  }

  /** A push failed: unreachable peers get the batch back (unless newer versions wait) and a backoff; others are left to catch-up. */
  #failed(lane: Lane, batch: FileVersion[], err: unknown): void {
    const code = isFpeerError(err) ? err.code : 'E_INTERNAL'
    if (this.#stopped) return
    const unreached = RETRY_CODES.has(code)
    const final = FINAL_CODES.has(code) || FINAL_CODES.has(peerCodeOf(err) ?? '')
    // Reached but not done: what goes again is checked against our newest versions first.
    const reached = this.#retry && !!this.#deps.current && !unreached && !final
    const again = (this.#retry && unreached) || reached
    // Once per failed push (they are few: slots, and one per backoff), not once per change that waited for it.
    const what = !again
      ? 'push failed; the peer catches up when it returns'
      : sourceChanged(err)
        ? 'push refused: a file changed here while the peer fetched it; what is still current goes again'
        : reached
          ? 'push failed; what is still current goes again'
          : 'push failed; will retry, and the peer catches up when it returns'
    this.#deps.log.warn(what, {
      folder: lane.folder,
      peer: lane.peer.slice(0, 7),
      code,
      reason: (err as Error)?.message ?? String(err),
    })
    if (!again) return
    // A peer that answered was reached: no state exchange is owed it.
    if (!reached) this.#deps.lost?.(lane.folder, lane.peer)
    for (const v of batch) if (supersedes(v, lane.pending.get(v.path))) lane.pending.set(v.path, v)
    lane.lastError = err
    if (lane.timer) return
    if (lane.failures >= this.#policy.retries) {
      this.#deps.log.info('push retries exhausted; the peer catches up when it returns', {
        folder: lane.folder,
        peer: lane.peer.slice(0, 7),
        versions: lane.pending.size,
        code,
      })
      this.#drop(lane, err)
      return
    }
    const delay = backoffMs(this.#policy, lane.failures)
    lane.failures++
    // Whoever waits for versions that now wait for the retry is told now: the peer is unreachable.
    for (const w of lane.waiters.splice(0)) w.reject(err)
    lane.timer = setTimeout(() => {
      lane.timer = undefined
      this.#pump(lane)
      this.#tidy(lane)
    }, delay)
    lane.timer.unref()
  }

  /** Forgets a lane's waiting versions (they are owed on disk where it matters, and catch-up finds the rest). */
  #drop(lane: Lane, err: unknown): void {
    lane.pending.clear()
    lane.failures = 0
    for (const w of lane.waiters.splice(0)) w.reject(err)
    this.#tidy(lane)
  }

  /** An idle lane (nothing waiting, nothing under way, no backoff) is removed: lanes do not outlive their work. */
  #tidy(lane: Lane): void {
    if (lane.inFlight === 0 && lane.pending.size === 0 && !lane.timer && lane.waiters.length === 0) {
      const key = `${lane.folder}\0${lane.peer}`
      if (this.#lanes.get(key) === lane) this.#lanes.delete(key)
    }
  }
}
