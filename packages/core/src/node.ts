// A running peer (`fpeer serve`): the control port, one transport server per protocol, and the folders' state.
import net from 'node:net'
import {FpeerError} from './errors.js'
import type {Identity, PeerId} from './identity.js'
import {LocalFileSource} from './fs/local-source.js'
import {type IndexedFile, scanFolder} from './fs/scan.js'
import {MessageChannel, normalizeAddress} from './net/channel.js'
import type {TransportRegistry} from './registry.js'
import {type HandshakeTimeouts, type HostContext, defaultTimeouts} from './session/context.js'
import {serveConnection} from './session/host.js'
import {ConfigStore, type FolderConfig} from './store/config.js'
import {Peerfile, type PeerRecord} from './store/peerfile.js'
import type {AccessContext, Logger, TransportServer} from './transport.js'

/** The documented default ports: control, then one per built-in protocol. */
export const DEFAULT_CONTROL_PORT = 7734
export const DEFAULT_PORTS: Readonly<Record<string, number>> = {HTTP: 7735, FTP: 7736, SFTP: 7737}

export interface PeerNodeOptions {
  home: string
  identity: Identity
  registry: TransportRegistry
  log: Logger
  /** Address to listen on for everything. */
  host: string
  controlPort: number
  /** Port per protocol; 0 picks a free one; protocols not named use DEFAULT_PORTS or 0. */
  ports?: Record<string, number>
  concurrency?: number
  maxConnections?: number
  timeouts?: HandshakeTimeouts
}

interface Grant {
  folder: string
  address: string
  peer: PeerId | undefined
}

/** One serialised queue per key, so two scans of one folder never run at once. */
class KeyedMutex {
  readonly #tails = new Map<string, Promise<unknown>>()
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    this.#tails.set(key, next.catch(() => {}))
    return next
  }
}

export class PeerNode {
  readonly options: PeerNodeOptions
  readonly config: ConfigStore
  readonly #servers = new Map<string, TransportServer>()
  readonly #grants = new Set<Grant>()
  readonly #scanLock = new KeyedMutex()
  readonly #connections = new Set<net.Socket>()
  #control: net.Server | undefined
  #folders = new Map<string, FolderConfig>()
  #peers = new Map<string, PeerRecord[]>()
  #refreshTimer: NodeJS.Timeout | undefined

  constructor(options: PeerNodeOptions) {
    this.options = options
    this.config = new ConfigStore(options.home)
  }

  get controlPort(): number {
    const addr = this.#control?.address()
    return typeof addr === 'object' && addr ? addr.port : this.options.controlPort
  }

  /** Ports of the running transport servers, by protocol. */
  get ports(): Record<string, number> {
    return Object.fromEntries([...this.#servers].map(([p, s]) => [p, s.port]))
  }

  /** Re-reads folders and peerlists written by other fpeer processes (`fpeer share`, `fpeer allow`). */
  async refresh(): Promise<void> {
    const folders = await this.config.folders()
    this.#folders = new Map(folders.map((f) => [f.name, f]))
    const peers = new Map<string, PeerRecord[]>()
    for (const f of folders) peers.set(f.name, await new Peerfile(this.options.home, f.name).peers())
    this.#peers = peers
  }

  #mayRead(folder: string, who: AccessContext): boolean {
    const f = this.#folders.get(folder)
    if (!f) return false
    if (f.open) return true
    for (const g of this.#grants) {
      if (g.folder !== folder) continue
      if (who.peer ? g.peer?.equals(who.peer) : g.address === who.address) return true
    }
    const id = who.peer?.toString()
    return (this.#peers.get(folder) ?? []).some((p) => (id ? p.id === id : p.address === who.address))
  }

  async start(): Promise<void> {
    await this.refresh()
    const source = new LocalFileSource({root: (f) => this.#folders.get(f)?.path, mayRead: (f, who) => this.#mayRead(f, who)}, () => [...this.#folders.keys()])
    for (const {transport} of this.options.registry.list()) {
      if (!transport.supports.serve || !transport.serve) continue
      const p = transport.protocol.toUpperCase()
      const port = this.options.ports?.[p] ?? DEFAULT_PORTS[p] ?? 0
      const server = await transport.serve({
        host: this.options.host,
        port,
        files: source,
        identity: this.options.identity,
        admit: (who) => [...this.#folders.keys()].some((f) => this.#mayRead(f, who)),
        log: this.options.log,
      })
      this.#servers.set(p, server)
      this.options.log.info('serving files', {protocol: p, address: `${server.host}:${server.port}`})
    }
    const ctx = this.#hostContext()
    const maxConnections = this.options.maxConnections ?? 256
    this.#control = net.createServer({allowHalfOpen: true}, (socket) => {
      if (this.#connections.size >= maxConnections) {
        socket.end('PeerError\n*\nE_BUSY\ntoo many connections\n\n')
        return
      }
      this.#connections.add(socket)
      socket.once('close', () => this.#connections.delete(socket))
      void (async () => {
        await this.refresh().catch((err: Error) => this.options.log.error('cannot read configuration', {reason: err.message}))
        await serveConnection(new MessageChannel(socket), ctx)
      })()
    })
    await new Promise<void>((resolve, reject) => {
      this.#control!.once('error', (err: NodeJS.ErrnoException) =>
        reject(new FpeerError(err.code === 'EADDRINUSE' ? 'E_USAGE' : 'E_IO', `cannot listen on ${this.options.host}:${this.options.controlPort}: ${err.message}`, {hint: err.code === 'EADDRINUSE' ? 'another fpeer serve runs there? pick --port' : undefined})),
      )
      this.#control!.listen(this.options.controlPort, this.options.host, () => resolve())
    })
    this.#refreshTimer = setInterval(() => void this.refresh().catch(() => {}), 2000)
    this.#refreshTimer.unref()
    this.options.log.info('peer listening', {id: this.options.identity.id.toString(), control: `${this.options.host}:${this.controlPort}`, folders: this.#folders.size})
  }

  async stop(): Promise<void> {
    if (this.#refreshTimer) clearInterval(this.#refreshTimer)
    for (const s of this.#connections) s.destroy()
    await new Promise<void>((resolve) => (this.#control ? this.#control.close(() => resolve()) : resolve()))
    await Promise.all([...this.#servers.values()].map((s) => s.close().catch(() => {})))
    this.#servers.clear()
  }

  /** The folder's file structure: an incremental rescan recorded in its peerfile. */
  async fileList(folder: string): Promise<IndexedFile[]> {
    const f = this.#folders.get(folder) ?? (await this.config.folder(folder))
    if (!f) throw new FpeerError('E_UNKNOWN_FOLDER', `no shared folder named ${JSON.stringify(folder)}`)
    return this.#scanLock.run(folder, async () => {
      const pf = new Peerfile(this.options.home, folder)
      const previous = await pf.files()
      const scan = await scanFolder(f.path, previous)
      await pf.record(previous, scan)
      return scan
    })
  }

  #hostContext(): HostContext {
    return {
      identity: this.options.identity,
      registry: this.options.registry,
      log: this.options.log,
      timeouts: this.options.timeouts ?? defaultTimeouts(),
      concurrency: this.options.concurrency ?? 8,
      folder: async (name) => {
        const f = this.#folders.get(name)
        return f ? {open: f.open} : undefined
      },
      mayJoin: async (folder, sender) => {
        const f = this.#folders.get(folder)
        if (!f) return false
        if (f.open) return true
        if (!sender) return false
        const id = sender.toString()
        return f.allow.includes(id) || (this.#peers.get(folder) ?? []).some((p) => p.id === id)
      },
      fileList: (folder) => this.fileList(folder),
      servedPort: (protocol) => this.#servers.get(protocol.toUpperCase())?.port,
      grant: (folder, address, peer) => {
        const g: Grant = {folder, address: normalizeAddress(address), peer}
        this.#grants.add(g)
        return () => this.#grants.delete(g)
      },
      confirmPeer: async (folder, record) => {
        await new Peerfile(this.options.home, folder).addPeer(record)
        await this.refresh()
      },
    }
  }
}
