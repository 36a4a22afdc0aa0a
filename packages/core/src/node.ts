// A running peer (`fpeer serve`): composes its parts (access, stats, folder runners, transfer servers, control server, catch-up) under one lifecycle, and pushes and pulls updates.
import {setMaxListeners} from 'node:events'
import {AccessControl} from './access/control.js'
import type {Grant} from './access/grants.js'
import {FpeerError, isFpeerError} from './errors.js'
import {type Identity, PeerId} from './identity.js'
import {LocalFileSource} from './fs/local-source.js'
import {Lifecycle, type Startable, Tasks} from './lifecycle.js'
import {ControlServer} from './net/control-server.js'
import type {TransportRegistry} from './registry.js'
import {type HandshakeTimeouts, type HostContext, defaultTimeouts} from './session/context.js'
import {refusalEndsTrust} from './session/handshake.js'
import {serveConnection} from './session/host.js'
import type {ConfigStore, FolderConfig} from './store/config.js'
import type {Home} from './store/home.js'
import {type FileRecord, Peerfile, type PeerRecord, isLive} from './store/peerfile.js'
import {StatsFile, type SyncStats} from './store/stats.js'
import {IdleReclaim} from './memory.js'
import {CatchUp} from './sync/catch-up.js'
import {StateExchange} from './sync/exchange.js'
import {FolderRunner, FolderRunners} from './sync/folder-runner.js'
import {OwedForwards} from './sync/owed.js'
import {PeerSync} from './sync/peer-sync.js'
import {type SyncContext, receiveUpdate} from './sync/update.js'
import {type FileVersion, versionToEntry} from './sync/version.js'
import {TransportServers} from './transfer/servers.js'
import type {Logger} from './transport.js'
import {type FileEntry, extWith, withExt} from './wire/types.js'

export {DEFAULT_PORTS} from './transfer/servers.js'
export type {SyncStats} from './store/stats.js'

/** How long work under way (pushes, applies, handshakes) may go on after stop() began before every connection is cut. */
export const STOP_GRACE_MS = 2500
/** How long the node's own work (pushes, rescans, catch-up rounds) may take to end once cancelled. */
const CANCEL_GRACE_MS = 1000

/** The documented default control port. */
export const DEFAULT_CONTROL_PORT = 7734

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
  /** Full rescan every this many ms; a file-system event rescans only the paths it named (FolderSync.rescan). */
  rescanIntervalMs?: number
  /** Catch up with every peer every this many ms (and at start). */
  syncIntervalMs?: number
  /** `HOST:PORT`s peers reach this control port at besides its own address (NAT, port forwards); see `dst=`. */
  publicAddresses?: string[]
  /** From accept to the first complete line on a control connection (default 10 s). */
  firstLineTimeoutMs?: number
  /** Bytes of unparsed messages held across all control connections (default 64 MiB). */
  controlBufferBytes?: number
  /** A serving node idle this long (ms) after its heap grew gives the memory back (memory.ts); 0 or unset: never. */
  idleReclaimMs?: number
}

/** Turns a record into its file line: version attributes when it has one, a tombstone when deleted. */
export function recordToEntry(r: FileRecord): FileEntry {
  const e = r.version ? versionToEntry(r.version) : {path: r.path, size: r.size, sha256: r.sha256, mtimeMs: r.mtimeMs}
  // The exec bit travels beside the version (covered by the message's signature, not the version's).
  return r.mode === 0o755 && !r.version?.deleted ? withExt(e, extWith(e.ext, 'mode', '755')) : e
}

/**
 * The parts, in start order (stopped in reverse): access (folders, peers, grants; re-read
 * every second), stats, the folder runners (leftovers cleaned before any server opens), the
 * transfer servers, the control server, the node's own work, the catch-up rounds. One
 * AbortSignal (the lifecycle's) reaches every part and every push, pull and exchange.
 */
export class PeerNode {
  readonly options: PeerNodeOptions
  readonly config: ConfigStore
  readonly #access: AccessControl
  readonly #stats: StatsFile
  readonly #runners: FolderRunners
  readonly #servers: TransportServers
  readonly #control: ControlServer | undefined
  /** Pushes, forwards and rescans started and not awaited: cancelled through the signal at stop, then given a short grace. */
  readonly #work = new Tasks({graceMs: CANCEL_GRACE_MS})
  readonly #life: Lifecycle
  readonly #exchange: StateExchange
  /** The FolderSync of each folder, as the push and pull code looks it up. */
  readonly #syncs = {get: (folder: string) => this.#runners.get(folder)?.sync}
  #delegateTurn = 0
  readonly #peerSync: PeerSync
  #catchingUp: Promise<void> | undefined
  readonly #listings = new Map<string, Promise<FileEntry[]>>()

  constructor(options: PeerNodeOptions) {
    this.options = options
    this.config = options.home.config
    const control = options.control !== false
    const live = !!options.sync && control
    this.#runners = new FolderRunners({
      log: options.log,
      // An unshared folder's peerfile (and journal cache) is dropped with its runner.
      onRemove: (folder) => options.home.forget(folder),
      make: (f: FolderConfig, clean: boolean) =>
        new FolderRunner(f, {
          home: options.home,
          identity: options.identity,
          log: options.log,
          live,
          clean,
          rescanMs: options.rescanIntervalMs ?? 60_000,
          rescan: (folder) =>
            void this.#track(this.pushChanges(folder, {settle: true}).catch((err: Error) => options.log.warn('rescan failed', {folder, reason: err.message}))),
        }),
    })
    // Configuration is re-read every second by a serving peer; a one-shot node reads it once.
    this.#access = new AccessControl({
      home: options.home,
      config: this.config,
      log: options.log,
      onRefresh: (folders) => this.#runners.update(folders),
      ...(control ? {refreshMs: 1000} : {}),
    })
    const reclaim =
      control && options.idleReclaimMs
        ? new IdleReclaim({
            idleMs: options.idleReclaimMs,
            onReclaim: (r) => {
              options.log.debug('idle: memory given back', {heapBefore: r.before, heapAfter: r.after, ms: Math.round(r.ms)})
              this.#stats.touch()
            },
            onUnavailable: (reason) => options.log.info('idle memory reclaim unavailable', {reason}),
          })
        : undefined
    this.#stats = new StatsFile({home: options.home.dir, ...(control ? {flushMs: 1000} : {}), ...(reclaim ? {reclaims: () => reclaim.reclaims} : {})})
    this.#servers = new TransportServers({
      registry: options.registry,
      host: options.host,
      ...(options.ports ? {ports: options.ports} : {}),
      files: new LocalFileSource(this.#access, () => this.#access.names()),
      identity: options.identity,
      admit: (who) => this.#access.admits(who),
      log: options.log,
    })
    this.#exchange = new StateExchange({
      log: options.log,
      sync: (f) => this.#syncs.get(f),
      peers: (f) => (this.#peers.get(f) ?? []).filter((p) => this.#forwardTargets(f, []).includes(p.id)),
      owed: (f) => new OwedForwards(options.home, f),
      pull: (f, p, seen) => this.pullFrom(f, p, seen),
      push: async (f, p, versions) => void (await this.pushVersions(f, versions, [], [p.id])),
      // A serving peer tries an unreached exchange again on its own; a one-shot node does not.
      signal: () => (options.sync && options.control !== false ? this.#life.signal : undefined),
      track: (p) => this.#track(p),
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
    const parts: Startable[] = [this.#access, this.#stats, this.#runners, this.#servers]
    if (reclaim) parts.push(reclaim)
    if (control) {
      const timeouts = options.timeouts ?? defaultTimeouts()
      const ctx = this.#hostContext()
      this.#control = new ControlServer({
        host: options.host,
        port: options.controlPort,
        messageTimeoutMs: timeouts.message,
        ...(options.firstLineTimeoutMs !== undefined ? {firstLineTimeoutMs: options.firstLineTimeoutMs} : {}),
        ...(options.maxConnections !== undefined ? {maxConnections: options.maxConnections} : {}),
        ...(options.maxConnectionsPerAddress !== undefined ? {maxConnectionsPerAddress: options.maxConnectionsPerAddress} : {}),
        ...(options.controlBufferBytes !== undefined ? {bufferBytes: options.controlBufferBytes} : {}),
        graceMs: STOP_GRACE_MS,
        log: options.log,
        serve: async (channel) => {
          await this.refresh().catch((err: Error) => options.log.error('cannot read configuration', {reason: err.message}))
          await serveConnection(channel, ctx)
        },
      })
      parts.push(this.#control)
    }
    parts.push(this.#work)
    // The push queue: its backoff timers end with the signal; waiting pushes are dropped at stop.
    parts.push({start: async (signal) => this.#peerSync.start(signal), stop: async () => this.#peerSync.stop()})
    if (live) {
      // 0 turns the periodic catch-up off; the start-up round (and pushes and their retries) remain.
      parts.push(
        new CatchUp({
          folders: () => this.#access.names(),
          rescan: (f) => this.pushChanges(f).catch((err: Error) => options.log.warn('rescan failed', {folder: f, reason: err.message})),
          exchange: (folders, stopping, quiet) =>
            this.#round(folders, stopping, quiet).catch((err: Error) => options.log.warn('catch-up failed', {reason: err.message})),
          intervalMs: options.syncIntervalMs ?? 300_000,
          graceMs: CANCEL_GRACE_MS,
        }),
      )
    }
    this.#life = new Lifecycle(parts)
    // One listener per operation under way (scoped signals, net/abort.ts), and those are bounded per peer
    // (sync/push-queue.ts): past Node's default of 10 with a few peers, but a leak would still pass 256.
    setMaxListeners(256, this.#life.signal)
  }

  get controlPort(): number {
    return this.#control?.port ?? this.options.controlPort
  }

  /** Ports of the running transport servers, by protocol. */
  get ports(): Record<string, number> {
    return this.#servers.ports
  }

  /** Counters of update traffic (also in `stats.json`). */
  get stats(): SyncStats {
    return this.#stats.stats
  }

  /** Re-reads folders and peerlists written by other fpeer processes (`fpeer share`, `fpeer allow`); starts and stops folder runners to match. */
  async refresh(): Promise<void> {
    await this.#access.refresh()
  }

  /**
   * Starts every part in order, or none: when a port is busy (or any part fails to start) the
   * parts already started are stopped and the error is thrown, so `fpeer serve` exits at once.
   */
  async start(): Promise<void> {
    try {
      await this.#life.start()
    } catch (err) {
      await this.stop()
      throw err
    }
    if (this.#control)
      this.options.log.info('peer listening', {
        id: this.options.identity.id.toString(),
        control: `${this.options.host}:${this.controlPort}`,
        folders: this.#access.folders.size,
      })
  }

  /**
   * Aborts the one signal (timers, watchers and listening sockets end; pushes, pulls and
   * exchanges under way are cut), lets conversations under way finish within STOP_GRACE_MS,
   * and stops the parts in reverse; the last stats are written. Safe twice, and before start().
   */
  async stop(): Promise<void> {
    await this.#life.stop()
  }

  get #stopping(): boolean {
    return this.#life.signal.aborted
  }

  get #folders(): ReadonlyMap<string, FolderConfig> {
    return this.#access.folders
  }

  get #peers(): ReadonlyMap<string, PeerRecord[]> {
    return this.#access.peersByFolder
  }

  /** The address outgoing connections come from, so peers know where to fetch back. */
  get #localAddress(): string | undefined {
    const h = this.options.host
    return h === '0.0.0.0' || h === '::' || h === '' ? undefined : h
  }

  #track<T>(p: Promise<T>): Promise<T> {
    return this.#work.track(p)
  }

  #count(what: keyof SyncStats, n = 1): void {
    this.#stats.count(what, n)
  }

  /** Rescans a folder and pushes every new version to its peers (`fpeer push`, the watcher: `settle`, FolderSync.rescan). */
  pushChanges(folder: string, options: {settle?: boolean} = {}): Promise<{versions: number; peers: number; failed: number}> {
    return this.#peerSync.pushChanges(folder, options)
  }

  /** IDs of the folder's peers that updates go to (confirmed, with a control port, not seed-form), but `exclude`. */
  #forwardTargets(folder: string, exclude: readonly string[]): string[] {
    return this.#access.forwardTargets(folder, exclude)
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
   * join again as any peer does), its queued pushes are dropped and what we owed it too. Said
   * once, however many pushes to it were under way. False when the peer is kept: it joined us
   * moments ago and may not have recorded us yet (refusalEndsTrust).
   */
  async #refusedBy(folder: string, peerId: string): Promise<boolean> {
    const record = (this.#peers.get(folder) ?? []).find((p) => p.id === peerId)
    if (!record) return true
    if (!refusalEndsTrust(record)) return false
    // Its push lane is dropped by the queue once the peer is no longer in the peerlist.
    try {
      if (!(await this.options.home.peerfile(folder).removePeer(peerId))) return true
      await this.refresh()
      const owed = new OwedForwards(this.options.home, folder)
      const dropped = (await owed.all()).get(peerId)?.length ?? 0
      await owed.keepOnly((this.#peers.get(folder) ?? []).map((p) => p.id))
      this.options.log.warn('peer refused us (signed): it does not count us as a peer of the folder; removed from the peerlist, forwards owed to it dropped', {
        folder,
        peer: peerId.slice(0, 7),
        code: 'E_NOT_ALLOWED',
        owed: dropped,
      })
    } catch (err) {
      this.options.log.warn('cannot drop a peer that refused us', {
        folder,
        peer: peerId.slice(0, 7),
        code: isFpeerError(err) ? err.code : 'E_INTERNAL',
        reason: (err as Error).message,
      })
    }
    return true
  }

  /** Exchanges state with every peer of every folder (at start, and the periodic catch-up: 10.4); offline peers are skipped. */
  catchUp(quiet = true): Promise<void> {
    return this.#round([...this.#folders.keys()], () => this.#stopping, quiet)
  }

  /** A catch-up round; one still under way when the next is due (a slow peer, a busy machine) is joined, not doubled. */
  #round(folders: string[], stopping: () => boolean, quiet: boolean): Promise<void> {
    this.#catchingUp ??= this.#exchange.all(folders, stopping, quiet).finally(() => (this.#catchingUp = undefined))
    return this.#catchingUp
  }

  #forward(folder: string, versions: FileVersion[], exclude: string[]): void {
    this.#peerSync.forward(folder, versions, exclude)
  }

  /** What both session contexts share. */
  #basics() {
    return {
      identity: this.options.identity,
      registry: this.options.registry,
      log: this.options.log,
      timeouts: this.options.timeouts ?? defaultTimeouts(),
      concurrency: this.options.concurrency ?? 8,
      publicAddresses: this.options.publicAddresses ?? [],
    }
  }

  #syncContext(): SyncContext {
    return {
      ...this.#basics(),
      ...(this.#localAddress ? {localAddress: this.#localAddress} : {}),
      sync: (folder) => this.#syncs.get(folder),
      isPeer: (folder, id) => this.#access.isPeer(folder, id),
      servedPort: (protocol) => this.#servers.port(protocol),
      forward: (folder, versions, exclude) => this.#forward(folder, versions, exclude),
      owed: (folder) => new OwedForwards(this.options.home, folder),
      forwardTargets: (folder, exclude) => this.#forwardTargets(folder, exclude),
      heldBy: (folder, peer, versions) => this.#peerSync.heldBy(folder, peer, versions),
      replay: this.#access.replay,
      grant: (folder, peer) => this.#grant(folder, peer),
      count: (what, n = 1) => this.#count(what, n),
      signal: this.#life.signal,
    }
  }

  /** A read grant for one exchange with `peer`: it is talking to us, so pushes to it that wait out a backoff go now. */
  #grant(folder: string, peer: PeerId | undefined): Grant {
    if (peer) this.#peerSync.heardFrom(folder, peer.toString())
    return this.#access.grants.issue(folder, peer)
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
    // No walk of the folder when its watcher has seen nothing since the last one (FolderSync.current).
    const {versions, records: all, recovered} = await sync.current()
    if (versions.length || recovered.length) this.#forward(folder, [...recovered, ...versions], [])
    const files = [...all.values()].filter((r) => isLive(r) || r.version).map(recordToEntry)
    // Empty directories as of this scan: not part of the structure (no versions), offered as they are now.
    const dirs: FileEntry[] = (sync.lastSkips.emptyDirs ?? []).map((d) => ({path: d, ext: {type: 'dir'}}))
    return [...files, ...dirs].sort((a, b) => (a.path < b.path ? -1 : 1))
  }

  #hostContext(): HostContext {
    // Made before the lifecycle is (the control server is one of its parts): its signal is read when a handshake begins.
    const life = () => this.#life
    return {
      ...this.#basics(),
      get signal() {
        return life().signal
      },
      folder: async (name) => {
        const f = this.#access.folder(name)
        return f ? {open: f.open} : undefined
      },
      mayJoin: async (folder, sender) => this.#access.mayJoin(folder, sender),
      fileList: (folder) => this.fileList(folder),
      isPeer: (folder, id) => this.#access.isPeer(folder, id),
      delegateFor: (folder, requester) => {
        // Handshakes under way, this one included; idle connections (a flood of them) do not make the host busy.
        if ((this.#control?.busy ?? 1) - 1 < (this.options.maxHandshakes ?? 64)) return undefined
        const candidates = this.#access.peers(folder).filter((p) => p.controlPort && !p.id.startsWith('plain:') && p.id !== requester.toString())
        if (candidates.length === 0) return undefined
        const p = candidates[this.#delegateTurn++ % candidates.length]!
        return {id: PeerId.parse(p.id), address: p.address, controlPort: p.controlPort!}
      },
      handlers: {FilesToGet: (channel, msg) => receiveUpdate(channel, msg, this.#syncContext())},
      servedPort: (protocol) => this.#servers.port(protocol),
      grant: (folder, peer) => this.#grant(folder, peer),
      replay: this.#access.replay,
      confirmPeer: async (folder, record) => {
        // A confirmed peer catching up keeps how and when it first joined (`role`, `confirmedAt`):
        // its catch-ups must not restart the grace a fresh joiner gets (10.6).
        const had = (this.#peers.get(folder) ?? []).find((p) => p.id === record.id)
        await this.options.home.peerfile(folder).addPeer(had ? {...record, role: had.role, confirmedAt: had.confirmedAt} : record)
        await this.refresh()
      },
    }
  }
}
