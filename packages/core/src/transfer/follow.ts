// Serving a large file while it is still being fetched (docs/protocol.md 4.10): the requester reads back what its landing has written so far.
import {closeSync, readSync} from 'node:fs'
import {Readable} from 'node:stream'
import {FpeerError} from '../errors.js'
import {setPositionalReader} from '../fs/local-source.js'
import type {AccessContext, FileSource} from '../transport.js'
import type {FileEntry} from '../wire/types.js'

/** Files of at least this size are offered to the host while they are still being fetched (4.10). */
export const FOLLOW_FROM = 8 << 20

/** Bytes one read of a followed part takes at most. */
const READ_BYTES = 1 << 20

/**
 * One attempt's part file as its landing writes it: the first `written` bytes are on disk
 * (each write completed). Readers get those bytes and wait for more, up to `size`; once the
 * landing failed they fail, once the file landed they read to its end. The part is read
 * through a descriptor of its own, opened when the part was created, so the rename into
 * place changes nothing for a reader; it is closed once the attempt is over and no reader
 * is left.
 */
export class PartFollow {
  readonly size: number
  #written: number
  #state: 'writing' | 'landed' | 'failed' = 'writing'
  #failure: FpeerError | undefined
  #fd: number | undefined
  #readers = 0
  readonly #waiters = new Set<() => void>()

  /** `fd` is read-only and becomes this object's to close; `written` is the prefix already there (a resumed part). */
  constructor(fd: number, size: number, written: number) {
    this.#fd = fd
    this.size = size
    this.#written = written
  }

  get written(): number {
    return this.#written
  }

  /** The first `written` bytes are on disk. */
  progress(written: number): void {
    if (this.#state !== 'writing' || written <= this.#written) return
    this.#written = Math.min(written, this.size)
    this.#wake()
  }

  /** The part was checked and renamed into place: every byte of it is there. */
  landed(): void {
    if (this.#state !== 'writing') return
    this.#state = 'landed'
    this.#wake()
    this.#closeIfDone()
  }

  /** The attempt failed: readers fail with a lost connection (a reader may ask again, and is then served from the next attempt). */
  failed(cause?: unknown): void {
    if (this.#state !== 'writing') return
    this.#state = 'failed'
    this.#failure = new FpeerError('E_CONNECTION_LOST', 'the copy being served was not completed here', cause === undefined ? {} : {cause})
    this.#wake()
    this.#closeIfDone()
  }

  #wake(): void {
    const ws = [...this.#waiters]
    this.#waiters.clear()
    for (const w of ws) w()
  }

  #closeIfDone(): void {
    if (this.#state !== 'writing' && this.#readers === 0 && this.#fd !== undefined) {
      closeSync(this.#fd)
      this.#fd = undefined
    }
  }

  /** Resolves once byte `at` is on disk (or the end is reached); throws once the attempt failed. */
  async #until(at: number, signal: AbortSignal): Promise<void> {
    for (;;) {
      if (this.#failure) throw this.#failure
      if (signal.aborted) throw new FpeerError('E_INTERRUPTED', 'the reader went away')
      if (at < this.#written || at >= this.size || this.#state === 'landed') return
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener('abort', done)
          this.#waiters.delete(done)
          resolve()
        }
        this.#waiters.add(done)
        signal.addEventListener('abort', done, {once: true})
      })
    }
  }

  /**
   * A stream of bytes `start` to `end` (inclusive; default the last byte), yielded as they
   * are written. It also has a positional reader (fs/local-source.ts), so a server may read
   * through into buffers it reuses.
   */
  open(start = 0, end = this.size - 1): Readable {
    if (this.#fd === undefined || this.#state === 'failed') throw this.#failure ?? new FpeerError('E_NOT_FOUND', 'the part is no longer open')
    const fd = this.#fd
    this.#readers++
    const stop = new AbortController()
    let pos = start
    // The descriptor is let go once the stream is destroyed and no read is in flight (a read
    // after a close could meet another file under the same number).
    let reading = 0
    let destroyed = false
    let released = false
    const release = () => {
      if (released || !destroyed || reading > 0) return
      released = true
      this.#readers--
      this.#closeIfDone()
    }
    // Reads the next bytes into `buf` once they are on disk: how many, 0 at the end of the range.
    const readInto = async (buf: Buffer): Promise<number> => {
      const want = Math.min(buf.length, end + 1 - pos)
      if (want <= 0) return 0
      await this.#until(pos, stop.signal)
      if (destroyed) throw new FpeerError('E_INTERRUPTED', 'the reader went away')
      const have = this.#state === 'landed' ? want : Math.min(want, this.#written - pos)
      reading++
      try {
        // Read at once, not through the thread pool: these bytes were written by this process
        // moments ago and are in the page cache, so the read is a copy. Queued behind the
        // landing's own writes and a busy event loop, each 1 MiB read took 4-6 ms, and the
        // host's read-back of a 512 MiB file trailed the fetch by up to 190 MiB.
        const bytesRead = readSync(fd, buf, 0, have, pos)
        if (bytesRead === 0) throw new FpeerError('E_IO', `the part holds fewer bytes than the ${pos + have} written`)
        pos += bytesRead
        return bytesRead
      } finally {
        reading--
        release()
      }
    }
    const stream = new Readable({
      highWaterMark: READ_BYTES,
      read() {
        const buf = Buffer.allocUnsafe(Math.min(READ_BYTES, Math.max(1, end + 1 - pos)))
        readInto(buf).then(
          (n) => {
            if (n === 0) this.push(null)
            else this.push(n === buf.length ? buf : buf.subarray(0, n))
          },
          (err: unknown) => this.destroy(err as Error),
        )
      },
      destroy(err, cb) {
        destroyed = true
        stop.abort()
        release()
        cb(err)
      },
    })
    setPositionalReader(stream, readInto)
    return stream
  }
}

/** One file being followed: the attempt now writing it, if any. */
interface Followed {
  follow: PartFollow | undefined
  size: number
  mtimeMs: number
}

/**
 * The requester's large files being fetched, by path, for its server (4.10): a read of one
 * is served from the part its landing is writing. A path stays here from its first attempt
 * until it lands (then reads go to the file in place) or the fetch ends. A read that comes
 * between two attempts waits for the next one.
 */
export class FollowedFiles {
  readonly #files = new Map<string, Followed>()
  readonly #waiters = new Set<() => void>()
  readonly #first: (file: FileEntry) => void
  readonly #seen = new Set<string>()
  /** Paths announced that have not landed yet: once the fetch ends, those are not found. */
  readonly #unlanded = new Set<string>()
  #ended = false

  /** `first` is told of each path when its first attempt begins: the moment to announce it. */
  constructor(first: (file: FileEntry) => void) {
    this.#first = first
  }

  /** Whether `path` was offered as followed (announced) at any time. */
  offered(path: string): boolean {
    return this.#seen.has(path)
  }

  /** An attempt at `file` writes its part; `follow` reads it. */
  started(file: FileEntry, follow: PartFollow): void {
    if (this.#ended) {
      follow.failed()
      return
    }
    this.#files.set(file.path, {follow, size: follow.size, mtimeMs: file.mtimeMs ?? Date.now()})
    this.#wake()
    if (!this.#seen.has(file.path)) {
      this.#seen.add(file.path)
      this.#unlanded.add(file.path)
      this.#first(file)
    }
  }

  /** That attempt failed; another may follow. */
  attemptFailed(path: string): void {
    const f = this.#files.get(path)
    if (f) f.follow = undefined
  }

  /** The file is in place: reads from now on go to it. */
  landed(path: string): void {
    this.#files.delete(path)
    this.#unlanded.delete(path)
    this.#wake()
  }

  /** The fetch is over: nothing is followed any more, and whoever waits is told. */
  end(): void {
    this.#ended = true
    for (const f of this.#files.values()) f.follow?.failed()
    this.#files.clear()
    this.#wake()
  }

  #wake(): void {
    const ws = [...this.#waiters]
    this.#waiters.clear()
    for (const w of ws) w()
  }

  /**
   * A read of `path` from `start` to `end`: the part's stream while it is being fetched,
   * undefined when it is not followed (any more): it is then read from the folder.
   */
  async open(path: string, range?: {start?: number; end?: number}): Promise<{stream: Readable; size: number; mtimeMs: number} | undefined> {
    for (;;) {
      const f = this.#files.get(path)
      if (!f) {
        // Announced, and the fetch ended without it: what the folder holds there is not it.
        if (this.#unlanded.has(path) && this.#ended) throw new FpeerError('E_NOT_FOUND', `no such file: ${path}`)
        return undefined
      }
      if (f.follow) {
        const size = f.follow.size
        const start = Math.min(range?.start ?? 0, size)
        const end = Math.min(range?.end ?? size - 1, size - 1)
        return {stream: f.follow.open(start, end), size, mtimeMs: f.mtimeMs}
      }
      await new Promise<void>((resolve) => this.#waiters.add(resolve))
    }
  }

  /** The size a followed file will have once landed and its mtime, or undefined when `path` is not followed now. */
  stat(path: string): {size: number; mtimeMs: number} | undefined {
    const f = this.#files.get(path)
    return f && {size: f.size, mtimeMs: f.mtimeMs}
  }
}

/**
 * The requester's server's view of its copy (4.10): `local`, except that a file `followed()`
 * holds is read from its part while it is being fetched, by the host alone (`mayFollow`).
 * Everything else, and the same file once landed, goes to `local`, which confines and checks.
 */
export function followingSource(
  local: FileSource,
  folder: string,
  mayFollow: (who: AccessContext) => boolean,
  followed: () => FollowedFiles | undefined,
): FileSource {
  const of = (f: string, who: AccessContext) => (f === folder && mayFollow(who) ? followed() : undefined)
  return {
    folders: (who) => local.folders(who),
    list: (f, rel, who) => local.list(f, rel, who),
    async stat(f, rel, who) {
      const st = of(f, who)?.stat(rel)
      if (st) return {type: 'file', ...st}
      return local.stat(f, rel, who)
    },
    async open(f, rel, who, range) {
      const opened = await of(f, who)?.open(rel, range)
      return opened ?? local.open(f, rel, who, range)
    },
  }
}
