// Walks a shared folder and hashes its files, reusing hashes whose size, mtime and inode have not changed.
import {createHash} from 'node:crypto'
import {constants, lstatSync, opendirSync} from 'node:fs'
import {open} from 'node:fs/promises'
import {IGNORE_FILE, IgnoreRules} from './ignore-rules.js'
import {isReservedName} from './safe-path.js'
import {hashFile, hashSteadyPath, type HashedFile} from './scan-hash.js'
import {ScanPool} from './scan-pool.js'

/** One file of a folder's file structure. */
export interface IndexedFile {
  path: string
  size: number
  mtimeMs: number
  sha256: string
  ino?: number
  /** 0o755 when the owner may execute it, else absent (0o644): the one permission bit fpeer carries (§4.1 `mode=`). */
  mode?: number
  /**
   * Hashed while its mtime was still "now" (isRacy): a write in the same clock tick would leave
   * size, mtime and inode as they are, so the next scan hashes it again instead of trusting them.
   */
  racy?: true
}

/**
 * How far behind the time a read began a file's mtime must be for size, mtime and inode to
 * prove, later, that the content read is still there. Linux stamps files from a coarse clock (up
 * to 10 ms behind), fpeer keeps whole milliseconds, and FAT keeps even seconds: a write just
 * after the read can leave the same stamp. Git calls such entries "racily clean".
 */
export const RACY_MS = 2_000

/** Whether a file hashed from a read that began at `since` (ms) has an mtime too recent to vouch for it later. */
export function isRacy(mtimeMs: number, since: number): boolean {
  return mtimeMs >= since - RACY_MS
}

/** The mode fpeer keeps of a file: the owner's exec bit, as 0o755, or undefined for 0o644. Never setuid, setgid or sticky. */
export function keptMode(st: {mode: number}): number | undefined {
  return st.mode & 0o100 ? 0o755 : undefined
}

export async function sha256File(absPath: string): Promise<string> {
  const hash = createHash('sha256')
  // Not through a link at its last step: what is hashed is the file the folder holds there.
  const fh = await open(absPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  try {
    for await (const chunk of fh.createReadStream({highWaterMark: 1 << 20, autoClose: false})) hash.update(chunk as Buffer)
  } finally {
    await fh.close()
  }
  return hash.digest('hex')
}

/**
 * Whether a record's size, mtime (whole ms) and inode match `st` (just taken, at `now`) and may
 * stand for the file's content without a read. A record from before inodes were kept matches
 * any inode. A racy record (isRacy) does not, except while its mtime is still more than RACY_MS
 * ahead of `now`: a write since the record was made would have stamped a time up to now, not
 * that one. So a file dated in the future (clock skew, an archive's dates) is read again once
 * its date has come, not on every scan until then.
 */
export function stampVouches(rec: IndexedFile, st: {size: number; mtimeMs: number; ino: number}, now = Date.now()): boolean {
  if (rec.size !== st.size || rec.mtimeMs !== Math.trunc(st.mtimeMs) || (rec.ino !== undefined && rec.ino !== st.ino)) return false
  return !rec.racy || rec.mtimeMs > now + RACY_MS
}

/** The record of a file hashed from a read that began at `since`. */
export function indexed(rel: string, h: {size: number; mtimeMs: number; sha256: string; ino: number; mode: number}, since: number): IndexedFile {
  const f: IndexedFile = {path: rel, size: h.size, mtimeMs: h.mtimeMs, sha256: h.sha256, ino: h.ino}
  if (keptMode(h)) f.mode = 0o755
  if (isRacy(h.mtimeMs, since)) f.racy = true
  return f
}

/** Names fpeer never shares: its own (`.fpeer`, `.fpeer-*` in any case or Unicode spelling), the names it never accepts either. */
export function isIgnoredName(name: string): boolean {
  return isReservedName(name)
}

/** What a scan left out besides ignored files: symlinks (never followed, never shared) and other non-files. */
export interface ScanSkips {
  symlinks: string[]
  /** Directories holding nothing shared (no file, no directory that is not itself empty of them), sorted: offered as `type=dir` lines. */
  emptyDirs?: string[]
}

/**
 * The folder's files, directory by directory in name order. Each directory is read with
 * synchronous calls (256 entries a system call); the caller yields to the event loop between
 * files as it sees fit.
 */
function* walk(root: string, rel: string, rules: IgnoreRules, skips?: ScanSkips): Generator<{rel: string; abs: string}> {
  const base = root.endsWith('/') ? root : `${root}/`
  const dir = opendirSync(rel === '' ? root : base + rel, {bufferSize: 256})
  const subdirs: string[] = []
  let entries = 0
  try {
    for (let ent = dir.readSync(); ent !== null; ent = dir.readSync()) {
      if (isIgnoredName(ent.name)) continue
      const r = rel === '' ? ent.name : `${rel}/${ent.name}`
      if (!rules.empty || r === IGNORE_NAME) {
        if (rules.ignores(r, ent.isDirectory())) continue
      }
      if (ent.isDirectory() || ent.isFile()) entries++
      if (ent.isDirectory()) subdirs.push(r)
      else if (ent.isFile()) yield {rel: r, abs: base + r}
      // Symlinks are not shared (docs/protocol.md §9, "Symlinks"): following one could leave
      // the folder. They are reported so the user learns of them; sockets and devices are not files.
      else if (ent.isSymbolicLink()) skips?.symlinks.push(r)
    }
  } finally {
    dir.closeSync()
  }
  // Only leaves: a directory holding an empty one is made by creating that one.
  if (entries === 0 && rel !== '') skips?.emptyDirs?.push(rel)
  for (const d of subdirs.sort()) yield* walk(root, d, rules, skips)
}

const IGNORE_NAME = IGNORE_FILE

/**
 * Whether `rel` is a path a walk of the whole folder would reach: no name on the way is one
 * fpeer never shares or one the ignore rules leave out, and each directory on the way is a
 * directory (a symlink is never walked through). `rel` itself may be anything or nothing.
 */
function reachable(base: string, rel: string, rules: IgnoreRules): boolean {
  const names = rel.split('/')
  for (const [i, name] of names.entries()) {
    if (isIgnoredName(name)) return false
    if (i === names.length - 1) break
    const dir = names.slice(0, i + 1).join('/')
    if (!rules.empty && rules.ignores(dir, true)) return false
    let st
    try {
      st = lstatSync(base + dir, {throwIfNoEntry: false})
    } catch {
      return false
    }
    if (!st?.isDirectory()) return false
  }
  return true
}

/**
 * What a walk of the whole folder would yield at and under each of `from` (sorted, none under
 * another): a file is itself, a directory is walked, anything else (gone, a symlink, ignored)
 * yields nothing, a symlink being reported as the whole walk reports it.
 */
function* walkFrom(root: string, from: readonly string[], rules: IgnoreRules, skips?: ScanSkips): Generator<{rel: string; abs: string}> {
  const base = root.endsWith('/') ? root : `${root}/`
  for (const rel of from) {
    if (!reachable(base, rel, rules)) continue
    let st
    try {
      st = lstatSync(base + rel, {throwIfNoEntry: false})
    } catch {
      continue
    }
    if (!st || (rel === IGNORE_NAME ? rules.ignores(rel) : !rules.empty && rules.ignores(rel, st.isDirectory()))) continue
    if (st.isDirectory()) {
      // Gone or unreadable between the lstat and the open: as if it had not been there (its own event rescans it).
      let it
      try {
        it = walk(root, rel, rules, skips)
        const first = it.next()
        if (first.done) continue
        yield first.value
      } catch {
        continue
      }
      yield* it
    } else if (st.isFile()) yield {rel, abs: base + rel}
    else if (st.isSymbolicLink()) skips?.symlinks.push(rel)
  }
}

/**
 * Whether the directory `rel` now holds nothing a walk would count (no file, no directory
 * that is not ignored): a leaf it would list among ScanSkips.emptyDirs. False for anything
 * that is not a reachable directory.
 */
export function isEmptyLeaf(root: string, rel: string, rules: IgnoreRules): boolean {
  const base = root.endsWith('/') ? root : `${root}/`
  if (rel === '' || !reachable(base, rel, rules)) return false
  if (!rules.empty && rules.ignores(rel, true)) return false
  let dir
  try {
    if (!lstatSync(base + rel, {throwIfNoEntry: false})?.isDirectory()) return false
    dir = opendirSync(base + rel, {bufferSize: 32})
  } catch {
    return false
  }
  try {
    for (let ent = dir.readSync(); ent !== null; ent = dir.readSync()) {
      if (isIgnoredName(ent.name) || !(ent.isDirectory() || ent.isFile())) continue
      if (!rules.empty && rules.ignores(`${rel}/${ent.name}`, ent.isDirectory())) continue
      return false
    }
  } finally {
    dir.closeSync()
  }
  return true
}

/** Files up to this size are read and hashed in one synchronous call; larger ones are streamed. */
export const SMALL_FILE_BYTES = 256 * 1024
/** The longest a scan runs synchronous work before letting the event loop serve others. */
const SLICE_MS = 10
/** Files to hash per batch sent to a scan thread; a scan with fewer than this to hash starts no thread. */
const BATCH_FILES = 256

/**
 * Scans `root` and returns its files sorted by path. `previous` supplies known hashes:
 * a file whose size, mtime and inode match is not read again. Large files are hashed
 * `concurrency` at a time. `from` (sorted relative paths, none under another) limits the
 * scan to those paths and what is under them: the files a whole walk would find there.
 *
 * The main thread walks. A known file is checked with one lstat; a new or changed one is
 * hashed by hashFile (open without following a link, fstat, read, close: the record is the
 * opened file's). Once BATCH_FILES files are waiting to be hashed, they go in batches to a
 * ScanPool, a thread per core, each reading with synchronous calls into its own buffer; a
 * scan with fewer hashes them on this thread (a small file at once, a large one streamed,
 * `concurrency` at a time), yielding to the event loop every few milliseconds, so a serving
 * peer keeps answering meanwhile. So are the files of a scan whose threads could not start or
 * stopped (`threads` makes the pool). The scan is slower then, never incomplete.
 */
export async function scanFolder(
  root: string,
  previous?: Pick<Map<string, IndexedFile>, 'get'>,
  concurrency = 8,
  skips?: ScanSkips,
  rules: IgnoreRules = IgnoreRules.load(root),
  threads: () => ScanPool = () => new ScanPool(),
  from?: readonly string[],
): Promise<IndexedFile[]> {
  const out: IndexedFile[] = []
  const pending = new Set<Promise<void>>()
  let pool: ScanPool | undefined
  // No thread could start, or one stopped: what was meant for them is hashed here instead.
  let threadless = false
  const left: Array<{rel: string; abs: string}> = []
  let batch: Array<{rel: string; abs: string}> = []
  // Every read of this scan begins after this: a file whose mtime is not well before it is racy.
  const since = Date.now()
  const record = (rel: string, f: HashedFile | undefined) => {
    // Unreadable, vanished or no longer a file: not part of the structure until it can be read.
    if (f) out.push(indexed(rel, f, since))
  }
  const track = async (task: Promise<void>, limit: number) => {
    pending.add(task)
    void task.finally(() => pending.delete(task))
    if (pending.size >= limit) await Promise.race(pending)
  }
  const send = async () => {
    const items = batch
    batch = []
    if (!pool && !threadless) {
      try {
        pool = threads()
      } catch {
        threadless = true
      }
    }
    if (!pool || threadless) {
      for (const it of items) left.push(it)
      return
    }
    await track(
      pool.hash(items.map((it) => it.abs)).then(
        (files) => items.forEach((it, i) => record(it.rel, files[i])),
        () => {
          threadless = true
          for (const it of items) left.push(it)
        },
      ),
      2 * pool.size,
    )
  }
  let slice = performance.now()
  try {
    // The folder's .fpeerignore: ignored files are not part of its structure, so never offered.
    for (const {rel, abs} of from ? walkFrom(root, from, rules, skips) : walk(root, '', rules, skips)) {
      if (performance.now() - slice > SLICE_MS) {
        await new Promise((r) => setImmediate(r))
        slice = performance.now()
      }
      const old = previous?.get(rel)
      if (old) {
        let st
        try {
          st = lstatSync(abs, {throwIfNoEntry: false})
        } catch {
          continue // unreadable parent: not part of the structure
        }
        if (!st?.isFile()) continue // vanished while scanning, or no longer a file
        if (stampVouches(old, st)) {
          // chmod changes no mtime: the mode is read fresh every scan.
          const m = keptMode(st)
          if (old.ino === st.ino && old.mode === m) {
            // Unchanged: the known record itself, not a copy (100,000 of them per scan of a large folder).
            out.push(old)
            continue
          }
          const {mode: _old, ...same} = old
          out.push({...same, ino: st.ino, ...(m ? {mode: m} : {})})
          continue
        }
      }
      batch.push({rel, abs})
      if (batch.length >= BATCH_FILES) await send()
    }
    if (pool && batch.length) await send()
    await Promise.all(pending)
    // Too few to be worth a thread (or no thread to take them): hashed here.
    const here = left.concat(batch)
    const buf = Buffer.allocUnsafe(here.length ? SMALL_FILE_BYTES : 0)
    for (const {rel, abs} of here) {
      if (performance.now() - slice > SLICE_MS) {
        await new Promise((r) => setImmediate(r))
        slice = performance.now()
      }
      let st
      try {
        st = lstatSync(abs, {throwIfNoEntry: false})
      } catch {
        continue
      }
      if (!st?.isFile()) continue
      if (st.size <= SMALL_FILE_BYTES) {
        record(rel, hashFile(abs, buf))
        continue
      }
      // Size, times and hash from one descriptor: a size seen by the lstat above and a hash of what
      // a writer left a moment later would make a version no peer can fetch.
      await track(
        hashSteadyPath(abs).then((h) => {
          if (h) out.push(indexed(rel, h, since)) // else unreadable, vanished or replaced, as above
        }),
        concurrency,
      )
    }
    await Promise.all(pending)
  } finally {
    await pool?.close()
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}
