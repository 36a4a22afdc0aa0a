// A serving peer gives back, once idle, the memory its last burst of work made V8 grow.
import {getHeapStatistics} from 'node:v8'
import {performance} from 'node:perf_hooks'
import type {Startable} from './lifecycle.js'

/**
 * Resource limits of fpeer's worker threads (the scan pool's, the lander's): each keeps little
 * between batches, so a young generation of 4 MiB instead of V8's 32 MiB. It took about 5 MiB
 * off `fpeer share`'s peak for 100,000 files, at the same speed.
 */
export const WORKER_LIMITS = {maxYoungGenerationSizeMb: 4} as const

/**
 * What a reclaim did: the V8 heap's committed size (bytes) before and after, and how long
 * the collection held the process (ms).
 */
export interface Reclaimed {
  before: number
  after: number
  ms: number
}

export interface IdleReclaimOptions {
  /** The event loop idle this long (ms) after its heap grew: collect. */
  idleMs: number
  /** How often the loop's utilisation is looked at (default 1000 ms). */
  tickMs?: number
  /** A tick whose event loop was busy less than this share of the time counts as idle (default 0.05). */
  busyBelow?: number
  /** Growth of the heap's committed size since the last reclaim that makes one worth it (default 8 MiB). */
  growthBytes?: number
  onReclaim?(r: Reclaimed): void
  /** Why a reclaim could not run (no inspector in this Node build): said once. */
  onUnavailable?(reason: string): void
}

type Post = (method: string) => Promise<void>

/**
 * V8 sizes its heap to the work: a burst of transfers grows the young generation to 32 MiB
 * and leaves the old generation with room to spare, and a process that then sits idle keeps
 * all of it, since V8 collects when something is allocated. A serving peer is idle most of
 * its life, so after each burst it asks once for the collection V8 makes under memory
 * pressure (the inspector's HeapProfiler.collectGarbage: a full, compacting collection that
 * also shrinks the young generation), tens of ms of pause (37-222 ms, median 92 ms, with 20
 * peers sharing two cores), and not again until the heap has grown again. Idle means the
 * event loop was busy less than `busyBelow` of each tick for `idleMs`; the next burst of
 * work is served as fast as before, the heap growing back as it needs. One per process is
 * enough; two (tests running several nodes) only collect twice.
 */
export class IdleReclaim implements Startable {
  readonly #options: IdleReclaimOptions
  #timer: NodeJS.Timeout | undefined
  #post: Post | undefined
  #disconnect: (() => void) | undefined
  #elu = performance.eventLoopUtilization()
  #quietSince = 0
  /** The heap's committed size after the last reclaim (or at start): growth is measured from here. */
  #baseline = 0
  #running = false
  #stopped = false
  #count = 0
  #lastAt: number | undefined

  constructor(options: IdleReclaimOptions) {
    this.#options = options
  }

  /** Reclaims done, and the wall-clock time of the last one: for stats.json. */
  get reclaims(): {count: number; lastAt?: number} {
    return {count: this.#count, ...(this.#lastAt !== undefined ? {lastAt: this.#lastAt} : {})}
  }

  /** Timers running now (0 or 1): for tests that check a stop leaves none. */
  get timers(): number {
    return this.#timer ? 1 : 0
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.#options.idleMs <= 0 || this.#stopped || signal.aborted || this.#timer) return
    try {
      // Loaded only by a serving peer: a one-shot command never pays for it.
      const {Session} = await import('node:inspector')
      const session = new Session()
      session.connect()
      this.#post = (method) => new Promise((resolve, reject) => session.post(method, (err) => (err ? reject(err) : resolve())))
      this.#disconnect = () => session.disconnect()
    } catch (err) {
      // A Node built without the inspector: the heap then stays as V8 sizes it.
      this.#options.onUnavailable?.((err as Error).message)
      return
    }
    if (this.#stopped || signal.aborted) return this.#halt()
    signal.addEventListener('abort', () => this.#halt(), {once: true})
    // The first idle stretch after start always collects: starting (loading, the first scan and
    // exchange) is a burst of work too, and what an idle peer holds is then measured from there.
    this.#baseline = 0
    this.#quietSince = performance.now()
    this.#elu = performance.eventLoopUtilization()
    this.#timer = setInterval(() => void this.#tick(), this.#options.tickMs ?? 1000)
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    this.#halt()
  }

  #halt(): void {
    this.#stopped = true
    clearInterval(this.#timer)
    this.#timer = undefined
    this.#disconnect?.()
    this.#disconnect = undefined
    this.#post = undefined
  }

  async #tick(): Promise<void> {
    const now = performance.now()
    const elu = performance.eventLoopUtilization(this.#elu)
    this.#elu = performance.eventLoopUtilization()
    if (elu.utilization >= (this.#options.busyBelow ?? 0.05)) {
      this.#quietSince = now
      return
    }
    if (this.#running || now - this.#quietSince < this.#options.idleMs) return
    const before = getHeapStatistics().total_heap_size
    if (before < this.#baseline + (this.#options.growthBytes ?? 8 << 20)) {
      // Shrunk on its own (V8 collected meanwhile): measure growth from there.
      if (before < this.#baseline) this.#baseline = before
      return
    }
    const post = this.#post
    if (!post) return
    this.#running = true
    const t0 = performance.now()
    try {
      await post('HeapProfiler.collectGarbage')
    } catch {
      // A session closed by stop() meanwhile: nothing to report.
      return
    } finally {
      this.#running = false
    }
    const after = getHeapStatistics().total_heap_size
    this.#baseline = after
    this.#count++
    this.#lastAt = Date.now()
    // The collection's own pause is not work: the next tick starts a fresh idle stretch.
    this.#elu = performance.eventLoopUtilization()
    this.#quietSince = performance.now()
    this.#options.onReclaim?.({before, after, ms: performance.now() - t0})
  }
}
