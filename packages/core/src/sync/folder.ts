// One shared folder's synchronisation state: local changes become signed versions; incoming versions are applied.
import {randomBytes} from 'node:crypto'
import {type Stats, closeSync, createReadStream, createWriteStream, mkdirSync} from 'node:fs'
import {realpath, rm} from 'node:fs/promises'
import path from 'node:path'
import {pipeline} from 'node:stream/promises'
import {FpeerError, isFpeerError} from '../errors.js'
import type {Identity} from '../identity.js'
import {FolderDirs, setLandedMode} from '../fs/folder-dirs.js'
import {PART_PREFIX, checkRelativePath} from '../fs/safe-path.js'
import {IGNORE_FILE, IgnoreRulesCache} from '../fs/ignore-rules.js'
import {type IndexedFile, type ScanSkips, indexed, isEmptyLeaf, scanFolder, stampVouches} from '../fs/scan.js'
import {type SteadyHash, hashSteady} from '../fs/scan-hash.js'
import type {LandedStat} from '../fs/lander.js'
import type {FolderConfig} from '../store/config.js'
import type {Home} from '../store/home.js'
import {type FileRecord, type Peerfile, isLive, withVersion} from '../store/peerfile.js'
import type {Logger} from '../transport.js'
import type {FileEntry} from '../wire/types.js'
import {TimeSlice} from './time-slice.js'
import {type FileVersion, conflictPath, decide, signVersion, verifyVersion} from './version.js'

/** What applying a batch of incoming versions did. */
export interface ApplyResult {
  /** Versions now held here that were not before: pass these on to the other peers. */
  applied: FileVersion[]
  /** Versions this peer created meanwhile (conflict copies, local edits found on the way): push these too. */
  created: FileVersion[]
  /** Paths whose content came over the network. */
  fetched: string[]
  /** Paths whose content was found locally (a rename, an identical file). */
  copied: string[]
  /** Conflict copies made. */
  conflicts: string[]
  /**
   * Versions an earlier apply landed but was cut short before recording (its fetch failed, a
   * kill -9), recorded now as their origins' versions: pass these on too. The failed apply owed
   * them to no peer, and its sender's retry finds them held, so nothing else would.
   */
  recovered: FileVersion[]
}

/** Fetches the content of incoming versions from the peer that offered them, landing each `entry.path` under `stagingRoot`. */
export type ContentFetcher = (items: Array<{remotePath: string; entry: FileEntry}>, stagingRoot: string) => Promise<void>

export class FolderSync {
  readonly folder: FolderConfig
  readonly peerfile: Peerfile
  readonly #identity: Identity
  readonly #log: Logger | undefined
  readonly #home: Home
  /** The folder's .fpeerignore, kept while unchanged: its matcher remembers answers across scans. */
  readonly #rules = new IgnoreRulesCache()
  /** Symlinks already reported, so each is warned about once per process. */
  readonly #warnedLinks = new Set<string>()
  /**
   * Versions recovered from an interrupted apply's intent and not yet handed to a caller to pass
   * on. An apply recovers before its own work: when that work then fails (a fetch of another
   * file of the update), its result never reaches the caller, and what it recovered, already
   * recorded, would be forwarded by nobody. They wait here for the next result or `takeRecovered`.
   */
  #recovered: FileVersion[] = []
  /** What the last rescan left out (symlinks), for `fpeer share`'s summary. */
  lastSkips: ScanSkips = {symlinks: [], emptyDirs: []}
  /** Rescans run (walks of the whole folder): `current()` reuses the last one when it can. */
  scans = 0
  /** The watcher's count of the folder's events (FolderWatcher.changes), given by the folder's runner; undefined: not watched whole. */
  watched: () => number | undefined = () => undefined
  /** The watcher's event count before the last rescan began, and the journal as that rescan left it. */
  #scanned: {changes: number; journal: string | undefined} | undefined
  /**
   * The paths the watcher saw change since it was last asked (FolderWatcher.takeDirty), given
   * by the folder's runner; undefined: not known, the next rescan walks the whole folder.
   */
  dirty: (now?: number) => string[] | undefined = () => undefined
  /** Paths the watcher named that the last `dirty(now)` held back (still being written); given by the folder's runner. */
  held: () => number = () => 0
  /**
   * The journal's stamp when this process last knew its records and the disk agreed on every
   * path the watcher has not named since: at the end of a rescan, and after this process's own
   * applies, which record what they land. A partial rescan starts only from there; any other
   * writer of the journal (another fpeer process) leaves a stamp that is not this one.
   */
  #base: string | undefined
  /** Partial rescans run (of the paths the watcher named, not the whole folder). */
  partialScans = 0

  constructor(home: Home, folder: FolderConfig, identity: Identity, log?: Logger) {
    this.folder = folder
    this.peerfile = home.peerfile(folder.name)
    this.#identity = identity
    this.#log = log
    this.#home = home
  }

  /**
   * Runs one of this process's own writes of the folder and its journal (an apply, an adopt),
   * which record every file they land as landed: records and disk still agree wherever the
   * watcher has not named a path, so the next rescan may still look at the named ones only,
   * unless someone else wrote the journal before (the stamp moved) or the write failed.
   */
  async #keepingBase<T>(fn: () => Promise<T>): Promise<T> {
    const kept = this.#base !== undefined && this.#base === (await this.peerfile.stamp())
    this.#base = undefined
    const out = await fn()
    if (kept) this.#base = await this.peerfile.stamp()
    return out
  }

  /** The folder's apply queue: the home orders this process's changes to it; the peerfile's lock file orders processes. */
  #run<T>(fn: () => Promise<T>): Promise<T> {
    return this.#home.serial(`apply\0${this.folder.name}`, () => this.peerfile.locked(fn))
  }

  /** The file structure: live files and tombstones, with versions. */
  records(): Promise<Map<string, FileRecord>> {
    return this.peerfile.files()
  }

  /** The records of `paths` only (a path without one is absent), without copying the whole structure. */
  recordsOf(paths: Iterable<string>): Promise<Map<string, FileRecord>> {
    return this.peerfile.recordsOf(paths)
  }

  /**
   * The structure as rescan() would give it, without walking the folder when nothing can
   * have changed since the last rescan: the watcher (`watched`) has seen no event since
   * before that rescan began, and the journal is as it left it (no apply, no other process
   * wrote it). Anything else (not watched, a watcher lost, an event, a journal written)
   * walks the folder again, which re-hashes every file whose size, mtime or inode moved. A
   * change whose event has not arrived yet (events lag the disk by microseconds) is missed
   * as a rescan misses a change right after its walk; either way the requester's hash check
   * refuses content that is not what was offered.
   */
  async current(): Promise<{versions: FileVersion[]; records: Map<string, FileRecord>; recovered: FileVersion[]}> {
    const changes = this.watched()
    const last = this.#scanned
    if (changes !== undefined && last?.changes === changes && last.journal !== undefined && last.journal === (await this.peerfile.stamp())) {
      return {versions: [], records: await this.peerfile.files(), recovered: this.takeRecovered()}
    }
    return this.rescan()
  }

  /**
   * Rescans the folder. The first scan of a folder records its files as the original
   * content (no versions); after that every change (new, changed, deleted file) becomes
   * a version signed by this peer. Returns the new versions, to be pushed to the peers, and
   * those an interrupted apply had landed (`recovered`, ApplyResult's), to be passed on too.
   * `settle` (the runner's own rescans): a path the watcher saw written a moment ago is left
   * for a later rescan, so a file is not read while it is still being written.
   */
  rescan(options: {settle?: boolean} = {}): Promise<{versions: FileVersion[]; records: Map<string, FileRecord>; recovered: FileVersion[]}> {
    return this.#run(async () => {
      this.scans++
      const began = performance.now()
      // Read before the walk: an event during it makes the next current() walk again, and names its path for that one.
      const changes = this.watched()
      const dirty = this.dirty(options.settle ? performance.now() : undefined)
      // A path held back is not looked at now: current() must not take this listing as the folder's.
      const complete = this.held() === 0
      const base = this.#base
      this.#scanned = undefined
      // Cleared until this rescan has recorded what it found: one that fails leaves the next to walk everything.
      this.#base = undefined
      const all = await this.peerfile.files()
      // An apply cut short landed files it never recorded: they are its versions, not ours.
      const intents = await this.peerfile.intents()
      if (intents.length) await this.#withDirs((_root, dirs) => this.#recoverIntents(dirs, all, intents))
      const initial = !(await this.peerfile.initialized())
      // A damaged journal lost some records: a file it does not know is recorded as found
      // (unversioned, like a first scan), not as this peer's new version, and the peers'
      // versions are taken at the next catch-up.
      const damaged = this.peerfile.damaged
      const skips: ScanSkips = {symlinks: [], emptyDirs: []}
      const rules = this.#rules.rules(this.folder.path, 0)
      // Only the paths the watcher named, when everything else is known to be as recorded.
      const from =
        dirty && base !== undefined && !initial && !damaged && intents.length === 0 && !dirty.includes(IGNORE_FILE) && base === (await this.peerfile.stamp())
          ? outermost(dirty)
          : undefined
      const scan = await scanFolder(this.folder.path, liveOf(all), 8, skips, rules, undefined, from)
      // A file ignored since it was recorded leaves the structure without a deletion: peers keep theirs.
      // (The rules are as the last rescan read them when only some paths are looked at: the ignore file did not change.)
      const dropped = from ? [] : rules.empty ? [IGNORE_FILE].filter((p) => all.has(p)) : [...all.keys()].filter((p) => rules.ignores(p))
      for (const p of dropped) all.delete(p)
      const {versions, changed} = this.#diff(all, scan, initial, damaged, from && underAny(from))
      if (from) {
        this.partialScans++
        this.#mergeSkips(skips, from, rules)
      }
      if (damaged) {
        this.#log?.warn('the folder journal was damaged: rebuilt from the disk; files it did not know are taken as found, not as new versions', {
          folder: this.folder.name,
        })
        await this.peerfile.compact(all)
      } else {
        await this.peerfile.drop(dropped, all)
        await this.peerfile.put(changed, all)
      }
      for (const link of skips.symlinks) {
        if (this.#warnedLinks.has(link)) continue
        this.#warnedLinks.add(link)
        this.#log?.warn('symlink not shared', {folder: this.folder.name, path: link})
      }
      this.lastSkips = skips
      if (initial) await this.peerfile.touch()
      // The structure as now recorded (tombstones included): what a re-read of the journal would give.
      const journal = await this.peerfile.stamp()
      if (changes !== undefined && complete) this.#scanned = {changes, journal}
      this.#base = journal
      this.#log?.debug('rescanned', {
        folder: this.folder.name,
        looked: from ? from.length : 'all',
        files: scan.length,
        versions: versions.length,
        ms: Math.round(performance.now() - began),
      })
      return {versions, records: all, recovered: this.takeRecovered()}
    })
  }

  /**
   * Completes a partial rescan's skips (found under `from` only) into the whole folder's: what
   * the last rescan reported elsewhere is kept; at and under `from`, and on the way to it, what
   * was found now. A path that went away may leave its directory an empty leaf.
   */
  #mergeSkips(skips: ScanSkips, from: string[], rules: ReturnType<IgnoreRulesCache['rules']>): void {
    const under = underAny(from)
    const before = this.lastSkips
    // A directory on the way to a path that is there holds something now; one under it was walked again.
    const onTheWay = new Set(from.flatMap((p) => ancestorsOf(p)))
    const empty = new Set((before.emptyDirs ?? []).filter((d) => !under(d) && !onTheWay.has(d)))
    for (const d of skips.emptyDirs ?? []) empty.add(d)
    for (const p of from) {
      const parent = path.posix.dirname(p)
      if (parent !== '.' && !empty.has(parent) && !under(parent) && isEmptyLeaf(this.folder.path, parent, rules)) {
        // Its last entry went: a leaf now; its own parent holds it, so is not one.
        empty.add(parent)
      }
    }
    skips.emptyDirs = [...empty].sort()
    skips.symlinks = before.symlinks.filter((s) => !under(s)).concat(skips.symlinks)
  }

  /** Recovered versions no result has carried yet (an apply that failed after recovering): the caller passes them on. */
  takeRecovered(): FileVersion[] {
    const r = this.#recovered
    this.#recovered = []
    return r
  }

  /**
   * What a rescan would turn into versions now (`fpeer push --dry-run`), without recording
   * anything: the structure is read, the folder scanned, and the result thrown away.
   */
  async preview(): Promise<Array<{path: string; deleted: boolean; size: number}>> {
    const all = await this.peerfile.files()
    if (!(await this.peerfile.initialized())) return []
    const rules = this.#rules.rules(this.folder.path, 0)
    const scan = await scanFolder(this.folder.path, liveOf(all), 8, undefined, rules)
    for (const p of [...all.keys()]) if (rules.ignores(p)) all.delete(p)
    // What an interrupted apply landed is recorded as its versions by the next rescan, not pushed as ours.
    const intended = new Map((await this.peerfile.intents()).map((v) => [v.path, v]))
    const landed = (v: FileVersion) => intended.get(v.path)?.deleted === v.deleted && intended.get(v.path)?.sha256 === v.sha256
    return this.#diff(all, scan, false)
      .versions.filter((v) => !landed(v))
      .map((v) => ({path: v.path, deleted: v.deleted, size: v.size}))
  }

  /** Computes records for what changed between `all` and `scan`, updating `all` in place. */
  #diff(
    all: Map<string, FileRecord>,
    scan: IndexedFile[],
    initial: boolean,
    damaged = false,
    scope?: (path: string) => boolean,
  ): {versions: FileVersion[]; changed: FileRecord[]} {
    let clock = lamportOf(all)
    const versions: FileVersion[] = []
    const changed: FileRecord[] = []
    const me = this.#identity.id.compact
    // A live record the scan did not find was deleted. Counting tells whether there is one:
    // the set of 100,000 paths that finds it is made only then (a first share never needs it).
    // `scope`: the scan looked only there, so only a record there can have been deleted.
    let liveBefore = 0
    for (const r of all.values()) if (isLive(r) && (!scope || scope(r.path))) liveBefore++
    let found = 0
    for (const f of scan) {
      const prev = all.get(f.path)
      if (prev && isLive(prev)) found++
      // Same content: the record is brought up to date, the version kept. Unless that version names
      // another size than the content it hashes (signed from a size seen at one moment and a hash
      // read at another, before fpeer hashed both from one read): no peer could ever fetch it, so it
      // is replaced by a new one.
      if (prev && isLive(prev) && prev.sha256 === f.sha256 && (!prev.version || prev.version.size === f.size)) {
        if (prev.size !== f.size || prev.mtimeMs !== f.mtimeMs || prev.ino !== f.ino || prev.mode !== f.mode || prev.racy !== f.racy) {
          const r = withVersion(f, prev.version)
          all.set(f.path, r)
          changed.push(r)
        }
        continue
      }
      // The scan's own record when no version goes with it (a first share: 100,000 of them), not a copy.
      let r: FileRecord = f
      if (!initial && !(damaged && !prev)) {
        clock++
        const version = signVersion(
          this.folder.name,
          {path: f.path, deleted: false, sha256: f.sha256, size: f.size, mtimeMs: f.mtimeMs, lamport: clock, vv: {...prev?.version?.vv, [me]: clock}},
          this.#identity,
        )
        r = withVersion(f, version)
        versions.push(version)
      }
      all.set(f.path, r)
      changed.push(r)
    }
    const seen = found < liveBefore ? new Set(scan.map((f) => f.path)) : undefined
    // Setting a key already present while iterating visits no new entry.
    for (const [p, prev] of all) {
      if (!seen || seen.has(p) || !isLive(prev) || (scope && !scope(p))) continue
      clock++
      const v = signVersion(
        this.folder.name,
        {path: p, deleted: true, sha256: '', size: 0, mtimeMs: Date.now(), lamport: clock, vv: {...prev.version?.vv, [me]: clock}},
        this.#identity,
      )
      const r: FileRecord = {path: p, size: 0, mtimeMs: v.mtimeMs, sha256: '', version: v}
      all.set(p, r)
      changed.push(r)
      versions.push(v)
    }
    return {versions, changed}
  }

  /**
   * Records the outcome of joining this folder: the entries of the host's FilesToGet,
   * with their versions, as this peer's structure (the files were fetched and checked).
   */
  adopt(entries: Array<{entry: FileEntry; version?: FileVersion; landed?: LandedStat}>): Promise<void> {
    return this.#run(() =>
      this.#keepingBase(() =>
        this.#withDirs(async (_root, dirs) => {
          const all = await this.peerfile.files()
          const changed: FileRecord[] = []
          for (const {entry, version, landed} of entries) {
            if (version?.deleted) {
              const r: FileRecord = {path: entry.path, size: 0, mtimeMs: version.mtimeMs, sha256: '', version}
              all.set(entry.path, r)
              changed.push(r)
              continue
            }
            // Landed here: what the file was just before its rename (a later edit then differs from the
            // record, and the next scan takes it as a change). Otherwise (found in place, a large
            // file) what the path holds now.
            let st: LandedStat | undefined = landed
            if (!st) {
              const now = lstatInside(dirs, entry.path)
              if (!now?.isFile()) continue
              st = {size: now.size, mtimeMs: Math.trunc(now.mtimeMs), ino: now.ino}
            }
            const r: FileRecord = {
              path: entry.path,
              size: st.size,
              mtimeMs: st.mtimeMs,
              ino: st.ino,
              sha256: entry.sha256!,
              ...(version ? {version} : {}),
            }
            all.set(entry.path, r)
            changed.push(r)
          }
          await this.peerfile.put(changed, all)
          await this.peerfile.touch()
        }),
      ),
    )
  }

  /**
   * Applies incoming versions (already verified as signed by their origins, from a
   * confirmed peer). Decides each against ours, finds content locally where it can
   * (renames, identical files), fetches the rest with `fetch`, lands everything
   * atomically, keeps losers of concurrent edits as conflict copies, and records it all.
   */
  apply(incoming: FileVersion[], fetch: ContentFetcher): Promise<ApplyResult> {
    // Every disk operation below goes through `dirs`: parents are opened without following
    // a symlink, so a symlinked directory in the folder can neither be written through nor
    // have files deleted or read through it (docs/security.md, "Files on disk").
    return this.#run(() =>
      this.#keepingBase(() =>
        this.#withDirs(async (root, dirs) => {
          const all = await this.peerfile.files()
          // Before anything reads the disk against the records: a file an earlier apply landed
          // but never recorded must not look like a local edit to `#catchUpLocal` below.
          await this.#recoverIntents(dirs, all, await this.peerfile.intents())
          const result: ApplyResult = {applied: [], created: [], fetched: [], copied: [], conflicts: [], recovered: []}
          // Ignored here (.fpeerignore): never accepted, whatever a peer offers.
          const rules = this.#rules.rules(root, 0)
          incoming = incoming.filter((v) => {
            if (!rules.ignores(v.path)) return true
            this.#log?.info('ignored incoming file', {folder: this.folder.name, path: v.path})
            return false
          })
          // What we hold already, or something newer that knew of it, is skipped now: a catch-up
          // offers the peer's whole structure, and looking at each of its paths on disk below (under
          // the folder's lock, with every other pull and push waiting) made a restarted hub's
          // exchanges cost a system call per file of the folder per peer. Catching up a local edit
          // only adds a newer version of ours, so a version skipped here would be skipped after it too.
          incoming = incoming.filter((v) => decide(all.get(v.path)?.version, v).action !== 'skip')
          // A local edit not yet scanned must not be overwritten unseen: scan the paths first.
          await this.#catchUpLocal(
            dirs,
            all,
            incoming.map((v) => v.path),
            result,
          )
          let clock = lamportOf(all)
          const bySha = new Map<string, string>()
          for (const r of all.values()) if (isLive(r) && r.sha256) bySha.set(r.sha256, r.path)

          const toFetch: Array<{remotePath: string; entry: FileEntry}> = []
          const landed: Array<{path: string; version?: FileVersion}> = []
          const deletions: FileVersion[] = []
          const moves: Array<{from: string; to: string}> = []
          const copies: Array<{from: string; to: string}> = []
          // Every loop over the incoming versions below does synchronous disk work per item; it
          // yields every few ms so a big update does not stall the server's other connections.
          const slice = new TimeSlice()

          const unique = dedupe(incoming)
          // A peer that met the same conflict sends its conflict copy as a version of its own: that
          // version lands the copy, and making it here too would list its path twice (a 20-peer soak
          // refused such updates whole with E_MSG_BAD_FIELD until the next exchange).
          const incomingPaths = new Set(unique.map((v) => v.path))
          for (const v of unique) {
            await slice.tick()
            checkRelativePath(v.path)
            const local = all.get(v.path)
            const d = decide(local?.version, v)
            if (d.action === 'skip') continue
            if (local?.version === undefined && local && isLive(local) && !v.deleted && local.sha256 === v.sha256) {
              // The original content already here: adopt the statement, nothing moves.
              landed.push({path: v.path, version: v})
              result.applied.push(v)
              continue
            }
            if (d.action === 'keep-conflict') {
              if (v.deleted) continue
              const cp = conflictPath(v)
              if ((all.get(cp) && isLive(all.get(cp)!)) || incomingPaths.has(cp)) continue
              const have = bySha.get(v.sha256)
              if (have) copies.push({from: have, to: cp})
              else toFetch.push({remotePath: v.path, entry: {path: cp, sha256: v.sha256, size: v.size, mtimeMs: v.mtimeMs}})
              landed.push({path: cp})
              result.conflicts.push(cp)
              continue
            }
            if (d.action === 'take-conflict' && local && isLive(local)) {
              const cp = conflictPath({path: v.path, origin: local.version?.origin ?? this.#identity.id.compact, sha256: local.sha256})
              // Its version in this batch lands the same content (copied from here before the winner replaces it).
              if (!incomingPaths.has(cp)) {
                moves.push({from: v.path, to: cp})
                landed.push({path: cp})
                result.conflicts.push(cp)
              }
            }
            result.applied.push(v)
            clock = Math.max(clock, v.lamport)
            if (v.deleted) {
              deletions.push(v)
              continue
            }
            const have = bySha.get(v.sha256)
            if (have && have !== v.path) copies.push({from: have, to: v.path})
            else if (!(local && isLive(local) && local.sha256 === v.sha256))
              toFetch.push({remotePath: v.path, entry: {path: v.path, sha256: v.sha256, size: v.size, mtimeMs: v.mtimeMs}})
            landed.push({path: v.path, version: v})
          }

          // Conflict copies of our own versions first (before anything overwrites them), then local copies, then the network.
          // The loser keeps its content under its conflict name (a hard link, or a copy where links
          // are not possible); the winner then replaces the path by rename, so the path never vanishes.
          // Every place something will land must be reachable without a symlink before a byte moves.
          for (const l of landed) {
            await slice.tick()
            dirs.open(checkRelativePath(l.path).slice(0, -1), false)?.release()
          }
          // From the first rename on, a crash leaves landed files the journal does not know: the
          // intent says which versions they are, so recovery records them as those (not as ours).
          // Conflict copies need none: a rescan signs them as ours, as this apply would.
          const intended = [...landed.flatMap((l) => (l.version ? [l.version] : [])), ...deletions]
          const intending = intended.length > 0 && (copies.length > 0 || toFetch.length > 0 || deletions.length > 0)
          if (intending) await this.peerfile.intend(intended)
          for (const m of moves) await linkOrCopyInside(dirs, m.from, m.to)
          for (const c of copies) {
            await copyInside(dirs, c.from, c.to)
            result.copied.push(c.to)
          }
          if (toFetch.length > 0) {
            // Fetch everything into a staging folder first, so a failure (bad hash, dropped
            // peer) leaves the folder and its records exactly as they were. Its name is reserved
            // (never offered or accepted) and random, and mkdir makes it or fails: a user's own
            // `.fpeer` file or a planted link cannot be in its way.
            const stagingName = `${PART_PREFIX}staging-${randomBytes(8).toString('hex')}`
            const top = dirs.need([], false)
            try {
              mkdirSync(top.at(stagingName), 0o700)
            } finally {
              top.release()
            }
            const staging = path.join(root, stagingName)
            try {
              await fetch(toFetch, staging)
              const staged = new FolderDirs(staging)
              try {
                for (const f of toFetch) {
                  await slice.tick()
                  moveInside(staged, dirs, f.entry.path)
                }
              } finally {
                staged.close()
              }
            } finally {
              await rm(staging, {recursive: true, force: true})
            }
            for (const f of toFetch) result.fetched.push(f.entry.path)
          }
          for (const v of deletions) {
            await slice.tick()
            try {
              unlinkInside(dirs, v.path)
            } catch (err) {
              // A parent here is a symlink or a file: the path is not in this folder as far as
              // fpeer can see, so there is nothing of ours to delete. Recorded, never followed.
              if (!isFpeerError(err, 'E_PATH_UNSAFE')) throw err
              this.#log?.warn('deletion not applied: its path goes through a symlink or a file here', {folder: this.folder.name, path: v.path, code: err.code})
            }
          }

          // Record: deletions as tombstones, landed paths as scanned now; conflict copies become our own versions.
          const changed: FileRecord[] = []
          for (const v of deletions) {
            const r: FileRecord = {path: v.path, size: 0, mtimeMs: v.mtimeMs, sha256: '', version: v}
            all.set(v.path, r)
            changed.push(r)
          }
          for (const l of landed) {
            await slice.tick()
            const landedVersion = l.version
            let r: FileRecord
            if (landedVersion) {
              const st = lstatInside(dirs, l.path)
              if (!st?.isFile()) throw new FpeerError('E_IO', `${l.path} did not land`)
              r = {path: l.path, size: st.size, mtimeMs: Math.trunc(st.mtimeMs), ino: st.ino, sha256: landedVersion.sha256, version: landedVersion}
            } else {
              // A conflict copy: new here, so it is our change, signed by us like any other, from one read.
              const since = Date.now()
              const h = await hashSteadyInside(dirs, l.path)
              if (!h) throw new FpeerError('E_IO', `${l.path} did not land`)
              clock++
              const version = signVersion(
                this.folder.name,
                {
                  path: l.path,
                  deleted: false,
                  sha256: h.sha256,
                  size: h.size,
                  mtimeMs: h.mtimeMs,
                  lamport: clock,
                  vv: {...all.get(l.path)?.version?.vv, [this.#identity.id.compact]: clock},
                },
                this.#identity,
              )
              result.created.push(version)
              r = withVersion(indexed(l.path, h, since), version)
            }
            all.set(l.path, r)
            changed.push(r)
          }
          await this.peerfile.put(changed, all)
          if (intending) await this.peerfile.clearIntents()
          if (result.applied.length || result.conflicts.length) {
            this.#log?.info('applied update', {
              folder: this.folder.name,
              applied: result.applied.length,
              fetched: result.fetched.length,
              copied: result.copied.length,
              conflicts: result.conflicts.length,
            })
          }
          result.recovered = this.takeRecovered()
          return result
        }),
      ),
    )
  }

  /** Runs `fn` with the folder's directories (fs/folder-dirs.ts), closed afterwards. */
  async #withDirs<T>(fn: (root: string, dirs: FolderDirs) => Promise<T>): Promise<T> {
    const root = await realpath(this.folder.path)
    const dirs = new FolderDirs(root)
    try {
      return await fn(root, dirs)
    } finally {
      dirs.close()
    }
  }

  /**
   * Finishes recording an apply that was cut short (kill -9, or a fetch that failed after
   * local copies had landed): each intended version whose outcome is on disk (its content
   * under its path, or its path gone for a deletion) is recorded as THAT version, so no
   * rescan or local catch-up takes it for this peer's own new one. The others never landed
   * and are forgotten; so is the intent. Updates `all` in place; returns the versions recorded,
   * which the caller passes on to the peers (nothing else would: the failed apply owed them to none).
   */
  async #recoverIntents(dirs: FolderDirs, all: Map<string, FileRecord>, intents: FileVersion[]): Promise<FileVersion[]> {
    if (intents.length === 0) return []
    const changed: FileRecord[] = []
    for (const v of intents) {
      try {
        // The intent file is state like the journal, but nothing is taken from it unsigned.
        verifyVersion(this.folder.name, v)
        checkRelativePath(v.path)
      } catch {
        continue
      }
      const rec = all.get(v.path)
      if (decide(rec?.version, v).action === 'skip') continue
      const st = lstatInside(dirs, v.path)
      let r: FileRecord
      if (v.deleted) {
        if (st) continue // something is there: not this deletion's outcome
        r = {path: v.path, size: 0, mtimeMs: v.mtimeMs, sha256: '', version: v}
      } else {
        if (!st?.isFile()) continue
        if (rec && isLive(rec) && stampVouches(rec, st)) {
          if (rec.sha256 !== v.sha256) continue
          r = {path: v.path, size: st.size, mtimeMs: rec.mtimeMs, ino: st.ino, sha256: rec.sha256, version: v}
        } else {
          const since = Date.now()
          const h = await hashSteadyInside(dirs, v.path).catch(() => undefined)
          if (!h || h.sha256 !== v.sha256) continue
          r = withVersion(indexed(v.path, h, since), v)
        }
      }
      all.set(v.path, r)
      changed.push(r)
    }
    await this.peerfile.put(changed, all)
    await this.peerfile.clearIntents()
    if (changed.length) this.#log?.warn('recorded files an interrupted update had landed as its versions', {folder: this.folder.name, files: changed.length})
    const versions = changed.map((r) => r.version!)
    this.#recovered.push(...versions)
    return versions
  }

  /** Turns unscanned local edits of `paths` into versions before anything replaces them. */
  async #catchUpLocal(dirs: FolderDirs, all: Map<string, FileRecord>, paths: string[], result: ApplyResult): Promise<void> {
    const me = this.#identity.id.compact
    let clock = lamportOf(all)
    const changed: FileRecord[] = []
    const slice = new TimeSlice()
    for (const p of new Set(paths)) {
      await slice.tick()
      const rec = all.get(p)
      // Through a symlinked parent there is no file of this folder: never read one out there.
      const st = lstatInside(dirs, p)
      const onDisk = st?.isFile()
      if (rec && isLive(rec) && onDisk && stampVouches(rec, st!)) continue
      if ((!rec || !isLive(rec)) && !onDisk) continue
      if (rec && isLive(rec) && !onDisk) continue // deleted locally: the next rescan records it; nothing to protect
      if (!onDisk) continue
      // Size and hash of one read (the lstat above may predate a writer's last write: a version
      // signed from both would name a size its content does not have, and no peer could fetch it).
      const since = Date.now()
      const h = await hashSteadyInside(dirs, p)
      if (!h) {
        // Deleted or replaced since the lstat: the next rescan records what is there; nothing to protect now.
        if (!lstatInside(dirs, p)?.isFile()) continue
        throw new FpeerError('E_IO', `cannot read ${p}`)
      }
      if (rec && isLive(rec) && rec.sha256 === h.sha256 && (!rec.version || rec.version.size === h.size)) continue
      clock++
      const v = signVersion(
        this.folder.name,
        {path: p, deleted: false, sha256: h.sha256, size: h.size, mtimeMs: h.mtimeMs, lamport: clock, vv: {...rec?.version?.vv, [me]: clock}},
        this.#identity,
      )
      const r = withVersion(indexed(p, h, since), v)
      all.set(p, r)
      changed.push(r)
      result.created.push(v)
    }
    await this.peerfile.put(changed, all)
  }
}

/** The live records of a structure (a scan's known hashes): the map itself when it holds no tombstone. */
/** The paths of `paths` not under another of them, sorted. */
function outermost(paths: string[]): string[] {
  const set = new Set(paths)
  return paths.filter((p) => !ancestorsOf(p).some((a) => set.has(a))).sort()
}

/** Every directory above `p` (`a/b/c` → `a`, `a/b`). */
function ancestorsOf(p: string): string[] {
  const out: string[] = []
  for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) out.push(p.slice(0, i))
  return out
}

/** Whether a path is one of `roots` or under one. */
function underAny(roots: string[]): (p: string) => boolean {
  const set = new Set(roots)
  return (p) => set.has(p) || ancestorsOf(p).some((a) => set.has(a))
}

/** The live records of `all` (no tombstone), as scanFolder asks for them: its known hashes. */
function liveOf(all: Map<string, FileRecord>): Pick<Map<string, FileRecord>, 'get'> {
  // Looked up per path, not copied: a folder of 1,000,000 records with one tombstone made a
  // second map of them all at every rescan.
  return {
    get: (p) => {
      const r = all.get(p)
      return r && isLive(r) ? r : undefined
    },
  }
}

export function lamportOf(all: Map<string, FileRecord>): number {
  let max = 0
  for (const r of all.values()) if (r.version && r.version.lamport > max) max = r.version.lamport
  return max
}

/** The newest version per path, when a batch names a path twice. */
function dedupe(versions: FileVersion[]): FileVersion[] {
  const by = new Map<string, FileVersion>()
  for (const v of versions) {
    const old = by.get(v.path)
    if (!old || v.lamport > old.lamport || (v.lamport === old.lamport && v.origin > old.origin)) by.set(v.path, v)
  }
  // Files before deletions, so a rename's new name can be copied from the old one before it goes.
  return [...by.values()].sort((a, b) => Number(a.deleted) - Number(b.deleted))
}

/** Splits a checked path into its parent's segments and its name. */
function split(rel: string): {parent: string[]; name: string} {
  const parent = checkRelativePath(rel)
  return {name: parent.pop()!, parent}
}

/** What is at `rel` without following any symlink on the way (undefined: nothing, or a parent is not a real directory). */
function lstatInside(dirs: FolderDirs, rel: string): Stats | undefined {
  const {parent, name} = split(rel)
  let dir
  try {
    dir = dirs.open(parent, false)
  } catch (err) {
    if (isFpeerError(err, 'E_PATH_UNSAFE')) return undefined
    throw err
  }
  if (!dir) return undefined
  try {
    return dir.lstat(name)
  } finally {
    dir.release()
  }
}

/** hashSteady of the regular file at `rel`, opened without following links: a size and a hash of the same bytes. */
async function hashSteadyInside(dirs: FolderDirs, rel: string): Promise<SteadyHash | undefined> {
  const {parent, name} = split(rel)
  const dir = dirs.need(parent, false)
  try {
    return await hashSteady(() => dir.openFile(name))
  } finally {
    dir.release()
  }
}

/** Moves a staged file to `rel` in the folder, through both folders' descriptors. */
function moveInside(from: FolderDirs, to: FolderDirs, rel: string): void {
  const {parent, name} = split(rel)
  const src = from.need(parent, false)
  try {
    const dest = to.need(parent, true)
    try {
      src.renameTo(name, dest, name)
    } finally {
      dest.release()
    }
  } finally {
    src.release()
  }
}

/**
 * Keeps the file at `from` also as `to` (a conflict copy): a hard link under a fresh part
 * name renamed over `to`, or a copy where links are not possible. Nothing at `from`: nothing to keep.
 */
async function linkOrCopyInside(dirs: FolderDirs, from: string, to: string): Promise<void> {
  const f = split(from)
  const t = split(to)
  const src = dirs.open(f.parent, false)
  if (!src) return
  try {
    if (!src.lstat(f.name)?.isFile()) return
    const dest = dirs.need(t.parent, true)
    try {
      const part = `${PART_PREFIX}link-${randomBytes(8).toString('hex')}`
      try {
        src.linkTo(f.name, dest, part)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code === 'ENOENT') return
        if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'EMLINK' && code !== 'ENOTSUP') throw err
        await copyInside(dirs, from, to)
        return
      }
      try {
        dest.rename(part, t.name)
      } catch (err) {
        dest.unlink(part)
        throw err
      }
      // rename(2) between two links of one file does nothing and succeeds: when `to` already is
      // this file (a conflict copy kept twice), the part name would stay behind for good.
      if (dest.lstat(part)) dest.unlink(part)
    } finally {
      dest.release()
    }
  } finally {
    src.release()
  }
}

/** Copies the regular file at `from` to `to`: read by descriptor, written to an exclusive part file, renamed over `to`. */
async function copyInside(dirs: FolderDirs, from: string, to: string): Promise<void> {
  const f = split(from)
  const t = split(to)
  const src = dirs.need(f.parent, false)
  try {
    const {fd: inFd} = src.openFile(f.name)
    const dest = dirs.need(t.parent, true)
    try {
      const {fd: outFd, name: part} = dest.createExclusive(`${PART_PREFIX}copy-`)
      try {
        await pipeline(createReadStream('', {fd: inFd, autoClose: false}), createWriteStream('', {fd: outFd, autoClose: false}))
        setLandedMode(outFd)
      } catch (err) {
        closeSync(outFd)
        dest.unlink(part)
        throw err
      }
      closeSync(outFd)
      dest.rename(part, t.name)
    } finally {
      closeSync(inFd)
      dest.release()
    }
  } finally {
    src.release()
  }
}

/**
 * Deletes the file at `rel`: its parents are opened without following a symlink (one there
 * is E_PATH_UNSAFE), and unlink removes a symlink at the name itself, never its target.
 * Then removes the parents this left empty, the same way.
 */
function unlinkInside(dirs: FolderDirs, rel: string): void {
  const {parent, name} = split(rel)
  const dir = dirs.open(parent, false)
  if (!dir) return
  try {
    if (dir.lstat(name)?.isDirectory()) return // a directory here now: not the file the version deleted
    dir.unlink(name)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  } finally {
    dir.release()
  }
  for (let i = parent.length; i > 0; i--) {
    try {
      dirs.rmdir(parent.slice(0, i))
    } catch {
      return
    }
  }
}
