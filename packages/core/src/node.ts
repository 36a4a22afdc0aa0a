// A running peer (`fpeer serve`): composes its parts (access, stats, folder runners, transfer servers, control server, catch-up) under one lifecycle, and pushes and pulls updates.
import {AccessControl} from './access/control.js'
import {FpeerError, isFpeerError} from './errors.js'
import {type Identity, PeerId} from './identity.js'
import {IgnoreRules} from './fs/ignore-rules.js'
import {LocalFileSource} from './fs/local-source.js'
import {Lifecycle, type Startable, Tasks} from './lifecycle.js'
import {ControlServer} from './net/control-server.js'
import type {TransportRegistry} from './registry.js'
import {type HandshakeTimeouts, type HostContext, defaultTimeouts} from './session/context.js'
import {serveConnection} from './session/host.js'
import {requestFolder} from './session/requester.js'
import {ConfigStore, type FolderConfig} from './store/config.js'
import {type FileRecord, Peerfile, type PeerRecord, isLive} from './store/peerfile.js'
import {StatsFile, type SyncStats} from './store/stats.js'
import {CatchUp} from './sync/catch-up.js'
import {StateExchange} from './sync/exchange.js'
import {FolderRunner, FolderRunners} from './sync/folder-runner.js'
import {OwedForwards, applyOwing} from './sync/owed.js'
import {type SyncContext, fetcherFrom, pushUpdate, receiveUpdate} from './sync/update.js'
import {type FileVersion, entryToVersion, verifyVersion, versionToEntry} from './sync/version.js'
import {fetchFiles} from './transfer/fetch.js'
import {withPeerClient} from './transfer/peer-client.js'
import {TransportServers} from './transfer/servers.js'
import type {Logger} from './transport.js'
import {type FileEntry, isDirEntry} from './wire/types.js'

export {DEFAULT_PORTS} from './transfer/servers.js'
export type {SyncStats} from './store/stats.js'

/** How long work under way (pushes, applies, handshakes) may go on after stop() began before every connection is cut. */
export const STOP_GRACE_MS = 2500
/** How long the node's own work (pushes, rescans, catch-up rounds) may take to end once cancelled. */
const CANCEL_GRACE_MS = 1000

/** The documented default control port. */
export const DEFAULT_CONTROL_PORT = 7734

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

/** Failures worth pushing again: the peer was unreachable or dropped, not one that refused. */
const RETRY_CODES = new Set(['E_CONNECT', 'E_TIMEOUT', 'E_CONNECTION_LOST'])

/** Turns a record into its file line: version attributes when it has one, a tombstone when deleted. */
export function recordToEntry(r: FileRecord): FileEntry {
  const e = r.version ? versionToEntry(r.version) : {path: r.path, size: r.size, sha256: r.sha256, mtimeMs: r.mtimeMs}
  // The exec bit travels beside the version (covered by the message's signature, not the version's).
  return r.mode === 0o755 && !r.version?.deleted ? {...e, ext: {...e.ext, mode: '755'}} : e
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
  readonly #retries = new Map<string, {versions: Map<string, FileVersion>; attempt: number; timer: NodeJS.Timeout | undefined}>()

  constructor(options: PeerNodeOptions) {
    this.options = options
    this.config = new ConfigStore(options.home)
    const control = options.control !== false
    const live = !!options.sync && control
    this.#runners = new FolderRunners({
      log: options.log,
      make: (f: FolderConfig, clean: boolean) =>
        new FolderRunner(f, {
          home: options.home,
          identity: options.identity,
          log: options.log,
          live,
          clean,
          rescanMs: options.rescanIntervalMs ?? 60_000,
          rescan: (folder) => void this.#track(this.pushChanges(folder).catch((err: Error) => options.log.warn('rescan failed', {folder, reason: err.message}))),
        }),
    })
    // Configuration is re-read every second by a serving peer; a one-shot node reads it once.
    this.#access = new AccessControl({home: options.home, config: this.config, log: options.log, onRefresh: (folders) => this.#runners.update(folders), ...(control ? {refreshMs: 1000} : {})})
    this.#stats = new StatsFile({home: options.home, ...(control ? {flushMs: 1000} : {})})
    this.#servers = new TransportServers({
      registry: options.registry,
      host: options.host,
      ...(options.ports ? {ports: options.ports} : {}),
      files: new LocalFileSource(this.#access, () => this.#access.names()),
      identity: options.identity,
      admit: (who) => this.#access.admits(who),
      log: options.log,
    })
    const parts: Startable[] = [this.#access, this.#stats, this.#runners, this.#servers]
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
    if (live) {
      // 0 turns the periodic catch-up off; the start-up round (and pushes and their retries) remain.
      parts.push(
        new CatchUp({
          folders: () => this.#access.names(),
          rescan: (f) => this.pushChanges(f).catch((err: Error) => options.log.warn('rescan failed', {folder: f, reason: err.message})),
          exchange: (folders, stopping, quiet) => this.#exchange.all(folders, stopping, quiet).catch((err: Error) => options.log.warn('catch-up failed', {reason: err.message})),
          intervalMs: options.syncIntervalMs ?? 300_000,
          graceMs: CANCEL_GRACE_MS,
        }),
      )
    }
    this.#life = new Lifecycle(parts)
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
    if (this.#control) this.options.log.info('peer listening', {id: this.options.identity.id.toString(), control: `${this.options.host}:${this.controlPort}`, folders: this.#access.folders.size})
  }

  /**
   * Aborts the one signal (timers, watchers and listening sockets end; pushes, pulls and
   * exchanges under way are cut), lets conversations under way finish within STOP_GRACE_MS,
   * and stops the parts in reverse; the last stats are written. Safe twice, and before start().
   */
  async stop(): Promise<void> {
    for (const r of this.#retries.values()) clearTimeout(r.timer)
    this.#retries.clear()
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
    return this.#access.forwardTargets(folder, exclude)
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
      replay: this.#access.replay,
      grant: (folder, peer) => this.#access.grants.issue(folder, peer),
      count: (what, n = 1) => this.#count(what, n),
      signal: this.#life.signal,
    }
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
      grant: (folder, peer) => this.#access.grants.issue(folder, peer),
      replay: this.#access.replay,
      confirmPeer: async (folder, record) => {
        await new Peerfile(this.options.home, folder).addPeer(record)
        await this.refresh()
      },
    }
  }
}
