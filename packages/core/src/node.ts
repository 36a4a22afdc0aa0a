// A running peer (`fpeer serve`): the control port, one transport server per protocol, and the folders' state.
import {writeFile} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {FpeerError, isFpeerError} from './errors.js'
import {type Identity, PeerId} from './identity.js'
import {LocalFileSource} from './fs/local-source.js'
import {FolderWatcher} from './fs/watch.js'
import {MessageChannel, normalizeAddress} from './net/channel.js'
import type {TransportRegistry} from './registry.js'
import {type HandshakeTimeouts, type HostContext, defaultTimeouts} from './session/context.js'
import {serveConnection} from './session/host.js'
import {requestFolder} from './session/requester.js'
import {ConfigStore, type FolderConfig} from './store/config.js'
import {type FileRecord, Peerfile, type PeerRecord, isLive} from './store/peerfile.js'
import {FolderSync} from './sync/folder.js'
import {type SyncContext, fetcherFrom, pushUpdate, receiveUpdate} from './sync/update.js'
import {type FileVersion, entryToVersion, verifyVersion, versionToEntry} from './sync/version.js'
import {fetchFiles} from './transfer/fetch.js'
import type {AccessContext, Logger, TransportServer} from './transport.js'
import type {FileEntry} from './wire/types.js'

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
  /** Handshakes answered at once; past that a request is handed to another confirmed peer (seed step 8). */
  maxHandshakes?: number
  /** Listen for messages (false: only serve files, e.g. for `fpeer push`). */
  control?: boolean
  /** Watch folders, rescan and catch up with peers (the daemon); false for one-shot use. */
  sync?: boolean
  /** Full rescan every this many ms (also after file-system events). */
  rescanIntervalMs?: number
  /** Catch up with every peer every this many ms (and at start). */
  syncIntervalMs?: number
}

/** Counters of update traffic, written to `stats.json` in the home (`fpeer status --json` shows them). */
export interface SyncStats {
  messagesIn: number
  messagesOut: number
  filesFetched: number
  bytesFetched: number
  filesVerified: number
  pushes: number
  pulls: number
}

/** Failures worth pushing again: the peer was unreachable or dropped, not one that refused. */
const RETRY_CODES = new Set(['E_CONNECT', 'E_TIMEOUT', 'E_CONNECTION_LOST'])

/** Turns a record into its file line: version attributes when it has one, a tombstone when deleted. */
export function recordToEntry(r: FileRecord): FileEntry {
  if (r.version) return versionToEntry(r.version)
  return {path: r.path, size: r.size, sha256: r.sha256, mtimeMs: r.mtimeMs}
}

interface Grant {
  folder: string
  address: string
  peer: PeerId | undefined
}

export class PeerNode {
  readonly options: PeerNodeOptions
  readonly config: ConfigStore
  readonly #servers = new Map<string, TransportServer>()
  readonly #grants = new Set<Grant>()
  readonly #connections = new Set<net.Socket>()
  #control: net.Server | undefined
  #folders = new Map<string, FolderConfig>()
  #peers = new Map<string, PeerRecord[]>()
  #refreshTimer: NodeJS.Timeout | undefined
  #rescanTimer: NodeJS.Timeout | undefined
  #syncTimer: NodeJS.Timeout | undefined
  readonly #syncs = new Map<string, FolderSync>()
  readonly #watchers = new Map<string, FolderWatcher>()
  readonly #pending = new Map<string, NodeJS.Timeout>()
  readonly #nonces = new Map<string, number>()
  readonly #work = new Set<Promise<unknown>>()
  #stopping = false
  #delegateTurn = 0
  readonly #retries = new Map<string, {versions: Map<string, FileVersion>; attempt: number; timer: NodeJS.Timeout | undefined}>()
  readonly stats: SyncStats = {messagesIn: 0, messagesOut: 0, filesFetched: 0, bytesFetched: 0, filesVerified: 0, pushes: 0, pulls: 0}
  #statsDirty = false

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
    for (const f of folders) {
      const cur = this.#syncs.get(f.name)
      if (!cur || cur.folder.path !== f.path || cur.folder.open !== f.open) this.#syncs.set(f.name, new FolderSync(this.options.home, f, this.options.identity, this.options.log))
      if (this.options.sync && !this.#watchers.has(f.name) && !this.#stopping) this.#watch(f)
    }
  }

  /** The address outgoing connections come from, so peers know where to fetch back. */
  get #localAddress(): string | undefined {
    const h = this.options.host
    return h === '0.0.0.0' || h === '::' || h === '' ? undefined : h
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#work.add(p)
    void p.finally(() => this.#work.delete(p)).catch(() => {})
    return p
  }

  #count(what: keyof SyncStats, n = 1): void {
    this.stats[what] += n
    this.#statsDirty = true
  }

  async #flushStats(): Promise<void> {
    if (!this.#statsDirty) return
    this.#statsDirty = false
    await writeFile(path.join(this.options.home, 'stats.json'), JSON.stringify({pid: process.pid, ...this.stats}) + '\n', {mode: 0o600}).catch(() => {})
  }

  #watch(f: FolderConfig): void {
    const w = new FolderWatcher(f.path, () => this.#schedule(f.name), (err) => this.options.log.warn('cannot watch folder; relying on periodic rescans', {folder: f.name, reason: err.message}))
    this.#watchers.set(f.name, w)
    void w.start().catch((err: Error) => this.options.log.warn('cannot watch folder; relying on periodic rescans', {folder: f.name, reason: err.message}))
  }

  /** Debounces file-system events into one rescan-and-push. */
  #schedule(folder: string, delayMs = 300): void {
    if (this.#stopping) return
    clearTimeout(this.#pending.get(folder))
    const t = setTimeout(() => {
      this.#pending.delete(folder)
      void this.#track(this.pushChanges(folder).catch((err: Error) => this.options.log.warn('rescan failed', {folder, reason: err.message})))
    }, delayMs)
    t.unref()
    this.#pending.set(folder, t)
  }

  /** Rescans a folder and pushes every new version to its peers (`fpeer push`, the watcher). */
  async pushChanges(folder: string): Promise<{versions: number; peers: number; failed: number}> {
    const sync = this.#syncs.get(folder)
    if (!sync) throw new FpeerError('E_NO_SUCH_FOLDER', `no shared folder named ${JSON.stringify(folder)}`)
    const {versions} = await sync.rescan()
    if (versions.length === 0) return {versions: 0, peers: 0, failed: 0}
    this.options.log.info('local change', {folder, versions: versions.length})
    const r = await this.pushVersions(folder, versions, [])
    return {versions: versions.length, ...r}
  }

  /** Pushes versions to every confirmed peer of the folder but `exclude` (IDs); failures are logged, the peer catches up later. */
  async pushVersions(folder: string, versions: FileVersion[], exclude: string[]): Promise<{peers: number; failed: number}> {
    const peers = (this.#peers.get(folder) ?? []).filter((p) => p.controlPort && !p.id.startsWith('plain:') && !exclude.includes(p.id))
    let failed = 0
    await Promise.all(
      peers.map(async (p) => {
        try {
          this.#count('pushes')
          await pushUpdate(this.#syncContext(), folder, p, versions)
        } catch (err) {
          failed++
          const code = isFpeerError(err) ? err.code : 'E_INTERNAL'
          this.options.log.warn('push failed; will retry, and the peer catches up when it returns', {folder, peer: p.id.slice(0, 7), code, reason: (err as Error).message})
          if (this.options.sync && RETRY_CODES.has(code)) this.#retryLater(folder, p.id, versions)
        }
      }),
    )
    return {peers: peers.length, failed}
  }

  /**
   * Queues versions for a peer that could not be reached, and pushes them again with a
   * growing delay (2 s, 4 s, … 60 s, 8 tries); later failures add their versions to the same
   * queue (the newest per path). Past that, the periodic catch-up takes over.
   */
  #retryLater(folder: string, peerId: string, versions: FileVersion[], attempt = 0): void {
    if (this.#stopping) return
    const key = `${folder}\0${peerId}`
    let entry = this.#retries.get(key)
    if (!entry) {
      entry = {versions: new Map(), attempt, timer: undefined}
      this.#retries.set(key, entry)
    }
    for (const v of versions) {
      const old = entry.versions.get(v.path)
      if (!old || v.lamport > old.lamport || (v.lamport === old.lamport && v.origin > old.origin)) entry.versions.set(v.path, v)
    }
    if (entry.timer) return
    if (entry.attempt >= 8) {
      this.#retries.delete(key)
      return
    }
    const e = entry
    e.timer = setTimeout(() => {
      e.timer = undefined
      this.#retries.delete(key)
      const peer = (this.#peers.get(folder) ?? []).find((p) => p.id === peerId)
      if (!peer || this.#stopping) return
      const batch = [...e.versions.values()]
      void this.#track(
        pushUpdate(this.#syncContext(), folder, peer, batch).then(
          () => this.options.log.info('retried push delivered', {folder, peer: peerId.slice(0, 7), versions: batch.length}),
          (err: unknown) => {
            const code = isFpeerError(err) ? err.code : 'E_INTERNAL'
            if (RETRY_CODES.has(code)) this.#retryLater(folder, peerId, batch, e.attempt + 1)
          },
        ),
      )
    }, Math.min(60_000, 2000 * 2 ** e.attempt))
    e.timer.unref()
  }

  /**
   * Catches up with one peer (an offline spell, a missed push): asks it for the folder as a
   * confirmed peer, takes only what is newer, and passes that on to the other peers.
   */
  async pullFrom(folder: string, peer: PeerRecord): Promise<number> {
    const sync = this.#syncs.get(folder)
    if (!sync || !peer.controlPort || peer.id.startsWith('plain:')) return 0
    const ctx = this.#syncContext()
    let applied: FileVersion[] = []
    let created: FileVersion[] = []
    this.#count('pulls')
    await requestFolder({
      host: peer.address,
      port: peer.controlPort,
      folder,
      into: sync.folder.path,
      ...(this.#localAddress ? {bind: this.#localAddress} : {}),
      expectedHost: PeerId.parse(peer.id),
      controlPort: this.controlPort,
      identity: this.options.identity,
      registry: this.options.registry,
      concurrency: this.options.concurrency ?? 8,
      timeouts: this.options.timeouts ?? defaultTimeouts(),
      log: this.options.log,
      apply: async (ftg, from) => {
        this.#count('messagesIn')
        const versions: FileVersion[] = []
        const originals: FileEntry[] = []
        for (const e of ftg.files) {
          const v = entryToVersion(e)
          if (v) {
            verifyVersion(folder, v)
            versions.push(v)
          } else if (e.ext?.del !== '1') originals.push(e)
        }
        const res = await sync.apply(versions, fetcherFrom(ctx, folder, from.protocol, from.host, from.port, from.hostId))
        applied = res.applied
        created = res.created
        const records = await sync.records()
        const missing = originals.filter((e) => !records.has(e.path))
        let bytes = 0
        if (missing.length > 0) {
          const client = await ctx.registry.get(from.protocol).connect!({host: from.host, port: from.port, identity: ctx.identity, expectedPeer: from.hostId, concurrency: ctx.concurrency, timeoutMs: ctx.timeouts.io, ...(ctx.localAddress ? {localAddress: ctx.localAddress} : {}), log: ctx.log})
          try {
            bytes = (await fetchFiles({client, folder, files: missing, mode: 'land', root: sync.folder.path, concurrency: ctx.concurrency})).bytes
          } finally {
            await client.close()
          }
          await sync.adopt(missing.map((entry) => ({entry})))
        }
        const got = new Set([...res.fetched, ...res.copied, ...res.applied.filter((v) => !v.deleted).map((v) => v.path), ...missing.map((e) => e.path)])
        this.#count('messagesOut')
        return {transfer: {files: ftg.files.length, fetched: res.fetched.length + missing.length, skipped: 0, bytes}, got}
      },
    })
    if (applied.length) this.#forward(folder, applied, [peer.id])
    if (created.length) this.#forward(folder, created, [])
    return applied.length
  }

  /** Catches up with every peer of every folder; peers that are offline are skipped quietly. */
  async catchUp(): Promise<void> {
    for (const [folder, peers] of this.#peers) {
      for (const p of peers) {
        if (this.#stopping) return
        await this.pullFrom(folder, p).catch((err: Error) =>
          this.options.log.debug('catch-up skipped', {folder, peer: p.id.slice(0, 7), code: isFpeerError(err) ? err.code : 'E_INTERNAL', reason: err.message}),
        )
      }
    }
  }

  #forward(folder: string, versions: FileVersion[], exclude: string[]): void {
    if (this.#stopping || versions.length === 0) return
    void this.#track(this.pushVersions(folder, versions, exclude))
  }

  /** What both session contexts share. */
  #basics() {
    return {identity: this.options.identity, registry: this.options.registry, log: this.options.log, timeouts: this.options.timeouts ?? defaultTimeouts(), concurrency: this.options.concurrency ?? 8}
  }

  #isPeer(folder: string, id: PeerId): boolean {
    return (this.#peers.get(folder) ?? []).some((p) => p.id === id.toString())
  }

  #syncContext(): SyncContext {
    return {
      ...this.#basics(),
      ...(this.#localAddress ? {localAddress: this.#localAddress} : {}),
      sync: (folder) => this.#syncs.get(folder),
      isPeer: (folder, id) => this.#isPeer(folder, id),
      servedPort: (protocol) => this.#servers.get(protocol.toUpperCase())?.port,
      forward: (folder, versions, exclude) => this.#forward(folder, versions, exclude),
      freshNonce: (nonce) => {
        if (this.#nonces.has(nonce)) return false
        this.#nonces.set(nonce, Date.now())
        if (this.#nonces.size > 100_000) for (const k of [...this.#nonces.keys()].slice(0, 50_000)) this.#nonces.delete(k)
        return true
      },
      count: (what, n = 1) => this.#count(what, n),
    }
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
    if (this.options.control === false) return
    const ctx = this.#hostContext()
    const maxConnections = this.options.maxConnections ?? 256
    this.#control = net.createServer({allowHalfOpen: true}, (socket) => {
      if (this.#connections.size >= maxConnections) {
        socket.end('PeerError\n*\nE_BUSY\ntoo many connections\n\n')
        return
      }
      this.#connections.add(socket)
      socket.once('close', () => this.#connections.delete(socket))
      // The channel takes the socket's 'error' events at once: a peer that resets while the
      // configuration is read must not leave an unhandled 'error' that ends the process.
      const channel = new MessageChannel(socket)
      void (async () => {
        await this.refresh().catch((err: Error) => this.options.log.error('cannot read configuration', {reason: err.message}))
        await serveConnection(channel, ctx)
      })()
    })
    await new Promise<void>((resolve, reject) => {
      this.#control!.once('error', (err: NodeJS.ErrnoException) =>
        reject(new FpeerError(err.code === 'EADDRINUSE' ? 'E_USAGE' : 'E_IO', `cannot listen on ${this.options.host}:${this.options.controlPort}: ${err.message}`, {hint: err.code === 'EADDRINUSE' ? 'another fpeer serve runs there? pick --port' : undefined})),
      )
      this.#control!.listen(this.options.controlPort, this.options.host, () => resolve())
    })
    this.#refreshTimer = setInterval(() => {
      void this.refresh().catch(() => {})
      void this.#flushStats()
    }, 1000)
    this.#refreshTimer.unref()
    if (this.options.sync) {
      const rescanMs = this.options.rescanIntervalMs ?? Number(process.env.FPEER_RESCAN_INTERVAL_MS || 60_000)
      this.#rescanTimer = setInterval(() => {
        for (const f of this.#folders.keys()) this.#schedule(f, 0)
      }, rescanMs)
      this.#rescanTimer.unref()
      // 0 turns catching up off (at start and periodically); pushes and their retries remain.
      const syncMs = this.options.syncIntervalMs ?? Number(process.env.FPEER_SYNC_INTERVAL_MS ?? 300_000)
      if (syncMs > 0) {
        this.#syncTimer = setInterval(() => void this.#track(this.catchUp()), syncMs)
        this.#syncTimer.unref()
      }
      // Changes made while this peer was down: ours go out, theirs come in.
      void this.#track(
        (async () => {
          for (const f of this.#folders.keys()) await this.pushChanges(f).catch((err: Error) => this.options.log.warn('rescan failed', {folder: f, reason: err.message}))
          if (syncMs > 0) await this.catchUp()
        })(),
      )
    }
    this.options.log.info('peer listening', {id: this.options.identity.id.toString(), control: `${this.options.host}:${this.controlPort}`, folders: this.#folders.size})
  }

  async stop(): Promise<void> {
    this.#stopping = true
    for (const t of [this.#refreshTimer, this.#rescanTimer, this.#syncTimer]) if (t) clearInterval(t)
    for (const t of this.#pending.values()) clearTimeout(t)
    for (const r of this.#retries.values()) clearTimeout(r.timer)
    this.#retries.clear()
    for (const w of this.#watchers.values()) w.close()
    this.#watchers.clear()
    // Let pushes and applies under way finish (bounded), so nothing is left half-recorded.
    await Promise.race([Promise.allSettled([...this.#work]), new Promise((r) => setTimeout(r, 10_000).unref())])
    this.#statsDirty = true
    await this.#flushStats()
    for (const s of this.#connections) s.destroy()
    await new Promise<void>((resolve) => (this.#control ? this.#control.close(() => resolve()) : resolve()))
    await Promise.all([...this.#servers.values()].map((s) => s.close().catch(() => {})))
    this.#servers.clear()
  }

  /** The folder's file structure after a rescan, as file lines; changes the rescan found are pushed. */
  async fileList(folder: string): Promise<FileEntry[]> {
    const sync = this.#syncs.get(folder)
    if (!sync) throw new FpeerError('E_UNKNOWN_FOLDER', `no shared folder named ${JSON.stringify(folder)}`)
    const {versions} = await sync.rescan()
    if (versions.length) this.#forward(folder, versions, [])
    const all = await sync.records()
    return [...all.values()].filter((r) => isLive(r) || r.version).sort((a, b) => (a.path < b.path ? -1 : 1)).map(recordToEntry)
  }

  #hostContext(): HostContext {
    return {
      ...this.#basics(),
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
      isPeer: (folder, id) => this.#isPeer(folder, id),
      delegateFor: (folder, requester) => {
        // This connection is one of #connections: busy when the others reach the limit.
        if (this.#connections.size - 1 < (this.options.maxHandshakes ?? 64)) return undefined
        const candidates = (this.#peers.get(folder) ?? []).filter((p) => p.controlPort && !p.id.startsWith('plain:') && p.id !== requester.toString())
        if (candidates.length === 0) return undefined
        const p = candidates[this.#delegateTurn++ % candidates.length]!
        return {id: PeerId.parse(p.id), address: p.address, controlPort: p.controlPort!}
      },
      handlers: {FilesToGet: (channel, msg) => receiveUpdate(channel, msg, this.#syncContext())},
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
