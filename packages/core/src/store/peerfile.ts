// A folder's peerfile: its confirmed peers (a locked JSON document) and its file structure (an append-only journal).
import {mkdir, open, readFile, rename, stat, truncate, unlink} from 'node:fs/promises'
import path from 'node:path'
import {fromSystemError} from '../errors.js'
import type {IndexedFile} from '../fs/scan.js'
import type {FileVersion} from '../wire/version.js'
import {LockedDb, syncDir, writeAtomic} from './locked-db.js'
import {lockState} from './state-lock.js'

/**
 * A path's entry in the file structure: what is on disk (size, mtime, hash, inode) and,
 * once the path has changed since the folder was first shared, the signed version that
 * put it there. A deleted path stays as a tombstone (`version.deleted`), so that the
 * deletion propagates and an old copy elsewhere does not bring the file back.
 */
export interface FileRecord extends IndexedFile {
  version?: FileVersion
}

/**
 * A scanned file's record with `version`, as a literal (not `{...f, version}`: Node 20's V8
 * gives each object made by a spread plus a property a hidden class of its own, about 250
 * bytes more per record).
 */
export function withVersion(f: IndexedFile, version: FileVersion | undefined): FileRecord {
  const r: FileRecord = {path: f.path, size: f.size, mtimeMs: f.mtimeMs, sha256: f.sha256}
  if (f.ino !== undefined) r.ino = f.ino
  if (f.mode !== undefined) r.mode = f.mode
  if (f.racy) r.racy = true
  if (version) r.version = version
  return r
}

export function isLive(r: FileRecord): boolean {
  return !r.version?.deleted
}

/** A confirmed peer of one folder. */
export interface PeerRecord {
  /** Canonical peer ID, or `plain:<address>` for a seed-form peer that has no key. */
  id: string
  /** The address the peer's control connection came from. */
  address: string
  /** Where its `fpeer serve` listens for messages, if it said (`ctl=`). */
  controlPort?: number
  /** Transfer protocols it can use. */
  protocols: string[]
  /** `host`: we joined it; `member`: it joined us. */
  role: 'host' | 'member'
  confirmedAt: string
}

interface PeersDoc {
  version: 1
  folder: string
  peers: Record<string, PeerRecord>
}

/** The journal is read this many bytes at a time. */
const JOURNAL_READ_BYTES = 1 << 20

type JournalLine = {p: string; s: number; m: number; h: string; i?: number; x?: 1; r?: 1; v?: VersionLine} | {p: string; d: 1}
interface VersionLine {
  d?: 1
  l: number
  o: string
  vv: Record<string, number>
  s: string
  h: string
  z: number
  m: number
}

/** The directory under the home that holds one folder's peerfile. */
export function folderStateDir(home: string, folder: string): string {
  return path.join(home, 'folders', encodeURIComponent(folder))
}

export class Peerfile {
  readonly folder: string
  readonly dir: string
  readonly #peers: LockedDb<PeersDoc>
  readonly #journal: string
  readonly #intent: string
  #lines = 0
  /** Bytes of the journal as last read or written: an append that fails is cut back to it. */
  #bytes = 0
  /** The journal as read ends in a torn line (a crash mid-append): the next append starts a new line. */
  #torn = false
  /**
   * The structure as last read, and the journal's identity, size and times then: records
   * are values (callers replace them in their map, never change one), so they are shared.
   */
  #cache: {stamp: string; map: Map<string, FileRecord>; lines: number; bytes: number; torn: boolean; damaged: boolean} | undefined
  /**
   * The journal as last read had lines that did not parse: the paths they held are unknown,
   * so a rescan must not take a file missing from it for this peer's new version.
   */
  damaged = false

  constructor(home: string, folder: string) {
    this.folder = folder
    this.dir = folderStateDir(home, folder)
    this.#peers = new LockedDb<PeersDoc>(path.join(this.dir, 'peers.json'), () => ({version: 1, folder, peers: {}}))
    this.#journal = path.join(this.dir, 'files.jsonl')
    this.#intent = path.join(this.dir, 'intent.json')
  }

  /**
   * Records, durably and before any of them lands, the versions an apply is about to put on
   * disk: a kill -9 between a rename into the folder and the journal's record would otherwise
   * leave a file the next rescan takes for this peer's own new version. Replaces any earlier
   * intent (the caller has consumed it). Errors: E_DISK_FULL, E_IO.
   */
  async intend(versions: readonly FileVersion[]): Promise<void> {
    await mkdir(this.dir, {recursive: true, mode: 0o700})
    await writeAtomic(this.#intent, JSON.stringify({version: 1, folder: this.folder, versions}) + '\n', 0o600)
  }

  /**
   * The versions of an apply that did not finish recording (a crash, a failed fetch after
   * local copies landed); none when there is no intent. An unreadable intent (hand-damaged:
   * writes are atomic) holds nothing usable and reads as none. Signatures are the caller's to check.
   */
  async intents(): Promise<FileVersion[]> {
    let text
    try {
      text = await readFile(this.#intent, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw fromSystemError(err, `reading ${this.#intent}`, {path: this.#intent})
    }
    try {
      const doc = JSON.parse(text) as {versions?: unknown}
      return Array.isArray(doc.versions) ? (doc.versions as FileVersion[]).filter((v) => typeof v?.path === 'string' && typeof v.sha256 === 'string') : []
    } catch {
      return []
    }
  }

  /** The intent is recorded in the journal (or found void): forgets it. A lost unlink only repeats a no-op recovery. */
  async clearIntents(): Promise<void> {
    await unlink(this.#intent).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw fromSystemError(err, `removing ${this.#intent}`, {path: this.#intent})
    })
  }

  async peers(): Promise<PeerRecord[]> {
    return Object.values((await this.#peers.read()).peers).sort((a, b) => (a.confirmedAt < b.confirmedAt ? -1 : 1))
  }

  async addPeer(peer: PeerRecord): Promise<void> {
    await this.#peers.update((doc) => {
      doc.peers[peer.id] = peer
    })
  }

  /** Removes a peer from the peerlist; false when it was not in it. */
  async removePeer(id: string): Promise<boolean> {
    let had = false
    await this.#peers.update((doc) => {
      had = id in doc.peers
      delete doc.peers[id]
    })
    return had
  }

  /**
   * The file structure. Stored as a journal of JSON lines, one per added/changed/removed
   * file, so a change to one file in a folder of 100,000 appends one line instead of
   * rewriting the whole document; compacted when it grows past twice the live entries.
   * The map is the caller's to change. `remember: false` (a one-shot reader, `fpeer files`):
   * what is read is not kept for the next call, which spares a copy of the whole map.
   */
  async files(opts: {remember?: boolean} = {}): Promise<Map<string, FileRecord>> {
    const {map, shared} = await this.#read(opts)
    return shared ? new Map(map) : map
  }

  /**
   * The records of `paths` only (a path without one is absent), read as files() reads, without
   * copying the whole structure: a push or an offer asks about its few paths, and a copy of a
   * 100,000-file map for each was most of its cost.
   */
  async recordsOf(paths: Iterable<string>): Promise<Map<string, FileRecord>> {
    const {map} = await this.#read({})
    const out = new Map<string, FileRecord>()
    for (const p of paths) {
      const r = map.get(p)
      if (r) out.set(p, r)
    }
    return out
  }

  /** The structure, and whether it is the remembered map itself (callers must not change it: files() copies it). */
  async #read(opts: {remember?: boolean}): Promise<{map: Map<string, FileRecord>; shared: boolean}> {
    const map = new Map<string, FileRecord>()
    let fh
    try {
      fh = await open(this.#journal, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, `reading ${this.#journal}`, {path: this.#journal})
      this.#lines = 0
      this.#bytes = 0
      this.#torn = false
      this.damaged = false
      this.#cache = undefined
      return {map, shared: false}
    }
    // Unchanged since this instance last read it (a long-lived daemon answering requests):
    // the records it gave then, in a fresh map, instead of parsing every line again.
    let stamp: string
    try {
      stamp = stampOf(await fh.stat({bigint: true}))
    } catch (err) {
      await fh.close()
      throw fromSystemError(err, `reading ${this.#journal}`, {path: this.#journal})
    }
    const hit = this.#cache
    if (hit && hit.stamp === stamp) {
      await fh.close()
      this.#lines = hit.lines
      this.#bytes = hit.bytes
      this.#torn = hit.torn
      this.damaged = hit.damaged
      return {map: hit.map, shared: true}
    }
    this.#cache = undefined
    let lines = 0
    let bad = 0
    let bytes = 0
    let last = 0x0a
    const take = (line: string) => {
      if (line === '') return
      lines++
      let rec: JournalLine
      try {
        rec = JSON.parse(line) as JournalLine
        if (typeof rec?.p !== 'string') throw new Error('no path')
      } catch {
        bad++ // a torn line after a crash, or damage: see `damaged`
        return
      }
      if ('d' in rec) map.delete(rec.p)
      else map.set(rec.p, fromLine(rec))
    }
    // Read in slices, a line parsed as soon as it is whole: a journal of 1,000,000 files is
    // never held as one string (nor split into an array of them) beside the map it becomes.
    try {
      const buf = Buffer.allocUnsafe(JOURNAL_READ_BYTES)
      let rest: Buffer | undefined
      for (;;) {
        const {bytesRead} = await fh.read(buf, 0, buf.length, null)
        if (bytesRead === 0) break
        bytes += bytesRead
        last = buf[bytesRead - 1]
        const chunk = rest ? Buffer.concat([rest, buf.subarray(0, bytesRead)]) : buf.subarray(0, bytesRead)
        // The whole lines of this slice, decoded at once (a UTF-8 sequence never spans an LF).
        const end = chunk.lastIndexOf(0x0a) + 1
        if (end > 0) for (const line of chunk.toString('utf8', 0, end).split('\n')) take(line)
        rest = end < chunk.length ? Buffer.from(chunk.subarray(end)) : undefined
      }
      if (rest) take(rest.toString('utf8'))
    } catch (err) {
      throw fromSystemError(err, `reading ${this.#journal}`, {path: this.#journal})
    } finally {
      await fh.close()
    }
    this.#lines = lines
    this.#bytes = bytes
    this.#torn = bytes > 0 && last !== 0x0a
    this.damaged = bad > 0
    if (opts.remember === false) return {map, shared: false}
    this.#cache = {stamp, map, lines, bytes, torn: this.#torn, damaged: this.damaged}
    return {map, shared: true}
  }

  /**
   * Writes records (new versions, tombstones, rescanned files) for the given paths, given
   * the whole structure after the change (`all`, used when the journal is compacted). `all`
   * is then kept as what the journal holds (#remember), not copied: the caller changes it no
   * more without recording the change here (put, drop, compact).
   */
  async put(records: FileRecord[], all: Map<string, FileRecord>): Promise<void> {
    if (records.length === 0) return
    await mkdir(this.dir, {recursive: true, mode: 0o700})
    if (this.#lines + records.length > 2 * all.size + 1024) {
      await this.#rewrite(all.values())
      await this.#remember(all)
      return
    }
    await this.#append(journalLines(records, []))
    this.#lines += records.length
    await this.#remember(all)
  }

  /** Forgets paths without a tombstone (files now ignored: not deleted, just no longer part of the folder). */
  async drop(paths: string[], all: Map<string, FileRecord>): Promise<void> {
    if (paths.length === 0) return
    await mkdir(this.dir, {recursive: true, mode: 0o700})
    if (this.#lines + paths.length > 2 * all.size + 1024) {
      await this.#rewrite(all.values())
      await this.#remember(all)
      return
    }
    await this.#append(journalLines([], paths))
    this.#lines += paths.length
    await this.#remember(all)
  }

  /** Rewrites the journal from `all` alone: after a damaged one was read, drops its bad lines. */
  async compact(all: Map<string, FileRecord>): Promise<void> {
    await mkdir(this.dir, {recursive: true, mode: 0o700})
    await this.#rewrite(all.values())
    this.damaged = false
    await this.#remember(all)
  }

  /**
   * Appends whole lines, written a slice at a time (a first share of 1,000,000 files is not
   * built as one string). A failed append (disk full) is cut back to the journal's last
   * length, so no torn line is left for the next append to run into.
   */
  async #append(lines: Iterable<string>): Promise<void> {
    this.#cache = undefined
    let fh
    let bytes = 0
    try {
      fh = await open(this.#journal, 'a', 0o600)
      let slice: string[] = this.#torn ? [''] : []
      const out = fh
      const flush = async () => {
        const text = slice.join('\n') + '\n'
        slice = []
        await out.write(text)
        bytes += Buffer.byteLength(text)
      }
      for (const line of lines) {
        slice.push(line)
        if (slice.length >= 4096) await flush()
      }
      if (slice.length) await flush()
      await fh.close()
    } catch (err) {
      await fh?.close().catch(() => {})
      await truncate(this.#journal, this.#bytes).catch(() => {})
      throw fromSystemError(err, `writing ${this.#journal}`, {path: this.#journal})
    }
    this.#bytes += bytes
    if (bytes > 0) this.#torn = false
  }

  /** What identifies the journal's present state (identity, size, times); undefined when there is none. Equal stamps: unchanged content. */
  async stamp(): Promise<string | undefined> {
    const st = await stat(this.#journal, {bigint: true}).catch(() => undefined)
    return st ? stampOf(st) : undefined
  }

  /** Whether the structure was ever recorded (an empty folder's first scan counts). */
  async initialized(): Promise<boolean> {
    return stat(this.#journal).then(
      () => true,
      () => false,
    )
  }

  /** Marks the structure as recorded, even when it holds no file yet. */
  async touch(): Promise<void> {
    // Recorded already (and whole): nothing to write, and the structure just remembered stays valid.
    if (!this.#torn && (await this.initialized())) return
    await mkdir(this.dir, {recursive: true, mode: 0o700})
    await this.#append([])
  }

  /**
   * Keeps `all`, the structure the caller has just written, as what the journal now reads
   * as: the next files() (a rescan after joining a folder of 100,000 files, or after an
   * update) copies it instead of parsing every line again. Kept itself, not a copy (a
   * first share of 1,000,000 files would hold two maps): put()'s callers leave it alone. Only while this process holds
   * the state lock (`locked`) does anyone write the journal, so nobody else can have written
   * it since; a size that is not what we wrote says otherwise, and nothing is kept.
   */
  async #remember(all: Map<string, FileRecord>): Promise<void> {
    const st = await stat(this.#journal, {bigint: true}).catch(() => undefined)
    if (!st || st.size !== BigInt(this.#bytes)) return
    this.#cache = {stamp: stampOf(st), map: all, lines: this.#lines, bytes: this.#bytes, torn: this.#torn, damaged: this.damaged}
  }

  /**
   * Runs `fn` holding this folder's state lock, shared by every fpeer process on this
   * home (the daemon, `fpeer push`, …), so one change is recorded once.
   */
  async locked<T>(fn: () => Promise<T>): Promise<T> {
    await mkdir(this.dir, {recursive: true, mode: 0o700})
    // An update may fetch content while it holds the lock: a live holder is waited for long.
    return lockState(this.dir, path.join(this.dir, 'state.lock'), `the state of ${this.folder} is locked by another fpeer process`, fn, 200_000)
  }

  async #rewrite(scan: Iterable<FileRecord>): Promise<void> {
    this.#cache = undefined
    const tmp = `${this.#journal}.tmp`
    let bytes = 0
    let count = 0
    try {
      const fh = await open(tmp, 'w', 0o600)
      try {
        const chunk: string[] = []
        const flush = async () => {
          const text = chunk.join('\n') + '\n'
          await fh.write(text)
          bytes += Buffer.byteLength(text)
          chunk.length = 0
        }
        for (const f of scan) {
          count++
          chunk.push(JSON.stringify(toLine(f)))
          if (chunk.length >= 4096) await flush()
        }
        if (chunk.length) await flush()
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, this.#journal)
    } catch (err) {
      await unlink(tmp).catch(() => {})
      throw fromSystemError(err, `writing ${this.#journal}`, {path: this.#journal})
    }
    await syncDir(this.dir)
    this.#lines = count
    this.#bytes = bytes
    this.#torn = false
  }
}

/** What identifies one state of the journal: unchanged identity, size and times mean unchanged content. */
function stampOf(st: {dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint}): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
}

/** The journal lines of records, then of removals. */
function* journalLines(records: FileRecord[], removed: string[]): Generator<string> {
  for (const r of records) yield JSON.stringify(toLine(r))
  for (const p of removed) yield JSON.stringify({p, d: 1})
}

function toLine(f: FileRecord): JournalLine {
  const line: JournalLine = {
    p: f.path,
    s: f.size,
    m: f.mtimeMs,
    h: f.sha256,
    ...(f.ino === undefined ? {} : {i: f.ino}),
    ...(f.mode === 0o755 ? {x: 1 as const} : {}),
    ...(f.racy ? {r: 1 as const} : {}),
  }
  const v = f.version
  if (v) line.v = {...(v.deleted ? {d: 1 as const} : {}), l: v.lamport, o: v.origin, vv: v.vv, s: v.sig, h: v.sha256, z: v.size, m: v.mtimeMs}
  return line
}

function fromLine(rec: Exclude<JournalLine, {d: 1}>): FileRecord {
  const r: FileRecord = {
    path: rec.p,
    size: rec.s,
    mtimeMs: rec.m,
    sha256: rec.h,
    ...(rec.i === undefined ? {} : {ino: rec.i}),
    ...(rec.x === 1 ? {mode: 0o755} : {}),
    ...(rec.r === 1 ? {racy: true as const} : {}),
  }
  const v = rec.v
  if (v) r.version = {path: rec.p, deleted: v.d === 1, sha256: v.h, size: v.z, mtimeMs: v.m, lamport: v.l, origin: v.o, vv: v.vv, sig: v.s}
  return r
}
