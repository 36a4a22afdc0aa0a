// Walks a shared folder and hashes its files, reusing hashes whose size, mtime and inode have not changed.
import {createHash} from 'node:crypto'
import {createReadStream, lstatSync, readFileSync} from 'node:fs'
import {opendir} from 'node:fs/promises'
import path from 'node:path'
import {IGNORE_FILE, IgnoreRules} from './ignore-rules.js'
import {isReservedName} from './safe-path.js'

/** One file of a folder's file structure. */
export interface IndexedFile {
  path: string
  size: number
  mtimeMs: number
  sha256: string
  ino?: number
  /** 0o755 when the owner may execute it, else absent (0o644): the one permission bit fpeer carries (§4.1 `mode=`). */
  mode?: number
}

/** The mode fpeer keeps of a file: the owner's exec bit, as 0o755, or undefined for 0o644. Never setuid, setgid or sticky. */
export function keptMode(st: {mode: number}): number | undefined {
  return st.mode & 0o100 ? 0o755 : undefined
}

export async function sha256File(absPath: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(absPath, {highWaterMark: 1 << 20})) hash.update(chunk as Buffer)
  return hash.digest('hex')
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

async function* walk(root: string, rel: string, rules: IgnoreRules, skips?: ScanSkips): AsyncGenerator<{rel: string; abs: string}> {
  const dir = await opendir(path.join(root, rel), {bufferSize: 256})
  const subdirs: string[] = []
  let entries = 0
  for await (const ent of dir) {
    if (isIgnoredName(ent.name)) continue
    const r = rel === '' ? ent.name : `${rel}/${ent.name}`
    if (!rules.empty || r === IGNORE_NAME) {
      if (rules.ignores(r, ent.isDirectory())) continue
    }
    if (ent.isDirectory() || ent.isFile()) entries++
    if (ent.isDirectory()) subdirs.push(r)
    else if (ent.isFile()) yield {rel: r, abs: path.join(root, r)}
    // Symlinks are not shared (docs/protocol.md §9, "Symlinks"): following one could leave
    // the folder. They are reported so the user learns of them; sockets and devices are not files.
    else if (ent.isSymbolicLink()) skips?.symlinks.push(r)
  }
  // Only leaves: a directory holding an empty one is made by creating that one.
  if (entries === 0 && rel !== '') skips?.emptyDirs?.push(rel)
  for (const d of subdirs.sort()) yield* walk(root, d, rules, skips)
}

const IGNORE_NAME = IGNORE_FILE

/** Files up to this size are read and hashed in one synchronous call; larger ones are streamed. */
export const SMALL_FILE_BYTES = 256 * 1024
/** The longest a scan runs synchronous work before letting the event loop serve others. */
const SLICE_MS = 10

function sha256Small(absPath: string): string {
  return createHash('sha256').update(readFileSync(absPath)).digest('hex')
}

/**
 * Scans `root` and returns its files sorted by path. `previous` supplies known hashes:
 * a file whose size, mtime and inode match is not read again. Large files are hashed
 * `concurrency` at a time.
 *
 * Per-file metadata work is synchronous (an lstat, and reading a small file to hash it):
 * through libuv's thread pool each costs tens of microseconds of queueing, against a few
 * for the system call, and a folder of 10,000 files makes 10,000 of them. The scan yields
 * to the event loop every few milliseconds, so a serving peer keeps answering meanwhile.
 */
export async function scanFolder(
  root: string,
  previous?: Map<string, IndexedFile>,
  concurrency = 8,
  skips?: ScanSkips,
  rules: IgnoreRules = IgnoreRules.load(root),
): Promise<IndexedFile[]> {
  const out: IndexedFile[] = []
  const pending = new Set<Promise<void>>()
  let slice = performance.now()
  // The folder's .fpeerignore: ignored files are not part of its structure, so never offered.
  for await (const {rel, abs} of walk(root, '', rules, skips)) {
    if (performance.now() - slice > SLICE_MS) {
      await new Promise((r) => setImmediate(r))
      slice = performance.now()
    }
    let st
    try {
      st = lstatSync(abs, {throwIfNoEntry: false})
    } catch {
      continue // unreadable parent: not part of the structure
    }
    if (!st?.isFile()) continue // vanished while scanning, or no longer a file
    const mtimeMs = Math.trunc(st.mtimeMs)
    const old = previous?.get(rel)
    if (old && old.size === st.size && old.mtimeMs === mtimeMs && (old.ino === undefined || old.ino === st.ino)) {
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
    if (st.size <= SMALL_FILE_BYTES) {
      try {
        out.push({path: rel, size: st.size, mtimeMs, sha256: sha256Small(abs), ino: st.ino, ...(keptMode(st) ? {mode: 0o755} : {})})
      } catch {
        // Unreadable or vanished: not part of the structure until it can be read.
      }
      continue
    }
    const ino = st.ino
    const size = st.size
    const mode = keptMode(st)
    const task = sha256File(abs).then(
      (sha256) => void out.push({path: rel, size, mtimeMs, sha256, ino, ...(mode ? {mode} : {})}),
      () => {}, // unreadable or vanished, as above
    )
    pending.add(task)
    void task.finally(() => pending.delete(task))
    if (pending.size >= concurrency) await Promise.race(pending)
  }
  await Promise.all(pending)
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
}
