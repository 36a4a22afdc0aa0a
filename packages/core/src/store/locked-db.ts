// A lowdb document guarded by a lock file, so the daemon and CLI commands can share it safely.
import {chmod, mkdir} from 'node:fs/promises'
import path from 'node:path'
import {Low} from 'lowdb'
import {JSONFile} from 'lowdb/node'
import lockfile from 'proper-lockfile'
import {FpeerError} from '../errors.js'

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
    await db.read()
    db.data ??= this.#defaults()
    return db
  }

  async #withLock<R>(fn: () => Promise<R>): Promise<R> {
    await mkdir(path.dirname(this.file), {recursive: true, mode: 0o700})
    let release: () => Promise<void>
    try {
      release = await lockfile.lock(this.file, {realpath: false, stale: 10_000, retries: {retries: 200, minTimeout: 5, maxTimeout: 100}})
    } catch (err) {
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
      await db.write()
      await chmod(this.file, this.#mode)
      return result
    })
  }
}
