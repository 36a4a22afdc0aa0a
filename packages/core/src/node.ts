// A running peer (`fpeer serve`): the control port, one transport server per protocol, and the folders' state.
import {writeFile} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {GrantTable} from './access/grants.js'
import {ReplayGuard} from './access/replay-guard.js'
import {FpeerError, isFpeerError} from './errors.js'
import {type Identity, PeerId} from './identity.js'
import {IgnoreRules} from './fs/ignore-rules.js'
import {LocalFileSource} from './fs/local-source.js'
import {FolderWatcher} from './fs/watch.js'
import {MessageChannel} from './net/channel.js'
import {ByteBudget, ConnectionGuard} from './net/limits.js'
import type {TransportRegistry} from './registry.js'
import {type HandshakeTimeouts, type HostContext, defaultTimeouts} from './session/context.js'
import {serveConnection} from './session/host.js'
import {requestFolder} from './session/requester.js'
import type {ConfigStore, FolderConfig} from './store/config.js'
import type {Home} from './store/home.js'
import {type FileRecord, type PeerRecord, isLive} from './store/peerfile.js'
import {FolderSync} from './sync/folder.js'
import {StateExchange} from './sync/exchange.js'
import {OwedForwards, applyOwing} from './sync/owed.js'
import {type SyncContext, fetcherFrom, pushUpdate, receiveUpdate} from './sync/update.js'
import {type FileVersion, entryToVersion, verifyVersion, versionToEntry} from './sync/version.js'
import {fetchFiles} from './transfer/fetch.js'
import {withPeerClient} from './transfer/peer-client.js'
import {removeLeftovers} from './fs/leftovers.js'
import type {AccessContext, Logger, TransportServer} from './transport.js'
import {type FileEntry, isDirEntry} from './wire/types.js'
import {CONTROL_BUFFER_BYTES, CONTROL_MAX_CONNECTIONS, CONTROL_MAX_PER_ADDRESS, DEFAULT_FIRST_LINE_TIMEOUT_MS, MAX_UPDATE_VERSIONS} from './wire/limits.js'

/** How long work under way (pushes, applies, handshakes) may go on after stop() before every connection is cut. */
export const STOP_GRACE_MS = 2500

/** The documented default ports: control, then one per built-in protocol. */
export const DEFAULT_CONTROL_PORT = 7734
export const DEFAULT_PORTS: Readonly<Record<string, number>> = {HTTP: 7735, FTP: 7736, SFTP: 7737}

export interface PeerNodeOptions {
  /** The home this node serves from: one object per process, owning the folders' queues. */
  home: Home
  identity: Identity
  registry: TransportRegistry
  log: Logger
  /** Address to listen on for everything. */
  host: string
  controlPort: number
  /** Port per protocol; 0 picks a free one; protocols not named use DEFAULT_PORTS or 0. */
  ports?: Record<string, number>
  concurrency?: number
  /** Control connections at once (default 256); see ConnectionGuard for how they are shared. */
  maxConnections?: number
  /** Control connections at once from one address (default 32). */
  maxConnectionsPerAddress?: number
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
  /** `HOST:PORT`s peers reach this control port at besides its own address (NAT, port forwards); see `dst=`. */
  publicAddresses?: string[]
  /** From accept to the first complete line on a control connection (default 10 s). */
  firstLineTimeoutMs?: number
  /** Bytes of unparsed messages held across all control connections (default 64 MiB). */
  controlBufferBytes?: number
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

/**
 * A server that cannot listen: a busy port is E_USAGE naming the flag that picks another
 * (`--port`, `--data-port HTTP=…`), an address not on this machine E_BAD_ADDRESS.
 */
function listenError(err: unknown, what: string, host: string, port: number, flag: string): FpeerError {
  const cause = (isFpeerError(err) ? err.cause : err) as NodeJS.ErrnoException | undefined
  const sys = cause?.code ?? (err as NodeJS.ErrnoException)?.code
  const details = {address: `${host}:${port}`, ...(sys ? {errno: sys} : {})}
  if (sys === 'EADDRINUSE') return new FpeerError('E_USAGE', `cannot listen on ${host}:${port} (${what}): the port is in use`, {cause: err, details, hint: `another program (another fpeer serve?) uses it: pick another with ${flag}`})
  if (sys === 'EADDRNOTAVAIL' || sys === 'ENOTFOUND' || sys === 'EAI_AGAIN') return new FpeerError('E_BAD_ADDRESS', `cannot listen on ${host}:${port} (${what}): not an address of this machine`, {cause: err, details, hint: 'give --host an address this machine has (0.0.0.0: all)'})
  if (sys === 'EACCES' || sys === 'EPERM') return new FpeerError('E_USAGE', `cannot listen on ${host}:${port} (${what}): permission denied`, {cause: err, details, hint: `ports below 1024 need privileges: pick another with ${flag}`})
  if (isFpeerError(err)) return err
  return new FpeerError('E_IO', `cannot listen on ${host}:${port} (${what}): ${(err as Error)?.message ?? String(err)}`, {cause: err, details})
}

/** Turns a record into its file line: version attributes when it has one, a tombstone when deleted. */
export function recordToEntry(r: FileRecord): FileEntry {
  const e = r.version ? versionToEntry(r.version) : {path: r.path, size: r.size, sha256: r.sha256, mtimeMs: r.mtimeMs}
  // The exec bit travels beside the version (covered by the message's signature, not the version's).
  return r.mode === 0o755 && !r.version?.deleted ? {...e, ext: {...e.ext, mode: '755'}} : e
}

export class PeerNode {
  readonly options: PeerNodeOptions
  readonly config: ConfigStore
  readonly #servers = new Map<string, TransportServer>()
  /** Who may read which folder right now (handshakes, updates), by secret or key (§4.6). */
  readonly #grants = new GrantTable()
  /** One guard for every conversation-opening message: requests and updates (§4.5). */
  readonly #replay = new ReplayGuard()
  readonly #connections = new Set<net.Socket>()
  #control: net.Server | undefined
  #guard: ConnectionGuard | undefined
  #folders = new Map<string, FolderConfig>()
  #peers = new Map<string, PeerRecord[]>()
  #refreshTimer: NodeJS.Timeout | undefined
  #rescanTimer: NodeJS.Timeout | undefined
  #syncTimer: NodeJS.Timeout | undefined
  readonly #syncs = new Map<string, FolderSync>()
  readonly #watchers = new Map<string, FolderWatcher>()
  readonly #pending = new Map<string, NodeJS.Timeout>()
  readonly #work = new Set<Promise<unknown>>()
  #stopping = false
  /** Aborted by stop() after its grace: update exchanges still under way (a hung peer's) are cut. */
  readonly #abort = new AbortController()
  #delegateTurn = 0
  readonly #retries = new Map<string, {versions: Map<string, FileVersion>; attempt: number; timer: NodeJS.Timeout | undefined}>()
  readonly stats: SyncStats = {messagesIn: 0, messagesOut: 0, filesFetched: 0, bytesFetched: 0, filesVerified: 0, pushes: 0, pulls: 0}
  #statsDirty = false

  readonly #exchange: StateExchange

  constructor(options: PeerNodeOptions) {
    this.options = options
    this.config = options.home.config
    this.#exchange = new StateExchange({
      log: options.log,
      sync: (f) => this.#syncs.get(f),
      peers: (f) => (this.#peers.get(f) ?? []).filter((p) => this.#forwardTargets(f, []).includes(p.id)),
      owed: (f) => new OwedForwards(options.home, f),
      pull: (f, p, seen) => this.pullFrom(f, p, seen),
      push: async (f, p, versions) => void (await this.pushVersions(f, versions, [], [p.id])),
    })
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
    for (const f of folders) peers.set(f.name, await this.options.home.peerfile(f.name).peers())
    this.#peers = peers
    // Unshared meanwhile (`fpeer unshare`): stop watching and syncing it; its files stay.
    for (const name of [...this.#syncs.keys()]) {
      if (this.#folders.has(name)) continue
      this.#syncs.delete(name)
      this.options.home.forget(name)
      this.#watchers.get(name)?.close()
      this.#watchers.delete(name)
      clearTimeout(this.#pending.get(name))
      this.#pending.delete(name)
      this.options.log.info('folder no longer shared', {folder: name})
    }
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
    await writeFile(path.join(this.options.home.dir, 'stats.json'), JSON.stringify({pid: process.pid, ...this.stats}) + '\n', {mode: 0o600}).catch(() => {})
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

  /** IDs of the folder's peers that updates go to (confirmed, with a control port, not seed-form), but `exclude`. */
  #forwardTargets(folder: string, exclude: readonly string[]): string[] {
    return (this.#peers.get(folder) ?? []).filter((p) => p.controlPort && !p.id.startsWith('plain:') && !exclude.includes(p.id)).map((p) => p.id)
  }

  /** Pushes versions to every confirmed peer of the folder but `exclude` (IDs), or to `only` those; failures are logged, the peer catches up later. */
  async pushVersions(folder: string, versions: FileVersion[], exclude: string[], only?: string[]): Promise<{peers: number; failed: number}> {
    const ids = this.#forwardTargets(folder, exclude).filter((id) => !only || only.includes(id))
    const peers = (this.#peers.get(folder) ?? []).filter((p) => ids.includes(p.id))
    let failed = 0
    await Promise.all(
      peers.map(async (p) => {
        try {
          this.#count('pushes')
          await this.#deliver(folder, p, versions)
        } catch (err) {
          failed++
          const code = isFpeerError(err) ? err.code : 'E_INTERNAL'
          this.options.log.warn('push failed; will retry, and the peer catches up when it returns', {folder, peer: p.id.slice(0, 7), code, reason: (err as Error).message})
          if (this.options.sync && RETRY_CODES.has(code)) {
            this.#exchange.lost(folder, p.id)
            this.#retryLater(folder, p.id, versions)
          }
        }
      }),
    )
    return {peers: peers.length, failed}
  }

  /** One push (10.2); what the peer confirmed is no longer owed to it, and a peer back after a loss gets a state exchange. */
  async #deliver(folder: string, peer: PeerRecord, versions: FileVersion[]): Promise<void> {
    await pushUpdate(this.#syncContext(), folder, peer, versions)
    await new OwedForwards(this.options.home, folder).paid(peer.id, versions).catch((err: Error) => this.options.log.warn('cannot record a delivered forward', {folder, reason: err.message}))
    if (this.#exchange.regained(folder, peer.id) && !this.#stopping) {
      void this.#track(this.#exchange.withPeer(folder, peer).catch((err: Error) => this.options.log.warn('state exchange failed', {folder, peer: peer.id.slice(0, 7), code: isFpeerError(err) ? err.code : 'E_INTERNAL', reason: err.message})))
    }
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
        this.#deliver(folder, peer, batch).then(
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
  async pullFrom(folder: string, peer: PeerRecord, seen?: (files: FileEntry[]) => void): Promise<number> {
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
        // The peer's own structure only: a busy peer may have handed us to another (10.5).
        if (ftg.meta.id === PeerId.parse(peer.id).compact) seen?.(ftg.files)
        const versions: FileVersion[] = []
        const originals: FileEntry[] = []
        for (const e of ftg.files) {
          const v = entryToVersion(e)
          if (v) {
            verifyVersion(folder, v)
            versions.push(v)
          } else if (e.ext?.del !== '1') originals.push(e)
        }
        const res = await applyOwing(new OwedForwards(this.options.home, folder), this.#forwardTargets(folder, [peer.id]), this.#forwardTargets(folder, []), versions, () => sync.records(), () => sync.apply(versions, fetcherFrom(ctx, folder, from)))
        applied = res.applied
        created = res.created
        const records = await sync.records()
        const rules = IgnoreRules.load(sync.folder.path)
        const missing = originals.filter((e) => !isDirEntry(e) && !records.has(e.path) && !rules.ignores(e.path))
        let bytes = 0
        if (missing.length > 0) {
          bytes = (await withPeerClient(ctx, {localAddress: ctx.localAddress, ...from}, (client) => fetchFiles({client, folder, files: missing, mode: 'land', root: sync.folder.path, concurrency: ctx.concurrency}))).bytes
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

  /** Exchanges state with every peer of every folder (at start, and the periodic catch-up: 10.4); offline peers are skipped. */
  async catchUp(quiet = true): Promise<void> {
    await this.#exchange.all([...this.#folders.keys()], () => this.#stopping, quiet)
  }

  #forward(folder: string, versions: FileVersion[], exclude: string[]): void {
    if (this.#stopping || versions.length === 0) return
    void this.#track(this.pushVersions(folder, versions, exclude))
  }

  /** What both session contexts share. */
  #basics() {
    return {identity: this.options.identity, registry: this.options.registry, log: this.options.log, timeouts: this.options.timeouts ?? defaultTimeouts(), concurrency: this.options.concurrency ?? 8, publicAddresses: this.options.publicAddresses ?? []}
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
      owed: (folder) => new OwedForwards(this.options.home, folder),
      forwardTargets: (folder, exclude) => this.#forwardTargets(folder, exclude),
      replay: this.#replay,
      grant: (folder, peer) => this.#grants.issue(folder, peer),
      count: (what, n = 1) => this.#count(what, n),
      signal: this.#abort.signal,
    }
  }

  #mayRead(folder: string, who: AccessContext): boolean {
    const f = this.#folders.get(folder)
    if (!f) return false
    if (f.open) return true
    if (this.#grants.allows(folder, who)) return true
    // A confirmed peer that logs in by key (SFTP) may read; by address alone, nobody may.
    const id = who.peer?.toString()
    return id !== undefined && (this.#peers.get(folder) ?? []).some((p) => p.id === id)
  }

  /**
   * Starts every server, or none: when a port is busy (or any server fails to start) the ones
   * already listening are closed and the error is thrown, so `fpeer serve` exits at once.
   */
  async start(): Promise<void> {
    try {
      await this.#start()
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  async #start(): Promise<void> {
    await this.refresh()
    if (this.options.sync) {
      // A kill -9 mid-update or mid-fetch leaves staging folders and part files nothing else removes.
      for (const f of this.#folders.values()) {
        const left = await removeLeftovers(f.path)
        if (left.removed.length) this.options.log.info('removed leftovers of an interrupted transfer', {folder: f.name, entries: left.removed.length, bytes: left.bytes})
      }
    }
    const source = new LocalFileSource({root: (f) => this.#folders.get(f)?.path, mayRead: (f, who) => this.#mayRead(f, who)}, () => [...this.#folders.keys()])
    for (const {transport} of this.options.registry.list()) {
      if (!transport.supports.serve || !transport.serve) continue
      const p = transport.protocol.toUpperCase()
      const port = this.options.ports?.[p] ?? DEFAULT_PORTS[p] ?? 0
      const server = await transport
        .serve({
          host: this.options.host,
          port,
          files: source,
          identity: this.options.identity,
          admit: (who) => [...this.#folders.keys()].some((f) => this.#mayRead(f, who)),
          log: this.options.log,
        })
        .catch((err: unknown) => {
          throw listenError(err, `${p} transfer server`, this.options.host, port, `--data-port ${p}=PORT (0: any free port)`)
        })
      this.#servers.set(p, server)
      this.options.log.info('serving files', {protocol: p, address: `${server.host}:${server.port}`})
    }
    if (this.options.control === false) return
    const ctx = this.#hostContext()
    const firstMs = this.options.firstLineTimeoutMs ?? DEFAULT_FIRST_LINE_TIMEOUT_MS
    const messageMs = ctx.timeouts.message
    // One budget for every control connection: many large messages at once cannot add up past it.
    const budget = new ByteBudget(this.options.controlBufferBytes ?? CONTROL_BUFFER_BYTES)
    const guard = new ConnectionGuard({
      name: 'control',
      // After its first line a connection is bounded by the channel's message deadline (a typed
      // E_MSG_TIMEOUT); the guard's idle deadline is only the backstop. After its first message it
      // runs a conversation, bounded by the handshake's own reply and transfer timeouts.
      limits: {maxConnections: this.options.maxConnections ?? CONTROL_MAX_CONNECTIONS, maxPerAddress: this.options.maxConnectionsPerAddress ?? CONTROL_MAX_PER_ADDRESS, firstMs, idleMs: messageMs + 5000},
      log: this.options.log,
      farewell: (why, conn) =>
        why !== 'timeout' ? 'PeerError\n*\nE_BUSY\ntoo many connections\n\n' : `PeerError\n*\nE_MSG_TIMEOUT\n${conn?.started ? `message not complete within ${messageMs} ms` : `no complete line within ${firstMs} ms`}\n\n`,
    })
    this.#guard = guard
    this.#control = net.createServer({allowHalfOpen: true}, (socket) => {
      const conn = guard.admit(socket)
      if (!conn) return
      this.#connections.add(socket)
      socket.once('close', () => this.#connections.delete(socket))
      // A conversation opens with a request (no files) or an update (at most MAX_UPDATE_VERSIONS): a bigger first message is refused as it arrives.
      const channel = new MessageChannel(socket, {messageTimeoutMs: messageMs, budget, firstMaxFiles: MAX_UPDATE_VERSIONS, onProgress: (what) => (what === 'line' ? conn.idle() : conn.busy())})
      void (async () => {
        await this.refresh().catch((err: Error) => this.options.log.error('cannot read configuration', {reason: err.message}))
        await serveConnection(channel, ctx)
      })().catch((err: Error) => {
        this.options.log.error('control connection failed', {reason: err.message})
        socket.destroy()
      })
    })
    this.#control.on('error', (err) => this.options.log.warn('control server error', {reason: err.message}))
    await new Promise<void>((resolve, reject) => {
      this.#control!.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, 'control port', this.options.host, this.options.controlPort, '--port PORT')))
      this.#control!.listen(this.options.controlPort, this.options.host, () => resolve())
    })
    this.#refreshTimer = setInterval(() => {
      void this.refresh().catch(() => {})
      void this.#flushStats()
    }, 1000)
    this.#refreshTimer.unref()
    if (this.options.sync) {
      const rescanMs = this.options.rescanIntervalMs ?? 60_000
      this.#rescanTimer = setInterval(() => {
        for (const f of this.#folders.keys()) this.#schedule(f, 0)
      }, rescanMs)
      this.#rescanTimer.unref()
      // 0 turns catching up off (at start and periodically); pushes and their retries remain.
      const syncMs = this.options.syncIntervalMs ?? 300_000
      if (syncMs > 0) {
        this.#syncTimer = setInterval(() => void this.#track(this.catchUp()), syncMs)
        this.#syncTimer.unref()
      }
      // Changes made while this peer was down: ours go out; then a state exchange with every
      // peer (even with the periodic catch-up off) takes theirs and hands over what we owe.
      void this.#track(
        (async () => {
          for (const f of this.#folders.keys()) await this.pushChanges(f).catch((err: Error) => this.options.log.warn('rescan failed', {folder: f, reason: err.message}))
          await this.catchUp(false)
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
    // No new connections; the idle ones go now, whatever their peers do.
    const listening = new Promise<void>((resolve) => (this.#control ? this.#control.close(() => resolve()) : resolve()))
    this.#guard?.closeIdle()
    // Let pushes, applies and handshakes under way finish (briefly), so nothing is left half-recorded.
    const end = Date.now() + STOP_GRACE_MS
    while (Date.now() < end && (this.#work.size > 0 || this.#connections.size > 0)) await new Promise((r) => setTimeout(r, 50))
    // Then every socket of every server is cut, and every update exchange we opened, so that stop() ends within seconds.
    this.#abort.abort()
    this.#guard?.close()
    for (const s of this.#connections) s.destroy()
    const bounded = (p: Promise<unknown>) => Promise.race([p.catch(() => {}), new Promise((r) => setTimeout(r, 1500).unref())])
    await bounded(Promise.all([listening, ...[...this.#servers.values()].map((s) => s.close())]))
    this.#servers.clear()
    this.#statsDirty = true
    await this.#flushStats()
  }

  /** The folder's file structure after a rescan, as file lines; changes the rescan found are pushed. */
  async fileList(folder: string): Promise<FileEntry[]> {
    const sync = this.#syncs.get(folder)
    if (!sync) throw new FpeerError('E_UNKNOWN_FOLDER', `no shared folder named ${JSON.stringify(folder)}`)
    const {versions, records: all} = await sync.rescan()
    if (versions.length) this.#forward(folder, versions, [])
    const files = [...all.values()].filter((r) => isLive(r) || r.version).map(recordToEntry)
    // Empty directories as of this scan: not part of the structure (no versions), offered as they are now.
    const dirs: FileEntry[] = (sync.lastSkips.emptyDirs ?? []).map((d) => ({path: d, ext: {type: 'dir'}}))
    return [...files, ...dirs].sort((a, b) => (a.path < b.path ? -1 : 1))
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
        // Handshakes under way, this one included; idle connections (a flood of them) do not make the host busy.
        if ((this.#guard?.busy ?? 1) - 1 < (this.options.maxHandshakes ?? 64)) return undefined
        const candidates = (this.#peers.get(folder) ?? []).filter((p) => p.controlPort && !p.id.startsWith('plain:') && p.id !== requester.toString())
        if (candidates.length === 0) return undefined
        const p = candidates[this.#delegateTurn++ % candidates.length]!
        return {id: PeerId.parse(p.id), address: p.address, controlPort: p.controlPort!}
      },
      handlers: {FilesToGet: (channel, msg) => receiveUpdate(channel, msg, this.#syncContext())},
      servedPort: (protocol) => this.#servers.get(protocol.toUpperCase())?.port,
      grant: (folder, peer) => this.#grants.issue(folder, peer),
      replay: this.#replay,
      confirmPeer: async (folder, record) => {
        await this.options.home.peerfile(folder).addPeer(record)
        await this.refresh()
      },
    }
  }
}
