// Services the CLI commands call: each takes an options object and knows nothing of flags or output.
import {opendir, realpath, rm, stat} from 'node:fs/promises'
import path from 'node:path'
import {FpeerError, fromLocalError} from './errors.js'
import {type Identity, PeerId} from './identity.js'
import type {LandedStat} from './fs/lander.js'
import type {FolderConfig} from './store/config.js'
import type {Home} from './store/home.js'
import {type FileRecord, type PeerRecord, isLive} from './store/peerfile.js'
import {FolderSync} from './sync/folder.js'
import {type FileVersion, entryToVersion, isConflictPath} from './sync/version.js'
import type {FileEntry} from './wire/types.js'
import {type RequestOptions, type RequestResult, requestFolder} from './session/requester.js'
import {checkFolderName} from './wire/fields.js'

export interface FolderSummary {
  name: string
  path: string
  open: boolean
  allow: string[]
  files: number
  bytes: number
  peers: number
  /** What the scan left out: symlinks are never shared (docs/protocol.md §4.7). Only from `share`. */
  skipped?: {symlinks: string[]}
}

/** Scans a folder and records the scan in its peerfile (changes since the last scan become versions); returns counts. */
export async function indexFolder(
  home: Home,
  folder: FolderConfig,
  identity?: Identity,
): Promise<{files: number; bytes: number; skipped: {symlinks: string[]}}> {
  const sync = new FolderSync(home, folder, identity ?? (await home.identity()))
  const {records} = await sync.rescan()
  let files = 0
  let bytes = 0
  for (const r of records.values()) {
    if (!isLive(r)) continue
    files++
    bytes += r.size
  }
  return {files, bytes, skipped: {symlinks: sync.lastSkips.symlinks}}
}

export async function shareFolder(opts: {home: Home; dir: string; name?: string; open?: boolean; allow?: string[]}): Promise<FolderSummary> {
  let dir: string
  try {
    dir = await realpath(opts.dir)
  } catch (err) {
    throw fromLocalError(err, opts.dir, 'share')
  }
  if (!(await stat(dir)).isDirectory())
    throw new FpeerError('E_NOT_A_DIRECTORY', `not a directory: ${opts.dir}`, {details: {path: opts.dir}, hint: 'share a directory (its files go with it)'})
  const name = checkFolderName(opts.name ?? path.basename(dir))
  // The identity first: a home with folders and no identity is a damaged one (store/home.ts).
  const identity = await opts.home.identity()
  const f = await opts.home.config.share({name, path: dir, ...(opts.open === undefined ? {} : {open: opts.open}), ...(opts.allow ? {allow: opts.allow} : {})})
  const counts = await indexFolder(opts.home, f, identity)
  return {...f, ...counts, peers: (await opts.home.peerfile(name).peers()).length}
}

export async function allowPeer(opts: {home: Home; folder: string; id: string}): Promise<FolderConfig> {
  return opts.home.config.allow(opts.folder, opts.id)
}

export async function disallowPeer(opts: {home: Home; folder: string; id: string}): Promise<FolderConfig & {stillPeer: boolean}> {
  const f = await opts.home.config.disallow(opts.folder, opts.id)
  const id = PeerId.parse(opts.id).toString()
  // Revoking the allowance does not unconfirm a peer that already joined: that is `forget`.
  const stillPeer = (await opts.home.peerfile(opts.folder).peers()).some((p) => p.id === id)
  return {...f, stillPeer}
}

/**
 * `fpeer unshare`: the folder is no longer shared (a running serve drops it within a
 * second); its files stay. Its state (peerlist, file structure) goes too unless `keepState`,
 * so sharing the directory again starts afresh.
 */
export async function unshareFolder(opts: {home: Home; folder: string; keepState?: boolean}): Promise<FolderConfig & {stateRemoved: boolean}> {
  const f = await opts.home.config.unshare(opts.folder)
  if (!opts.keepState) {
    await rm(opts.home.folderStateDir(opts.folder), {recursive: true, force: true})
    opts.home.forget(opts.folder)
  }
  return {...f, stateRemoved: !opts.keepState}
}

/**
 * `fpeer forget`: removes a peer from a folder's peerlist, so it gets no more updates from
 * here and its updates are refused; it may join again only if the folder is open or allows it.
 * `id` is a peer ID in any accepted spelling, or `plain:ADDRESS` for a seed-form peer.
 */
export async function forgetPeer(opts: {home: Home; folder: string; id: string}): Promise<{folder: string; id: string; peers: number}> {
  await opts.home.config.requireFolder(opts.folder)
  const id = opts.id.startsWith('plain:') ? opts.id : PeerId.parse(opts.id).toString()
  const pf = opts.home.peerfile(opts.folder)
  if (!(await pf.removePeer(id))) throw new FpeerError('E_NOT_FOUND', `${id} is not a peer of ${opts.folder}`, {hint: `see \`fpeer peers ${opts.folder}\``})
  return {folder: opts.folder, id, peers: (await pf.peers()).length}
}

export async function folderSummaries(home: Home): Promise<FolderSummary[]> {
  const out: FolderSummary[] = []
  for (const f of await home.config.folders()) {
    const pf = home.peerfile(f.name)
    let files = 0
    let bytes = 0
    for (const r of (await pf.files()).values()) {
      if (!isLive(r)) continue
      files++
      bytes += r.size
    }
    out.push({...f, files, bytes, peers: (await pf.peers()).length})
  }
  return out
}

export async function folderPeers(home: Home, folder: string): Promise<PeerRecord[]> {
  await home.config.requireFolder(folder)
  return home.peerfile(folder).peers()
}

export async function folderFiles(home: Home, folder: string) {
  await home.config.requireFolder(folder)
  // One array, built in one pass and sorted in place: a listing of 100,000 files is held once beside the records.
  const out: Array<Omit<FileRecord, 'ino' | 'version' | 'racy'> & {version?: {lamport: number; origin: string}}> = []
  // A folder's versions come from a few peers: each origin's display form is made once, not per file.
  const origins = new Map<string, string>()
  const originOf = (compact: string) => {
    let shown = origins.get(compact)
    if (shown === undefined) origins.set(compact, (shown = PeerId.parse(compact).toString()))
    return shown
  }
  for (const r of (await home.peerfile(folder).files({remember: false})).values()) {
    if (!isLive(r)) continue
    const {ino: _ino, racy: _racy, version, ...f} = r
    out.push({...f, ...(version ? {version: {lamport: version.lamport, origin: originOf(version.origin)}} : {})})
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : 1))
}

/**
 * `fpeer request`: runs the requester's handshake, then records the result (seed step 17):
 * the folder becomes shared here, with the host in its peerlist.
 */
export async function requestAndRecord(home: Home, opts: Omit<RequestOptions, 'identity'> & {identity?: Identity}): Promise<RequestResult> {
  checkFolderName(opts.folder)
  const config = home.config
  const existing = await config.folder(opts.folder)
  const into = path.resolve(opts.into)
  if (existing && existing.path !== (await realpath(into).catch(() => into))) {
    throw new FpeerError('E_USAGE', `${opts.folder} is already shared here from ${existing.path}`, {hint: `use --into ${existing.path}`})
  }
  const intoReal = await realpath(into).catch(() => into)
  const twin = (await config.folders()).find((f) => f.name !== opts.folder && f.path === intoReal)
  if (twin) throw new FpeerError('E_USAGE', `${intoReal} is already shared here as ${twin.name}`, {hint: 'pick another --into'})
  const identity = opts.identity ?? (await home.identity())
  const heldBefore = await holdsAnything(into)
  // A re-request of a folder held here that fails midway replaced some files: their records
  // take the host's versions, so the folder and its records agree (and no rescan takes them
  // for this peer's own edits).
  // Each file landed here, as it was just before its rename: its record keeps that, not a later look at the path.
  const landedStats = new WeakMap<FileEntry, LandedStat>()
  const onLanded = (f: FileEntry, st: LandedStat) => void landedStats.set(f, st)
  const adopted = (entry: FileEntry) => ({entry, ...versionField(entry), ...(landedStats.has(entry) ? {landed: landedStats.get(entry)} : {})})
  const onPartial = existing
    ? async (landed: FileEntry[]) => {
        if (landed.length) await new FolderSync(home, existing, identity).adopt(landed.map(adopted))
      }
    : undefined
  const records = existing ? await new FolderSync(home, existing, identity).records() : undefined
  const recorded = records ? (p: string) => records.get(p)?.sha256 : undefined
  const result = await requestFolder({...opts, identity, onLanded, ...(onPartial ? {onPartial} : {}), ...(recorded ? {recorded} : {})})
  // A dry run records nothing: no share, no peer, no structure.
  if (opts.dryRun) return result
  const folder = await config.share({name: opts.folder, path: result.into})
  // Seed step 17, and the host's versions kept, so later updates compare against them.
  // Not fetched here (ignored, or a name the protocol cannot carry): not recorded as held either.
  const ignored = new Set([...result.ignored, ...result.unsupported])
  await new FolderSync(home, folder, identity).adopt(result.files.filter((e) => !ignored.has(e.path)).map(adopted))
  await home.peerfile(opts.folder).addPeer({
    id: PeerId.parse(result.host.id).toString(),
    address: result.host.address,
    controlPort: result.host.port,
    protocols: [result.protocol],
    role: 'host',
    confirmedAt: result.confirmedAt,
  })
  // A folder this request made (or found empty) holds only what it landed, each file recorded
  // above with its stat: a rescan (a walk and an lstat per file) would add nothing. Anything
  // written beside fpeer meanwhile is recorded by the next rescan (serve, sync), as any local edit.
  if (heldBefore) await indexFolder(home, folder, identity)
  return result
}

/** Does `dir` exist with anything in it? Reads one entry at most. */
async function holdsAnything(dir: string): Promise<boolean> {
  let d
  try {
    d = await opendir(dir)
  } catch (err) {
    // Missing: the request makes it. Anything else (not a directory, unreadable): the request decides; the rescan stays.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT'
  }
  try {
    return (await d.read()) !== null
  } finally {
    await d.close().catch(() => {})
  }
}

function versionField(entry: FileEntry): {version?: FileVersion} {
  const v = entryToVersion(entry)
  return v ? {version: v} : {}
}

/** Conflict copies in a folder: the losers of concurrent edits, kept beside the winners. */
export async function folderConflicts(home: Home, folder: string): Promise<Array<{path: string; of: string; size: number; sha256: string}>> {
  const files = await folderFiles(home, folder)
  return files
    .filter((f) => isConflictPath(f.path))
    .map((f) => ({path: f.path, of: f.path.replace(/\.sync-conflict-[A-Z2-7]{7}-[0-9a-f]{8}/, ''), size: f.size, sha256: f.sha256}))
}
