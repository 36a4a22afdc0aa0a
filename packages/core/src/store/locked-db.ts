// A lowdb document guarded by a lock file, so the daemon and CLI commands can share it safely.
import {chmod, mkdir} from 'node:fs/promises'
import path from 'node:path'
import {Low} from 'lowdb'
import {JSONFile} from 'lowdb/node'
import lockfile from 'proper-lockfile'
import {FpeerError, fromLocalError} from '../errors.js'

/**
 * lowdb has one writer per process and no lock of its own, so every read-modify-write
 * takes a proper-lockfile lock on the document. `new Low(new JSONFile())` is used rather
 * than JSONFilePreset, which keeps data only in memory when NODE_ENV=test.
 */
export class LockedDb<T extends object> {
  readonly file: string
  readonly #defaults: () => T
  readonly #mode: number

  constructor(file: string, defaults: () => T, mode = 0o600) {
    this.file = file
    this.#defaults = defaults
    this.#mode = mode
  }

  async #db(): Promise<Low<T>> {
    const db = new Low<T>(new JSONFile<T>(this.file), this.#defaults())
    try {
      await db.read()
    } catch (err) {
      if (err instanceof SyntaxError) throw new FpeerError('E_STATE_CORRUPT', `${this.file} is not valid JSON: ${err.message}`, {cause: err, details: {path: this.file}, hint: 'restore it from a backup, or move it away to start over'})
      throw fromLocalError(err, this.file, 'read')
    }
    db.data ??= this.#defaults()
    return db
  }

  async #withLock<R>(fn: () => Promise<R>): Promise<R> {
    await mkdir(path.dirname(this.file), {recursive: true, mode: 0o700}).catch((err: unknown) => {
      throw fromLocalError(err, path.dirname(this.file), 'create')
    })
    let release: () => Promise<void>
    try {
      release = await lockfile.lock(this.file, {realpath: false, stale: 10_000, retries: {retries: 200, minTimeout: 5, maxTimeout: 100}})
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS' || code === 'ENOSPC') throw fromLocalError(err, this.file, 'lock')
      throw new FpeerError('E_LOCKED', `${this.file} is locked by another fpeer process`, {cause: err})
    }
    try {
      return await fn()
    } finally {
      await release().catch(() => {})
    }
  }

  /** Reads the current document (no lock needed: lowdb's writes are atomic renames). */
  async read(): Promise<T> {
    return (await this.#db()).data
  }

  /** Read-modify-write under the lock; `fn` may mutate the document and return a value. */
  async update<R>(fn: (data: T) => R | Promise<R>): Promise<R> {
    return this.#withLock(async () => {
      const db = await this.#db()
      const result = await fn(db.data)
      try {
        await db.write()
        await chmod(this.file, this.#mode)
      } catch (err) {
        throw fromLocalError(err, this.file, 'write')
      }
      return result
    })
  }
}
