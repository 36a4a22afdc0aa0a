// Owed forwards: the versions this peer has taken but not yet passed on, per peer, kept in the folder's state so a crash cannot lose them.
import {rename} from 'node:fs/promises'
import path from 'node:path'
import {isFpeerError} from '../errors.js'
import type {Home} from '../store/home.js'
import {LockedDb} from '../store/locked-db.js'
import type {FileRecord} from '../store/peerfile.js'
import type {ApplyResult} from './folder.js'
import {type FileVersion, compareVectors, decide, newer} from './version.js'

interface OwedDoc {
  version: 1
  folder: string
  /** Peer ID → path → the newest version of that path owed to that peer. */
  owed: Record<string, Record<string, FileVersion>>
}

/** What one `owe` changed, so that `settle` can take back what the apply did not take after all. */
export interface OweReceipt {
  readonly changes: ReadonlyArray<{peer: string; path: string; before: FileVersion | undefined; now: FileVersion}>
}

/** A version's identity: its path, origin and lamport. */
function key(v: FileVersion): string {
  return `${v.path}\0${v.origin}:${v.lamport}`
}

/**
 * The owed forwards of one folder (`owed.json` beside its peerfile). A version that a peer
 * takes (from an update or a pull) is recorded as owed to each of the folder's other peers
 * BEFORE the peer confirms it to the sender: after a kill -9 at any later moment the sender
 * sees the version as delivered and never offers it again, so only this record makes the
 * peer pass it on. An entry is cleared when that peer confirms it (`paid`), and every entry
 * still here is passed on when `serve` starts. One entry per peer and path: the newest.
 * The document is small (it empties as peers confirm), written atomically under its lock.
 */
export class OwedForwards {
  readonly #db: LockedDb<OwedDoc>
  readonly #home: Home

  constructor(home: Home, folder: string) {
    this.#db = new LockedDb<OwedDoc>(path.join(home.folderStateDir(folder), 'owed.json'), () => ({version: 1, folder, owed: {}}))
    this.#home = home
  }

  get file(): string {
    return this.#db.file
  }

  /** Records `versions` as owed to each of `peers` (newest per path). Errors: E_DISK_FULL, E_IO, E_STATE_CORRUPT, E_LOCKED. */
  async owe(peers: readonly string[], versions: readonly FileVersion[]): Promise<OweReceipt> {
    const changes: Array<{peer: string; path: string; before: FileVersion | undefined; now: FileVersion}> = []
    if (peers.length === 0 || versions.length === 0) return {changes}
    await this.#update((doc) => {
      for (const peer of peers) {
        const mine = (doc.owed[peer] ??= {})
        for (const v of versions) {
          const before = mine[v.path]
          if (before && (key(before) === key(v) || newer(before, v))) continue
          mine[v.path] = v
          changes.push({peer, path: v.path, before, now: v})
        }
      }
    })
    return {changes}
  }

  /**
   * After the apply that `receipt` prepared: takes back entries for versions it did not take
   * (they were held already, or lost), restoring what they replaced, and records versions
   * the apply made (conflict copies) as owed to `createdFor`. One write.
   */
  async settle(receipt: OweReceipt, applied: readonly FileVersion[], created: readonly FileVersion[] = [], createdFor: readonly string[] = []): Promise<void> {
    const took = new Set(applied.map(key))
    const undo = receipt.changes.filter((c) => !took.has(key(c.now)))
    if (undo.length === 0 && (created.length === 0 || createdFor.length === 0)) return
    await this.#update((doc) => {
      // Newest change first, so an entry replaced twice comes back to what it was at the start.
      for (const c of [...undo].reverse()) {
        const mine = doc.owed[c.peer]
        const held = mine?.[c.path]
        if (!mine || !held || key(held) !== key(c.now)) continue
        if (c.before) mine[c.path] = c.before
        else delete mine[c.path]
      }
      for (const peer of createdFor) {
        const mine = (doc.owed[peer] ??= {})
        for (const v of created) {
          const held = mine[v.path]
          if (!held || newer(v, held)) mine[v.path] = v
        }
      }
      prune(doc)
    })
  }

  /** `peer` confirmed these versions: their entries (and older ones they supersede) are cleared. */
  async paid(peer: string, versions: readonly FileVersion[]): Promise<void> {
    if (versions.length === 0) return
    const doc = await this.#db.read()
    if (!doc.owed[peer]) return
    await this.#update((d) => {
      const mine = d.owed[peer]
      if (!mine) return
      for (const v of versions) {
        const had = mine[v.path]
        if (!had) continue
        const rel = compareVectors(v.vv, had.vv)
        if (key(had) === key(v) || rel === 'greater' || rel === 'equal') delete mine[v.path]
      }
      prune(d)
    })
  }

  /** Everything owed, by peer. */
  async all(): Promise<Map<string, FileVersion[]>> {
    const doc = await this.#db.read()
    return new Map(Object.entries(doc.owed ?? {}).map(([peer, byPath]) => [peer, Object.values(byPath)]))
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
   * Sets a damaged document aside (`owed.json.damaged-<ms>`) and returns where it went;
   * undefined when it reads. Run before the state exchange at start, which compares whole
   * structures and so finds everything a damaged document held: only there is losing it
   * harmless. Elsewhere a damaged document is E_STATE_CORRUPT like every state file.
   */
  async recover(): Promise<string | undefined> {
    try {
      await this.#db.read()
      return undefined
    } catch (err) {
      if (!isFpeerError(err, 'E_STATE_CORRUPT')) throw err
      const aside = `${this.#db.file}.damaged-${Date.now()}`
      await rename(this.#db.file, aside)
      return aside
    }
  }

  /** Drops every entry of peers not in `keep` (peers removed from the folder). */
  async keepOnly(keep: readonly string[]): Promise<void> {
    const doc = await this.#db.read()
    if (Object.keys(doc.owed ?? {}).every((p) => keep.includes(p))) return
    await this.#update((d) => {
      for (const p of Object.keys(d.owed)) if (!keep.includes(p)) delete d.owed[p]
    })
  }

  #update(fn: (doc: OwedDoc) => void): Promise<void> {
    // One after another within the process: a push to five peers settles five entries at once, and the lock file alone would make them poll for it.
    return this.#home.serial(`owed\0${this.#db.file}`, () => this.#db.update(fn))
  }

  async #forget(peer: string, versions: readonly FileVersion[]): Promise<void> {
    await this.#update((d) => {
      const mine = d.owed[peer]
      if (!mine) return
      for (const v of versions) {
        const held = mine[v.path]
        if (held && key(held) === key(v)) delete mine[v.path]
      }
      prune(d)
    })
  }
}

function prune(doc: OwedDoc): void {
  for (const [p, byPath] of Object.entries(doc.owed)) if (Object.keys(byPath).length === 0) delete doc.owed[p]
}

/**
 * Applies incoming versions with their forwards made durable: owed to `others` before the
 * apply starts (a kill -9 between the apply's record and the confirmation cannot lose them),
 * settled to what the apply took right after it, before the caller confirms to the sender.
 * Conflict copies the apply made are owed to `all` peers.
 */
export async function applyOwing(owed: OwedForwards | undefined, others: readonly string[], all: readonly string[], versions: readonly FileVersion[], held: () => Promise<ReadonlyMap<string, FileRecord>>, apply: () => Promise<ApplyResult>): Promise<ApplyResult> {
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
