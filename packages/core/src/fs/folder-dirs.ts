// No-follow file operations inside a folder: parents are reached through directory descriptors, never through a symlink.
import {hash, randomBytes} from 'node:crypto'
import {
  type Stats,
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  unlinkSync,
} from 'node:fs'
import path from 'node:path'
import {FpeerError} from '../errors.js'
import {PART_PREFIX} from './safe-path.js'

const {O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK} = constants

/**
 * Linux shows every open descriptor as /proc/self/fd/N, a "magic link" that the kernel
 * resolves to the open object itself, not by its path. `/proc/self/fd/N/name` is therefore
 * Node's `openat(N, name)`: once a directory is open, swapping it (or any parent) for a
 * symlink cannot redirect what is created, renamed or removed in it. Decided once per process:
 * a fact of the process (its /proc), not state of a folder, like the umask below.
 */
let viaFd: boolean | undefined
function fdPathsWork(rootFd: number): boolean {
  if (viaFd === undefined) {
    try {
      const a = fstatSync(rootFd)
      const b = lstatSync(`/proc/self/fd/${rootFd}/.`)
      viaFd = a.dev === b.dev && a.ino === b.ino
    } catch {
      viaFd = false
    }
  }
  return viaFd
}

/** Directory descriptors kept open per FolderDirs; beyond this the least recently used unreferenced ones are closed. */
const MAX_OPEN_DIRS = 256

/** The mode a landed file gets: what `open(…, 0o644)` would give under this process's umask. */
let fileMode: number | undefined
export function landedMode(): number {
  // process.umask() reads by setting and restoring; once per process is enough.
  fileMode ??= 0o644 & ~process.umask()
  return fileMode
}

let execFileMode: number | undefined
/** The mode a landed executable gets: 0o755 under this process's umask. */
export function execMode(): number {
  execFileMode ??= 0o755 & ~process.umask()
  return execFileMode
}

function unsafe(rel: string, why: string): never {
  throw new FpeerError('E_PATH_UNSAFE', `${rel}: ${why}`)
}

/** rename(2) of a file over `to`; a directory there makes it fail (EISDIR), which is the peer's path being unsafe here. */
function renameOver(from: string, to: string, rel: string): void {
  try {
    renameSync(from, to)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST') unsafe(rel, 'is a directory here')
    throw err
  }
}

/** One directory of the folder, held open (or, without /proc, re-checked by path) while it is used. */
export class Dir {
  /** The directory's relative path in the folder ('' for the folder itself). */
  readonly rel: string
  /** How this process names the directory: /proc/self/fd/N, or its checked absolute path. */
  readonly base: string
  readonly fd: number | undefined
  refs = 0
  /**
   * Made by this FolderDirs (mkdir succeeded): nothing was in it before, so a caller landing
   * new files may skip looking for an existing one at each name. Anything put there since is
   * someone writing beside fpeer, which a look before the rename could miss just the same.
   */
  fresh = false
  readonly #owner: FolderDirs
  /** Where the directory is, as readlink of its descriptor shows it when it has not moved. */
  #abs: string | undefined

  constructor(owner: FolderDirs, rel: string, base: string, fd: number | undefined) {
    this.#owner = owner
    this.rel = rel
    this.base = base
    this.fd = fd
  }

  /** The name `name` in this directory, for one system call. */
  at(name: string): string {
    return `${this.base}/${name}`
  }

  /** Without /proc, the path is trusted only after the chain is checked again, right before use. */
  #recheck(): void {
    if (this.fd === undefined) this.#owner.checkChain(this.rel)
  }

  /**
   * Checks that this directory is still where it was opened (root/rel). A directory held
   * by descriptor cannot be redirected, but it can be moved away whole: what would land
   * in it then lands wherever it went, so landing stops with E_PATH_UNSAFE instead.
   */
  verifyPlace(): void {
    if (this.fd === undefined) return this.#owner.checkChain(this.rel)
    let now: string
    try {
      now = readlinkSync(`/proc/self/fd/${this.fd}`)
    } catch {
      now = ''
    }
    this.#abs ??= this.#owner.absOf(this.rel)
    if (now !== this.#abs) unsafe(this.rel || '.', 'the directory was moved or replaced while a file was landing in it')
  }

  /** What is at `name` (never following a symlink there), or undefined. */
  lstat(name: string): Stats | undefined {
    return lstatSync(this.at(name), {throwIfNoEntry: false})
  }

  list(): string[] {
    return readdirSync(this.base)
  }

  /**
   * Opens `name` for reading without following a symlink; refuses anything but a regular
   * file. O_NONBLOCK keeps a FIFO planted there from blocking the open.
   */
  openFile(name: string): {fd: number; st: Stats} {
    this.#recheck()
    const fd = openSync(this.at(name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
    const st = fstatSync(fd)
    if (!st.isFile()) {
      closeSync(fd)
      unsafe(this.#owner.relOf(this.rel, name), 'not a regular file')
    }
    return {fd, st}
  }

  /**
   * Creates a new file named `prefix` + random hex, exclusively (O_EXCL: a name that
   * exists, a symlink included, is never opened), mode 0600 until it lands; a caller that
   * writes only content it has already checked may pass the landed mode (landedMode()) and
   * save the fchmod.
   */
  createExclusive(prefix: string, flags = O_WRONLY, mode = 0o600): {fd: number; name: string} {
    this.#recheck()
    for (let attempt = 0; ; attempt++) {
      const name = prefix + this.#owner.randomSuffix()
      try {
        return {fd: openSync(this.at(name), flags | O_CREAT | O_EXCL | O_NOFOLLOW, mode), name}
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 4) throw err
      }
    }
  }

  /** Renames within this directory. rename(2) replaces a symlink at `to`, never follows it. */
  rename(from: string, to: string): void {
    this.verifyPlace()
    renameOver(this.at(from), this.at(to), this.#owner.relOf(this.rel, to))
    // Moved between the check and rename(2): the file is in the moved directory (where only
    // someone able to write there could have put it); report it rather than call it landed.
    this.verifyPlace()
  }

  /**
   * rename() for a caller that brackets a run of renames into this directory with
   * verifyPlace() itself: once before the first and once after the last, reporting none of
   * them as landed before the second check passed. Two readlinks per run instead of two per
   * file; a move is caught all the same (docs/security.md, "What remains"). Without /proc the
   * chain is still checked right before every call.
   */
  renameInPlace(from: string, to: string): void {
    this.#recheck()
    renameOver(this.at(from), this.at(to), this.#owner.relOf(this.rel, to))
  }

  /** Moves `from` in this directory to `to` in `dest` (both held by the same FolderDirs root filesystem). */
  renameTo(from: string, dest: Dir, to: string): void {
    this.#recheck()
    dest.verifyPlace()
    renameOver(this.at(from), dest.at(to), this.#owner.relOf(dest.rel, to))
    dest.verifyPlace()
  }

  /** A hard link of `from` here as `to` in `dest`; link(2) never follows a symlink at `from`. */
  linkTo(from: string, dest: Dir, to: string): void {
    this.#recheck()
    dest.#recheck()
    linkSync(this.at(from), dest.at(to))
  }

  /** Removes `name`; unlink(2) removes a symlink itself, never its target. */
  unlink(name: string): void {
    this.#recheck()
    unlinkSync(this.at(name))
  }

  release(): void {
    this.#owner.release(this)
  }
}

/**
 * The directories of one folder (a realpath) as one operation uses them: each is opened
 * from its parent's descriptor with O_NOFOLLOW|O_DIRECTORY, so a symlink anywhere in a
 * path is refused (E_PATH_UNSAFE) and a directory swapped for a symlink after it was
 * opened changes nothing. Descriptors are cached for the operation and closed by close().
 * Without /proc (not Linux) every use re-checks the chain with lstat instead, which leaves
 * the window between that check and the system call (docs/security.md, "Files on disk").
 */
export class FolderDirs {
  readonly root: string
  readonly #dirs = new Map<string, Dir>()
  #closed = false
  /**
   * Random part-name suffixes (16 hex digits) cut from one CSPRNG draw of 4 KiB: a request
   * of 100,000 small files makes 100,000 part files, and a draw per name costs a system call.
   */
  #pool = Buffer.alloc(0)
  #poolAt = 0

  constructor(rootReal: string) {
    this.root = rootReal
    const fd = openSync(rootReal, O_RDONLY | O_DIRECTORY)
    if (fdPathsWork(fd)) {
      this.#dirs.set('', new Dir(this, '', `/proc/self/fd/${fd}`, fd))
    } else {
      closeSync(fd)
      this.#dirs.set('', new Dir(this, '', rootReal, undefined))
    }
  }

  /** Are its directories held by descriptor (/proc/self/fd), rather than re-checked by path? */
  get byDescriptor(): boolean {
    return this.#dirs.get('')?.fd !== undefined
  }

  /** A fresh random name suffix for a part file of this folder. */
  randomSuffix(): string {
    if (this.#poolAt + 8 > this.#pool.length) {
      this.#pool = randomBytes(4096)
      this.#poolAt = 0
    }
    this.#poolAt += 8
    return this.#pool.toString('hex', this.#poolAt - 8, this.#poolAt)
  }

  absOf(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel)
  }

  relOf(dirRel: string, name: string): string {
    return dirRel === '' ? name : `${dirRel}/${name}`
  }

  /**
   * The directory `segments` (already checked by checkRelativePath), held until release().
   * With `create`, missing directories are made; without it, a missing one gives undefined.
   */
  open(segments: string[], create: boolean): Dir | undefined {
    if (this.#closed) throw new FpeerError('E_INTERNAL', 'folder directories used after close')
    let dir = this.#dirs.get('')!
    let rel = ''
    for (const seg of segments) {
      rel = this.relOf(rel, seg)
      const cached = this.#dirs.get(rel)
      if (cached) {
        // Most recently used last, so trimming closes the coldest first.
        this.#dirs.delete(rel)
        this.#dirs.set(rel, cached)
        dir = cached
        continue
      }
      const next = this.#openChild(dir, seg, rel, create)
      if (!next) return undefined
      this.#dirs.set(rel, next)
      dir = next
    }
    dir.refs++
    this.#trim()
    return dir
  }

  /** Like open(), but a missing directory is an error: for callers that just made it. */
  need(segments: string[], create = true): Dir {
    const d = this.open(segments, create)
    if (!d) throw new FpeerError('E_NOT_FOUND', `no such directory: ${segments.join('/')}`)
    return d
  }

  #openChild(parent: Dir, seg: string, rel: string, create: boolean): Dir | undefined {
    const p = parent.at(seg)
    if (parent.fd === undefined) {
      // No descriptors: check by lstat, which sees a symlink as one (mkdir never follows one either).
      let st = lstatSync(p, {throwIfNoEntry: false})
      let made = false
      if (!st && create) {
        try {
          mkdirSync(p)
          made = true
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
        }
        st = lstatSync(p)
      }
      if (!st) return undefined
      if (!st.isDirectory()) unsafe(rel, st.isSymbolicLink() ? 'goes through a symlink' : 'is not a directory')
      const d = new Dir(this, rel, p, undefined)
      d.fresh = made
      return d
    }
    // Open first (the common case: it exists); make it only when missing.
    let made = false
    for (let attempt = 0; ; attempt++) {
      try {
        const fd = openSync(p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
        const d = new Dir(this, rel, `/proc/self/fd/${fd}`, fd)
        d.fresh = made
        return d
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOTDIR' || code === 'ELOOP')
          unsafe(rel, lstatSync(p, {throwIfNoEntry: false})?.isSymbolicLink() ? 'goes through a symlink' : 'is not a directory')
        if (code !== 'ENOENT' || !create || attempt > 0) {
          if (code === 'ENOENT' && !create) return undefined
          throw err
        }
      }
      try {
        mkdirSync(p)
        made = true
      } catch (err) {
        // Made meanwhile by another writer: open what is there now, with the same checks.
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
    }
  }

  /** Re-checks, by lstat from the root, that every component of `rel` is a real directory. */
  checkChain(rel: string): void {
    if (rel === '') return
    let p = this.root
    let r = ''
    for (const seg of rel.split('/')) {
      p = path.join(p, seg)
      r = this.relOf(r, seg)
      const st = lstatSync(p, {throwIfNoEntry: false})
      if (!st?.isDirectory()) unsafe(r, st?.isSymbolicLink() ? 'goes through a symlink' : 'is not a directory')
    }
  }

  release(dir: Dir): void {
    dir.refs--
    if (this.#closed && dir.refs <= 0 && dir.fd !== undefined) this.#closeDir(dir)
  }

  /** Removes the empty directory `segments` and forgets it (and anything cached below it). */
  rmdir(segments: string[]): void {
    const parent = this.need(segments.slice(0, -1), false)
    try {
      rmdirSync(parent.at(segments[segments.length - 1]!))
    } finally {
      parent.release()
    }
    const rel = segments.join('/')
    for (const [k, d] of this.#dirs) {
      if ((k === rel || k.startsWith(`${rel}/`)) && d.refs <= 0) {
        this.#dirs.delete(k)
        this.#closeDir(d)
      }
    }
  }

  #closeDir(dir: Dir): void {
    if (dir.fd === undefined) return
    try {
      closeSync(dir.fd)
    } catch {
      // already closed
    }
  }

  /** Closes unreferenced descriptors once too many are open (a fetch of many directories). */
  #trim(): void {
    if (this.#dirs.size <= MAX_OPEN_DIRS) return
    for (const [k, d] of this.#dirs) {
      if (this.#dirs.size <= (MAX_OPEN_DIRS * 3) / 4) return
      if (k === '' || d.refs > 0) continue
      this.#dirs.delete(k)
      this.#closeDir(d)
    }
  }

  /** Closes every descriptor not in use now; those still held close on their release. */
  close(): void {
    if (this.#closed) return
    this.#closed = true
    for (const d of this.#dirs.values()) if (d.refs <= 0) this.#closeDir(d)
    this.#dirs.clear()
  }
}

/** The part-file prefix for a target name: fixed per name (so a resume finds it), a random suffix follows. */
export function partPrefix(name: string): string {
  return `${PART_PREFIX}${hash('sha256', name, 'hex').slice(0, 24)}-`
}

/**
 * An earlier attempt's part file for `prefix` in `dir`, opened without following links and
 * only if it is a regular file of ours with one link; anything else found there under that
 * prefix is removed (unlink never follows). Undefined when there is none to resume.
 */
export function findPart(dir: Dir, prefix: string): {fd: number; name: string; size: number} | undefined {
  let found: {fd: number; name: string; size: number} | undefined
  for (const name of dir.list()) {
    if (!name.startsWith(prefix) || found) continue
    let fd: number | undefined
    try {
      fd = openSync(dir.at(name), O_RDWR | O_NOFOLLOW | O_NONBLOCK)
      const st = fstatSync(fd)
      const mine = process.getuid === undefined || st.uid === process.getuid()
      if (st.isFile() && st.nlink === 1 && mine) {
        found = {fd, name, size: st.size}
        continue
      }
    } catch {
      // a symlink (ELOOP), a FIFO, vanished: not ours to resume
    }
    if (fd !== undefined) closeSync(fd)
    try {
      dir.unlink(name)
    } catch {
      // already gone
    }
  }
  return found
}

/**
 * Makes a just-written part file readable as a landed file would be (it was created 0600);
 * `exec` (the peer's `mode=755`) adds the exec bits the umask allows. Through the part's
 * descriptor, before it is renamed into place: never by a path, which could be swapped.
 */
export function setLandedMode(fd: number, exec = false): void {
  try {
    fchmodSync(fd, exec ? execMode() : landedMode())
  } catch {
    // best effort, like the mtime
  }
}
