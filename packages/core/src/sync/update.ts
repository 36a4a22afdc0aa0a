// "Updating Other Peers": pushing versions to a peer (FilesToGet → FilesUpdated → TrustedPeerConfirm) and receiving them.
import type {Grant} from '../access/grants.js'
import {type ReplayGuard, checkDestination, formatDestination} from '../access/replay-guard.js'
import {FpeerError} from '../errors.js'
import {type Identity, PeerId, randomNonce} from '../identity.js'
import {withScopedSignal} from '../net/abort.js'
import {connectChannel, type MessageChannel} from '../net/channel.js'
import type {TransportRegistry} from '../registry.js'
import {type HandshakeTimeouts, keepAliveCeiling} from '../session/context.js'
import {expectType, verifyReply} from '../session/handshake.js'
import {keepAliveEvery, parseKeepAlive} from '../session/requester.js'
import type {PeerRecord} from '../store/peerfile.js'
import {type FetchEvent, fetchFiles} from '../transfer/fetch.js'
import {type PeerEndpoint, withPeerClient} from '../transfer/peer-client.js'
import {type Logger, unnameable} from '../transport.js'
import {MAX_UPDATE_VERSIONS} from '../wire/limits.js'
import {signMessage, verifyMessage} from '../wire/signing.js'
import {type FileEntry, type FilesToGet, type FilesUpdated, type Message, type TrustedPeerConfirm, extWith} from '../wire/types.js'
import type {ApplyResult, ContentFetcher, FolderSync} from './folder.js'
import {type OwedForwards, applyOwing} from './owed.js'
import {TimeSlice} from './time-slice.js'
import {type FileVersion, decide, entryToVersion, identical, verifyVersion, versionToEntry} from './version.js'

/** What update sessions need from the node that runs them. */
export interface SyncContext {
  identity: Identity
  registry: TransportRegistry
  log: Logger
  timeouts: HandshakeTimeouts
  concurrency: number
  /** Address to connect from (the node's own), so peers see where to fetch back. */
  localAddress?: string
  sync(folder: string): FolderSync | undefined
  isPeer(folder: string, id: PeerId): boolean
  servedPort(protocol: string): number | undefined
  /** Passes versions on to the folder's other peers (seed update step 4). */
  forward(folder: string, versions: FileVersion[], exclude: string[]): void
  /** Refuses updates replayed or sent too long ago (§4.5). */
  replay: ReplayGuard
  /** `HOST:PORT`s this peer is reached at from outside besides its sockets' own (`dst=`, §4.5). */
  publicAddresses?: readonly string[]
  /** Lets `peer` read the folder from our transfer servers for one exchange (§4.6). */
  grant(folder: string, peer: PeerId): Grant
  /** The folder's owed forwards, kept durable before a confirmation (absent: forwards live in memory only). */
  owed?(folder: string): OwedForwards | undefined
  /** IDs of the folder's peers that `forward` would push to, but `exclude`. */
  forwardTargets?(folder: string, exclude: readonly string[]): string[]
  /** `peer` offered `versions` (their signatures checked): it holds them, and forwards skip it. */
  heldBy?(folder: string, peer: string, versions: readonly FileVersion[]): void
  count(what: 'messagesIn' | 'messagesOut' | 'filesFetched' | 'bytesFetched' | 'filesVerified', n?: number): void
  /** Aborted when the node stops: exchanges under way are cut, so a hung peer never holds the shutdown. */
  signal?: AbortSignal
}

/** Transfer connections of an update give up after the stall timeout without a byte, as a request's do. */
function stallBounded(ctx: SyncContext): SyncContext {
  return {...ctx, timeouts: {...ctx.timeouts, io: Math.min(ctx.timeouts.io, ctx.timeouts.stall)}}
}

/**
 * Sends one message, bounded by the stall timeout: a peer that stopped reading (a stopped
 * process whose socket buffer is full) would otherwise hold the write, and the exchange, for good.
 */
async function sendWithin(channel: MessageChannel, msg: Message, stallMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const stalled = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      channel.socket.destroy()
      reject(
        new FpeerError('E_TIMEOUT', `${channel.remoteAddress}:${channel.remotePort} took no bytes for ${stallMs / 1000} s`, {
          details: {address: `${channel.remoteAddress}:${channel.remotePort}`, timeoutMs: stallMs},
          hint: 'the peer stopped making progress: is it still running? (FPEER_STALL_TIMEOUT_MS sets how long to wait)',
        }),
      )
    }, stallMs)
  })
  try {
    await Promise.race([channel.send(msg), stalled])
  } finally {
    clearTimeout(timer)
  }
}

/** Cuts `channel` when `signal` aborts (the node stops); returns the function that stops listening. */
function cutOnAbort(channel: MessageChannel, signal: AbortSignal | undefined): () => void {
  if (!signal) return () => {}
  const cut = () => channel.socket.destroy()
  if (signal.aborted) cut()
  signal.addEventListener('abort', cut, {once: true})
  return () => signal.removeEventListener('abort', cut)
}

/** A content fetcher that downloads from a peer's endpoint (the address its message came from). */
export function fetcherFrom(ctx: SyncContext, folder: string, from: PeerEndpoint, onEvent?: (ev: FetchEvent) => void): ContentFetcher {
  return async (items, staging) => {
    const remote = new Map(items.map((i) => [i.entry.path, i.remotePath]))
    // A signal of its own: what the transfer hangs on it goes with it, not onto the node's.
    const r = await withScopedSignal(ctx.signal, (signal) =>
      withPeerClient(stallBounded(ctx), {localAddress: ctx.localAddress, ...from}, (client, sup) =>
        fetchFiles({
          client,
          batch: sup.batch,
          folder,
          files: items.map((i) => i.entry),
          mode: 'land',
          root: staging,
          concurrency: ctx.concurrency,
          resume: false,
          remotePathOf: (f) => remote.get(f.path) ?? f.path,
          ...(onEvent ? {onEvent} : {}),
          ...(signal ? {signal} : {}),
        }),
      ),
    )
    ctx.count('filesFetched', r.fetched)
    ctx.count('bytesFetched', r.bytes)
  }
}

/** The protocol to offer a peer: the first we serve that it has, HTTP first. */
function protocolFor(ctx: SyncContext, peer: PeerRecord): string {
  const ours = ctx.registry.protocols((t) => t.supports.serve).filter((p) => ctx.servedPort(p) !== undefined)
  return ours.find((p) => peer.protocols.includes(p)) ?? ours[0] ?? 'HTTP'
}

/**
 * Pushes versions to one peer: FilesToGet with only those files; the peer fetches what
 * it needs and answers FilesUpdated marking what it took (`got=1`); we fetch those back,
 * check them, and confirm with TrustedPeerConfirm (seed update steps 1-3 and 5).
 */
export async function pushUpdate(ctx: SyncContext, folder: string, peer: PeerRecord, versions: FileVersion[]): Promise<{got: number; verified: number}> {
  // A receiver refuses more than MAX_UPDATE_VERSIONS in one update: a bigger change goes as several, one after the other.
  const total = {got: 0, verified: 0}
  for (let i = 0; i < versions.length || i === 0; i += MAX_UPDATE_VERSIONS) {
    const r = await pushOneUpdate(ctx, folder, peer, versions.slice(i, i + MAX_UPDATE_VERSIONS))
    total.got += r.got
    total.verified += r.verified
  }
  return total
}

/** One update exchange, of at most MAX_UPDATE_VERSIONS versions. */
async function pushOneUpdate(ctx: SyncContext, folder: string, peer: PeerRecord, versions: FileVersion[]): Promise<{got: number; verified: number}> {
  const peerId = PeerId.parse(peer.id)
  if (!peer.controlPort) throw new FpeerError('E_USAGE', `peer ${peerId.short} has no control port`)
  const protocol = protocolFor(ctx, peer)
  const port = ctx.servedPort(protocol)
  if (port === undefined) throw new FpeerError('E_NO_TRANSPORT', `this peer serves no ${protocol}`)
  const stallMs = ctx.timeouts.stall
  const channel = await connectChannel(peer.address, peer.controlPort, {
    timeoutMs: Math.min(ctx.timeouts.io, stallMs),
    ...(ctx.localAddress ? {localAddress: ctx.localAddress} : {}),
  })
  const uncut = cutOnAbort(channel, ctx.signal)
  const grant = ctx.grant(folder, peerId)
  let stopKeepAlive = () => {}
  try {
    const nonce = randomNonce()
    const files = versions.map(versionToEntry)
    // Bound to this peer (to=) and to now (ts=), with the secret that lets it read our copies;
    // ka=: it sends keep-alives while it fetches, so we wait on its progress, not on a clock (4.7).
    const ftg: FilesToGet = signMessage(
      {
        type: 'FilesToGet',
        folder,
        port,
        protocol,
        files,
        meta: {
          ka: String(stallMs),
          nonce,
          update: '1',
          ts: String(Date.now()),
          to: peerId.compact,
          dst: formatDestination(channel.remoteAddress, channel.remotePort),
          grant: grant.token,
        },
      },
      ctx.identity,
    )
    await sendWithin(channel, ftg, stallMs)
    ctx.count('messagesOut')
    // A peer that stops (SIGSTOP, a hung disk) sends no keep-alive: the push fails after the
    // stall timeout with E_TIMEOUT and is retried with backoff, instead of holding for the transfer timeout.
    // A refusal the peer signed for us (E_NOT_ALLOWED, 10.6) comes out with details.refusedBy.
    const fu: FilesUpdated = expectType(await channel.next(keepAliveCeiling(ctx.timeouts, files), {stallMs}), 'FilesUpdated', folder, {
      peer: peerId,
      nonce,
      self: ctx.identity.id,
    })
    ctx.count('messagesIn')
    verifyReply(fu, peerId, nonce)
    // Check what the peer says it took: fetched back from the address it answers from.
    const sent = new Map(versions.map((v) => [v.path, v]))
    const check: FileEntry[] = []
    for (const e of fu.files) {
      const v = sent.get(e.path)
      if (e.ext?.got !== '1' || !v || v.deleted) continue
      if (e.sha256 !== v.sha256) throw new FpeerError('E_HASH_MISMATCH', `${peerId.short} took other content for ${e.path}`)
      check.push({path: e.path, sha256: v.sha256, size: v.size})
    }
    if (check.length > 0) {
      // While we check, the peer waits for our confirmation: keep-alives tell it we still move.
      let moved = 0
      const theirStall = parseKeepAlive(fu.meta.ka)
      if (theirStall !== undefined) stopKeepAlive = channel.keepAlive(() => moved, keepAliveEvery(theirStall))
      const onEvent = (ev: FetchEvent) => {
        if (ev.event === 'bytes' || ev.event === 'file-done') moved++
      }
      await withScopedSignal(ctx.signal, (signal) =>
        withPeerClient(
          stallBounded(ctx),
          {protocol: fu.protocol, host: channel.remoteAddress, port: fu.port, peer: peerId, grant: fu.meta.grant, localAddress: channel.localAddress},
          (client, sup) =>
            fetchFiles({client, batch: sup.batch, folder, files: check, mode: 'verify', concurrency: ctx.concurrency, onEvent, ...(signal ? {signal} : {})}),
        ),
      )
      stopKeepAlive()
      ctx.count('filesVerified', check.length)
    }
    const tpc: TrustedPeerConfirm = signMessage(
      {type: 'TrustedPeerConfirm', folder, port, protocol, files: fu.files, meta: {nonce: randomNonce(), re: fu.meta.nonce ?? ''}},
      ctx.identity,
    )
    await sendWithin(channel, tpc, stallMs)
    ctx.count('messagesOut')
    return {got: fu.files.filter((e) => e.ext?.got === '1').length, verified: check.length}
  } finally {
    stopKeepAlive()
    uncut()
    grant.revoke()
    await channel.close()
  }
}

/**
 * Receives an update (a FilesToGet with `update=1`): only from a confirmed peer, with a
 * valid signature, fresh, every version signed by its origin; applies what is new, answers
 * FilesUpdated, waits for the TrustedPeerConfirm, and passes what was new on.
 */
export async function receiveUpdate(channel: MessageChannel, ftg: FilesToGet, ctx: SyncContext): Promise<void> {
  ctx.count('messagesIn')
  const folder = ftg.folder
  const sync = ctx.sync(folder)
  if (!sync) throw new FpeerError('E_UNKNOWN_FOLDER', `no shared folder named ${JSON.stringify(folder)}`)
  const sender = verifyMessage(ftg)
  if (!ctx.isPeer(folder, sender)) throw new FpeerError('E_NOT_ALLOWED', `${sender.toString()} is not a confirmed peer of ${folder}`)
  checkDestination(ftg, ctx.identity.id, {address: channel.localAddress, port: channel.localPort}, ctx.publicAddresses)
  ctx.replay.check(ftg, sender)
  if (ftg.files.length > MAX_UPDATE_VERSIONS)
    throw new FpeerError('E_MSG_TOO_MANY_FILES', `an update carries at most ${MAX_UPDATE_VERSIONS} versions; this one has ${ftg.files.length}`)
  const versions: FileVersion[] = []
  // Signature checks of a big update yield now and then: the control port keeps answering other peers.
  const slice = new TimeSlice()
  // An update floods: most offers carry versions we took from another neighbour, signed exactly
  // as ours was checked then; those are not checked again (as a catch-up's structure is not).
  const held = await sync.recordsOf(ftg.files.map((e) => e.path))
  for (const e of ftg.files) {
    await slice.tick()
    const v = entryToVersion(e)
    if (!v) throw new FpeerError('E_MSG_BAD_FIELD', `update entry ${JSON.stringify(e.path)} carries no version`)
    // Authentic: signed where the change began, so no peer on the way can alter it.
    const ours = held.get(v.path)?.version
    if (!ours || !identical(ours, v)) verifyVersion(folder, v)
    versions.push(v)
  }
  // The sender holds what it offers: our forwards of these skip it.
  ctx.heldBy?.(folder, sender.toString(), versions)
  // A name the update's protocol cannot carry (FTP: CR or LF) is not taken, with a warning;
  // the rest of the update is (one such name must not make every update from this peer fail).
  const cannot = unnameable(
    ctx.registry.has(ftg.protocol) ? ctx.registry.get(ftg.protocol) : undefined,
    versions.filter((v) => !v.deleted).map((v) => v.path),
  )
  for (const p of cannot) ctx.log.warn(`update entry not taken: ${ftg.protocol} cannot carry its name`, {folder, path: p, code: 'E_UNSUPPORTED'})
  const taking = cannot.size ? versions.filter((v) => v.deleted || !cannot.has(v.path)) : versions
  // ka=: the sender waits on our progress (4.7): keep-alives while we fetch, none when we stall.
  // Until our fetch starts (waiting behind other updates of the folder, which are applied one at
  // a time) every tick counts: a busy peer is not a hung one, and a sender that gave up would
  // leave us fetching with a revoked grant, then push again into the same queue.
  const theirStall = parseKeepAlive(ftg.meta.ka)
  let moved = 0
  let fetching = false
  const onEvent = (ev: FetchEvent) => {
    if (ev.event === 'bytes' || ev.event === 'file-done') moved++
  }
  const stopKeepAlive = theirStall !== undefined ? channel.keepAlive(() => (fetching ? moved : ++moved), keepAliveEvery(theirStall)) : () => {}
  const fetcher = fetcherFrom(
    ctx,
    folder,
    {protocol: ftg.protocol, host: channel.remoteAddress, port: ftg.port, peer: sender, grant: ftg.meta.grant, localAddress: channel.localAddress},
    onEvent,
  )
  let result: ApplyResult
  // An offer of nothing new (most offers to a peer with several neighbours: an update floods)
  // is answered from the records at once, without queueing behind the folder's applies and
  // their locks: what we hold only ever moves forward, so a version we would skip now we
  // would skip after any apply under way too.
  const news = taking.filter((v) => decide(held.get(v.path)?.version, v).action !== 'skip')
  try {
    // What we take we owe to our other peers, on disk before FilesUpdated confirms it to the sender.
    result =
      news.length === 0
        ? {applied: [], created: [], fetched: [], copied: [], conflicts: [], recovered: []}
        : await applyOwing(
            ctx.owed?.(folder),
            ctx.forwardTargets?.(folder, [sender.toString()]) ?? [],
            ctx.forwardTargets?.(folder, []) ?? [],
            taking,
            () => sync.records(),
            () =>
              sync.apply(taking, (items, staging) => {
                fetching = true
                return fetcher(items, staging)
              }),
          )
  } catch (err) {
    // The apply failed after recovering what an earlier one had landed (recorded now, owed to
    // nobody): passed on here, or by nobody until the next rescan.
    const recovered = sync.takeRecovered()
    if (recovered.length) ctx.forward(folder, recovered, [])
    throw err
  } finally {
    stopKeepAlive()
  }
  // Seed update step 4: each updated peer passes the update on, once, to its other peers. At
  // once, not after the sender's check of our copy: what we took is checked here already (every
  // byte against the signed version), and the check and its confirmation only tell the sender
  // we hold it. A chain of peers then passes a change on a hop at a time, not a fetch-back at a time.
  if (result.applied.length) ctx.forward(folder, result.applied, [sender.toString()])
  // What an earlier, failed apply landed: it may have come from another peer, so none is left out.
  if (result.recovered.length) ctx.forward(folder, result.recovered, [])
  if (result.created.length) ctx.forward(folder, result.created, [])
  const records = await sync.records()
  const took = new Set([...result.fetched, ...result.copied, ...result.applied.map((v) => v.path)])
  const files: FileEntry[] = versions.map((v) => {
    const r = records.get(v.path)
    const e: FileEntry = r?.version ? versionToEntry(r.version) : r ? {path: v.path, sha256: r.sha256, size: r.size} : {path: v.path}
    if (took.has(v.path) && !v.deleted) e.ext = extWith(e.ext, 'got', '1')
    return e
  })
  const serveProtocol = ctx.servedPort(ftg.protocol) !== undefined ? ftg.protocol : 'HTTP'
  const fuNonce = randomNonce()
  const grant = ctx.grant(folder, sender)
  try {
    const stallMs = ctx.timeouts.stall
    await sendWithin(
      channel,
      signMessage(
        {
          type: 'FilesUpdated',
          folder,
          port: ctx.servedPort(serveProtocol) ?? 0,
          protocol: serveProtocol,
          files,
          meta: {ka: String(stallMs), nonce: fuNonce, re: ftg.meta.nonce ?? '', grant: grant.token},
        },
        ctx.identity,
      ),
      stallMs,
    )
    ctx.count('messagesOut')
    // A sender that announced keep-alives and then stops is given up after the stall timeout, so
    // what we took is passed on at once rather than after the transfer timeout.
    const ceiling = keepAliveCeiling(ctx.timeouts, versions)
    const tpc = expectType(
      await (theirStall !== undefined ? channel.next(ceiling, {stallMs}) : channel.next(ctx.timeouts.transfer)),
      'TrustedPeerConfirm',
      folder,
    )
    ctx.count('messagesIn')
    verifyReply(tpc, sender, fuNonce)
  } finally {
    grant.revoke()
  }
}
