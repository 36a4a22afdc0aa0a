// Services the CLI commands call: each takes an options object and knows nothing of flags or output.
import {realpath, stat} from 'node:fs/promises'
import path from 'node:path'
import {FpeerError} from './errors.js'
import {type Identity, PeerId} from './identity.js'
import {scanFolder} from './fs/scan.js'
import {ConfigStore, type FolderConfig} from './store/config.js'
import {loadIdentity} from './store/home.js'
import {Peerfile, type PeerRecord} from './store/peerfile.js'
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
}

/** Scans a folder and records the scan in its peerfile; returns file and byte counts. */
export async function indexFolder(home: string, folder: FolderConfig): Promise<{files: number; bytes: number}> {
  const pf = new Peerfile(home, folder.name)
  const previous = await pf.files()
  const scan = await scanFolder(folder.path, previous)
  await pf.record(previous, scan)
  return {files: scan.length, bytes: scan.reduce((n, f) => n + f.size, 0)}
}

export async function shareFolder(opts: {home: string; dir: string; name?: string; open?: boolean; allow?: string[]}): Promise<FolderSummary> {
  let dir: string
  try {
    dir = await realpath(opts.dir)
  } catch {
    throw new FpeerError('E_NOT_A_DIRECTORY', `no such directory: ${opts.dir}`)
  }
  if (!(await stat(dir)).isDirectory()) throw new FpeerError('E_NOT_A_DIRECTORY', `not a directory: ${opts.dir}`)
  const name = checkFolderName(opts.name ?? path.basename(dir))
  const config = new ConfigStore(opts.home)
  const f = await config.share({name, path: dir, ...(opts.open === undefined ? {} : {open: opts.open}), ...(opts.allow ? {allow: opts.allow} : {})})
  const counts = await indexFolder(opts.home, f)
  return {...f, ...counts, peers: (await new Peerfile(opts.home, name).peers()).length}
}

export async function allowPeer(opts: {home: string; folder: string; id: string}): Promise<FolderConfig> {
  return new ConfigStore(opts.home).allow(opts.folder, opts.id)
}

export async function folderSummaries(home: string): Promise<FolderSummary[]> {
  const out: FolderSummary[] = []
  for (const f of await new ConfigStore(home).folders()) {
    const pf = new Peerfile(home, f.name)
    const files = await pf.files()
    let bytes = 0
    for (const x of files.values()) bytes += x.size
    out.push({...f, files: files.size, bytes, peers: (await pf.peers()).length})
  }
  return out
}

export async function folderPeers(home: string, folder: string): Promise<PeerRecord[]> {
  await new ConfigStore(home).requireFolder(folder)
  return new Peerfile(home, folder).peers()
}

export async function folderFiles(home: string, folder: string) {
  await new ConfigStore(home).requireFolder(folder)
  return [...(await new Peerfile(home, folder).files()).values()].sort((a, b) => (a.path < b.path ? -1 : 1)).map(({ino: _ino, ...f}) => f)
}

/**
 * `fpeer request`: runs the requester's handshake, then records the result (seed step 17):
 * the folder becomes shared here, with the host in its peerlist.
 */
export async function requestAndRecord(home: string, opts: Omit<RequestOptions, 'identity'> & {identity?: Identity}): Promise<RequestResult> {
  checkFolderName(opts.folder)
  const config = new ConfigStore(home)
  const existing = await config.folder(opts.folder)
  const into = path.resolve(opts.into)
  if (existing && existing.path !== (await realpath(into).catch(() => into))) {
    throw new FpeerError('E_USAGE', `${opts.folder} is already shared here from ${existing.path}`, {hint: `use --into ${existing.path}`})
  }
  const identity = opts.identity ?? (await loadIdentity(home))
  const result = await requestFolder({...opts, identity})
  const folder = await config.share({name: opts.folder, path: result.into})
  await new Peerfile(home, opts.folder).addPeer({
    id: PeerId.parse(result.host.id).toString(),
    address: result.host.address,
    controlPort: result.host.port,
    protocols: [result.protocol],
    role: 'host',
    confirmedAt: result.confirmedAt,
  })
  await indexFolder(home, folder)
  return result
}
