// Watches a shared folder for changes: one non-recursive watcher per directory, skipping fpeer's own.
import {type FSWatcher, watch} from 'node:fs'
import {opendir} from 'node:fs/promises'
import path from 'node:path'
import {isIgnoredName} from './scan.js'

/**
 * Node 20's `fs.watch(dir, {recursive: true})` on Linux stops reporting once a watched
 * subdirectory is removed (fpeer's staging folders are), so this keeps one inotify
 * watcher per directory itself, adding watchers as directories appear. Events are only
 * a hint: the caller rescans, and a periodic rescan catches anything missed.
 */
export class FolderWatcher {
  readonly #root: string
  readonly #onChange: () => void
  readonly #onError: (err: Error) => void
  readonly #watchers = new Map<string, FSWatcher>()
  #closed = false

  constructor(root: string, onChange: () => void, onError: (err: Error) => void = () => {}) {
    this.#root = root
    this.#onChange = onChange
    this.#onError = onError
  }

  async start(): Promise<void> {
    await this.#add('')
  }

  async #add(rel: string): Promise<void> {
    if (this.#closed || this.#watchers.has(rel)) return
    const abs = path.join(this.#root, rel)
    let w: FSWatcher
    try {
      w = watch(abs, (event, name) => {
        const child = name ? String(name) : ''
        if (child && isIgnoredName(child)) return
        this.#onChange()
        // A new directory needs its own watcher; a vanished one drops its watcher when it errors.
        if (event === 'rename' && child) void this.#add(rel ? `${rel}/${child}` : child).catch(() => {})
      })
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'ENOTDIR' && code !== 'ENOENT') this.#onError(err as Error)
      return
    }
    w.on('error', () => {
      w.close()
      this.#watchers.delete(rel)
    })
    this.#watchers.set(rel, w)
    let dir
    try {
      dir = await opendir(abs)
    } catch {
      return
    }
    for await (const ent of dir) {
      if (ent.isDirectory() && !isIgnoredName(ent.name)) await this.#add(rel ? `${rel}/${ent.name}` : ent.name)
    }
  }

  close(): void {
    this.#closed = true
    for (const w of this.#watchers.values()) w.close()
    this.#watchers.clear()
  }
}
