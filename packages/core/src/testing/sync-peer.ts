// In-process sync peers for tests: a folder, its FolderSync, a transfer server and a control server that hands updates to receiveUpdate, wired as the node wires them.
import {mkdir} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {GrantTable} from '../access/grants.js'
import {ReplayGuard} from '../access/replay-guard.js'
import {FpeerError} from '../errors.js'
import {LocalFileSource} from '../fs/local-source.js'
import {Identity, generateKeyPair} from '../identity.js'
import {type ChannelOptions, MessageChannel} from '../net/channel.js'
import type {TransportRegistry} from '../registry.js'
import type {HandshakeTimeouts, HostContext} from '../session/context.js'
import {serveConnection} from '../session/host.js'
import {Home} from '../store/home.js'
import type {PeerRecord} from '../store/peerfile.js'
import {FolderSync} from '../sync/folder.js'
import {type SyncContext, receiveUpdate} from '../sync/update.js'
import {type AccessContext, type FileSource, type Logger, type Transport, silentLogger} from '../transport.js'
import type {FilesToGet} from '../wire/types.js'

/** What a test's transfer server sends for a path instead of the file on disk. */
export type ServeOverride = (path: string, who: AccessContext) => Promise<{stream: Readable; size: number; mtimeMs: number}> | undefined

export interface SyncPeerOptions {
  /** A directory of its own: the shared folder and the home go below it. */
  root: string
  /** The loopback host its control and transfer servers listen on (port 0) and it connects from. */
  address: string
  /** Serves the folder; also the protocol `servedPort` answers for. */
  transport: Transport
  /** Where its sessions look up transports to fetch with. */
  registry: TransportRegistry
  timeouts: HandshakeTimeouts
  /** The shared folder's name (default `docs`). */
  folder?: string
  /** Whom it counts as a confirmed peer of the folder, by printed ID. */
  isPeer(id: string): boolean
  log?: Logger
  forward?: SyncContext['forward']
  forwardTargets?: SyncContext['forwardTargets']
  heldBy?: SyncContext['heldBy']
  /** Replaces what its transfer server sends a granted peer for a path; undefined answers: the file on disk. */
  serve?: ServeOverride
  /** Who may join (BePeerRequest); default nobody. */
  mayJoin?: HostContext['mayJoin']
  /** The list a catch-up request is answered with; default empty. */
  fileList?: HostContext['fileList']
  /** Told of every update (FilesToGet update=1) its control server is sent, before it is handled. */
  onUpdate?(msg: FilesToGet): void
  /** Sees every line its control connections send and receive. */
  tap?: ChannelOptions['tap']
}

/** One peer in this process; `close()` stops its servers after their sessions end. */
export interface SyncPeer {
  identity: Identity
  address: string
  /** The shared folder on disk. */
  dir: string
  home: Home
  sync: FolderSync
  /** The read grants its transfer server honours. */
  grants: GrantTable
  /** What its own update and pull sessions run with. */
  ctx: SyncContext
  controlPort: number
  /** Every control connection's session, to await before looking at its files. */
  sessions: Set<Promise<void>>
  close(): Promise<void>
}

/**
 * Builds one sync peer: an empty shared folder (rescanned once), a fresh identity and home,
 * a transfer server reading the folder for granted peers, and a control server whose
 * FilesToGet update=1 goes to receiveUpdate: the parts `PeerNode` composes, without the node,
 * so sync tests run in one process with real sockets and nothing mocked but the transport.
 */
export async function makeSyncPeer(options: SyncPeerOptions): Promise<SyncPeer> {
  const folder = options.folder ?? 'docs'
  const {address, transport} = options
  const dir = path.join(options.root, folder)
  await mkdir(dir, {recursive: true})
  const identity = new Identity(generateKeyPair())
  const home = new Home(path.join(options.root, 'home'))
  const sync = new FolderSync(home, {name: folder, path: dir, open: false, allow: [], createdAt: ''}, identity)
  await sync.rescan()
  const grants = new GrantTable()
  const local = new LocalFileSource({root: (f) => (f === folder ? dir : undefined), mayRead: (f, who) => grants.allows(f, who)}, () => [folder])
  const {serve} = options
  const files: FileSource = serve
    ? {
        folders: (who) => local.folders(who),
        stat: (f, p, who) => local.stat(f, p, who),
        list: (f, p, who) => local.list(f, p, who),
        // Only a granted reader gets the override; anyone else meets the source's own refusal.
        open: async (f, p, who, range) => (grants.allows(f, who) ? ((await serve(p, who)) ?? local.open(f, p, who, range)) : local.open(f, p, who, range)),
      }
    : local
  if (!transport.serve) throw new FpeerError('E_UNSUPPORTED', `${transport.protocol} cannot serve: a sync peer needs a transport that does`)
  const served = await transport.serve({host: address, port: 0, files, identity})
  const ctx: SyncContext = {
    identity,
    registry: options.registry,
    log: options.log ?? silentLogger,
    timeouts: options.timeouts,
    concurrency: 2,
    localAddress: address,
    sync: (f) => (f === folder ? sync : undefined),
    isPeer: (_f, id) => options.isPeer(id.toString()),
    servedPort: (p) => (p === transport.protocol ? served.port : undefined),
    forward: options.forward ?? (() => {}),
    ...(options.forwardTargets ? {forwardTargets: options.forwardTargets} : {}),
    ...(options.heldBy ? {heldBy: options.heldBy} : {}),
    replay: new ReplayGuard(),
    grant: (f, peer) => grants.issue(f, peer),
    count: () => {},
  }
  // The receiving end as the node wires it: the host's connection handler hands update=1 to receiveUpdate.
  const host: HostContext = {
    ...ctx,
    folder: async (name) => (name === folder ? {open: false} : undefined),
    mayJoin: options.mayJoin ?? (async () => false),
    fileList: options.fileList ?? (async () => []),
    confirmPeer: async () => {},
    handlers: {
      FilesToGet: (channel, msg) => {
        options.onUpdate?.(msg)
        return receiveUpdate(channel, msg, ctx)
      },
    },
  }
  const sessions = new Set<Promise<void>>()
  const control = net.createServer((socket) => {
    const session = serveConnection(new MessageChannel(socket, options.tap ? {tap: options.tap} : {}), host)
    sessions.add(session)
    void session.finally(() => sessions.delete(session))
  })
  await new Promise<void>((resolve) => control.listen(0, address, resolve))
  return {
    identity,
    address,
    dir,
    home,
    sync,
    grants,
    ctx,
    controlPort: (control.address() as net.AddressInfo).port,
    sessions,
    close: async () => {
      await new Promise((r) => control.close(r))
      await Promise.allSettled([...sessions])
      await served.close()
    },
  }
}

/** The record another peer keeps of `peer`: a confirmed member, reached over `protocol`. */
export function peerRecord(peer: SyncPeer, protocol: string, confirmedAt = new Date(0).toISOString()): PeerRecord {
  return {id: peer.identity.id.toString(), address: peer.address, controlPort: peer.controlPort, protocols: [protocol], role: 'member', confirmedAt}
}
