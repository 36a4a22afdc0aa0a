// The requester's side of "Becoming a Peer" (seed steps 4-5, 10-12 and 17).
import {mkdir, realpath, stat} from 'node:fs/promises'
import {FpeerError} from '../errors.js'
import {type Identity, PeerId} from '../identity.js'
import {LocalFileSource} from '../fs/local-source.js'
import {prepareForWrite} from '../fs/safe-path.js'
import {sha256File} from '../fs/scan.js'
import {GrantTable} from '../access/grants.js'
import {formatDestination} from '../access/replay-guard.js'
import {connectChannel} from '../net/channel.js'
import type {TransportRegistry} from '../registry.js'
import {type FetchEvent, type FetchResult, fetchFiles} from '../transfer/fetch.js'
import {type PeerEndpoint, withPeerClient} from '../transfer/peer-client.js'
import type {AccessContext, Logger, ManualRequest, PlacedState, TransportServer} from '../transport.js'
import {signMessage} from '../wire/signing.js'
import type {BePeerRequest, FileEntry, FilesToGet, FilesUpdated} from '../wire/types.js'
import type {HandshakeTimeouts} from './context.js'
import {expectType, randomNonce, sameFiles, verifyReply} from './handshake.js'

export interface RequestOptions {
  host: string
  port: number
  folder: string
  /** Directory to fill; created if missing. */
  into: string
  /** Local address to connect from and to serve the fetch-back on. */
  bind?: string
  /** Ask for this protocol (Line 4). */
  protocol?: string
  /** Refuse any host but this one. */
  expectedHost?: PeerId
  /** Attributes added to the BePeerRequest's Line 1 (a delegation ticket). */
  extraMeta?: Record<string, string>
  /** Follow a busy host's delegation to another peer (seed step 8); default true. */
  followDelegation?: boolean
  /** Our control port, announced as `ctl=` so the host can send us updates later. */
  controlPort?: number
  identity: Identity
  registry: TransportRegistry
  concurrency: number
  timeouts: HandshakeTimeouts
  log: Logger
  onEvent?(ev: FetchEvent | {event: 'files-to-get'; files: number; bytes: number; protocol: string} | {event: 'phase'; phase: string}): void
  /**
   * Replaces the plain fetch for a folder this peer already holds (a catch-up): decides
   * per version what to take and fetches only that. Returns what it fetched or copied.
   */
  apply?(ftg: FilesToGet, fetchFrom: PeerEndpoint & {peer: PeerId}): Promise<{transfer: FetchResult; got: Set<string>}>
  /**
   * Called when the fetch fails midway, with the entries that did land (each checked), so
   * that the records of a folder already held here can agree with its disk.
   */
  onPartial?(landed: FileEntry[]): Promise<void>
  /** Called for protocol MANUAL; resolves when the user has placed the files (or throws to stop, resumable). `check` tells which are not in place. */
  manual?(req: ManualRequest, check: () => Promise<PlacedState>): Promise<void>
}

export interface RequestResult {
  /** The host that handed the request to `host` (seed step 8), if it did. */
  delegatedBy?: string
  folder: string
  into: string
  host: {id: string; address: string; port: number}
  protocol: string
  files: FileEntry[]
  transfer: FetchResult
  confirmedAt: string
}

/**
 * Which files the user has not placed (yet) with the right size and hash. `seen` remembers
 * the hash of an unchanged file (same size, mtime, inode), so polling does not rehash it.
 */
async function placedState(root: string, files: FileEntry[], seen = new Map<string, {key: string; ok: boolean}>()): Promise<PlacedState> {
  const missing: string[] = []
  const wrong: string[] = []
  for (const f of files) {
    const target = await prepareForWrite(root, f.path)
    const st = await stat(target).catch(() => undefined)
    if (!st?.isFile()) {
      missing.push(f.path)
      continue
    }
    if (f.size !== undefined && st.size !== f.size) {
      wrong.push(f.path)
      continue
    }
    const key = `${st.size}:${st.mtimeMs}:${st.ino}`
    let ok = seen.get(f.path)?.key === key ? seen.get(f.path)!.ok : undefined
    if (ok === undefined) {
      ok = (await sha256File(target).catch(() => undefined)) === f.sha256
      seen.set(f.path, {key, ok})
    }
    if (!ok) wrong.push(f.path)
  }
  return {missing, wrong}
}

/** Checks files the user placed by hand: each must exist and match its hash. */
async function checkPlaced(root: string, files: FileEntry[]): Promise<FetchResult> {
  const {missing, wrong} = await placedState(root, files)
  if (wrong.length) throw new FpeerError('E_HASH_MISMATCH', `${wrong.length} placed file(s) do not match: ${wrong.slice(0, 5).join(', ')}`, {details: {files: wrong}})
  if (missing.length) throw new FpeerError('E_PENDING', `${missing.length} file(s) not placed yet: ${missing.slice(0, 5).join(', ')}`, {details: {files: missing}, hint: 'place them, then run the request again with --resume'})
  return {files: files.length, fetched: 0, skipped: files.length, bytes: 0}
}

export type {ManualRequest}

export async function requestFolder(opts: RequestOptions): Promise<RequestResult> {
  await mkdir(opts.into, {recursive: true})
  const root = await realpath(opts.into)
  const channel = await connectChannel(opts.host, opts.port, {...(opts.bind ? {localAddress: opts.bind} : {}), timeoutMs: opts.timeouts.io})
  let server: TransportServer | undefined
  try {
    const nonce = randomNonce()
    const protocols = opts.registry.protocols((t) => t.supports.fetch || t.protocol === 'MANUAL')
    // Bound to this host (its ID when known, else the address and port we dialled) and to now (§4.5).
    const meta: Record<string, string> = {...opts.extraMeta, nonce, ts: String(Date.now()), dst: formatDestination(channel.remoteAddress, channel.remotePort), protocols: protocols.join(',')}
    if (opts.expectedHost) meta.to = opts.expectedHost.compact
    if (opts.protocol) meta.want = opts.protocol.toUpperCase()
    if (opts.controlPort) meta.ctl = String(opts.controlPort)
    const bpr: BePeerRequest = signMessage({type: 'BePeerRequest', folder: opts.folder, meta}, opts.identity)
    opts.onEvent?.({event: 'phase', phase: 'BePeerRequest'})
    await channel.send(bpr)

    const first = await channel.next(opts.timeouts.reply)
    if (first.type === 'PeerError' && first.code === 'E_DELEGATED' && opts.followDelegation !== false && !opts.extraMeta?.ticket) {
      // Seed step 8: the host is busy and names a peer of the folder to ask instead. Only a
      // delegation signed by the host we asked (and answering our nonce) is followed, and
      // only to the peer it names, whose own signature we then require.
      const host = verifyReply(first, opts.expectedHost, nonce)
      const to = PeerId.tryParse(first.meta.delegate ?? '')
      const port = Number(first.meta.ctl)
      if (!to || !first.meta.addr || !Number.isInteger(port) || port < 1 || port > 65535) throw new FpeerError('E_MSG_BAD_FIELD', 'incomplete delegation')
      opts.log.info('host is busy; asking the peer it delegated to', {host: host.short, delegate: to.short, address: `${first.meta.addr}:${port}`})
      await channel.close()
      const ticket = {ticket: first.meta.ticket ?? '', 'ticket-by': first.meta['ticket-by'] ?? '', 'ticket-exp': first.meta['ticket-exp'] ?? ''}
      const result = await requestFolder({...opts, host: first.meta.addr, port, expectedHost: to, extraMeta: ticket})
      return {...result, delegatedBy: host.toString()}
    }
    const ftg: FilesToGet = expectType(first, 'FilesToGet', opts.folder)
    const hostId = verifyReply(ftg, opts.expectedHost, nonce)
    if (opts.protocol && ftg.protocol !== opts.protocol.toUpperCase()) throw new FpeerError('E_NO_COMMON_PROTOCOL', `asked for ${opts.protocol.toUpperCase()}, host chose ${ftg.protocol}`)
    const hostAddress = channel.remoteAddress
    opts.onEvent?.({event: 'files-to-get', files: ftg.files.length, bytes: ftg.files.reduce((n, f) => n + (f.size ?? 0), 0), protocol: ftg.protocol})
    opts.log.debug('got FilesToGet', {host: hostId.short, files: ftg.files.length, protocol: ftg.protocol})

    // Seed step 10: fetch over Line 4's protocol, from the address the message came from.
    let transfer: FetchResult
    const live = ftg.files.filter((f) => f.ext?.del !== '1')
    let got = new Set(live.map((f) => f.path))
    const from = {protocol: ftg.protocol, host: hostAddress, port: ftg.port, peer: hostId, grant: ftg.meta.grant, localAddress: opts.bind}
    if (opts.apply) {
      const r = await opts.apply(ftg, from)
      transfer = r.transfer
      got = r.got
    } else if (ftg.protocol === 'MANUAL') {
      if (!opts.manual) throw new FpeerError('E_NO_TRANSPORT', 'no handler for protocol MANUAL', {hint: 'install it with `fpeer plugins:install manual`'})
      const seen = new Map<string, {key: string; ok: boolean}>()
      await opts.manual({folder: opts.folder, host: hostAddress, port: ftg.port, ...(ftg.meta.via ? {via: ftg.meta.via} : {}), ...(ftg.meta.grant ? {grant: ftg.meta.grant} : {}), hostId: hostId.toString(), into: root, files: live}, () => placedState(root, live, seen))
      transfer = await checkPlaced(root, live)
    } else {
      const resume = opts.registry.get(ftg.protocol).supports.resume
      const landed = new Set<string>()
      const onEvent = (ev: FetchEvent) => {
        if (ev.event === 'file-done') landed.add(ev.path)
        opts.onEvent?.(ev)
      }
      try {
        transfer = await withPeerClient(opts, from, (client) => {
          opts.onEvent?.({event: 'phase', phase: 'fetch'})
          return fetchFiles({client, folder: opts.folder, files: live, mode: 'land', root, concurrency: opts.concurrency, resume, onEvent})
        })
      } catch (err) {
        await opts.onPartial?.(live.filter((f) => landed.has(f.path))).catch((e: Error) => opts.log.warn('cannot record the files that landed', {reason: e.message}))
        throw err
      }
    }

    // Seed steps 11-12: serve our copies to the host alone, and tell it where.
    const serveProtocol = opts.registry.has(ftg.protocol) && opts.registry.get(ftg.protocol).supports.serve ? ftg.protocol : 'HTTP'
    const serving = opts.registry.get(serveProtocol)
    // The host alone may read our copies: by the secret we send it (or, over SFTP, by its key).
    const grants = new GrantTable()
    const {token: grant} = grants.issue(opts.folder, hostId)
    const isHost = (who: AccessContext) => grants.allows(opts.folder, who)
    const source = new LocalFileSource({root: (f) => (f === opts.folder ? root : undefined), mayRead: (f, who) => isHost(who) && f === opts.folder}, () => [opts.folder])
    // The temporary server is an implementation detail of this handshake: its chatter is debug.
    server = await serving.serve!({host: channel.localAddress, port: 0, files: source, identity: opts.identity, admit: isHost, log: {...opts.log, info: opts.log.debug}})
    const fuNonce = randomNonce()
    const fuFiles = ftg.files.map((f) => (got.has(f.path) ? {...f, ext: {...f.ext, got: '1'}} : f))
    const fu: FilesUpdated = signMessage({type: 'FilesUpdated', folder: opts.folder, port: server.port, protocol: serveProtocol, files: fuFiles, meta: {nonce: fuNonce, re: ftg.meta.nonce ?? '', grant}}, opts.identity)
    opts.onEvent?.({event: 'phase', phase: 'FilesUpdated'})
    await channel.send(fu)

    // Seed steps 14-15: the host's signed confirmation.
    const tpc = expectType(await channel.next(opts.timeouts.transfer), 'TrustedPeerConfirm', opts.folder)
    verifyReply(tpc, hostId, fuNonce)
    if (!sameFiles(ftg.files, tpc.files)) throw new FpeerError('E_MSG_BAD_FIELD', 'TrustedPeerConfirm does not confirm the files that were fetched')
    return {
      folder: opts.folder,
      into: root,
      host: {id: hostId.toString(), address: hostAddress, port: opts.port},
      protocol: ftg.protocol,
      files: ftg.files,
      transfer,
      confirmedAt: new Date().toISOString(),
    }
  } finally {
    await server?.close().catch(() => {})
    await channel.close()
  }
}
