// Watches a shared folder for changes: one non-recursive watcher per directory, skipping fpeer's own.
import {type FSWatcher, watch} from 'node:fs'
import {lstat, opendir} from 'node:fs/promises'
import path from 'node:path'
import {isIgnoredName} from './scan.js'

/** Paths remembered between two takeDirty() calls; past this many, the next rescan walks the whole folder anyway. */
export const DIRTY_MAX = 4096

/** takeDirty(now) holds back a path with an event less than this long ago: it is still being written. */
export const SETTLE_MS = 50
/** ...but not one first named longer ago than this: a file written without pause is still looked at this often. */
export const HOLD_MAX_MS = 10_000

export interface FolderWatcherOptions {
  /** SETTLE_MS by default (tests). */
  settleMs?: number
  /** HOLD_MAX_MS by default (tests). */
  holdMaxMs?: number
}

/**
 * Node 20's `fs.watch(dir, {recursive: true})` on Linux stops reporting once a watched
 * subdirectory is removed (fpeer's staging folders are), so this keeps one inotify
 * watcher per directory itself, adding watchers as directories appear and dropping them as
 * they go: the watchers follow the directories there are now, never every name that ever
 * appeared (a file's watcher, or a removed directory's, would live as long as the peer and
 * hold one inotify watch each). Events are only a hint: the caller rescans, and a periodic
 * rescan catches anything missed.
 */
export class FolderWatcher {
  readonly #root: string
  readonly #onChange: () => void
  readonly #onError: (err: Error) => void
  /** Watched directory → its watcher and the inode it watches (a directory removed and made again under the same name is another). */
  readonly #watchers = new Map<string, {w: FSWatcher; ino: number}>()
  #closed = false
  /** Every directory is watched (start() finished) and none was lost to an error since. */
  #whole = false
  #events = 0
  /**
   * The paths events named since the last takeDirty() (relative; a directory's stands for
   * everything under it); undefined once an event named none or there were more than
   * DIRTY_MAX: then only a walk of the whole folder can tell what changed.
   */
  #dirty: Map<string, {first: number; last: number}> | undefined = new Map()
  readonly #settleMs: number
  readonly #holdMaxMs: number

  constructor(root: string, onChange: () => void, onError: (err: Error) => void = () => {}, options: FolderWatcherOptions = {}) {
    this.#root = root
    this.#onChange = onChange
    this.#onError = onError
    this.#settleMs = options.settleMs ?? SETTLE_MS
    this.#holdMaxMs = options.holdMaxMs ?? HOLD_MAX_MS
  }

  /** Directories watched now (relative paths, '' the root): what bounds the watcher's memory and inotify watches. */
  get watching(): string[] {
    return [...this.#watchers.keys()]
  }

  async start(): Promise<void> {
    await this.#add('')
    this.#whole = !this.#closed && this.#watchers.has('')
  }

  /**
   * How many events the folder has had, while every directory of it is watched; undefined
   * until start() has watched them all, after a watcher failed, and once closed. A listing
   * made when this read n is still the folder's while it reads n (node.ts reuses it instead of
   * walking the folder again); undefined means nothing can be told, so the folder is walked.
   */
  get changes(): number | undefined {
    return this.#whole && !this.#closed ? this.#events : undefined
  }

  /**
   * What changed since the last call, as the paths to look at again (FolderSync's partial
   * rescan), and starts a new set; undefined when that cannot be told (not watched whole, an
   * event without a name, too many): the caller walks everything.
   *
   * With `now` (performance.now()), a path whose last event came less than SETTLE_MS before
   * is held back for a later call, unless it was first named more than HOLD_MAX_MS before:
   * a file still being written (a long copy) is read once it is done, not at every rescan
   * that other changes bring meanwhile. `held` tells how many were held back.
   */
  takeDirty(now?: number): string[] | undefined {
    const dirty = this.#dirty
    this.#dirty = new Map()
    if (!dirty || this.changes === undefined) return undefined
    if (now === undefined) return [...dirty.keys()]
    const out: string[] = []
    for (const [p, t] of dirty) {
      if (now - t.last < this.#settleMs && now - t.first < this.#holdMaxMs) this.#dirty.set(p, t)
      else out.push(p)
    }
    return out
  }

  /** Paths named and not yet taken (held back by takeDirty(now), or named since). */
  get held(): number {
    return this.#dirty?.size ?? 0
  }

  #mark(rel: string): void {
    if (!this.#dirty) return
    // The root itself: anything in the folder.
    if (rel === '') {
      this.#dirty = undefined
      return
    }
    const now = performance.now()
    const t = this.#dirty.get(rel)
    if (t) t.last = now
    else if (this.#dirty.set(rel, {first: now, last: now}).size > DIRTY_MAX) this.#dirty = undefined
  }

  /**
   * Watches `rel` and the directories under it. `fresh`: a directory that appeared after start,
   * whose first files may have come before its watcher: it counts as changed once watched, so
   * the next rescan looks at what it holds by then and events tell the rest.
   */
  async #add(rel: string, fresh = false): Promise<void> {
    if (this.#closed || this.#watchers.has(rel)) return
    const abs = path.join(this.#root, rel)
    // A file (or a symlink) named in an event gets no watcher: its directory's watcher sees it.
    const st = await lstat(abs).catch(() => undefined)
    if (!st?.isDirectory() || this.#closed || this.#watchers.has(rel)) return
    let w: FSWatcher
    try {
      w = watch(abs, (event, name) => {
        const child = name ? String(name) : ''
        if (child && isIgnoredName(child)) return
        this.#events++
        // Without a name the event is about the directory itself: everything in it.
        this.#mark(child ? (rel ? `${rel}/${child}` : child) : rel)
        this.#onChange()
        // A new directory needs its own watcher; a removed or renamed one lets go of its own and its subdirectories'.
        if (event === 'rename' && child) void this.#changed(rel ? `${rel}/${child}` : child).catch(() => {})
      })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOTDIR' && code !== 'ENOENT') {
        // A directory that cannot be watched (no inotify watches left): its changes go unseen.
        this.#whole = false
        this.#onError(err as Error)
      }
      return
    }
    w.on('error', () => {
      this.#whole = false
      this.#drop(rel)
    })
    this.#watchers.set(rel, {w, ino: st.ino})
    if (fresh) {
      this.#events++
      this.#mark(rel)
      this.#onChange()
    }
    let dir
    try {
      dir = await opendir(abs)
    } catch {
      return
    }
    for await (const ent of dir) {
      if (ent.isDirectory() && !isIgnoredName(ent.name)) await this.#add(rel ? `${rel}/${ent.name}` : ent.name, fresh)
    }
  }

  /** A name in a watched directory appeared, went or was renamed: watch it if it is a directory now, else let go of it. */
  async #changed(rel: string): Promise<void> {
    const st = await lstat(path.join(this.#root, rel)).catch(() => undefined)
    if (st?.isDirectory() && this.#watchers.get(rel)?.ino === st.ino) return
    this.#drop(rel)
    if (st?.isDirectory()) await this.#add(rel, true)
  }

  /** Closes the watcher of `rel` and of every directory under it. */
  #drop(rel: string): void {
    for (const [k, {w}] of this.#watchers) {
      if (k !== rel && !k.startsWith(`${rel}/`)) continue
      w.close()
      this.#watchers.delete(k)
    }
  }

  close(): void {
    this.#closed = true
    this.#whole = false
    for (const {w} of this.#watchers.values()) w.close()
    this.#watchers.clear()
  }
}
