// The FileSource core hands to transport servers: shared folders on local disk, confined and access-checked.
import {closeSync, constants, createReadStream, fstatSync, openSync, read as readCb, readSync, readlinkSync, statSync} from 'node:fs'
import {opendir, realpath, stat} from 'node:fs/promises'
import {Readable} from 'node:stream'
import path from 'node:path'
import {promisify} from 'node:util'
import {FpeerError, isFpeerError} from '../errors.js'
import type {AccessContext, FileSource, FileStat} from '../transport.js'
import {FolderDirs} from './folder-dirs.js'
import {SMALL_FILE_BYTES, isIgnoredName} from './scan.js'
import {checkRelativePath, resolveForReadSync} from './safe-path.js'
import {IgnoreRulesCache} from './ignore-rules.js'

const readAt = promisify(readCb)

/** Positional readers of the streams LocalFileSource.open made, by stream (positionalReader). */
const readers = new WeakMap<Readable, (buf: Buffer) => Promise<number>>()

/**
 * For a stream LocalFileSource.open made for a large range: a reader of that range's next
 * bytes into `buf` (positional reads on the descriptor that was checked), resolving with how
 * many, 0 at its end. A server may read through it instead of the stream, one read at a time,
 * and reuse its buffers (a stream hands out a new buffer per read, which the garbage collector
 * then chases); it destroys the stream afterwards, which closes the file. Undefined for any
 * other stream, so a FileSource that wraps the stream (faults, throttling) is read through it.
 */
export function positionalReader(stream: Readable): ((buf: Buffer) => Promise<number>) | undefined {
  return readers.get(stream)
}

/** Gives a stream core made a positional reader of its own (transfer/follow.ts: a part file followed as it is written). */
export function setPositionalReader(stream: Readable, read: (buf: Buffer) => Promise<number>): void {
  readers.set(stream, read)
}

/**
 * Reads of at most SLAB_PIECE bytes are carved from one SLAB_BYTES allocation, as Buffer's
 * own pool does below 4 KiB. A piece a slow reader holds keeps its whole slab alive: at
 * 128 KiB that is less than one large file's stream buffers (1 MiB), so holding many small
 * files open costs no more memory than holding large ones.
 */
const SLAB_BYTES = 128 << 10
const SLAB_PIECE = 32 << 10

/**
 * Buffers for reading small files. Serving 10,000 files of 4 KiB made 10,000 separate
 * allocations (Buffer.allocUnsafe pools only below 4 KiB), which the garbage collector then
 * had to trace and free one by one. A piece is never handed out twice: a slab is dropped when
 * full and freed once no piece of it is referenced. One per source: two nodes share nothing.
 */
class Slabs {
  #slab: Buffer | undefined
  #at = 0

  /** A buffer for reading `length` bytes. */
  take(length: number): Buffer {
    if (length > SLAB_PIECE) return Buffer.allocUnsafe(length)
    if (!this.#slab || this.#at + length > SLAB_BYTES) {
      this.#slab = Buffer.allocUnsafeSlow(SLAB_BYTES)
      this.#at = 0
    }
    const piece = this.#slab.subarray(this.#at, this.#at + length)
    // Pieces start 8-byte aligned, as Buffer's pool does.
    this.#at += (length + 7) & ~7
    return piece
  }
}

/** Held directories of a served folder are closed after this long without a read (and on a mismatch at once). */
const HELD_IDLE_MS = 2000

/**
 * A served folder's directories held open between reads (fs/folder-dirs.ts), so a file is
 * opened from its parent's descriptor without following any link: one system call where
 * realpath(3) made one per path component. Closed once idle, so a long-lived server keeps
 * no descriptors of folders nobody reads.
 */
class HeldDirs {
  readonly dirs: FolderDirs
  #used = true
  readonly #timer: NodeJS.Timeout

  constructor(root: string, onIdle: () => void) {
    this.dirs = new FolderDirs(root)
    this.#timer = setInterval(() => {
      if (this.#used) this.#used = false
      else onIdle()
    }, HELD_IDLE_MS).unref()
  }

  touch(): void {
    this.#used = true
  }

  close(): void {
    clearInterval(this.#timer)
    this.dirs.close()
  }
}

/** How the source finds a folder and decides who may read it. */
export interface FolderAccess {
  /** The folder's directory, or undefined when no such folder is served. */
  root(folder: string): string | undefined
  /** May `who` read this folder? */
  mayRead(folder: string, who: AccessContext): boolean
}

export class LocalFileSource implements FileSource {
  readonly #access: FolderAccess
  readonly #names: () => string[]
  readonly #realRoots = new Map<string, string>()
  /** The served folders' .fpeerignore rules, re-checked at most once a second per folder. */
  readonly #rules = new IgnoreRulesCache()
  readonly #slabs = new Slabs()
  readonly #held = new Map<string, HeldDirs>()

  constructor(access: FolderAccess, names: () => string[]) {
    this.#access = access
    this.#names = names
  }

  async folders(who: AccessContext): Promise<string[]> {
    return this.#names().filter((f) => this.#access.mayRead(f, who))
  }

  async #root(folder: string, who: AccessContext): Promise<string> {
    const dir = this.#access.root(folder)
    if (dir === undefined) throw new FpeerError('E_UNKNOWN_FOLDER', `no shared folder named ${JSON.stringify(folder)}`)
    if (!this.#access.mayRead(folder, who)) throw new FpeerError('E_ACCESS', `${who.address} may not read ${folder}`)
    let real = this.#realRoots.get(dir)
    if (!real) {
      real = await realpath(dir)
      this.#realRoots.set(dir, real)
    }
    return real
  }

  async #resolve(folder: string, rel: string, who: AccessContext): Promise<string> {
    const root = await this.#root(folder, who)
    const rules = this.#admit(root, rel)
    const abs = resolveForReadSync(root, rel)
    // …also when reached through a link inside the folder: what is read is what the rules judge.
    const realRel = path.relative(root, abs).split(path.sep).join('/')
    if (realRel !== '' && rules.ignores(realRel)) throw new FpeerError('E_NOT_FOUND', `no such file: ${rel}`)
    return abs
  }

  /** Refuses what a peer may not name, before any look at the disk; returns the folder's ignore rules. */
  #admit(root: string, rel: string): ReturnType<IgnoreRulesCache['rules']> {
    // fpeer's own names are not there as far as a peer can tell (checked before the path rules, which refuse them).
    if (rel !== '' && rel.split('/').some(isIgnoredName)) throw new FpeerError('E_NOT_FOUND', `no such file: ${rel}`)
    // Nor are the files its .fpeerignore names: a peer asking for one by name gets nothing either.
    const rules = this.#rules.rules(root)
    if (rel !== '' && rules.ignores(rel)) throw new FpeerError('E_NOT_FOUND', `no such file: ${rel}`)
    return rules
  }

  /**
   * The common case of a read, in two system calls: `rel` opened from its parent's held
   * descriptor without following any link, and the opened file's own path (readlink of
   * /proc/self/fd/N) found to be exactly root/rel, so it is inside the folder and is what the
   * rules judged. Anything else (a link on the way, a missing file, a directory moved or
   * replaced since it was opened, no /proc) gives undefined and the caller takes the
   * realpath route, which decides. Stale descriptors are dropped then.
   */
  #openHeld(root: string, rel: string): number | undefined {
    let held = this.#held.get(root)
    if (!held) {
      try {
        held = new HeldDirs(root, () => this.#dropHeld(root))
      } catch {
        return undefined
      }
      this.#held.set(root, held)
    }
    held.touch()
    const segments = checkRelativePath(rel)
    const name = segments.pop() ?? ''
    let dir
    try {
      dir = held.dirs.open(segments, false)
    } catch {
      // A link on the way (E_PATH_UNSAFE here): the realpath route decides; what is held stays.
      return undefined
    }
    if (!dir || dir.fd === undefined) {
      dir?.release()
      this.#dropHeld(root)
      return undefined
    }
    let fd: number | undefined
    try {
      fd = openSync(dir.at(name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
      if (readlinkSync(`/proc/self/fd/${fd}`) === `${root}/${rel}`) return fd
    } catch {
      // decided below, by the realpath route
    } finally {
      dir.release()
    }
    if (fd !== undefined) closeSync(fd)
    this.#dropHeld(root)
    return undefined
  }

  #dropHeld(root: string): void {
    this.#held.get(root)?.close()
    this.#held.delete(root)
  }

  async stat(folder: string, rel: string, who: AccessContext): Promise<FileStat> {
    const abs = await this.#resolve(folder, rel, who)
    let st
    try {
      st = statSync(abs)
    } catch (err) {
      throw new FpeerError('E_NOT_FOUND', `no such file: ${rel}: ${(err as Error).message}`)
    }
    return {type: st.isDirectory() ? 'directory' : 'file', size: st.isDirectory() ? 0 : st.size, mtimeMs: Math.trunc(st.mtimeMs)}
  }

  async list(folder: string, rel: string, who: AccessContext): Promise<Array<FileStat & {name: string}>> {
    const abs = await this.#resolve(folder, rel, who)
    const root = await this.#root(folder, who)
    const out: Array<FileStat & {name: string}> = []
    let dir
    try {
      dir = await opendir(abs)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new FpeerError('E_NOT_FOUND', `${rel} is not a directory`)
      throw new FpeerError('E_ACCESS', `cannot list ${rel}: ${(err as Error).message}`)
    }
    const rules = this.#rules.rules(root)
    for await (const ent of dir) {
      if (isIgnoredName(ent.name)) continue
      const childRel = rel === '' ? ent.name : `${rel}/${ent.name}`
      if (rules.ignores(childRel) || (ent.isDirectory() && rules.ignores(childRel, true))) continue
      const child = path.join(abs, ent.name)
      try {
        const real = await realpath(child)
        if (real !== root && !real.startsWith(root + path.sep)) continue
        const st = await stat(real)
        if (!st.isFile() && !st.isDirectory()) continue
        out.push({name: ent.name, type: st.isDirectory() ? 'directory' : 'file', size: st.isDirectory() ? 0 : st.size, mtimeMs: Math.trunc(st.mtimeMs)})
      } catch {
        // dangling link or vanished entry: not listed
      }
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  }

  /**
   * Opens a file for reading. The descriptor is opened first and checked with fstat, so what
   * is sent is what was checked; O_NONBLOCK keeps a FIFO planted in the folder from blocking
   * the open (it is then refused as not a file). Ranges of up to SMALL_FILE_BYTES are read
   * at once with synchronous calls (microseconds on a local disk, against tens through the
   * thread pool for each of open, read and close); larger ones are streamed.
   */
  async open(folder: string, rel: string, who: AccessContext, range?: {start?: number; end?: number}) {
    const root = await this.#root(folder, who)
    this.#admit(root, rel)
    let fd = rel === '' ? undefined : this.#openHeld(root, rel)
    if (fd === undefined) {
      const abs = await this.#resolve(folder, rel, who)
      try {
        fd = openSync(abs, constants.O_RDONLY | constants.O_NONBLOCK)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        throw new FpeerError(code === 'EACCES' || code === 'EPERM' ? 'E_ACCESS' : 'E_NOT_FOUND', `cannot read ${rel}: ${(err as Error).message}`)
      }
    }
    let handedOver = false
    try {
      const st = fstatSync(fd)
      if (!st.isFile()) throw new FpeerError('E_NOT_FOUND', `${rel} is not a file`)
      const mtimeMs = Math.trunc(st.mtimeMs)
      const start = range?.start ?? 0
      const end = Math.min(range?.end ?? st.size - 1, st.size - 1)
      if (end < start) return {stream: Readable.from([]), size: st.size, mtimeMs}
      const length = end - start + 1
      if (length <= SMALL_FILE_BYTES) {
        const buf = this.#slabs.take(length)
        let got = 0
        for (let n = -1; got < length && n !== 0; got += n) n = readSync(fd, buf, got, length - got, start + got)
        // A file that shrank since fstat yields fewer bytes; the transport sees the short body.
        const data = buf.subarray(0, got)
        // The stream is made only for a server that reads it: a batch sends `data` and never does.
        let stream: Readable | undefined
        return {
          get stream() {
            stream ??= Readable.from(got ? [data] : [])
            return stream
          },
          size: st.size,
          mtimeMs,
          data,
        }
      }
      const stream = createReadStream('', {fd, start, end, highWaterMark: 1 << 20, autoClose: true})
      handedOver = true
      const held = fd
      let at = start
      const read = async (buf: Buffer): Promise<number> => {
        const want = Math.min(buf.length, end + 1 - at)
        if (want <= 0) return 0
        const {bytesRead} = await readAt(held, buf, 0, want, at)
        at += bytesRead
        return bytesRead
      }
      readers.set(stream, read)
      return {stream, size: st.size, mtimeMs}
    } catch (err) {
      if (isFpeerError(err)) throw err
      const code = (err as NodeJS.ErrnoException).code
      throw new FpeerError(code === 'EACCES' || code === 'EPERM' ? 'E_ACCESS' : 'E_NOT_FOUND', `cannot read ${rel}: ${(err as Error).message}`)
    } finally {
      if (!handedOver) closeSync(fd)
    }
  }
}
