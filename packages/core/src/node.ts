// A running peer (`fpeer serve`): the control port, one transport server per protocol, and the folders' state.
import {setMaxListeners} from 'node:events'
import {writeFile} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {type Grant, GrantTable} from './access/grants.js'
import {ReplayGuard} from './access/replay-guard.js'
import {FpeerError, isFpeerError} from './errors.js'
import {type Identity, PeerId} from './identity.js'
import {LocalFileSource} from './fs/local-source.js'
import {FolderWatcher} from './fs/watch.js'
import {MessageChannel} from './net/channel.js'
import {ByteBudget, ConnectionGuard} from './net/limits.js'
import type {TransportRegistry} from './registry.js'
import {type HandshakeTimeouts, type HostContext, defaultTimeouts} from './session/context.js'
import {refusalEndsTrust} from './session/handshake.js'
import {serveConnection} from './session/host.js'
import {ConfigStore, type FolderConfig} from './store/config.js'
import {type FileRecord, Peerfile, type PeerRecord, isLive} from './store/peerfile.js'
import {FolderSync} from './sync/folder.js'
import {StateExchange} from './sync/exchange.js'
import {PeerSync} from './sync/peer-sync.js'
import {OwedForwards} from './sync/owed.js'
import {type SyncContext, receiveUpdate} from './sync/update.js'
import {type FileVersion, versionToEntry} from './sync/version.js'
import {removeLeftovers} from './fs/leftovers.js'
import type {AccessContext, Logger, TransportServer} from './transport.js'
import type {FileEntry} from './wire/types.js'
import {CONTROL_BUFFER_BYTES, CONTROL_MAX_CONNECTIONS, CONTROL_MAX_PER_ADDRESS, DEFAULT_FIRST_LINE_TIMEOUT_MS, MAX_UPDATE_VERSIONS} from './wire/limits.js'

/** How long work under way (pushes, applies, handshakes) may go on after stop() before every connection is cut. */
export const STOP_GRACE_MS = 2500

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
  readonly stats: SyncStats = {messagesIn: 0, messagesOut: 0, filesFetched: 0, bytesFetched: 0, filesVerified: 0, pushes: 0, pulls: 0}
  #statsDirty = false

  readonly #exchange: StateExchange
  readonly #peerSync: PeerSync
  #catchingUp: Promise<void> | undefined
  readonly #listings = new Map<string, Promise<FileEntry[]>>()

  constructor(options: PeerNodeOptions) {
    this.options = options
    // One listener per operation under way (scoped signals, net/abort.ts), and those are bounded per peer
    // (sync/push-queue.ts): past Node's default of 10 with a few peers, but a leak would still pass 256.
    setMaxListeners(256, this.#abort.signal)
    this.config = new ConfigStore(options.home)
    this.#exchange = new StateExchange({
      log: options.log,
      sync: (f) => this.#syncs.get(f),
      peers: (f) => (this.#peers.get(f) ?? []).filter((p) => this.#forwardTargets(f, []).includes(p.id)),
      owed: (f) => new OwedForwards(options.home, f),
      pull: (f, p, seen) => this.pullFrom(f, p, seen),
      push: async (f, p, versions) => void (await this.pushVersions(f, versions, [], [p.id])),
    })
    this.#peerSync = new PeerSync({
      ...this.#basics(),
      home: options.home,
      daemon: options.sync === true,
      localAddress: () => this.#localAddress,
      controlPort: () => this.controlPort,
      sync: (f) => this.#syncs.get(f),
      peers: (f) => this.#peers.get(f) ?? [],
      forwardTargets: (f, exclude) => this.#forwardTargets(f, exclude),
      syncContext: () => this.#syncContext(),
      count: (what) => this.#count(what),
      track: (p) => this.#track(p),
      exchange: this.#exchange,
      stopping: () => this.#stopping,
      refused: (f, id) => this.#refusedBy(f, id),
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
    for (const f of folders) peers.set(f.name, await new Peerfile(this.options.home, f.name).peers())
    this.#peers = peers
    // Unshared meanwhile (`fpeer unshare`): stop watching and syncing it; its files stay.
    for (const name of [...this.#syncs.keys()]) {
      if (this.#folders.has(name)) continue
      this.#syncs.delete(name)
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
  pushChanges(folder: string): Promise<{versions: number; peers: number; failed: number}> {
    return this.#peerSync.pushChanges(folder)
  }

  /** IDs of the folder's peers that updates go to (confirmed, with a control port, not seed-form), but `exclude`. */
  #forwardTargets(folder: string, exclude: readonly string[]): string[] {
    return (this.#peers.get(folder) ?? []).filter((p) => p.controlPort && !p.id.startsWith('plain:') && !exclude.includes(p.id)).map((p) => p.id)
  }

  /** Pushes versions to the folder's peers but `exclude`, or to `only` those (see PeerSync). */
  pushVersions(folder: string, versions: FileVersion[], exclude: string[], only?: string[]): Promise<{peers: number; failed: number}> {
    return this.#peerSync.pushVersions(folder, versions, exclude, only)
  }

  /** Catches up with one peer (see PeerSync.pullFrom). */
  pullFrom(folder: string, peer: PeerRecord, seen?: (files: FileEntry[]) => void): Promise<number> {
    return this.#peerSync.pullFrom(folder, peer, seen)
  }

  /**
   * A peer refused us with a signed E_NOT_ALLOWED (10.6): it no longer counts us as a peer of
   * the folder, so we stop counting it: it leaves the peerlist (no more pushes or pulls; it may
   * join again as any peer does), its push retries stop and what we owed it is dropped. Said
   * once, however many pushes to it were under way. False when the peer is kept: it joined us
   * moments ago and may not have recorded us yet (refusalEndsTrust).
   */
  async #refusedBy(folder: string, peerId: string): Promise<boolean> {
    const record = (this.#peers.get(folder) ?? []).find((p) => p.id === peerId)
    if (!record) return true
    if (!refusalEndsTrust(record)) return false
    // Its push lane is dropped by the queue once the peer is no longer in the peerlist.
    try {
      if (!(await new Peerfile(this.options.home, folder).removePeer(peerId))) return true
      await this.refresh()
      const owed = new OwedForwards(this.options.home, folder)
      const dropped = (await owed.all()).get(peerId)?.length ?? 0
      await owed.keepOnly((this.#peers.get(folder) ?? []).map((p) => p.id))
      this.options.log.warn('peer refused us (signed): it does not count us as a peer of the folder; removed from the peerlist, forwards owed to it dropped', {folder, peer: peerId.slice(0, 7), code: 'E_NOT_ALLOWED', owed: dropped})
    } catch (err) {
      this.options.log.warn('cannot drop a peer that refused us', {folder, peer: peerId.slice(0, 7), code: isFpeerError(err) ? err.code : 'E_INTERNAL', reason: (err as Error).message})
    }
    return true
  }

  /** Exchanges state with every peer of every folder (at start, and the periodic catch-up: 10.4); offline peers are skipped. */
  catchUp(quiet = true): Promise<void> {
    // A round still under way when the next is due (a slow peer, a busy machine) is joined, not doubled.
    this.#catchingUp ??= this.#exchange.all([...this.#folders.keys()], () => this.#stopping, quiet).finally(() => (this.#catchingUp = undefined))
    return this.#catchingUp
  }

  #forward(folder: string, versions: FileVersion[], exclude: string[]): void {
    this.#peerSync.forward(folder, versions, exclude)
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
      grant: (folder, peer) => this.#grant(folder, peer),
      count: (what, n = 1) => this.#count(what, n),
      signal: this.#abort.signal,
    }
  }

  /** A read grant for one exchange with `peer`: it is talking to us, so pushes to it that wait out a backoff go now. */
  #grant(folder: string, peer: PeerId | undefined): Grant {
    if (peer) this.#peerSync.heardFrom(folder, peer.toString())
    return this.#grants.issue(folder, peer)
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
    this.#peerSync.start(this.#abort.signal)
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
    this.#peerSync.stop()
    for (const w of this.#watchers.values()) w.close()
    this.#watchers.clear()
    // No new connections; the idle ones go now, whatever their peers do.
    const listening = new Promise<void>((resolve) => (this.#control ? this.#control.close(() => resolve()) : resolve()))
    this.#guard?.closeIdle()
    // Let pushes, applies and handshakes under way finish (briefly), so nothing is left half-recorded.
    const end = Date.now() + STOP_GRACE_MS
    while (Date.now() < end && (this.#work.size > 0 || this.#connections.size > 0)) await new Promise((r) => setTimeout(r, 50))
    // Then every socket of every server is cut, and every update exchange we opened, so that stop() ends within seconds.
    this.#abort.abort(new FpeerError('E_INTERRUPTED', 'the peer is stopping'))
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
    // Requests that arrive while a listing is being made share it: under churn every neighbour's
    // catch-up asks at once, and a rescan each, queued behind the folder's applies, made their
    // handshakes time out (and be retried, adding more).
    let listing = this.#listings.get(folder)
    if (!listing) {
      listing = this.#fileList(folder).finally(() => this.#listings.delete(folder))
      this.#listings.set(folder, listing)
    }
    return [...(await listing)]
  }

  async #fileList(folder: string): Promise<FileEntry[]> {
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
      grant: (folder, peer) => this.#grant(folder, peer),
      replay: this.#replay,
      confirmPeer: async (folder, record) => {
        // A confirmed peer catching up keeps how and when it first joined (`role`, `confirmedAt`):
        // its catch-ups must not restart the grace a fresh joiner gets (10.6).
        const had = (this.#peers.get(folder) ?? []).find((p) => p.id === record.id)
        await new Peerfile(this.options.home, folder).addPeer(had ? {...record, role: had.role, confirmedAt: had.confirmedAt} : record)
        await this.refresh()
      },
    }
  }
}
