// Fetching a file list from a peer: bounded concurrency, hash while streaming, land atomically or only verify.
import {createHash} from 'node:crypto'
import {closeSync, createReadStream, futimesSync, openSync, readFileSync, renameSync, unlinkSync, writeSync} from 'node:fs'
import {open, rename, stat, unlink, utimes} from 'node:fs/promises'
import path from 'node:path'
import {FpeerError, fromSystemError, isFpeerError} from '../errors.js'
import {PART_PREFIX, checkRelativePath, prepareForWriteSync} from '../fs/safe-path.js'
import {SMALL_FILE_BYTES, sha256File} from '../fs/scan.js'
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
  onEvent?(ev: FetchEvent): void
  /** Where a file is on the peer when that differs from where it lands here (conflict copies). */
  remotePathOf?(file: FileEntry): string
  signal?: AbortSignal
}

export interface FetchResult {
  files: number
  fetched: number
  skipped: number
  bytes: number
}

/** Bytes of a large file gathered before one write. */
const WRITE_BATCH = 4 << 20

const RETRYABLE = new Set(['E_CONNECTION_LOST', 'E_TIMEOUT', 'E_TRANSFER', 'E_CONNECT'])

/** A part file's name is fixed per target, so a later attempt finds it and can resume. */
function partPath(target: string): string {
  const base = path.basename(target)
  return path.join(path.dirname(target), PART_PREFIX + createHash('sha256').update(base).digest('hex').slice(0, 24))
}

async function hashPrefix(file: string, bytes: number): Promise<ReturnType<typeof createHash>> {
  const hash = createHash('sha256')
  if (bytes > 0) for await (const chunk of createReadStream(file, {start: 0, end: bytes - 1, highWaterMark: 1 << 20})) hash.update(chunk as Buffer)
  return hash
}

/** Every file entry a fetch acts on MUST carry its hash: nothing is trusted before its hash is checked. */
function requireHash(file: FileEntry): string {
  if (!file.sha256) {
    throw new FpeerError('E_UNSIGNED', `no sha256 for ${JSON.stringify(file.path)}: cannot verify it`, {hint: 'the peer sent a seed-form file list without hashes'})
  }
  return file.sha256
}

/** The SHA-256 of a file already at the target, or '' when it cannot be read. */
async function hashExisting(target: string, size: number): Promise<string> {
  try {
    return size <= SMALL_FILE_BYTES ? createHash('sha256').update(readFileSync(target)).digest('hex') : await sha256File(target)
  } catch {
    return ''
  }
}

/** Per-fetch state: the directories of `root` already checked, so each is checked once per fetch. */
interface FetchState {
  checkedDirs: Set<string>
  /** The peer cannot batch: fetch one by one from now on. */
  noBatch?: boolean
}

async function fetchOne(opts: FetchOptions, state: FetchState, file: FileEntry): Promise<{bytes: number; skipped: boolean}> {
  const expected = requireHash(file)
  checkRelativePath(file.path)
  let target: string | undefined
  if (opts.mode === 'land') {
    const prepared = prepareForWriteSync(opts.root!, file.path, state.checkedDirs)
    target = prepared.target
    // Already here with the right content: nothing to move. (No target, nothing to hash.)
    const have = prepared.existing
    if (have?.isFile() && (file.size === undefined || have.size === file.size)) {
      if ((await hashExisting(target, have.size)) === expected) return {bytes: 0, skipped: true}
    }
  }
  // A file of known small size is received into memory, checked, and only then written:
  // no part file exists until its content is known good, so there is nothing to resume.
  const small = file.size !== undefined && file.size <= SMALL_FILE_BYTES
  const part = target ? partPath(target) : undefined
  const retries = opts.retries ?? 3
  for (let attempt = 0; ; attempt++) {
    try {
      const bytes = small ? await attemptSmall(opts, file, expected, target, part) : await attemptOne(opts, file, expected, target, part)
      return {bytes, skipped: false}
    } catch (err) {
      const e = isFpeerError(err) ? err : fromSystemError(err, `fetching ${file.path}`)
      if (!RETRYABLE.has(e.code) || attempt >= retries || opts.signal?.aborted) {
        // A stop (Ctrl-C, --timeout) keeps the good prefix too: `fpeer request --resume` starts after it.
        if (part && !small && !(opts.resume && (RETRYABLE.has(e.code) || opts.signal?.aborted))) await unlink(part).catch(() => {})
        throw e
      }
      opts.onEvent?.({event: 'retry', path: file.path, attempt: attempt + 1, code: e.code})
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)))
    }
  }
}

async function attemptOne(opts: FetchOptions, file: FileEntry, expected: string, target: string | undefined, part: string | undefined): Promise<number> {
  let offset = 0
  let hash = createHash('sha256')
  if (part && opts.resume) {
    const have = await stat(part).catch(() => undefined)
    if (have && have.size > 0 && (file.size === undefined || have.size <= file.size)) {
      offset = have.size
      hash = await hashPrefix(part, offset)
    }
  }
  const fh = part ? await open(part, offset > 0 ? 'a' : 'w', 0o644) : undefined
  let received = offset
  // Chunks are written in batches of WRITE_BATCH bytes, one batch in flight while the next
  // is received and hashed, instead of one awaited write per network chunk.
  let batch: Buffer[] = []
  let batchBytes = 0
  let writing: Promise<unknown> | undefined
  try {
    const {stream} = await opts.client.get(opts.folder, opts.remotePathOf?.(file) ?? file.path, {offset, ...(opts.signal ? {signal: opts.signal} : {})})
    for await (const chunk of stream) {
      const buf = chunk as Buffer
      received += buf.length
      if (file.size !== undefined && received > file.size) {
        stream.destroy()
        throw new FpeerError('E_SIZE_MISMATCH', `${file.path}: peer sent more than the ${file.size} bytes announced`)
      }
      hash.update(buf)
      if (fh) {
        batch.push(buf)
        batchBytes += buf.length
        if (batchBytes >= WRITE_BATCH) {
          await writing
          writing = fh.writev(batch)
          batch = []
          batchBytes = 0
        }
      }
      opts.onEvent?.({event: 'bytes', path: file.path, bytes: buf.length})
    }
    await writing
    if (fh && batch.length) await fh.writev(batch)
  } catch (err) {
    // What was received before the failure is a good prefix: write it, so a resume starts after it.
    await writing?.catch(() => {})
    if (fh && batch.length) await fh.writev(batch).catch(() => {})
    await fh?.close()
    throw err
  }
  await fh?.close()
  if (file.size !== undefined && received !== file.size) {
    // Fewer bytes than announced and no error: the connection ended early.
    throw new FpeerError('E_CONNECTION_LOST', `${file.path}: got ${received} of ${file.size} bytes`)
  }
  const got = hash.digest('hex')
  if (got !== expected) {
    if (part) await unlink(part).catch(() => {})
    throw new FpeerError('E_HASH_MISMATCH', `${file.path}: content does not match its sha256`, {details: {path: file.path, expected, got}})
  }
  if (part && target) {
    if (file.mtimeMs !== undefined) await utimes(part, new Date(), new Date(file.mtimeMs)).catch(() => {})
    await rename(part, target)
  }
  return received - offset
}

/**
 * Receives a small file whole, checks size and hash, then lands it with a handful of
 * synchronous calls (write the part file, set its mtime, rename it over the target):
 * microseconds each on a local disk, where the thread pool would add tens per call.
 */
async function attemptSmall(opts: FetchOptions, file: FileEntry, expected: string, target: string | undefined, part: string | undefined): Promise<number> {
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
    if (target) chunks.push(buf)
    opts.onEvent?.({event: 'bytes', path: file.path, bytes: buf.length})
  }
  if (received !== size) throw new FpeerError('E_CONNECTION_LOST', `${file.path}: got ${received} of ${size} bytes`)
  const got = hash.digest('hex')
  if (got !== expected) throw new FpeerError('E_HASH_MISMATCH', `${file.path}: content does not match its sha256`, {details: {path: file.path, expected, got}})
  if (part && target) landSmall(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size), file, part, target)
  return received
}

/** Lands checked content: writes the part file, keeps the peer's mtime, renames it over the target. */
function landSmall(content: Buffer, file: FileEntry, part: string, target: string): void {
  const fd = openSync(part, 'w', 0o644)
  try {
    for (let off = 0; off < content.length; ) off += writeSync(fd, content, off, content.length - off)
    if (file.mtimeMs !== undefined) {
      try {
        futimesSync(fd, new Date(), new Date(file.mtimeMs))
      } catch {
        // keeping the peer's mtime is best effort, as for large files
      }
    }
  } catch (err) {
    closeSync(fd)
    try {
      unlinkSync(part)
    } catch {}
    throw err
  }
  closeSync(fd)
  renameSync(part, target)
}

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
  const targets = new Map<string, {target?: string; part?: string}>()
  let todo: FileEntry[] = []
  for (const file of files) {
    opts.onEvent?.({event: 'file-start', path: file.path, size: file.size!})
    let target: string | undefined
    if (opts.mode === 'land') {
      const prepared = prepareForWriteSync(opts.root!, file.path, state.checkedDirs)
      target = prepared.target
      const have = prepared.existing
      if (have?.isFile() && have.size === file.size && (await hashExisting(target, have.size)) === file.sha256) {
        result.skipped++
        opts.onEvent?.({event: 'file-done', path: file.path, size: file.size!, skipped: true})
        continue
      }
    }
    targets.set(file.path, target ? {target, part: partPath(target)} : {})
    todo.push(file)
  }
  const retries = opts.retries ?? 3
  for (let attempt = 0; todo.length > 0; attempt++) {
    if (state.noBatch) {
      for (const f of todo) await runSingle(opts, state, f, result)
      return
    }
    const byRemote = new Map(todo.map((f) => [opts.remotePathOf?.(f) ?? f.path, f]))
    const done = new Set<string>()
    try {
      const items = todo.map((f) => ({path: opts.remotePathOf?.(f) ?? f.path, size: f.size!}))
      for await (const item of opts.client.getMany!(opts.folder, items, opts.signal ? {signal: opts.signal} : {})) {
        const file = byRemote.get(item.path)
        if (!file || done.has(file.path)) throw new FpeerError('E_TRANSFER', `the peer sent ${JSON.stringify(item.path)}, which was not asked for`)
        if ('error' in item) throw item.error
        if (item.data.length !== file.size) throw new FpeerError(item.data.length > file.size! ? 'E_SIZE_MISMATCH' : 'E_CONNECTION_LOST', `${file.path}: got ${item.data.length} of ${file.size} bytes`)
        const got = createHash('sha256').update(item.data).digest('hex')
        if (got !== file.sha256) throw new FpeerError('E_HASH_MISMATCH', `${file.path}: content does not match its sha256`, {details: {path: file.path, expected: file.sha256, got}})
        const t = targets.get(file.path)!
        if (t.target && t.part) landSmall(item.data, file, t.part, t.target)
        done.add(file.path)
        result.fetched++
        result.bytes += item.data.length
        opts.onEvent?.({event: 'bytes', path: file.path, bytes: item.data.length})
        opts.onEvent?.({event: 'file-done', path: file.path, size: file.size!, skipped: false})
      }
      if (done.size !== todo.length) throw new FpeerError('E_CONNECTION_LOST', `the peer answered ${done.size} of ${todo.length} files`)
      return
    } catch (err) {
      const e = isFpeerError(err) ? err : fromSystemError(err, `fetching ${todo.length} files`)
      todo = todo.filter((f) => !done.has(f.path))
      if (e.code === 'E_TRANSFER' && (e.details as {unsupported?: boolean} | undefined)?.unsupported) {
        state.noBatch = true
        continue
      }
      if (!RETRYABLE.has(e.code) || attempt >= retries || opts.signal?.aborted) throw e
      opts.onEvent?.({event: 'retry', path: todo[0]?.path ?? '', attempt: attempt + 1, code: e.code})
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * 2 ** attempt)))
    }
  }
}

async function runSingle(opts: FetchOptions, state: FetchState, file: FileEntry, result: FetchResult): Promise<void> {
  opts.onEvent?.({event: 'file-start', path: file.path, ...(file.size === undefined ? {} : {size: file.size})})
  const r = await fetchOne(opts, state, file)
  result.bytes += r.bytes
  if (r.skipped) result.skipped++
  else result.fetched++
  opts.onEvent?.({event: 'file-done', path: file.path, size: file.size ?? r.bytes, skipped: r.skipped})
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
  let next = 0
  let failure: unknown
  const state: FetchState = {checkedDirs: new Set()}
  // Small files travel in batches when the transport can batch; everything else one by one.
  const tasks = plan(opts.files, opts.client.getMany !== undefined)
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
  await Promise.all(Array.from({length: Math.max(1, Math.min(opts.concurrency, tasks.length))}, worker))
  if (failure !== undefined) throw isFpeerError(failure) ? failure : fromSystemError(failure, 'fetch')
  return result
}
