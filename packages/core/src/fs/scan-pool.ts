// Threads that hash a large scan's files, so a first share of 100,000 files uses every core.
import {availableParallelism} from 'node:os'
import {Worker} from 'node:worker_threads'
import {FpeerError} from '../errors.js'
import {WORKER_LIMITS} from '../memory.js'
import type {HashedFile} from './scan-hash.js'

/** A batch of absolute paths to hash. */
export interface ScanRequest {
  id: number
  paths: string[]
}

/** Per path of the batch, in order: what hashFile found, or null (gone, unreadable, not a file). */
export interface ScanReply {
  id: number
  files: Array<HashedFile | null>
}

/**
 * A few threads (one per core, at most 4), each hashing the batches it is sent with
 * synchronous reads into its own buffer: no thread-pool hop per system call, and the main
 * thread only walks. A batch goes to the thread with the fewest waiting. A thread that fails
 * fails every batch it holds (E_INTERNAL) and the pool with it; close() ends them all.
 */
export class ScanPool {
  readonly #threads: Array<{worker: Worker; waiting: number}> = []
  readonly #waiting = new Map<number, {resolve: (r: ScanReply) => void; reject: (e: Error) => void}>()
  #next = 0
  #broken: Error | undefined

  constructor(size = Math.max(1, Math.min(4, availableParallelism()))) {
    for (let i = 0; i < size; i++) {
      const worker = new Worker(new URL('./scan-thread.js', import.meta.url), {resourceLimits: WORKER_LIMITS})
      const thread = {worker, waiting: 0}
      worker.on('message', (r: ScanReply) => {
        thread.waiting--
        const w = this.#waiting.get(r.id)
        this.#waiting.delete(r.id)
        w?.resolve(r)
      })
      const fail = (err: Error) => {
        this.#broken ??= err
        for (const w of this.#waiting.values()) w.reject(this.#broken)
        this.#waiting.clear()
      }
      worker.on('error', fail)
      worker.on('exit', () => fail(new FpeerError('E_INTERNAL', 'a scan thread stopped')))
      this.#threads.push(thread)
    }
  }

  /** Batches sent and not yet answered, over all threads. */
  get inFlight(): number {
    return this.#waiting.size
  }

  get size(): number {
    return this.#threads.length
  }

  /** Hashes `paths` in one thread; per path, its HashedFile or undefined. */
  async hash(paths: string[]): Promise<Array<HashedFile | undefined>> {
    if (this.#broken) throw this.#broken
    const thread = this.#threads.reduce((a, b) => (b.waiting < a.waiting ? b : a))
    const id = this.#next++
    const reply = await new Promise<ScanReply>((resolve, reject) => {
      this.#waiting.set(id, {resolve, reject})
      thread.waiting++
      thread.worker.postMessage({id, paths} satisfies ScanRequest)
    })
    return reply.files.map((f) => f ?? undefined)
  }

  async close(): Promise<void> {
    await Promise.all(this.#threads.map((t) => t.worker.terminate()))
  }
}
