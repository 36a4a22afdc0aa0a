// A JSON state document guarded by a lock file, written atomically and read with a typed error when damaged.
import {link, mkdir, open, readFile, rename, unlink} from 'node:fs/promises'
import path from 'node:path'
import {type Adapter, Low} from 'lowdb'
import {FpeerError, fromSystemError} from '../errors.js'
import {lockState} from './state-lock.js'

/** How to recover from a damaged document, for the hint of its E_STATE_CORRUPT. */
export type RecoveryHint = (file: string) => string

const defaultRecovery: RecoveryHint = (file) =>
  `restore it from a backup of the fpeer home, or from ${path.basename(file)}.bak beside it (the copy before its last change): \`cp ${file}.bak ${file}\`; or move it away to start this document afresh`

/**
 * lowdb's storage for a state document: read with a typed error when damaged, written
 * atomically and durably (lowdb's own JSONFile writer renames but never fsyncs, and reports
 * a damaged file as a bare SyntaxError naming nothing).
 */
class AtomicJsonFile<T extends object> implements Adapter<T> {
  readonly #db: LockedDb<T>
  readonly #load: () => Promise<T | undefined>
  readonly #mode: number

  constructor(db: LockedDb<T>, load: () => Promise<T | undefined>, mode: number) {
    this.#db = db
    this.#load = load
    this.#mode = mode
  }

  async read(): Promise<T | null> {
    return (await this.#load()) ?? null
  }

  async write(data: T): Promise<void> {
    await writeAtomic(this.#db.file, JSON.stringify(data, null, 2) + '\n', this.#mode, {keepBackup: true})
  }
}

/**
 * A lowdb document (`new Low` over an adapter of our own; never JSONFilePreset, which keeps
 * data in memory under NODE_ENV=test). Every read-modify-write takes a lock on the document,
 * shared by the daemon and every CLI command of the home (lowdb has one writer per process
 * and no lock). A write goes to a temporary file that is fsynced and renamed over the
 * document, then the directory is fsynced, so a crash or a full disk leaves either the old
 * or the new document, never a torn one. The previous document is kept as `<file>.bak` (a
 * hard link, no copy), the recovery a damaged one's error points to.
 */
export class LockedDb<T extends object> {
  readonly file: string
  readonly #defaults: () => T
  readonly #mode: number
  readonly #recovery: RecoveryHint

  constructor(file: string, defaults: () => T, mode = 0o600, recovery: RecoveryHint = defaultRecovery) {
    this.file = file
    this.#defaults = defaults
    this.#mode = mode
    this.#recovery = recovery
  }

  /** Whether the document exists (a missing one reads as its defaults). */
  async exists(): Promise<boolean> {
    return (await this.#load()) !== undefined
  }

  /** The parsed document, or undefined when there is none. Errors: E_STATE_CORRUPT, E_IO. */
  async #load(): Promise<T | undefined> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw fromSystemError(err, `reading ${this.file}`, {path: this.file})
    }
    let doc: unknown
    try {
      doc = JSON.parse(text)
    } catch (err) {
      throw this.#corrupt(`is not valid JSON (${(err as Error).message})`, err)
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw this.#corrupt('does not hold a JSON object')
    return doc as T
  }

  #corrupt(what: string, cause?: unknown): FpeerError {
    return new FpeerError('E_STATE_CORRUPT', `${this.file} ${what}`, {
      hint: this.#recovery(this.file),
      details: {path: this.file},
      ...(cause === undefined ? {} : {cause}),
    })
  }

  #low(): Low<T> {
    return new Low<T>(new AtomicJsonFile<T>(this, () => this.#load(), this.#mode), this.#defaults())
  }

  /** Reads the current document (no lock needed: writes are atomic renames). Errors: E_STATE_CORRUPT, E_IO. */
  async read(): Promise<T> {
    const db = this.#low()
    await db.read()
    return db.data
  }

  /** Read-modify-write under the lock; `fn` may mutate the document and return a value. */
  async update<R>(fn: (data: T) => R | Promise<R>): Promise<R> {
    await mkdir(path.dirname(this.file), {recursive: true, mode: 0o700}).catch((err: unknown) => {
      throw fromSystemError(err, `creating ${path.dirname(this.file)}`, {path: path.dirname(this.file)})
    })
    return lockState(this.file, `${this.file}.lock`, `${this.file} is locked by another fpeer process`, async () => {
      const db = this.#low()
      await db.read()
      const result = await fn(db.data)
      await db.write()
      return result
    })
  }
}

/**
 * Writes `text` to `file` atomically and durably: temporary file, fsync, rename, fsync of the
 * directory. On any failure (ENOSPC, EROFS…) the temporary file is removed and the old
 * document stays; the error is E_DISK_FULL or E_IO naming `file`.
 */
export async function writeAtomic(file: string, text: string, mode: number, options: {keepBackup?: boolean} = {}): Promise<void> {
  const dir = path.dirname(file)
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now()}.tmp`)
  try {
    const fh = await open(tmp, 'wx', mode)
    try {
      await fh.writeFile(text, 'utf8')
      await fh.sync()
    } finally {
      await fh.close()
    }
    if (options.keepBackup) {
      // A hard link costs no space, so it cannot fail for a full disk where a copy would.
      const bak = `${file}.bak`
      await unlink(bak).catch(() => {})
      await link(file, bak).catch(() => {})
    }
    await rename(tmp, file)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    throw fromSystemError(err, `writing ${file}`, {path: file})
  }
  await syncDir(dir)
}

/** Makes a rename in `dir` durable; a file system that cannot fsync a directory is left as it is. */
export async function syncDir(dir: string): Promise<void> {
  const dh = await open(dir, 'r').catch(() => undefined)
  if (!dh) return
  try {
    await dh.sync()
  } catch {
    // EINVAL on some file systems: nothing more to do
  } finally {
    await dh.close()
  }
}
