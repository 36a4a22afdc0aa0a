// Counters of update traffic, kept in memory and flushed to `stats.json` in the home (for scripts, the soak and the tests; replaced whole, never seen half-written).
import {randomBytes} from 'node:crypto'
import {constants} from 'node:fs'
import {readdir, rename, unlink, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {getHeapSpaceStatistics} from 'node:v8'
import type {Startable} from '../lifecycle.js'
import {pidRuns} from './state-lock.js'

/** Counters of update traffic, written to `stats.json` in the home. */
export interface SyncStats {
  messagesIn: number
  messagesOut: number
  filesFetched: number
  bytesFetched: number
  filesVerified: number
  pushes: number
  pulls: number
}

/** Counts, and writes the counters when they changed (every `flushMs`) and once more at stop. */
export class StatsFile implements Startable {
  readonly stats: SyncStats = {messagesIn: 0, messagesOut: 0, filesFetched: 0, bytesFetched: 0, filesVerified: 0, pushes: 0, pulls: 0}
  readonly #file: string
  readonly #flushMs: number | undefined
  #dirty = false
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  #signal: AbortSignal | undefined
  readonly #onAbort = () => this.#halt()
  readonly #reclaims: (() => {count: number; lastAt?: number}) | undefined
  /** Where a flush writes before it renames over stats.json: this object's own name, so nothing else writes it. */
  readonly #tmp: string
  #writing: Promise<void> | undefined

  /**
   * `flushMs` undefined: written at stop only (a one-shot command). `reclaims`: the idle
   * memory reclaims done (memory.ts), written under `memory`.
   */
  constructor(options: {home: string; flushMs?: number; reclaims?: () => {count: number; lastAt?: number}}) {
    this.#file = path.join(options.home, 'stats.json')
    this.#tmp = path.join(options.home, `.stats.json.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
    this.#flushMs = options.flushMs
    this.#reclaims = options.reclaims
  }

  /** Something besides the counters changed (the memory after a reclaim): write at the next flush. */
  touch(): void {
    this.#dirty = true
  }

  /** Timers running now (0 or 1): for tests that check a stop leaves none. */
  get timers(): number {
    return this.#timer ? 1 : 0
  }

  count(what: keyof SyncStats, n = 1): void {
    this.stats[what] += n
    this.#dirty = true
  }

  /** Writes the counters if they changed since the last write (`force`: anyway); a failed write is not an error of the peer. */
  async flush(force = false): Promise<void> {
    if (!this.#dirty && !force) return
    // One write at a time: a periodic flush that finds one under way leaves the counters for the next.
    if (this.#writing && !force) return
    while (this.#writing) await this.#writing
    this.#dirty = false
    // The process's memory by kind (heap, off-heap buffers, all of it) beside the counters: a soak tells a leak from heap sizing with it.
    const {rss, heapTotal, heapUsed, external, arrayBuffers} = process.memoryUsage()
    // Each V8 space's size (KiB, committed): young-generation sizing shows apart from what the old space holds.
    const spaces = Object.fromEntries(getHeapSpaceStatistics().map((sp) => [sp.space_name.replace(/_space$/, ''), Math.round(sp.space_size / 1024)]))
    const memory = {rss, heapTotal, heapUsed, external, arrayBuffers, spaces, ...(this.#reclaims ? {reclaims: this.#reclaims()} : {})}
    this.#writing = this.#replace(JSON.stringify({pid: process.pid, ...this.stats, memory}) + '\n').finally(() => (this.#writing = undefined))
    await this.#writing
  }

  /** Replaces stats.json whole (a temporary file renamed over it), so a reader never sees half of it; a failure keeps the old one. */
  async #replace(text: string): Promise<void> {
    try {
      // Never through a link planted at the temporary name.
      await writeFile(this.#tmp, text, {mode: 0o600, flag: constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW})
      await rename(this.#tmp, this.#file)
    } catch {
      await unlink(this.#tmp).catch(() => {})
    }
  }

  /** Temporary files of flushes that a killed process left (its pid is gone). */
  async #removeLeftovers(): Promise<void> {
    const dir = path.dirname(this.#file)
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const pid = /^\.stats\.json\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name)?.[1]
      if (pid === undefined || Number(pid) === process.pid || pidRuns(Number(pid))) continue
      await unlink(path.join(dir, name)).catch(() => {})
    }
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.#flushMs === undefined || this.#stopped || signal.aborted || this.#timer) return
    this.#signal = signal
    signal.addEventListener('abort', this.#onAbort, {once: true})
    await this.#removeLeftovers()
    if (this.#stopped) return
    this.#timer = setInterval(() => void this.flush(), this.#flushMs)
    this.#timer.unref()
  }

  /** Stops the periodic write and writes the counters once more: what a stopped peer did is on disk. */
  async stop(): Promise<void> {
    this.#signal?.removeEventListener('abort', this.#onAbort)
    this.#halt()
    await this.flush(true)
  }

  #halt(): void {
    this.#stopped = true
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}
