// Fetching a file list from a peer: bounded concurrency, hash while streaming, land atomically or only verify.
import {createHash, hash as hashOnce} from 'node:crypto'
import {closeSync, createReadStream, fstatSync, futimesSync, readSync, writeSync, writev} from 'node:fs'
import path from 'node:path'
import {promisify} from 'node:util'
import {FpeerError, fromSystemError, isFpeerError, isLocalWriteError} from '../errors.js'
import {type Dir, FolderDirs, execMode, findPart, landedMode, partPrefix, setLandedMode} from '../fs/folder-dirs.js'
import {type LandItem, type LandedStat, Lander} from '../fs/lander.js'
import {checkRelativePath} from '../fs/safe-path.js'
import {SMALL_FILE_BYTES} from '../fs/scan.js'
import {hashSteady} from '../fs/scan-hash.js'
import {isAbortError, isRetryable, isUnsupported, mapNetworkError} from '../net/errors-map.js'
import {FETCH_RETRY, type RetryPolicy, backoffMs, pause, retry, shouldRetry} from '../net/retry.js'
import {FOLLOW_FROM, type FollowedFiles, PartFollow} from './follow.js'
import type {TransferClient} from '../transport.js'
import type {FileEntry} from '../wire/types.js'

/** Progress events, for bars and `--progress=json`. */
export type FetchEvent =
  | {event: 'file-start'; path: string; size?: number}
  | {event: 'bytes'; path: string; bytes: number}
  | {event: 'file-done'; path: string; size: number; skipped: boolean}
  | {event: 'retry'; path: string; attempt: number; code: string}

export interface FetchOptions {
  client: TransferClient
  /** The folder name on the remote side (Line 2). */
  folder: string
  files: FileEntry[]
  /**
   * `land`: write each verified file into `root` (a realpath). `verify`: only stream and
   * check each file's hash and size (the host's fetch-back check, seed step 13).
   */
  mode: 'land' | 'verify'
  root?: string
  concurrency: number
  /** Attempts after the first, for network failures. */
  retries?: number
  /** Whether the transport honours `offset` (resume a part file) or a retry starts clean. */
  resume?: boolean
  /**
   * The transport's declared `supports.batch`: small files then travel in `client.getMany()`
   * calls. Core goes by the declaration, never by whether the client happens to have the method.
   */
  batch?: boolean
  onEvent?(ev: FetchEvent): void
  /**
   * Called with each file of `files` once it is in place (or checked, in verify mode), or was
   * found there already: the entry itself, so a caller needs no map from path to entry. A
   * small file landed here comes with the fstat its part file had just before the rename
   * (`landed`): what a record of it should keep, since the path may change again before the
   * caller looks.
   */
  onFileDone?(file: FileEntry, landed?: LandedStat): void
  /**
   * A differing local file at a target is kept under this name (in its directory) before
   * the peer's version replaces it; without it, it is replaced. Given the path and the
   * local content's SHA-256.
   */
  conflictName?(path: string, localSha256: string): string | undefined
  /** Where a file is on the peer when that differs from where it lands here (conflict copies). */
  remotePathOf?(file: FileEntry): string
  signal?: AbortSignal
  /**
   * Land mode: large files (at least `followFrom` bytes, default FOLLOW_FROM) are followed
   * while they are written, so this peer's server can send them on before they land (4.10).
   */
  follow?: FollowedFiles
  followFrom?: number
  /** Fetches of at least this many batched files land them in a worker thread (default LANDER_FROM); for tests of both ways. */
  landerFrom?: number
}

export interface FetchResult {
  files: number
  fetched: number
  skipped: number
  bytes: number
  /** Conflict copies made of differing local files (with `conflictName`). */
  conflicts?: string[]
}

/** Bytes of a large file gathered before one write. */
const WRITE_BATCH = 4 << 20
/** A followed part (4.10) is written at least this often, whatever has gathered. */
const FOLLOW_FLUSH_MS = 250

const writevAt = promisify(writev)

/**
 * Writes every byte of `buffers` at `position`. writev(2) may write fewer bytes than asked
 * (a disk filling up midway, a signal) and say so only in its count: the rest is written
 * by another call, which then fails with the cause if there is one. A part file with a gap
 * would otherwise hold bytes that were never hashed.
 */
export async function writevFully(
  fd: number,
  buffers: Buffer[],
  position: number,
  write: (fd: number, buffers: Buffer[], position: number) => Promise<number> = async (f, b, p) => (await writevAt(f, b, p)).bytesWritten,
): Promise<void> {
  let rest = buffers
  let at = position
  for (;;) {
    const want = rest.reduce((n, b) => n + b.length, 0)
    if (want === 0) return
    const n = await write(fd, rest, at)
    if (n === want) return
    if (!(n > 0)) throw new FpeerError('E_IO', `a write of ${want} bytes at offset ${at} wrote nothing`)
    at += n
    let skip = n
    const left: Buffer[] = []
    for (const b of rest) {
      if (skip >= b.length) skip -= b.length
      else {
        left.push(skip > 0 ? b.subarray(skip) : b)
        skip = 0
      }
    }
    rest = left
  }
}

/**
 * Where a file lands: a directory of the folder held open (fs/folder-dirs.ts) and the
 * target's name in it. Part files are created beside it, exclusively, with a prefix fixed
 * per name (so a resume can find one) and a random suffix (so none can be planted ahead).
 */
export interface Landing {
  dir: Dir
  name: string
  prefix: string
}

/** Hashes the first `bytes` of an open file, by descriptor (never by path, which could be swapped). */
async function hashPrefix(fd: number, bytes: number): Promise<ReturnType<typeof createHash>> {
  const hash = createHash('sha256')
  if (bytes > 0)
    for await (const chunk of createReadStream('', {fd, start: 0, end: bytes - 1, highWaterMark: 1 << 20, autoClose: false})) hash.update(chunk as Buffer)
  return hash
}

/** Removes a part file, best effort (unlink never follows a symlink). */
function dropPart(landing: Landing, part: string): void {
  try {
    landing.dir.unlink(part)
  } catch {
    // already gone
  }
}

/**
 * The typed error of a failure while fetching `file`: a local write's failure (disk full,
 * read-only) names the local path it could not write, and is never retried.
 */
function fetchError(err: unknown, opts: FetchOptions, file: FileEntry): FpeerError {
  return typedError(err, `fetching ${file.path}`, isLocalWriteError(err) && opts.root ? {path: path.join(opts.root, file.path)} : undefined)
}

/**
 * Any failure of a fetch as a typed error. A plugin's bare AbortError (a DOMException, or
 * `code: 'ABORT_ERR'`, not an FpeerError) is an abort like the ones transports type
 * themselves, so it gets their code (net/errors-map.ts), never E_INTERNAL, which
 * fromSystemError gives whatever carries no errno.
 */
function typedError(err: unknown, context: string, local?: {path: string}): FpeerError {
  if (isFpeerError(err)) return err
  if (isAbortError(err)) return mapNetworkError(err, context)
  return fromSystemError(err, context, local)
}

/** Why a fetch stopped: the signal's own reason when it is typed (E_INTERRUPTED, E_TIMEOUT), else E_INTERRUPTED. */
function abortReason(signal: AbortSignal): FpeerError {
  return isFpeerError(signal.reason) ? signal.reason : new FpeerError('E_INTERRUPTED', 'the fetch was stopped before it began')
}

/** The one fetch policy (net/retry.ts), with the caller's count of attempts. */
function retryPolicy(opts: FetchOptions): RetryPolicy {
  return {...FETCH_RETRY, retries: opts.retries ?? FETCH_RETRY.retries}
}

/** Every file entry a fetch acts on MUST carry its hash: nothing is trusted before its hash is checked. */
function requireHash(file: FileEntry): string {
  if (!file.sha256) {
    throw new FpeerError('E_UNSIGNED', `no sha256 for ${JSON.stringify(file.path)}: cannot verify it`, {
      hint: 'the peer sent a seed-form file list without hashes',
    })
  }
  return file.sha256
}

/**
 * The SHA-256 of a regular file already at the target (opened without following links), or ''
 * when it cannot be read or changed while it was read (then it is not taken as the expected content).
 */
export async function hashExisting(dir: Dir, name: string): Promise<string> {
  const h = await hashSteady(() => dir.openFile(name), 1)
  return h?.steady ? h.sha256 : ''
}

/**
 * Decides about a regular file already at a landing target: true when it already holds the
 * expected content (nothing to fetch). Otherwise, with `conflictName`, a differing file is hard-linked to its conflict name first (link(2) in the held directory, never
 * following a link), so replacing the target loses nothing.
 */
async function settleExisting(opts: FetchOptions, landing: Landing, file: FileEntry, have: ReturnType<Dir['lstat']>, result?: FetchResult): Promise<boolean> {
  if (!have?.isFile()) return false
  const sameSize = file.size === undefined || have.size === file.size
  if (!sameSize && !opts.conflictName) return false
  const local = await hashExisting(landing.dir, landing.name)
  if (local === file.sha256) return true
  if (opts.conflictName) {
    // A file we cannot read is kept too (link(2) needs no read permission), under an all-zero hash.
    const to = opts.conflictName(file.path, local || '0'.repeat(64))
    // Undefined: that content is a copy this peer already had from its peers, not a local edit.
    if (to === undefined) return false
    const toName = to.slice(to.lastIndexOf('/') + 1)
    try {
      landing.dir.linkTo(landing.name, landing.dir, toName)
    } catch (err) {
      // Kept already by an earlier attempt (the name holds the content's hash).
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, `keeping ${file.path} as ${to}`)
    }
    if (result) (result.conflicts ??= []).push(to)
  }
  return false
}

/** Opens where `rel` lands (creating its parents, no symlink followed) and checks the target is not a directory. */
function landingFor(dirs: FolderDirs, rel: string): {landing: Landing; existing: ReturnType<Dir['lstat']>} {
  const segments = checkRelativePath(rel)
  const name = segments.pop()!
  const dir = dirs.need(segments)
  try {
    // A directory this fetch made holds nothing of before: no lstat per file there.
    const existing = dir.fresh ? undefined : dir.lstat(name)
    if (existing?.isDirectory()) throw new FpeerError('E_PATH_UNSAFE', `${rel} is a directory here`)
    return {landing: {dir, name, prefix: partPrefix(name)}, existing}
  } catch (err) {
    dir.release()
    throw err
  }
}

/** Per-fetch state: the folder's directories, opened once per fetch and held by descriptor. */
interface FetchState {
  dirs: FolderDirs | undefined
  /** The peer cannot batch: fetch one by one from now on. */
  noBatch?: boolean
  /** Lands batched files in a worker thread, for a fetch of many (LANDER_FROM). */
  lander?: Lander
  result?: FetchResult
}

async function fetchOne(opts: FetchOptions, state: FetchState, file: FileEntry): Promise<{bytes: number; skipped: boolean}> {
  const expected = requireHash(file)
  checkRelativePath(file.path)
  let landing: Landing | undefined
  if (opts.mode === 'land') {
    const prepared = landingFor(state.dirs!, file.path)
    landing = prepared.landing
    // Already here with the right content: nothing to move. (No target, nothing to hash.)
    try {
      if (await settleExisting(opts, landing, file, prepared.existing, state.result)) {
        landing.dir.release()
        return {bytes: 0, skipped: true}
      }
    } catch (err) {
      landing.dir.release()
      throw err
    }
  }
  // A file of known small size is received into memory, checked, and only then written:
  // no part file exists until its content is known good, so there is nothing to resume.
  const small = file.size !== undefined && file.size <= SMALL_FILE_BYTES
  try {
    const bytes = await retry(
      async () => {
        try {
          return small ? await attemptSmall(opts, file, expected, landing) : await attemptOne(opts, file, expected, landing)
        } catch (err) {
          throw fetchError(err, opts, file)
        }
      },
      {
        policy: retryPolicy(opts),
        ...(opts.signal ? {signal: opts.signal} : {}),
        onRetry: (err, attempt) => opts.onEvent?.({event: 'retry', path: file.path, attempt, code: (err as FpeerError).code}),
      },
    )
    return {bytes, skipped: false}
  } finally {
    landing?.dir.release()
  }
}

/**
 * One attempt at a large file: streamed into a part file created exclusively beside the
 * target (or, with `resume`, an earlier attempt's part found by its prefix and checked),
 * hashed on the way, renamed over the target only when size and hash match. A part is
 * kept for a later resume only when the failure was the network's and resume is on.
 */
async function attemptOne(opts: FetchOptions, file: FileEntry, expected: string, landing: Landing | undefined): Promise<number> {
  let offset = 0
  let hash = createHash('sha256')
  let fd: number | undefined
  let part: string | undefined
  if (landing && opts.resume) {
    const found = findPart(landing.dir, landing.prefix)
    if (found && found.size > 0 && (file.size === undefined || found.size <= file.size)) {
      ;({fd, name: part, size: offset} = found)
    } else if (found) {
      closeSync(found.fd)
      dropPart(landing, found.name)
    }
  }
  if (landing && fd === undefined) ({fd, name: part} = landing.dir.createExclusive(landing.prefix))
  let follow: PartFollow | undefined
  try {
    if (landing && part && opts.follow && file.size !== undefined && file.size >= (opts.followFrom ?? FOLLOW_FROM)) {
      const reader = openPartReader(landing, part, fd!)
      if (reader !== undefined) {
        follow = new PartFollow(reader, file.size, offset)
        opts.follow.started(file, follow)
      }
    }
    if (offset > 0) hash = await hashPrefix(fd!, offset)
    const received = await streamInto(opts, file, expected, fd, offset, hash, follow)
    if (landing && fd !== undefined && part) {
      // The bytes hashed are the bytes held: a part of any other size is never renamed into place.
      const held = fstatSync(fd).size
      if (held !== received) throw new FpeerError('E_IO', `${file.path}: the part file holds ${held} bytes, not the ${received} received`)
      if (file.mtimeMs !== undefined) {
        try {
          futimesSync(fd, new Date(), new Date(file.mtimeMs))
        } catch {
          // keeping the peer's mtime is best effort
        }
      }
      setLandedMode(fd, file.ext?.mode === '755')
      landing.dir.rename(part, landing.name)
      part = undefined
      follow?.landed()
      if (follow) opts.follow!.landed(file.path)
    }
    return received - offset
  } catch (err) {
    const e = fetchError(err, opts, file)
    if (follow) {
      follow.failed(e)
      opts.follow!.attemptFailed(file.path)
    }
    // A stop (Ctrl-C, --timeout) keeps the good prefix too: `fpeer request --resume` starts after it; a local write failure never does.
    if (landing && part && !(opts.resume && (isRetryable(e) || (opts.signal?.aborted && e.kind !== 'io')))) dropPart(landing, part)
    throw e
  } finally {
    if (fd !== undefined) closeSync(fd)
  }
}

/**
 * A read-only descriptor of the part open as `fd`, for serving it while it is written (4.10):
 * its own, so readers keep reading after the rename. Opened by name without following a
 * link, then proven to be the same file as `fd` (device and inode): a name swapped in the
 * meantime is never served. Undefined when that fails: the file is then not followed.
 */
export function openPartReader(landing: Landing, part: string, fd: number): number | undefined {
  let reader: number | undefined
  try {
    reader = landing.dir.openFile(part).fd
    const a = fstatSync(reader)
    const b = fstatSync(fd)
    if (a.ino === b.ino && a.dev === b.dev) return reader
  } catch {
    // not followed
  }
  if (reader !== undefined) closeSync(reader)
  return undefined
}

/** Streams the file into `fd` from `offset` (or only hashes it, without one); checks size and hash. Returns the bytes now held. */
async function streamInto(
  opts: FetchOptions,
  file: FileEntry,
  expected: string,
  fd: number | undefined,
  offset: number,
  hash: ReturnType<typeof createHash>,
  follow?: PartFollow,
): Promise<number> {
  let received = offset
  // Chunks are written in batches of WRITE_BATCH bytes, one batch in flight while the next
  // is received and hashed, instead of one awaited write per network chunk. Writes are
  // positional, so a resumed part continues exactly after its checked prefix.
  let batch: Buffer[] = []
  let batchBytes = 0
  let written = offset
  let writing: Promise<unknown> | undefined
  let flushedAt = Date.now()
  // The transport's way to reuse the memory of chunks that are hashed and written (transport.ts).
  let release: ((chunk: Buffer) => void) | undefined
  // A write runs while the next chunks arrive, so it can fail (ENOSPC) before anything awaits
  // it: the failure is caught at once (never an unhandled rejection) and rethrown at the
  // next await, which also stops reading from the peer.
  const flush = () => {
    const at = written
    const chunks = batch
    written += batchBytes
    const upTo = written
    const p = writevFully(fd!, chunks, at).then(
      () => {
        follow?.progress(upTo)
        // Only a completed write lets the chunks go; a failed one leaves them to the GC.
        if (release) for (const c of chunks) release(c)
      },
      (err: unknown) => ({failed: err}),
    )
    batch = []
    batchBytes = 0
    return p.then((r) => {
      if (r) throw r.failed
    })
  }
  const settle = async () => {
    const w = writing
    writing = undefined
    await w
  }
  try {
    const opened = await opts.client.get(opts.folder, opts.remotePathOf?.(file) ?? file.path, {
      offset,
      ...(file.size === undefined ? {} : {size: file.size}),
      ...(opts.signal ? {signal: opts.signal} : {}),
    })
    const stream = opened.stream
    release = opened.release?.bind(opened)
    for await (const chunk of stream) {
      const buf = chunk as Buffer
      received += buf.length
      if (file.size !== undefined && received > file.size) {
        stream.destroy()
        throw new FpeerError('E_SIZE_MISMATCH', `${file.path}: peer sent more than the ${file.size} bytes announced`)
      }
      hash.update(buf)
      opts.onEvent?.({event: 'bytes', path: file.path, bytes: buf.length})
      if (fd !== undefined) {
        batch.push(buf)
        batchBytes += buf.length
        // A followed part (4.10) is also written at least every FOLLOW_FLUSH_MS, so the host's
        // read of it never waits on a slow link for a whole batch to gather.
        if (batchBytes >= WRITE_BATCH || (follow && Date.now() - flushedAt >= FOLLOW_FLUSH_MS)) {
          await settle()
          flushedAt = Date.now()
          writing = flush()
          writing.catch(() => {}) // handled: settle() rethrows it
        }
      } else release?.(buf)
    }
    await settle()
    if (fd !== undefined && batch.length) await flush()
  } catch (err) {
    // What was received before the failure is a good prefix: write it, so a resume starts
    // after it; not after a failed write (the disk is full or gone: the part is dropped).
    // A write that failed meanwhile is the failure to report: the part is unusable.
    const writeFailure = await settle().then(
      () => undefined,
      (e: unknown) => ({e}),
    )
    if (writeFailure) throw writeFailure.e
    if (fd !== undefined && batch.length && !isLocalWriteError(err) && !isFpeerError(err, 'E_SIZE_MISMATCH')) await flush().catch(() => {})
    throw err
  }
  if (file.size !== undefined && received !== file.size) {
    // Fewer bytes than announced and no error: the connection ended early.
    throw new FpeerError('E_CONNECTION_LOST', `${file.path}: got ${received} of ${file.size} bytes`)
  }
  const got = hash.digest('hex')
  if (got !== expected) throw new FpeerError('E_HASH_MISMATCH', `${file.path}: content does not match its sha256`, {details: {path: file.path, expected, got}})
  return received
}

/**
 * Receives a small file whole, checks size and hash, then lands it with a handful of
 * synchronous calls (write the part file, set its mtime, rename it over the target):
 * microseconds each on a local disk, where the thread pool would add tens per call.
 */
async function attemptSmall(opts: FetchOptions, file: FileEntry, expected: string, landing: Landing | undefined): Promise<number> {
  const size = file.size!
  const chunks: Buffer[] = []
  let received = 0
  const hash = createHash('sha256')
  const {stream} = await opts.client.get(opts.folder, opts.remotePathOf?.(file) ?? file.path, opts.signal ? {signal: opts.signal} : {})
  for await (const chunk of stream) {
    const buf = chunk as Buffer
    received += buf.length
    if (received > size) {
      stream.destroy()
      throw new FpeerError('E_SIZE_MISMATCH', `${file.path}: peer sent more than the ${size} bytes announced`)
    }
    hash.update(buf)
    if (landing) chunks.push(buf)
    opts.onEvent?.({event: 'bytes', path: file.path, bytes: buf.length})
  }
  if (received !== size) throw new FpeerError('E_CONNECTION_LOST', `${file.path}: got ${received} of ${size} bytes`)
  const got = hash.digest('hex')
  if (got !== expected) throw new FpeerError('E_HASH_MISMATCH', `${file.path}: content does not match its sha256`, {details: {path: file.path, expected, got}})
  if (landing) landSmall(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), file, landing)
  return received
}

/**
 * Lands checked content: creates a part file exclusively beside the target (never
 * following a link), keeps the peer's mtime, renames it over the target. Both calls go
 * through the directory's descriptor (fs/folder-dirs.ts). The content is already checked,
 * so the part is created with the landed mode instead of 0600 and an fchmod. `bracketed`:
 * the caller checks the directory's place before the first and after the last of its
 * renames (Dir.renameInPlace), and reports none of them landed before that.
 */
function landSmall(content: Buffer, file: FileEntry, landing: Landing, bracketed = false): LandedStat | undefined {
  const {fd, name: part} = landing.dir.createExclusive(landing.prefix, undefined, file.ext?.mode === '755' ? execMode() : landedMode())
  let stat: LandedStat | undefined
  try {
    for (let off = 0; off < content.length; ) off += writeSync(fd, content, off, content.length - off)
    if (file.mtimeMs !== undefined) {
      try {
        futimesSync(fd, new Date(), new Date(file.mtimeMs))
      } catch {
        // keeping the peer's mtime is best effort, as for large files
      }
    }
    stat = statOf(fd)
    closeSync(fd)
  } catch (err) {
    closeSync(fd)
    dropPart(landing, part)
    throw err
  }
  try {
    if (bracketed) landing.dir.renameInPlace(part, landing.name)
    else landing.dir.rename(part, landing.name)
  } catch (err) {
    dropPart(landing, part)
    throw err
  }
  return stat
}

/** The size, mtime and inode of an open file, or undefined when fstat fails (the caller then looks at the path). */
function statOf(fd: number): LandedStat | undefined {
  try {
    const st = fstatSync(fd)
    return {size: st.size, mtimeMs: Math.trunc(st.mtimeMs), ino: st.ino}
  } catch {
    return undefined
  }
}

/** A fetch of at least this many small files lands them in a worker thread (fs/lander.ts): below it, starting one costs more than it saves. */
const LANDER_FROM = 512
/** Files handed to the lander in one message. */
const LAND_CHUNK = 64

/** At most this many files, and bytes, in one getMany() call. */
const BATCH_FILES = 256
const BATCH_BYTES = 8 << 20

/** The small files of a fetch, grouped for getMany(); the rest stay single. */
function plan(files: FileEntry[], batching: boolean): Array<FileEntry | FileEntry[]> {
  if (!batching) return files
  const tasks: Array<FileEntry | FileEntry[]> = []
  let batch: FileEntry[] = []
  let bytes = 0
  for (const f of files) {
    if (f.size === undefined || f.size > SMALL_FILE_BYTES) {
      tasks.push(f)
      continue
    }
    if (batch.length >= BATCH_FILES || bytes + f.size > BATCH_BYTES) {
      tasks.push(batch)
      batch = []
      bytes = 0
    }
    batch.push(f)
    bytes += f.size
  }
  if (batch.length) tasks.push(batch)
  // Large files first: they take longest, so the small batches fill the gaps around them.
  return tasks.sort((a, b) => Number(Array.isArray(a)) - Number(Array.isArray(b)))
}

/**
 * Fetches a batch of small files with one getMany() per attempt: each result is checked
 * (exact size, SHA-256) before it lands, like a single small file. Network failures retry
 * the files not yet received; a peer that cannot batch gets them one by one.
 */
async function fetchBatch(opts: FetchOptions, state: FetchState, files: FileEntry[], result: FetchResult): Promise<void> {
  const targets = new Map<string, Landing | undefined>()
  try {
    await fetchBatchInto(opts, state, files, result, targets)
  } finally {
    for (const t of targets.values()) t?.dir.release()
  }
}

async function fetchBatchInto(
  opts: FetchOptions,
  state: FetchState,
  files: FileEntry[],
  result: FetchResult,
  targets: Map<string, Landing | undefined>,
): Promise<void> {
  let todo: FileEntry[] = []
  for (const file of files) {
    opts.onEvent?.({event: 'file-start', path: file.path, size: file.size!})
    let landing: Landing | undefined
    if (opts.mode === 'land') {
      const prepared = landingFor(state.dirs!, file.path)
      landing = prepared.landing
      let same
      try {
        same = await settleExisting(opts, landing, file, prepared.existing, result)
      } catch (err) {
        landing.dir.release()
        throw err
      }
      if (same) {
        landing.dir.release()
        result.skipped++
        opts.onEvent?.({event: 'file-done', path: file.path, size: file.size!, skipped: true})
        opts.onFileDone?.(file)
        continue
      }
    }
    targets.set(file.path, landing)
    todo.push(file)
  }
  const policy = retryPolicy(opts)
  for (let attempt = 0; todo.length > 0; attempt++) {
    if (state.noBatch) {
      for (const f of todo) {
        // runSingle opens its own landing: let go of this one first.
        targets.get(f.path)?.dir.release()
        targets.delete(f.path)
        await runSingle(opts, state, f, result)
      }
      return
    }
    const byRemote = new Map(todo.map((f) => [opts.remotePathOf?.(f) ?? f.path, f]))
    const done = new Set<string>()
    // Files renamed into place but not yet reported, and the directories they went to: each
    // directory's place is checked before its first rename here and again before any of
    // them is reported (counted, announced as landed), not twice per file.
    const placed = new Set<Dir>()
    let unreported: Array<{file: FileEntry; stat?: LandedStat | undefined}> = []
    const report = () => {
      for (const d of placed) d.verifyPlace()
      placed.clear()
      for (const u of unreported) reportDone(opts, result, u.file, u.stat)
      unreported = []
    }
    // Files handed to the lander: sent LAND_CHUNK at a time while the rest arrive, all
    // settled (landed, or their failure kept) before the batch is reported.
    let toLand: LandItem[] = []
    let toLandFiles: FileEntry[] = []
    const landing: Array<Promise<void>> = []
    let landFailure: FpeerError | undefined
    const sendLand = () => {
      if (!toLand.length) return
      const items = toLand
      const landed = toLandFiles
      toLand = []
      toLandFiles = []
      landing.push(
        state.lander!.land(items).then(
          (outcomes) =>
            outcomes.forEach((outcome, i) => {
              const f = landed[i]!
              if (!(outcome instanceof Error)) return void unreported.push({file: f, stat: outcome})
              done.delete(f.path)
              landFailure ??= fetchError(outcome, opts, f)
            }),
          // The thread itself failed (it could not start, or died): these files, and all
          // after them, land here instead, as they would without it.
          () => {
            state.lander = undefined
            items.forEach((it, i) => {
              const f = landed[i]!
              try {
                unreported.push({file: f, stat: landSmall(it.data, f, {dir: it.dir, name: it.name, prefix: it.prefix}, true)})
              } catch (err) {
                done.delete(f.path)
                landFailure ??= fetchError(err, opts, f)
              }
            })
          },
        ),
      )
    }
    /** Waits for every file handed over; the first that did not land is the failure. */
    const settleLanding = async () => {
      sendLand()
      await Promise.all(landing)
      landing.length = 0
    }
    try {
      const items = todo.map((f) => ({path: opts.remotePathOf?.(f) ?? f.path, size: f.size!}))
      for await (const item of opts.client.getMany!(opts.folder, items, opts.signal ? {signal: opts.signal} : {})) {
        const file = byRemote.get(item.path)
        if (!file || done.has(file.path)) throw new FpeerError('E_TRANSFER', `the peer sent ${JSON.stringify(item.path)}, which was not asked for`)
        if ('error' in item) throw item.error
        if (item.data.length !== file.size)
          throw new FpeerError(
            item.data.length > file.size! ? 'E_SIZE_MISMATCH' : 'E_CONNECTION_LOST',
            `${file.path}: got ${item.data.length} of ${file.size} bytes`,
          )
        // One-shot hash(): a few microseconds less per file than a Hash object.
        const got = hashOnce('sha256', item.data, 'hex')
        if (got !== file.sha256)
          throw new FpeerError('E_HASH_MISMATCH', `${file.path}: content does not match its sha256`, {details: {path: file.path, expected: file.sha256, got}})
        const t = targets.get(file.path)
        done.add(file.path)
        if (!t) {
          reportDone(opts, result, file)
          continue
        }
        if (!placed.has(t.dir)) {
          t.dir.verifyPlace()
          placed.add(t.dir)
        }
        if (state.lander && t.dir.fd !== undefined) {
          toLand.push({
            dir: t.dir,
            prefix: t.prefix,
            name: t.name,
            data: item.data,
            mode: file.ext?.mode === '755' ? execMode() : landedMode(),
            rel: file.path,
            ...(file.mtimeMs === undefined ? {} : {mtimeMs: file.mtimeMs}),
          })
          toLandFiles.push(file)
          if (toLand.length >= LAND_CHUNK) {
            sendLand()
            // The next files are read only once the thread has room for them.
            await state.lander?.room()
          }
          continue
        }
        let stat
        try {
          stat = landSmall(item.data, file, t, true)
        } catch (err) {
          done.delete(file.path)
          throw fetchError(err, opts, file)
        }
        unreported.push({file, stat})
      }
      await settleLanding()
      if (landFailure) throw landFailure
      report()
      if (done.size !== todo.length) throw new FpeerError('E_CONNECTION_LOST', `the peer answered ${done.size} of ${todo.length} files`)
      return
    } catch (err) {
      // What landed before the failure is reported (once its directories are checked), so
      // a retry leaves it alone and the caller records it. A file that could not be written
      // here is the failure to report: a retry would not mend it.
      await settleLanding()
      report()
      if (landFailure) throw landFailure
      const e = typedError(err, `fetching ${todo.length} files`)
      todo = todo.filter((f) => !done.has(f.path))
      if (isUnsupported(e)) {
        state.noBatch = true
        continue
      }
      if (!shouldRetry(e, attempt, {policy, ...(opts.signal ? {signal: opts.signal} : {})})) throw e
      opts.onEvent?.({event: 'retry', path: todo[0]?.path ?? '', attempt: attempt + 1, code: e.code})
      await pause(backoffMs(policy, attempt), opts.signal)
      if (opts.signal?.aborted) throw e
    }
  }
}

/** Counts a batch's file as fetched and tells the caller, once it is in place (or checked, in verify mode). */
function reportDone(opts: FetchOptions, result: FetchResult, file: FileEntry, stat?: LandedStat): void {
  result.fetched++
  result.bytes += file.size!
  opts.onEvent?.({event: 'bytes', path: file.path, bytes: file.size!})
  opts.onEvent?.({event: 'file-done', path: file.path, size: file.size!, skipped: false})
  opts.onFileDone?.(file, stat)
}

async function runSingle(opts: FetchOptions, state: FetchState, file: FileEntry, result: FetchResult): Promise<void> {
  opts.onEvent?.({event: 'file-start', path: file.path, ...(file.size === undefined ? {} : {size: file.size})})
  const r = await fetchOne(opts, state, file)
  result.bytes += r.bytes
  if (r.skipped) result.skipped++
  else result.fetched++
  opts.onEvent?.({event: 'file-done', path: file.path, size: file.size ?? r.bytes, skipped: r.skipped})
  opts.onFileDone?.(file)
}

/**
 * Fetches (or verifies) every file, `concurrency` at a time. Stops at the first failure
 * that retrying cannot mend and throws it; files already landed stay (each was verified).
 */
export async function fetchFiles(opts: FetchOptions): Promise<FetchResult> {
  const result: FetchResult = {files: opts.files.length, fetched: 0, skipped: 0, bytes: 0}
  if (opts.mode === 'land' && !opts.root) throw new FpeerError('E_INTERNAL', 'land mode needs a root')
  // Validate every name before the first byte moves, so a hostile list changes nothing.
  for (const f of opts.files) {
    checkRelativePath(f.path)
    requireHash(f)
  }
  const seen = new Set<string>()
  for (const f of opts.files) {
    if (seen.has(f.path)) throw new FpeerError('E_MSG_BAD_FIELD', `${f.path} is listed twice`)
    seen.add(f.path)
  }
  // Stopped before it began (Ctrl-C, a peer stopping): not a byte moves, no part file is made.
  if (opts.signal?.aborted) throw abortReason(opts.signal)
  let next = 0
  let failure: unknown
  const state: FetchState = {dirs: opts.mode === 'land' ? new FolderDirs(opts.root!) : undefined, result}
  // A transport that declares batching and has no getMany() is a broken plugin, told apart from a failed transfer.
  if (opts.batch && typeof opts.client.getMany !== 'function')
    throw new FpeerError('E_PLUGIN', 'the transport declares supports.batch but its client has no getMany()')
  // Small files travel in batches when the transport declares it can batch; everything else one by one.
  const tasks = plan(opts.files, opts.batch === true)
  if (
    state.dirs &&
    opts.batch &&
    tasks.reduce((n, t) => n + (Array.isArray(t) ? t.length : 0), 0) >= (opts.landerFrom ?? LANDER_FROM) &&
    state.dirs.byDescriptor
  )
    state.lander = new Lander()
  const worker = async () => {
    while (failure === undefined && next < tasks.length) {
      const task = tasks[next++]!
      try {
        if (Array.isArray(task)) await fetchBatch(opts, state, task, result)
        else await runSingle(opts, state, task, result)
      } catch (err) {
        failure ??= err
      }
    }
  }
  try {
    await Promise.all(Array.from({length: Math.max(1, Math.min(opts.concurrency, tasks.length))}, worker))
  } finally {
    await state.lander?.close()
    state.dirs?.close()
  }
  if (failure !== undefined) throw typedError(failure, 'fetch')
  return result
}
