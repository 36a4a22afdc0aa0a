// Owed forwards: the versions this peer has taken but not yet passed on, per peer, kept in the folder's state so a crash cannot lose them.
import {mkdir, open, readFile, rename, stat, truncate, unlink} from 'node:fs/promises'
import path from 'node:path'
import {FpeerError, fromSystemError, isFpeerError} from '../errors.js'
import {LockedDb, writeAtomic} from '../store/locked-db.js'
import type {Home} from '../store/home.js'
import type {FileRecord} from '../store/peerfile.js'
import {lockState} from '../store/state-lock.js'
import type {ApplyResult} from './folder.js'
import {type FileVersion, compareVectors, decide, newer} from './version.js'

/** The document owed forwards were kept in before the journal: read once, then replaced by it. */
interface LegacyOwedDoc {
  version: 1
  folder: string
  owed: Record<string, Record<string, FileVersion>>
}

/** Peer ID → path → the newest version of that path owed to that peer. */
type Owed = Map<string, Map<string, FileVersion>>

/** One journal line: a version owed to a peer (`o`), or that peer's entry for a path cleared (`c`). */
type OwedLine = {o: string; v: FileVersion} | {c: string; p: string}

/** What one `owe` changed, so that `settle` can take back what the apply did not take after all. */
export interface OweReceipt {
  readonly changes: ReadonlyArray<{peer: string; path: string; before: FileVersion | undefined; now: FileVersion}>
}

/** A version's identity: its path, origin and lamport. */
function key(v: FileVersion): string {
  return `${v.path}\0${v.origin}:${v.lamport}`
}

/** The journal as this process last read or wrote it, by file: unchanged on disk (same stamp), it is not parsed again. */
interface Loaded {
  stamp: string
  owed: Owed
  /** Lines in the journal (live and dead). */
  lines: number
  /** The journal ends in a torn line (a crash mid-append): the next append starts a new line. */
  torn: boolean
  bytes: number
}

/** Dead lines tolerated before a compaction, however few entries live: a small journal is not rewritten at every clear. */
const MIN_DEAD_LINES = 64

function live(owed: Owed): number {
  let n = 0
  for (const byPath of owed.values()) n += byPath.size
  return n
}

function set(owed: Owed, peer: string, v: FileVersion): void {
  let mine = owed.get(peer)
  if (!mine) owed.set(peer, (mine = new Map()))
  mine.set(v.path, v)
}

function clear(owed: Owed, peer: string, p: string): void {
  const mine = owed.get(peer)
  if (!mine) return
  mine.delete(p)
  if (mine.size === 0) owed.delete(peer)
}

/**
 * The owed forwards of one folder (`owed.jsonl` beside its peerfile). A version that a peer
 * takes (from an update or a pull) is recorded as owed to each of the folder's other peers
 * BEFORE the peer confirms it to the sender: after a kill -9 at any later moment the sender
 * sees the version as delivered and never offers it again, so only this record makes the
 * peer pass it on. An entry is cleared when that peer confirms it (`paid`), and every entry
 * still here is passed on when `serve` starts. One entry per peer and path: the newest.
 *
 * Kept as a journal, one JSON line per entry owed or cleared, appended (and fsynced when it
 * owes) under the journal's lock: a change costs a line, not a rewrite of every entry (a busy
 * peer owes hundreds). Compacted (temp + fsync + rename) when its dead lines outnumber the
 * live entries. A torn last line (a crash mid-append) is ignored; a damaged line before the
 * end is E_STATE_CORRUPT naming the file, as every state file's damage is. An `owed.json` of
 * an older version is read once, written as the journal, and removed.
 */
export class OwedForwards {
  readonly #file: string
  readonly #legacy: LockedDb<LegacyOwedDoc>

  readonly #home: Home
  /** Journals as last read in this home, by file: parsed again only when the file changed on disk. */
  readonly #loaded: Map<string, Loaded>

  constructor(home: Home, folder: string) {
    this.#home = home
    this.#loaded = home.cache<Loaded>('owed')
    const dir = home.folderStateDir(folder)
    this.#file = path.join(dir, 'owed.jsonl')
    this.#legacy = new LockedDb<LegacyOwedDoc>(path.join(dir, 'owed.json'), () => ({version: 1, folder, owed: {}}))
  }

  get file(): string {
    return this.#file
  }

  /** Records `versions` as owed to each of `peers` (newest per path). Errors: E_DISK_FULL, E_IO, E_STATE_CORRUPT, E_LOCKED. */
  async owe(peers: readonly string[], versions: readonly FileVersion[]): Promise<OweReceipt> {
    const changes: Array<{peer: string; path: string; before: FileVersion | undefined; now: FileVersion}> = []
    if (peers.length === 0 || versions.length === 0) return {changes}
    await this.#change((owed) => {
      const lines: OwedLine[] = []
      for (const peer of peers) {
        for (const v of versions) {
          const before = owed.get(peer)?.get(v.path)
          if (before && (key(before) === key(v) || newer(before, v))) continue
          set(owed, peer, v)
          lines.push({o: peer, v})
          changes.push({peer, path: v.path, before, now: v})
        }
      }
      return lines
    })
    return {changes}
  }

  /**
   * After the apply that `receipt` prepared: takes back entries for versions it did not take
   * (they were held already, or lost), restoring what they replaced, and records versions
   * the apply made (conflict copies) as owed to `createdFor`. One append.
   */
  async settle(receipt: OweReceipt, applied: readonly FileVersion[], created: readonly FileVersion[] = [], createdFor: readonly string[] = []): Promise<void> {
    const took = new Set(applied.map(key))
    const undo = receipt.changes.filter((c) => !took.has(key(c.now)))
    if (undo.length === 0 && (created.length === 0 || createdFor.length === 0)) return
    await this.#change((owed) => {
      const lines: OwedLine[] = []
      // Newest change first, so an entry replaced twice comes back to what it was at the start.
      for (const c of [...undo].reverse()) {
        const held = owed.get(c.peer)?.get(c.path)
        if (!held || key(held) !== key(c.now)) continue
        if (c.before) {
          set(owed, c.peer, c.before)
          lines.push({o: c.peer, v: c.before})
        } else {
          clear(owed, c.peer, c.path)
          lines.push({c: c.peer, p: c.path})
        }
      }
      for (const peer of createdFor) {
        for (const v of created) {
          const held = owed.get(peer)?.get(v.path)
          if (held && !newer(v, held)) continue
          set(owed, peer, v)
          lines.push({o: peer, v})
        }
      }
      return lines
    })
  }

  /** `peer` confirmed these versions: their entries (and older ones they supersede) are cleared. */
  async paid(peer: string, versions: readonly FileVersion[]): Promise<void> {
    if (versions.length === 0) return
    if (!(await this.#load()).owed.has(peer)) return
    await this.#change((owed) => {
      const lines: OwedLine[] = []
      const mine = owed.get(peer)
      if (!mine) return lines
      for (const v of versions) {
        const had = mine.get(v.path)
        if (!had) continue
        const rel = compareVectors(v.vv, had.vv)
        if (key(had) === key(v) || rel === 'greater' || rel === 'equal') {
          clear(owed, peer, v.path)
          lines.push({c: peer, p: v.path})
        }
      }
      return lines
    })
  }

  /** Everything owed, by peer. */
  async all(): Promise<Map<string, FileVersion[]>> {
    const owed = await this.#read()
    return new Map([...owed].map(([peer, byPath]) => [peer, [...byPath.values()]]))
  }

  /**
   * What is owed to `peer` and still worth passing on: entries for the version this peer
   * holds now. Entries for a version it no longer holds (a newer one replaced it, or the apply
   * they were recorded for never finished) are dropped: the newer one is owed in its own right,
   * and the sender of an unfinished apply never got a confirmation and offers it again.
   */
  async due(peer: string, records: ReadonlyMap<string, FileRecord>): Promise<FileVersion[]> {
    const owed = (await this.all()).get(peer) ?? []
    const due: FileVersion[] = []
    const stale: FileVersion[] = []
    for (const v of owed) {
      const held = records.get(v.path)?.version
      if (held && key(held) === key(v)) due.push(v)
      else stale.push(v)
    }
    if (stale.length) await this.#forget(peer, stale)
    return due
  }

  /**
   * Sets a damaged journal (or a damaged `owed.json` not yet migrated) aside
   * (`<file>.damaged-<ms>`) and returns where it went; undefined when it reads. Run before the
   * state exchange at start, which compares whole structures and so finds everything a
   * damaged journal held: only there is losing it harmless. Elsewhere damage is E_STATE_CORRUPT.
   */
  async recover(): Promise<string | undefined> {
    try {
      await this.#read()
      return undefined
    } catch (err) {
      if (!isFpeerError(err, 'E_STATE_CORRUPT')) throw err
      const bad = typeof err.details?.path === 'string' ? err.details.path : this.#file
      const aside = `${bad}.damaged-${Date.now()}`
      await rename(bad, aside)
      this.#loaded.delete(this.#file)
      return aside
    }
  }

  /** Drops every entry of peers not in `keep` (peers removed from the folder). */
  async keepOnly(keep: readonly string[]): Promise<void> {
    if ([...(await this.#load()).owed.keys()].every((p) => keep.includes(p))) return
    await this.#change((owed) => {
      const lines: OwedLine[] = []
      for (const [peer, byPath] of [...owed]) {
        if (keep.includes(peer)) continue
        for (const p of [...byPath.keys()]) {
          clear(owed, peer, p)
          lines.push({c: peer, p})
        }
      }
      return lines
    })
  }

  async #forget(peer: string, versions: readonly FileVersion[]): Promise<void> {
    await this.#change((owed) => {
      const lines: OwedLine[] = []
      for (const v of versions) {
        const held = owed.get(peer)?.get(v.path)
        if (held && key(held) === key(v)) {
          clear(owed, peer, v.path)
          lines.push({c: peer, p: v.path})
        }
      }
      return lines
    })
  }

  /** The entries now (a copy the caller may keep). No lock: appends are whole lines, and a torn last one is skipped. */
  async #read(): Promise<Owed> {
    const l = await this.#load()
    return new Map([...l.owed].map(([peer, byPath]) => [peer, new Map(byPath)]))
  }

  /**
   * One change under the journal's lock: `fn` changes the entries and returns the lines that
   * say so; they are appended (fsynced when they owe something), then the journal is compacted
   * when its dead lines outnumber the live entries.
   */
  #change(fn: (owed: Owed) => OwedLine[]): Promise<void> {
    // One after another within the process: a push to five peers settles five entries at once, and the lock file alone would make them poll for it.
    return this.#home.serial(`owed\0${this.#file}`, async () => {
      await mkdirFor(this.#file)
      await lockState(this.#file, `${this.#file}.lock`, `${this.#file} is locked by another fpeer process`, async () => {
        const l = await this.#load()
        const lines = fn(l.owed)
        if (lines.length === 0) return
        try {
          if (l.lines + lines.length - live(l.owed) > Math.max(live(l.owed), MIN_DEAD_LINES)) await this.#compact(l)
          else await this.#append(l, lines)
        } catch (err) {
          // What this process holds no longer matches the disk: read it again next time.
          this.#loaded.delete(this.#file)
          throw err
        }
      })
    })
  }

  async #append(l: Loaded, lines: readonly OwedLine[]): Promise<void> {
    const text = (l.torn ? '\n' : '') + lines.map((x) => JSON.stringify(x)).join('\n') + '\n'
    const durable = lines.some((x) => 'o' in x)
    let fh
    try {
      fh = await open(this.#file, 'a', 0o600)
      await fh.write(text)
      // An owed entry must outlive a kill -9 right after the confirmation it precedes; a lost clear only repeats an offer.
      if (durable) await fh.sync()
      const st = await fh.stat({bigint: true})
      await fh.close()
      fh = undefined
      l.stamp = stampOf(st)
      l.lines += lines.length
      l.bytes += Buffer.byteLength(text)
      l.torn = false
    } catch (err) {
      await fh?.close().catch(() => {})
      // A failed append (disk full) is cut back, so no half line is left for the next one to run into.
      await truncate(this.#file, l.bytes).catch(() => {})
      throw fromSystemError(err, `writing ${this.#file}`, {path: this.#file})
    }
  }

  async #compact(l: Loaded): Promise<void> {
    const lines: string[] = []
    for (const [peer, byPath] of l.owed) for (const v of byPath.values()) lines.push(JSON.stringify({o: peer, v}))
    const text = lines.length ? lines.join('\n') + '\n' : ''
    await writeAtomic(this.#file, text, 0o600)
    const st = await stat(this.#file, {bigint: true})
    l.stamp = stampOf(st)
    l.lines = lines.length
    l.bytes = Buffer.byteLength(text)
    l.torn = false
  }

  /** The journal's entries, parsed again only when the file changed since this process last saw it; migrates an `owed.json` first. */
  async #load(): Promise<Loaded> {
    let st
    try {
      st = await stat(this.#file, {bigint: true})
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, `reading ${this.#file}`, {path: this.#file})
      this.#loaded.delete(this.#file)
      return this.#migrate()
    }
    const hit = this.#loaded.get(this.#file)
    if (hit && hit.stamp === stampOf(st)) return hit
    let text: string
    try {
      text = await readFile(this.#file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.#migrate()
      throw fromSystemError(err, `reading ${this.#file}`, {path: this.#file})
    }
    const l = parseJournal(this.#file, text)
    l.stamp = stampOf(st)
    // Read between a write and its stat: the next look parses again, which is only slower.
    this.#loaded.set(this.#file, l)
    return l
  }

  /**
   * No journal yet: the entries of an older version's `owed.json` (E_STATE_CORRUPT when it is
   * damaged), or none. The journal is written from them (atomically) before the old document
   * is removed, so a crash in between only repeats the migration.
   */
  async #migrate(): Promise<Loaded> {
    const empty: Loaded = {stamp: '', owed: new Map(), lines: 0, torn: false, bytes: 0}
    if (!(await this.#legacy.exists())) return empty
    const doc = await this.#legacy.read()
    for (const [peer, byPath] of Object.entries(doc.owed ?? {}))
      for (const v of Object.values(byPath ?? {})) if (v && typeof v.path === 'string') set(empty.owed, peer, v)
    await mkdirFor(this.#file)
    await this.#compact(empty)
    await unlink(this.#legacy.file).catch(() => {})
    await unlink(`${this.#legacy.file}.bak`).catch(() => {})
    this.#loaded.set(this.#file, empty)
    return empty
  }
}

/** A file's identity and times: unchanged, its content is what this process last read or wrote. */
function stampOf(st: {dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint}): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
}

async function mkdirFor(file: string): Promise<void> {
  await mkdir(path.dirname(file), {recursive: true, mode: 0o700}).catch((err: unknown) => {
    throw fromSystemError(err, `creating ${path.dirname(file)}`, {path: path.dirname(file)})
  })
}

/**
 * The entries a journal's text holds. A last line without its newline that does not parse is
 * torn (a crash mid-append) and skipped; any other line that does not parse, or is not an
 * owed or cleared entry, is damage: E_STATE_CORRUPT naming the file and line. Pure.
 */
export function parseJournal(file: string, text: string): Loaded {
  const owed: Owed = new Map()
  const rows = text.split('\n')
  const ended = text.endsWith('\n')
  if (ended) rows.pop()
  let lines = 0
  let torn = false
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] ?? ''
    if (row === '') continue
    let x: unknown
    try {
      x = JSON.parse(row)
    } catch {
      x = undefined
    }
    const line = validLine(x)
    if (!line) {
      if (i === rows.length - 1 && !ended) {
        torn = true
        continue
      }
      throw new FpeerError('E_STATE_CORRUPT', `${file} line ${i + 1} is damaged`, {
        details: {path: file, line: i + 1},
        hint: `move it away (\`mv ${file} ${file}.damaged\`) and restart \`fpeer serve\`: the state exchange at start offers every peer what it lacks`,
      })
    }
    lines++
    if ('o' in line) set(owed, line.o, line.v)
    else clear(owed, line.c, line.p)
  }
  return {stamp: '', owed, lines, torn, bytes: Buffer.byteLength(text)}
}

function validLine(x: unknown): OwedLine | undefined {
  if (typeof x !== 'object' || x === null) return undefined
  const o = x as Record<string, unknown>
  if (typeof o.o === 'string' && typeof o.v === 'object' && o.v !== null && typeof (o.v as FileVersion).path === 'string')
    return {o: o.o, v: o.v as FileVersion}
  if (typeof o.c === 'string' && typeof o.p === 'string') return {c: o.c, p: o.p}
  return undefined
}

/**
 * Applies incoming versions with their forwards made durable: owed to `others` before the
 * apply starts (a kill -9 between the apply's record and the confirmation cannot lose them),
 * settled to what the apply took right after it, before the caller confirms to the sender.
 * Conflict copies the apply made are owed to `all` peers.
 */
export async function applyOwing(
  owed: OwedForwards | undefined,
  others: readonly string[],
  all: readonly string[],
  versions: readonly FileVersion[],
  held: () => Promise<ReadonlyMap<string, FileRecord>>,
  apply: () => Promise<ApplyResult>,
): Promise<ApplyResult> {
  if (!owed || (others.length === 0 && all.length === 0)) return apply()
  // Only what the apply may take: a catch-up offers the peer's whole structure, most of it held already.
  const records = await held()
  const candidates = versions.filter((v) => decide(records.get(v.path)?.version, v).action !== 'skip')
  const receipt = await owed.owe(others, candidates)
  let result: ApplyResult
  try {
    result = await apply()
  } catch (err) {
    // Nothing taken: nothing owed (the sender offers it again).
    await owed.settle(receipt, []).catch(() => {})
    throw err
  }
  await owed.settle(receipt, result.applied, result.created, all)
  return result
}
