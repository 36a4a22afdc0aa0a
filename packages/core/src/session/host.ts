// The host's side of "Becoming a Peer" (seed steps 6-9 and 13-16), run per control connection.
import {FpeerError, isFpeerError} from '../errors.js'
import type {Identity, PeerId} from '../identity.js'
import {scopedSignal, untilAborted} from '../net/abort.js'
import type {MessageChannel} from '../net/channel.js'
import {checkDestination} from '../access/replay-guard.js'
import {fetchFiles} from '../transfer/fetch.js'
import {type PeerEndpoint, withPeerClient} from '../transfer/peer-client.js'
import {keepAliveEvery, parseKeepAlive} from './requester.js'
import {claimedSender, isPlain, signMessage, verifyMessage} from '../wire/signing.js'
import {
  type BePeerRequest,
  type FileEntry,
  type FilesToGet,
  type FilesUpdated,
  type Message,
  type PeerError,
  type TrustedPeerConfirm,
  isDirEntry,
} from '../wire/types.js'
import {type HostContext, keepAliveCeiling} from './context.js'
import {checkTicket, issueTicket} from './delegation.js'
import {type CheckFile, FetchBack, growingFiles, isCheckable, isProgress, progressFiles, sameEndpoint} from './early.js'
import {expectType, parseProtocolList, randomNonce, sameFiles, verifyReply} from './handshake.js'

/**
 * Writes a PeerError reply; best effort, the connection may already be gone. With `signFor`,
 * the reply is signed and bound to the message it answers (`re=`) and to its sender (`to=`).
 */
export async function replyError(channel: MessageChannel, folder: string, err: unknown, signFor?: {identity: Identity; to: PeerId; re: string}): Promise<void> {
  const e = isFpeerError(err) ? err : new FpeerError('E_INTERNAL', 'internal error')
  let msg: PeerError = {type: 'PeerError', folder: folder || '*', meta: {}, code: e.code, text: e.message}
  if (signFor) msg = signMessage({...msg, meta: {nonce: randomNonce(), re: signFor.re, to: signFor.to.compact}}, signFor.identity)
  await channel.send(msg).catch(() => {})
}

/**
 * The sender of a signed message, when its signature holds; undefined otherwise. A refusal
 * of E_NOT_ALLOWED to such a sender is signed for it (section 10.6): the sender may then
 * stop counting us as a peer, and nobody else can make it do so.
 */
function authenticSender(msg: Message | undefined): PeerId | undefined {
  if (!msg?.meta.nonce || !msg.meta.sig) return undefined
  try {
    return verifyMessage(msg)
  } catch {
    return undefined
  }
}

/** Chooses the transfer protocol: the requester's wish if both have it, else the host's first that the requester has. */
export function chooseProtocol(request: BePeerRequest, ctx: HostContext): string {
  const theirs = parseProtocolList(request.meta.protocols)
  const want = request.meta.want?.toUpperCase()
  if (isPlain(request) || theirs.length === 0) {
    if (ctx.servedPort('HTTP') !== undefined) return 'HTTP'
    throw new FpeerError('E_NO_COMMON_PROTOCOL', 'this host does not serve HTTP, the only protocol a seed-form request can use')
  }
  const ours = ctx.registry.protocols((t) => t.supports.serve).filter((p) => ctx.servedPort(p) !== undefined)
  if (want === 'MANUAL' && theirs.includes('MANUAL')) return 'MANUAL'
  if (want) {
    if (ours.includes(want) && theirs.includes(want)) return want
    throw new FpeerError('E_NO_COMMON_PROTOCOL', `asked for ${want}; this host serves ${ours.join(', ') || 'nothing'}`)
  }
  const common = ours.filter((p) => theirs.includes(p))
  if (common.length === 0) throw new FpeerError('E_NO_COMMON_PROTOCOL', `no common protocol: host has ${ours.join(', ')}, requester has ${theirs.join(', ')}`)
  return common[0]!
}

/** Why a handshake ended at the node's stop: the signal's reason when it is typed, else E_INTERRUPTED. */
function stopping(signal: AbortSignal): FpeerError {
  return isFpeerError(signal.reason) ? signal.reason : new FpeerError('E_INTERRUPTED', 'this peer is stopping: the handshake was cut')
}

/**
 * Serves one control connection. A BePeerRequest starts the handshake; anything else
 * in this state is a typed protocol error. Malformed input gets a PeerError and the
 * connection is closed; the caller's other connections are unaffected. When the node's
 * signal aborts, the handshake ends at once (its waits, connect and fetch-back are cut)
 * with E_INTERRUPTED, and nobody is confirmed.
 */
export async function serveConnection(channel: MessageChannel, ctx: HostContext): Promise<void> {
  let folder = '*'
  let first: Message | undefined
  // A child of the node's signal for this conversation: what the handshake hangs on it (a
  // fetch-back's transfers) goes with it, and the node's signal keeps one listener per conversation (net/abort.ts).
  const scope = scopedSignal(ctx.signal)
  const signal = scope.signal
  try {
    first = await untilAborted(channel.next(ctx.timeouts.reply), signal, stopping)
    folder = first.folder
    if (first.type === 'BePeerRequest') await hostHandshake(channel, first, ctx, signal)
    else if (first.type === 'FilesToGet' && first.meta.update === '1' && ctx.handlers?.FilesToGet) await ctx.handlers.FilesToGet(channel, first)
    else throw new FpeerError('E_MSG_UNEXPECTED', `${first.type} cannot start a conversation`)
  } catch (err) {
    // Whatever failed once the stop began (a transfer it cut) failed because of the stop.
    const e = signal.aborted ? stopping(signal) : isFpeerError(err) ? err : new FpeerError('E_INTERNAL', String((err as Error)?.message ?? err), {cause: err})
    ctx.log.warn('handshake failed', {peer: channel.remoteAddress, folder, code: e.code, reason: e.message})
    const to = e.code === 'E_NOT_ALLOWED' ? authenticSender(first) : undefined
    const replying =
      e.code === 'E_CONNECTION_LOST' ? undefined : replyError(channel, folder, e, to ? {identity: ctx.identity, to, re: first!.meta.nonce!} : undefined)
    // A stopping host tells the requester why (the write is queued before the close below) but does not wait for a requester that reads nothing.
    if (!signal.aborted) await replying
  } finally {
    scope.release()
    await channel.close()
  }
}

async function hostHandshake(channel: MessageChannel, request: BePeerRequest, ctx: HostContext, signal: AbortSignal): Promise<void> {
  const address = channel.remoteAddress
  const folder = request.folder
  const plain = isPlain(request)
  // State check, then validation, then dispatch.
  const shared = await ctx.folder(folder)
  if (!shared) throw new FpeerError('E_UNKNOWN_FOLDER', `no shared folder named ${JSON.stringify(folder)}`)
  let sender: PeerId | undefined
  if (!plain) {
    // A request is self-signed: it proves the sender holds the key of the ID it claims;
    // bound to this peer and to a time, it cannot be relayed here or replayed (§4.5).
    sender = verifyMessage(request)
    checkDestination(request, ctx.identity.id, {address: channel.localAddress, port: channel.localPort}, ctx.publicAddresses)
    ctx.replay.check(request, sender)
  } else if (claimedSender(request)) {
    throw new FpeerError('E_UNSIGNED', 'BePeerRequest names an id but is not signed')
  }
  // A request delegated to us by a confirmed peer carries its ticket, which admits the requester.
  const delegatedBy = sender && request.meta.ticket ? checkTicket(request, sender, ctx.identity.id) : undefined
  if (delegatedBy && !ctx.isPeer(folder, delegatedBy))
    throw new FpeerError('E_NOT_ALLOWED', `the ticket's issuer ${delegatedBy.short} is not a confirmed peer of ${folder}`)
  if (!delegatedBy && !(await ctx.mayJoin(folder, sender))) {
    throw new FpeerError('E_NOT_ALLOWED', sender ? `peer ${sender.toString()} may not join ${folder}` : `${folder} is not open to unidentified peers`)
  }
  // Seed step 8: a busy host asks another peer holding the folder to answer; it sends the
  // FilesToGet from its own address. Only fpeer requesters can follow (they check the ticket's signer).
  // A confirmed peer catching up is answered here: handed on, it would be confirmed by a peer
  // it does not list, which then pushes to it in vain (trust is mutual, 10.6).
  const delegate = sender && !delegatedBy && !ctx.isPeer(folder, sender) ? ctx.delegateFor?.(folder, sender) : undefined
  if (sender && delegate) {
    const msg: PeerError = {
      type: 'PeerError',
      folder,
      code: 'E_DELEGATED',
      text: `busy: ask ${delegate.id.toString()} at ${delegate.address}:${delegate.controlPort}`,
      meta: {
        nonce: randomNonce(),
        re: request.meta.nonce ?? '',
        delegate: delegate.id.compact,
        addr: delegate.address,
        ctl: String(delegate.controlPort),
        ...issueTicket(ctx.identity, folder, sender, delegate.id),
      },
    }
    await channel.send(signMessage(msg, ctx.identity))
    ctx.log.info('delegated request', {peer: sender.short, folder, to: delegate.id.short})
    return
  }
  const protocol = chooseProtocol(request, ctx)
  const entries = await untilAborted(ctx.fileList(folder), signal, stopping)
  // Directory lines (`type=dir`) are fpeer's: a seed peer would take one for a file to fetch.
  // Directory lines (`type=dir`) only to a requester that said it takes them (`dirs=1`): an
  // older one, or a seed peer, would take one for a file to fetch.
  const withDirs = !plain && request.meta.dirs === '1'
  const live = entries.filter((e) => e.ext?.del !== '1' && (withDirs || !isDirEntry(e)))
  const files = plain ? live : entries.filter((e) => withDirs || !isDirEntry(e))
  const rejoin = sender !== undefined && ctx.isPeer(folder, sender)
  const port = protocol === 'MANUAL' ? (ctx.servedPort('HTTP') ?? 0) : ctx.servedPort(protocol)!
  const hostNonce = randomNonce()
  // The requester reads the folder with this secret (or, over SFTP, by its key) until the handshake ends.
  const grant = ctx.grant(folder, sender)
  let ftg: FilesToGet = {type: 'FilesToGet', folder, port, protocol, files, meta: {}}
  // 4.9: we take progress messages from a requester that can send them (not over MANUAL: the user places the files).
  const offersEarly = !plain && request.meta.early === '1' && protocol !== 'MANUAL' && ctx.early !== false
  // 4.10: and reads back a large file while the requester still fetches it, when it offers that too.
  const offersFollow = offersEarly && request.meta.follow === '1'
  if (plain) {
    // The seed's plain form: no attributes at all, so a seed peer reads it unchanged.
    ftg = {...ftg, files: live.map((f) => ({path: f.path}))}
  } else {
    ftg.meta = {
      ka: String(ctx.timeouts.stall),
      nonce: hostNonce,
      re: request.meta.nonce ?? '',
      grant: grant.token,
      ...(protocol === 'MANUAL' ? {via: 'HTTP'} : {}),
      ...(offersEarly ? {early: '1'} : {}),
      ...(offersFollow ? {follow: '1'} : {}),
    }
    ftg = signMessage(ftg, ctx.identity)
  }
  let confirmed = false
  ctx.log.info('sent FilesToGet', {peer: sender?.short ?? address, folder, protocol, files: files.length})
  try {
    await untilAborted(channel.send(ftg), signal, stopping)
    // A new peer's copy is read back (seed step 13), most likely by the protocol it fetches by
    // (MANUAL's over HTTP): that client loads now, while the requester sets up. Loaded at the
    // first progress message (4.9), it ran in front of the requester's first read of this
    // host, about 40 ms of a 512 MiB request's wall time for undici. A confirmed peer catching
    // up often fetches nothing, so nothing is read back: a serve that only hosts those does
    // without the client, as before.
    if (!rejoin && live.length > 0) ctx.registry.prepare(protocol === 'MANUAL' ? 'HTTP' : protocol)
    // A requester that sends keep-alives (ka=1) may take as long as its copy takes, as long as
    // it makes progress; one that does not (a seed peer) gets the absolute transfer limit.
    const theirStall = plain ? undefined : parseKeepAlive(request.meta.ka)
    const keepAlives = theirStall !== undefined
    // Keep-alives alone cannot hold the connection forever (keepAliveCeiling).
    const waitMs = keepAlives ? keepAliveCeiling(ctx.timeouts, live) : ctx.timeouts.transfer
    const deadline = Date.now() + waitMs
    const resume = (protocol: string) => ctx.registry.has(protocol) && ctx.registry.get(protocol).supports.resume
    const batch = (protocol: string) => ctx.registry.has(protocol) && ctx.registry.get(protocol).supports.batch === true
    let moved = 0
    const onEvent = (ev: Parameters<NonNullable<HostContext['onFetchEvent']>>[0]) => {
      if (ev.event === 'bytes') moved += ev.bytes
      ctx.onFetchEvent?.(ev)
    }
    let stopKeepAlive = () => {}
    // 4.9: a requester that announced `early=1` to a host that offered it may send progress
    // messages (FilesUpdated with part=1) naming files that landed; they are checked back
    // while it fetches the rest. The final FilesUpdated still ends the exchange.
    // The files no progress message has named yet: each one named leaves it, so no set of announced paths is kept beside it.
    const unannounced = new Map<string, FileEntry>()
    for (const f of live) if (!isDirEntry(f)) unannounced.set(f.path, f)
    let announced = 0
    let followed = 0
    let back: {fetch: FetchBack; endpoint: PeerEndpoint} | undefined
    let fu: FilesUpdated
    try {
      for (;;) {
        const left = Math.max(1, deadline - Date.now())
        const next = keepAlives ? channel.next(left, {stallMs: ctx.timeouts.stall}) : channel.next(left)
        const reply = await untilAborted(back ? Promise.race([next, back.fetch.failed]) : next, signal, stopping)
        const msg = expectType(reply, 'FilesUpdated', folder)
        if (!plain) verifyReply(msg, sender, hostNonce)
        if (!isProgress(msg)) {
          fu = msg
          break
        }
        if (!offersEarly) throw new FpeerError('E_MSG_UNEXPECTED', 'a progress FilesUpdated (part=1) in a handshake that did not agree on early=1')
        const files = progressFiles(msg, unannounced)
        const growing = growingFiles(msg, offersFollow)
        announced += files.length
        followed += growing?.size ?? 0
        if (!back) {
          const endpoint: PeerEndpoint = {
            protocol: msg.protocol,
            host: address,
            port: msg.port,
            peer: sender,
            grant: msg.meta.grant,
            localAddress: channel.localAddress,
          }
          const fetch = new FetchBack(
            (work) => withPeerClient(ctx, endpoint, work, signal),
            (client, files, checkSignal) =>
              fetchFiles({
                client,
                folder,
                files,
                mode: 'verify',
                concurrency: ctx.concurrency,
                resume: resume(endpoint.protocol),
                batch: batch(endpoint.protocol),
                onEvent,
                signal: checkSignal,
              }),
          )
          back = {fetch, endpoint}
          if (keepAlives) stopKeepAlive = channel.keepAlive(() => moved, keepAliveEvery(theirStall!))
        } else if (!sameEndpoint(back.endpoint, msg)) {
          throw new FpeerError('E_MSG_BAD_FIELD', 'a progress FilesUpdated names another port, protocol or grant than the first')
        }
        if (growing) {
          back.fetch.add(files.filter((f) => !growing.has(f.path)))
          back.fetch.follow(files.filter((f) => growing.has(f.path)))
        } else back.fetch.add(files)
      }
      if (!sameFiles(plain ? live : files, fu.files)) throw new FpeerError('E_MSG_BAD_FIELD', 'FilesUpdated does not list the files of the FilesToGet')
      if (back && !sameEndpoint(back.endpoint, fu))
        throw new FpeerError('E_MSG_BAD_FIELD', 'FilesUpdated names another port, protocol or grant than its progress messages')
    } catch (err) {
      // No check outlives its handshake.
      stopKeepAlive()
      await back?.fetch.cancel()
      throw err
    }
    // A new peer's whole copy is checked; a confirmed peer catching up marks what it fetched (`got=1`).
    const took = rejoin ? new Set(fu.files.filter((f) => f.ext?.got === '1').map((f) => f.path)) : undefined
    // Files the requester's own .fpeerignore keeps out (`ign=1`) are not in its copy to check.
    const ignoredThere = new Set(plain ? [] : fu.files.filter((f) => f.ext?.ign === '1').map((f) => f.path))
    // What progress messages announced is being checked already; the rest is checked now.
    // Our own entries, not copies: a CheckFile is a line with its hash and size, which every line of ours has (E_INTERNAL otherwise).
    const toCheck: CheckFile[] = []
    for (const f of took ? live.filter((f) => took.has(f.path)) : live) {
      if (ignoredThere.has(f.path) || isDirEntry(f) || (offersEarly && !unannounced.has(f.path))) continue
      if (!isCheckable(f)) throw new FpeerError('E_INTERNAL', `the host's own line for ${JSON.stringify(f.path)} has no hash or size`)
      toCheck.push(f)
    }
    unannounced.clear()
    // Seed step 13: download the files back from the requester, from the address its
    // connection came from (never one a message names), and check every hash against ours.
    const endpoint = {protocol: fu.protocol, host: address, port: fu.port, peer: sender, grant: fu.meta.grant, localAddress: channel.localAddress}
    if (!back && keepAlives) stopKeepAlive = channel.keepAlive(() => moved, keepAliveEvery(theirStall!))
    let verified: {files: number; bytes: number}
    try {
      if (back) {
        if (toCheck.length > 0) back.fetch.add(toCheck)
        verified = await untilAborted(back.fetch.finish(), signal, stopping)
      } else {
        verified = await (toCheck.length === 0
          ? Promise.resolve({files: 0, bytes: 0})
          : withPeerClient(
              ctx,
              endpoint,
              (client, sup) =>
                fetchFiles({
                  client,
                  folder,
                  files: toCheck,
                  mode: 'verify',
                  concurrency: ctx.concurrency,
                  resume: sup.resume,
                  batch: sup.batch,
                  onEvent,
                  signal,
                }),
              signal,
            ))
      }
    } catch (err) {
      // A check cut (by the stop, or a failure) leaves nothing running behind the handshake.
      await back?.fetch.cancel()
      throw err
    } finally {
      stopKeepAlive()
    }
    // Stopped while the last check ended: nobody is confirmed by a host that is going away.
    if (signal.aborted) throw stopping(signal)
    ctx.log.info('verified peer copy', {
      peer: sender?.short ?? address,
      folder,
      files: verified.files,
      bytes: verified.bytes,
      early: announced,
      followed,
      from: `${address}:${fu.port}`,
    })
    await ctx.confirmPeer(folder, {
      id: sender ? sender.toString() : `plain:${address}`,
      address,
      ...(request.meta.ctl && /^\d{1,5}$/.test(request.meta.ctl) ? {controlPort: Number(request.meta.ctl)} : {}),
      protocols: plain ? ['HTTP'] : parseProtocolList(request.meta.protocols),
      role: 'member',
      confirmedAt: new Date().toISOString(),
    })
    const confirmFiles: FileEntry[] = plain ? live.map((f) => ({path: f.path})) : files
    let tpc: TrustedPeerConfirm = {type: 'TrustedPeerConfirm', folder, port: ftg.port, protocol, files: confirmFiles, meta: {}}
    if (!plain) tpc = signMessage({...tpc, meta: {nonce: randomNonce(), re: fu.meta.nonce ?? ''}}, ctx.identity)
    await channel.send(tpc)
    confirmed = true
    ctx.log.info('confirmed peer', {peer: sender?.toString() ?? address, folder})
  } finally {
    // A MANUAL requester may hang up to fetch the files by hand (from our HTTP port) and come
    // back with a fresh request (`fpeer request --resume`): it keeps read access for as long
    // as we would have waited for its FilesUpdated on this connection, and no longer.
    if (protocol === 'MANUAL' && !confirmed) setTimeout(grant.revoke, Math.min(ctx.timeouts.transfer, 2 ** 31 - 1)).unref()
    else grant.revoke()
  }
}
