// Passing versions between peers for a running node: local changes and forwards pushed through the bounded push queue, catch-up pulls coalesced per peer.
import {FpeerError, isFpeerError} from '../errors.js'
import {IgnoreRules} from '../fs/ignore-rules.js'
import {type Identity, PeerId} from '../identity.js'
import {withScopedSignal} from '../net/abort.js'
import type {TransportRegistry} from '../registry.js'
import type {HandshakeTimeouts} from '../session/context.js'
import {refusedBy} from '../session/handshake.js'
import {requestFolder} from '../session/requester.js'
import type {Home} from '../store/home.js'
import type {PeerRecord} from '../store/peerfile.js'
import {fetchFiles} from '../transfer/fetch.js'
import {withPeerClient} from '../transfer/peer-client.js'
import type {Logger} from '../transport.js'
import {type FileEntry, isDirEntry} from '../wire/types.js'
import type {StateExchange} from './exchange.js'
import type {FolderSync} from './folder.js'
import {KnownHolders} from './holders.js'
import {OwedForwards, applyOwing} from './owed.js'
import {PushQueue} from './push-queue.js'
import {TimeSlice} from './time-slice.js'
import {type SyncContext, fetcherFrom, pushUpdate} from './update.js'
import {type FileVersion, compareVectors, entryToVersion, identical, verifyVersion} from './version.js'

/** What the node lends: its settings, its folders and peers as they are now, its counters. */
export interface PeerSyncDeps {
  home: Home
  identity: Identity
  registry: TransportRegistry
  log: Logger
  timeouts: HandshakeTimeouts
  concurrency: number
  /** Retry unreachable peers and run state exchanges (the daemon); false for one-shot use. */
  daemon: boolean
  localAddress(): string | undefined
  controlPort(): number
  sync(folder: string): FolderSync | undefined
  peers(folder: string): PeerRecord[]
  /** IDs of the folder's peers that updates go to, but `exclude`. */
  forwardTargets(folder: string, exclude: readonly string[]): string[]
  syncContext(): SyncContext
  count(what: 'pushes' | 'pulls' | 'messagesIn' | 'messagesOut'): void
  track<T>(p: Promise<T>): Promise<T>
  exchange: StateExchange
  stopping(): boolean
  /**
   * The peer refused us with a signed E_NOT_ALLOWED (10.6): the node drops it from the
   * peerlist with what was owed to it; false when it is kept (it joined moments ago).
   */
  refused(folder: string, peer: string): Promise<boolean>
}

/**
 * Pulls under way, one per key, joined by later callers. Each caller's `seen` gets the
 * structure the peer answered with even when the pull then failed (a file changed there
 * while we fetched it, a grant that ran out): the state exchange still offers the peer what
 * that structure lacks, instead of only what was owed to it.
 */
export class JoinedPulls {
  readonly #runs = new Map<string, {run: Promise<number>; seen: FileEntry[] | undefined}>()

  /** Runs `pull` for `key`, or joins the one under way; `pull` reports the peer's structure through its argument. */
  async join(key: string, pull: (seen: (files: FileEntry[]) => void) => Promise<number>, seen?: (files: FileEntry[]) => void): Promise<number> {
    let entry = this.#runs.get(key)
    if (!entry) {
      const e: {run: Promise<number>; seen: FileEntry[] | undefined} = {run: Promise.resolve(0), seen: undefined}
      e.run = pull((files) => (e.seen = files)).finally(() => this.#runs.delete(key))
      this.#runs.set(key, e)
      entry = e
    }
    try {
      return await entry.run
    } finally {
      if (entry.seen) seen?.(entry.seen)
    }
  }

  /** Pulls under way (tests). */
  get size(): number {
    return this.#runs.size
  }
}

/**
 * The node's outgoing traffic of versions. Pushes go through a PushQueue (a few in flight per
 * peer and folder, later versions coalesced, retries with the shared backoff); a pull asked
 * of a peer while one from it is under way joins that one instead of opening another.
 */
export class PeerSync {
  readonly #deps: PeerSyncDeps
  readonly #queue: PushQueue
  readonly #pulls = new JoinedPulls()
  /** What each peer offered us or confirmed: not offered to it again. */
  readonly #holders = new KnownHolders()
  #signal: AbortSignal | undefined

  constructor(deps: PeerSyncDeps) {
    this.#deps = deps
    this.#queue = new PushQueue(
      {
        log: deps.log,
        deliver: (folder, peer, versions) => this.#deliver(folder, peer, versions),
        peer: (folder, id) => deps.peers(folder).find((p) => p.id === id && deps.forwardTargets(folder, []).includes(id)),
        lost: (folder, id) => deps.exchange.lost(folder, id),
        current: (folder, peer, versions) => this.#current(folder, peer, versions),
        track: (p) => deps.track(p),
      },
      {retry: deps.daemon},
    )
  }

  /**
   * The versions `peer` should still be offered: not superseded here (a record of ours that is
   * another version and not an older one: a later edit, a tombstone, another peer's newer
   * version) and not known to be held by the peer. A record missing or older than the version
   * is a read that has not seen it yet (the journal read while the change that made it was
   * being appended), not a reason to drop it: a 20-peer soak lost a local rename that way,
   * offered to no neighbour until the periodic catch-up.
   */
  async #current(folder: string, peer: string, versions: FileVersion[]): Promise<FileVersion[]> {
    const records = await this.#deps.sync(folder)?.recordsOf(versions.map((v) => v.path))
    if (!records) return []
    return versions.filter((v) => {
      const ours = records.get(v.path)?.version
      const superseded = ours !== undefined && !(ours.origin === v.origin && ours.lamport === v.lamport) && compareVectors(ours.vv, v.vv) !== 'less'
      return !superseded && !this.#holders.holds(folder, peer, v)
    })
  }

  /** `peer` offered us `versions` (checked): it holds them, so our forwards of them skip it. */
  heldBy(folder: string, peer: string, versions: readonly FileVersion[]): void {
    this.#holders.note(folder, peer, versions)
  }

  /** Starts the push queue; `signal` (the node's) cuts pulls and pushes under way when it aborts. */
  start(signal?: AbortSignal): void {
    this.#signal = signal
    this.#queue.start(signal)
  }

  /** Drops waiting pushes and their backoffs. */
  stop(): void {
    this.#queue.stop()
  }

  /**
   * `peer` spoke to us (its handshake or its update was granted): pushes to it waiting out a
   * backoff go now, and a peer a push or an exchange could not reach gets its state exchange.
   */
  heardFrom(folder: string, peer: string): void {
    this.#queue.reachable(folder, peer)
    this.#regained(folder, peer)
  }

  /** A state exchange with a peer back after it was not reached, once per loss. */
  #regained(folder: string, id: string): void {
    const d = this.#deps
    if (!d.daemon || d.stopping() || !d.exchange.regained(folder, id)) return
    const peer = d.peers(folder).find((p) => p.id === id)
    if (!peer) return
    void d.track(
      d.exchange
        .withPeer(folder, peer)
        .catch((err: Error) =>
          d.log.warn('state exchange failed', {folder, peer: id.slice(0, 7), code: isFpeerError(err) ? err.code : 'E_INTERNAL', reason: err.message}),
        ),
    )
  }

  /** The push queue's size (tests, diagnostics). */
  get queued(): PushQueue['size'] {
    return this.#queue.size
  }

  /** Rescans a folder and pushes every new version to its peers (`fpeer push`, the watcher). */
  async pushChanges(folder: string, options: {settle?: boolean} = {}): Promise<{versions: number; peers: number; failed: number}> {
    const sync = this.#deps.sync(folder)
    if (!sync) throw new FpeerError('E_NO_SUCH_FOLDER', `no shared folder named ${JSON.stringify(folder)}`)
    const {versions, recovered} = await sync.rescan(options)
    // Not ours and not counted as ours: passed on as a forward is, beside the push.
    this.forward(folder, recovered, [])
    if (versions.length === 0) return {versions: 0, peers: 0, failed: 0}
    this.#deps.log.info('local change', {folder, versions: versions.length})
    const r = await this.pushVersions(folder, versions, [])
    return {versions: versions.length, ...r}
  }

  /** Pushes versions to every confirmed peer of the folder but `exclude` (IDs), or to `only` those; failures are logged, the peer catches up later. */
  async pushVersions(folder: string, versions: FileVersion[], exclude: string[], only?: string[]): Promise<{peers: number; failed: number}> {
    const ids = this.#deps.forwardTargets(folder, exclude).filter((id) => !only || only.includes(id))
    const peers = this.#deps.peers(folder).filter((p) => ids.includes(p.id))
    let failed = 0
    await Promise.all(
      peers.map(async (p) => {
        try {
          await this.#queue.push(folder, p, versions)
        } catch {
          // Logged by the queue, once per failed push; retried there when the peer was unreachable.
          failed++
        }
      }),
    )
    return {peers: peers.length, failed}
  }

  /** Passes versions on to the folder's peers but `exclude`, in the background (seed update step 4). */
  forward(folder: string, versions: FileVersion[], exclude: string[]): void {
    if (this.#deps.stopping() || versions.length === 0) return
    void this.#deps.track(this.pushVersions(folder, versions, exclude))
  }

  /** One push (10.2); what the peer confirmed is no longer owed to it, and a peer back after a loss gets a state exchange. */
  async #deliver(folder: string, peer: PeerRecord, versions: FileVersion[]): Promise<void> {
    this.#deps.count('pushes')
    await pushUpdate(this.#deps.syncContext(), folder, peer, versions).catch(async (err: unknown) => {
      // A signed refusal ends a one-sided trust: the peer leaves the peerlist, so its lane is dropped.
      if (refusedBy(err) === peer.id) await this.#deps.refused(folder, peer.id)
      throw err
    })
    this.#holders.note(folder, peer.id, versions)
    await new OwedForwards(this.#deps.home, folder)
      .paid(peer.id, versions)
      .catch((err: Error) => this.#deps.log.warn('cannot record a delivered forward', {folder, reason: err.message}))
    this.#regained(folder, peer.id)
  }

  /**
   * Catches up with one peer (an offline spell, a missed push): asks it for the folder as a
   * confirmed peer, takes only what is newer, and passes that on to the other peers. A pull
   * from a peer already under way is joined, not repeated; `seen` gets the structure it saw.
   */
  async pullFrom(folder: string, peer: PeerRecord, seen?: (files: FileEntry[]) => void): Promise<number> {
    return this.#pulls.join(`${folder}\0${peer.id}`, (saw) => this.#pull(folder, peer, saw), seen)
  }

  async #pull(folder: string, peer: PeerRecord, saw: (files: FileEntry[]) => void): Promise<number> {
    const d = this.#deps
    const sync = d.sync(folder)
    const port = peer.controlPort
    if (!sync || !port || peer.id.startsWith('plain:')) return 0
    // A peer dropped since the round began (it refused us, 10.6) is not asked again.
    if (!d.peers(folder).some((p) => p.id === peer.id)) return 0
    const ctx = d.syncContext()
    let applied: FileVersion[] = []
    let created: FileVersion[] = []
    let seen: FileEntry[] | undefined
    d.count('pulls')
    const local = d.localAddress()
    try {
      await withScopedSignal(this.#signal, (signal) =>
        requestFolder({
          // Catching up is with this peer: one it would hand us to (10.5) would confirm us without
          // our listing it, and push to us in vain (10.6).
          followDelegation: false,
          host: peer.address,
          port,
          folder,
          into: sync.folder.path,
          ...(local ? {bind: local} : {}),
          expectedHost: PeerId.parse(peer.id),
          controlPort: d.controlPort(),
          identity: d.identity,
          registry: d.registry,
          concurrency: d.concurrency,
          timeouts: d.timeouts,
          log: d.log,
          ...(signal ? {signal} : {}),
          apply: async (ftg, from, progress) => {
            d.count('messagesIn')
            // The peer's own structure only: a busy peer may have handed us to another (10.5).
            if (ftg.meta.id === PeerId.parse(peer.id).compact) {
              saw((seen = ftg.files))
              // Its structure is the truth of what it holds: the exchange offers what that lacks.
              this.#holders.forget(folder, peer.id)
            }
            const versions: FileVersion[] = []
            const originals: FileEntry[] = []
            // A catch-up answers with the peer's whole structure, most of it what we hold: a version
            // signed exactly as ours was checked when we took it. Checking hundreds again at every
            // round (every few seconds under churn) kept both cores busy and made exchanges time out.
            const held = await sync.records()
            const slice = new TimeSlice()
            for (const e of ftg.files) {
              await slice.tick()
              const v = entryToVersion(e)
              if (v) {
                const ours = held.get(v.path)?.version
                if (!ours || !identical(ours, v)) verifyVersion(folder, v)
                versions.push(v)
              } else if (e.ext?.del !== '1') originals.push(e)
            }
            const res = await applyOwing(
              new OwedForwards(d.home, folder),
              d.forwardTargets(folder, [peer.id]),
              d.forwardTargets(folder, []),
              versions,
              () => sync.records(),
              // Until its fetch starts, the apply waits behind the folder's others: the host is told we are busy, not hung.
              () => {
                const fetch = fetcherFrom(ctx, folder, from, progress.onEvent)
                return sync.apply(versions, (items, staging) => {
                  progress.fetching()
                  return fetch(items, staging)
                })
              },
            )
            applied = res.applied
            // What an earlier, failed apply landed may have come from any peer: none is left out.
            created = [...res.recovered, ...res.created]
            const records = await sync.records()
            const rules = IgnoreRules.load(sync.folder.path)
            const missing = originals.filter((e) => !isDirEntry(e) && !records.has(e.path) && !rules.ignores(e.path))
            let bytes = 0
            if (missing.length > 0) {
              bytes = (
                await withPeerClient(ctx, {localAddress: ctx.localAddress, ...from}, (client, sup) =>
                  fetchFiles({
                    client,
                    batch: sup.batch,
                    folder,
                    files: missing,
                    mode: 'land',
                    root: sync.folder.path,
                    concurrency: ctx.concurrency,
                    onEvent: progress.onEvent,
                    ...(signal ? {signal} : {}),
                  }),
                )
              ).bytes
              await sync.adopt(missing.map((entry) => ({entry})))
            }
            const got = new Set([...res.fetched, ...res.copied, ...res.applied.filter((v) => !v.deleted).map((v) => v.path), ...missing.map((e) => e.path)])
            d.count('messagesOut')
            return {transfer: {files: ftg.files.length, fetched: res.fetched.length + missing.length, skipped: 0, bytes}, got}
          },
        }).catch(async (err: unknown) => {
          if (refusedBy(err) === peer.id) await d.refused(folder, peer.id)
          throw err
        }),
      )
    } finally {
      // What the pull took is passed on even when the handshake then failed (the host's fetch-back
      // or its confirmation): it is checked and recorded here, and the forwards owed for it would
      // otherwise wait for an exchange with each peer that may already have run (churn seed 875435).
      if (applied.length) this.forward(folder, applied, [peer.id])
      if (created.length) this.forward(folder, created, [])
      // An apply that failed after recovering what an earlier one had landed: recorded, owed to nobody.
      const recovered = sync.takeRecovered()
      if (recovered.length) this.forward(folder, recovered, [])
    }
    // It answered: pushes to it that wait out a backoff go now (the exchange's own push among them).
    if (seen) this.#queue.reachable(folder, peer.id)
    return applied.length
  }
}
