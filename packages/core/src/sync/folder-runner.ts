// One runner per shared folder: its FolderSync, its watcher, the debounced and periodic rescans; and the set of runners kept in step with the configuration.
import type {Home} from '../store/home.js'
import type {Identity} from '../identity.js'
import type {Startable} from '../lifecycle.js'
import {removeLeftovers} from '../fs/leftovers.js'
import {FolderWatcher} from '../fs/watch.js'
import type {FolderConfig} from '../store/config.js'
import {type Logger, silentLogger} from '../transport.js'
import {FolderSync} from './folder.js'

/** File-system events closer together than this make one rescan... */
export const DEBOUNCE_MS = 100
/**
 * ...which comes at the latest this long after the first of them: a file written without
 * pause (a log, a long copy) delays the rest of the folder no longer than this. That rescan
 * holds such a file back until its events stop (FolderWatcher.takeDirty).
 */
export const MAX_WAIT_MS = 1000

export interface FolderRunnerOptions {
  home: Home
  identity: Identity
  log?: Logger
  /** Watch the folder and rescan it periodically (the daemon); false: only hold its FolderSync (one-shot use). */
  live: boolean
  /** Full rescan every this many ms; a file-system event rescans only the paths it named (FolderSync.rescan). */
  rescanMs: number
  /** Remove what a killed fpeer left in the folder (part files, staging folders) before watching it. */
  clean: boolean
  /**
   * Rescans the folder and pushes what changed; the caller owns (tracks, cancels) that work.
   * The rescan asks `sync.dirty(now)`, so that paths still being written are held back.
   */
  rescan: (folder: string) => void
}

/**
 * A shared folder while this peer serves it, in the spirit of Syncthing's per-folder loop: it
 * owns the folder's watcher and rescan timers; the work a rescan starts belongs to the caller.
 */
export class FolderRunner implements Startable {
  readonly folder: FolderConfig
  readonly sync: FolderSync
  readonly #options: FolderRunnerOptions
  readonly #log: Logger
  #watcher: FolderWatcher | undefined
  #debounce: NodeJS.Timeout | undefined
  /** When the first event of the pending rescan came (performance.now()); undefined: none pending. */
  #pendingSince: number | undefined
  #interval: NodeJS.Timeout | undefined
  #stopped = false
  /** The periodic tick came: the next rescan walks the whole folder, whatever the watcher saw. */
  #fullDue = false
  #signal: AbortSignal | undefined
  readonly #onAbort = () => this.#halt()

  constructor(folder: FolderConfig, options: FolderRunnerOptions) {
    this.folder = folder
    this.#options = options
    this.#log = options.log ?? silentLogger
    this.sync = new FolderSync(options.home, folder, options.identity, options.log)
    this.sync.watched = () => this.changes
    this.sync.held = () => this.#watcher?.held ?? 0
    this.sync.dirty = (now) => {
      // The periodic rescan walks everything: what the events missed (an overflowed inotify queue) shows there.
      if (this.#fullDue) {
        this.#fullDue = false
        this.#watcher?.takeDirty()
        return undefined
      }
      const dirty = this.#watcher?.takeDirty(now)
      // Paths held back as still being written: looked at once their events stop (the rescan
      // this schedules, or one their next event schedules).
      if (now !== undefined && this.#watcher?.held) this.schedule()
      return dirty
    }
  }

  /** Timers running now (a pending debounced rescan, the periodic one): for tests that check a stop leaves none. */
  get timers(): number {
    return (this.#debounce ? 1 : 0) + (this.#interval ? 1 : 0)
  }

  get watching(): boolean {
    return this.#watcher !== undefined
  }

  /** The watcher's count of the folder's events (FolderWatcher.changes); undefined when not watched whole. */
  get changes(): number | undefined {
    return this.#watcher?.changes
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.#stopped || signal.aborted || this.#signal) return
    this.#signal = signal
    signal.addEventListener('abort', this.#onAbort, {once: true})
    if (!this.#options.live) return
    const f = this.folder
    if (this.#options.clean) {
      // A kill -9 mid-update or mid-fetch leaves staging folders and part files nothing else removes.
      const left = await removeLeftovers(f.path)
      if (left.removed.length) this.#log.info('removed leftovers of an interrupted transfer', {folder: f.name, entries: left.removed.length, bytes: left.bytes})
    }
    if (this.#stopped) return
    const warn = (err: Error) => this.#log.warn('cannot watch folder; relying on periodic rescans', {folder: f.name, reason: err.message})
    const w = new FolderWatcher(f.path, () => this.schedule(), warn)
    this.#watcher = w
    void w.start().catch(warn)
    this.#interval = setInterval(() => {
      this.#fullDue = true
      this.schedule(0)
    }, this.#options.rescanMs)
    this.#interval.unref()
  }

  /**
   * Debounces file-system events (and the periodic tick) into one rescan-and-push: `delayMs`
   * after the last call, and never more than MAX_WAIT_MS after the first one it waits for
   * (events that never pause would otherwise put the rescan off for good).
   */
  schedule(delayMs = DEBOUNCE_MS): void {
    if (this.#stopped) return
    const now = performance.now()
    this.#pendingSince ??= now
    clearTimeout(this.#debounce)
    this.#debounce = setTimeout(
      () => {
        this.#debounce = undefined
        this.#pendingSince = undefined
        this.#options.rescan(this.folder.name)
      },
      Math.max(0, Math.min(delayMs, this.#pendingSince + MAX_WAIT_MS - now)),
    )
    this.#debounce.unref()
  }

  async stop(): Promise<void> {
    this.#signal?.removeEventListener('abort', this.#onAbort)
    this.#halt()
  }

  #halt(): void {
    this.#stopped = true
    clearTimeout(this.#debounce)
    clearInterval(this.#interval)
    this.#debounce = undefined
    this.#pendingSince = undefined
    this.#interval = undefined
    this.#watcher?.close()
    this.#watcher = undefined
  }
}

/** A folder changed if it moved or was opened or closed: its runner is replaced. */
function changed(a: FolderConfig, b: FolderConfig): boolean {
  return a.path !== b.path || a.open !== b.open
}

/**
 * The runners of the folders shared now: `update()` (after every configuration read) starts
 * one for a newly shared folder and stops the runner of one no longer shared. Runners made
 * before start() are started by it, with leftovers cleaned; later ones are started at once.
 */
export class FolderRunners implements Startable {
  readonly #make: (folder: FolderConfig, clean: boolean) => FolderRunner
  readonly #log: Logger
  readonly #onRemove: ((folder: string) => void) | undefined
  readonly #runners = new Map<string, FolderRunner>()
  #signal: AbortSignal | undefined
  #stopped = false

  constructor(options: {make: (folder: FolderConfig, clean: boolean) => FolderRunner; log?: Logger; onRemove?: (folder: string) => void}) {
    this.#make = options.make
    this.#onRemove = options.onRemove
    this.#log = options.log ?? silentLogger
  }

  get(folder: string): FolderRunner | undefined {
    return this.#runners.get(folder)
  }

  get size(): number {
    return this.#runners.size
  }

  /** Keeps one runner per shared folder. */
  update(folders: readonly FolderConfig[]): void {
    const names = new Set(folders.map((f) => f.name))
    for (const [name, r] of [...this.#runners]) {
      if (names.has(name)) continue
      // Unshared meanwhile (`fpeer unshare`): stop watching and syncing it; its files stay.
      this.#runners.delete(name)
      void r.stop()
      this.#onRemove?.(name)
      this.#log.info('folder no longer shared', {folder: name})
    }
    for (const f of folders) {
      const cur = this.#runners.get(f.name)
      if (cur && !changed(cur.folder, f)) continue
      if (cur) void cur.stop()
      const r = this.#make(f, !this.#signal)
      this.#runners.set(f.name, r)
      this.#begin(r)
    }
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.#stopped || signal.aborted || this.#signal) return
    this.#signal = signal
    for (const r of this.#runners.values()) await r.start(signal)
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await Promise.all([...this.#runners.values()].map((r) => r.stop()))
  }

  #begin(r: FolderRunner): void {
    if (!this.#signal || this.#stopped) return
    r.start(this.#signal).catch((err: Error) => this.#log.warn('cannot start the folder runner', {folder: r.folder.name, reason: err.message}))
  }
}
