// The requester's side of "Becoming a Peer" (seed steps 4-5, 10-12 and 17).
import {access, constants, lstat, mkdir, realpath, rmdir, stat} from 'node:fs/promises'
import path from 'node:path'
import {FpeerError, fromLocalError, isFpeerError} from '../errors.js'
import {type Identity, PeerId} from '../identity.js'
import {FolderDirs} from '../fs/folder-dirs.js'
import {IgnoreRules} from '../fs/ignore-rules.js'
import type {LandedStat} from '../fs/lander.js'
import {LocalFileSource} from '../fs/local-source.js'
import {checkRelativePath, prepareForWrite} from '../fs/safe-path.js'
import {sha256File} from '../fs/scan.js'
import {GrantTable} from '../access/grants.js'
import {formatDestination} from '../access/replay-guard.js'
import {connectChannel} from '../net/channel.js'
import type {TransportRegistry} from '../registry.js'
import {type FetchEvent, type FetchResult, fetchFiles, hashExisting} from '../transfer/fetch.js'
import {type PeerEndpoint, withPeerClient} from '../transfer/peer-client.js'
import {type AccessContext, type Logger, type ManualRequest, type PlacedState, type TransportServer, unnameable} from '../transport.js'
import {conflictPath} from '../wire/version.js'
import {signMessage} from '../wire/signing.js'
import {type BePeerRequest, type FileEntry, type FilesToGet, type FilesUpdated, extWith, isDirEntry, withExt} from '../wire/types.js'
import {type HandshakeTimeouts, keepAliveCeiling} from './context.js'
import {LandedAnnouncer} from './early.js'
import {FollowedFiles, followingSource} from '../transfer/follow.js'
import {expectType, randomNonce, sameFiles, verifyReply} from './handshake.js'

export interface RequestOptions {
  host: string
  port: number
  folder: string
  /** Directory to fill; created if missing. */
  into: string
  /** Local address to connect from and to serve the fetch-back on. */
  bind?: string
  /** Ask for this protocol (Line 4). */
  protocol?: string
  /** Refuse any host but this one. */
  expectedHost?: PeerId
  /** Attributes added to the BePeerRequest's Line 1 (a delegation ticket). */
  extraMeta?: Record<string, string>
  /** Follow a busy host's delegation to another peer (seed step 8); default true. */
  followDelegation?: boolean
  /** Port the fetch-back server listens on (seed step 11) so a firewall can let the host in; 0 or unset: any free port. */
  fetchPort?: number
  /**
   * Only show what the request would do: the handshake runs up to the host's FilesToGet,
   * which is compared with `into`; then the connection ends without FilesUpdated (the host
   * sees an abandoned handshake). Nothing is written, created or recorded.
   */
  dryRun?: boolean
  /** Our control port, announced as `ctl=` so the host can send us updates later. */
  controlPort?: number
  identity: Identity
  registry: TransportRegistry
  concurrency: number
  timeouts: HandshakeTimeouts
  log: Logger
  onEvent?(ev: FetchEvent | {event: 'files-to-get'; host: string; files: number; bytes: number; protocol: string} | {event: 'phase'; phase: string}): void
  /**
   * Replaces the plain fetch for a folder this peer already holds (a catch-up): decides
   * per version what to take and fetches only that. Returns what it fetched or copied.
   */
  apply?(ftg: FilesToGet, fetchFrom: PeerEndpoint & {peer: PeerId}, progress: ApplyProgress): Promise<{transfer: FetchResult; got: Set<string>}>
  /** Stops the request: the channel and the transfer end, and the request fails with the signal's reason (an FpeerError: E_INTERRUPTED, E_TIMEOUT). */
  signal?: AbortSignal
  /**
   * Called when the fetch fails midway, with the entries that did land (each checked), so
   * that the records of a folder already held here can agree with its disk.
   */
  onPartial?(landed: FileEntry[]): Promise<void>
  /** A file of the FilesToGet landed here, with its part file's fstat just before the rename: what its record should keep. */
  onLanded?(file: FileEntry, stat: LandedStat): void
  /** For a folder already held here: the SHA-256 this peer recorded for a path (its last known copy), if any. */
  recorded?(path: string): string | undefined
  /** Called for protocol MANUAL; resolves when the user has placed the files (or throws to stop, resumable). `check` tells which are not in place. */
  manual?(req: ManualRequest, check: () => Promise<PlacedState>): Promise<void>
  /**
   * Offer to announce files as they land (`early=1`, protocol 4.9), so the host checks them
   * back while the rest is fetched; default true. False sends the request as before 4.9.
   */
  early?: boolean
  /**
   * With `early`, also offer to serve large files while they are still being fetched
   * (`follow=1`, protocol 4.10); default true. `followFrom` is the size from which a file is
   * served so (default FOLLOW_FROM, 8 MiB).
   */
  follow?: boolean
  followFrom?: number
  /** Sees each message of the handshake as it crosses the wire, as text (`fpeer demo`). */
  onWire?(direction: 'sent' | 'received', text: string): void
}

/** One line of a dry run's plan: what a request would do with one file of the host's list. */
export interface PlanEntry {
  path: string
  size?: number
  /** fetch: not here yet; same: already here with the host's content; conflict: a differing local file would be kept as `conflict` and replaced; ignored: .fpeerignore here keeps it out. */
  action: 'fetch' | 'same' | 'conflict' | 'ignored' | 'unsupported'
  conflict?: string
}

export interface RequestResult {
  /** The host that handed the request to `host` (seed step 8), if it did. */
  delegatedBy?: string
  folder: string
  into: string
  host: {id: string; address: string; port: number}
  protocol: string
  files: FileEntry[]
  /** With dryRun: what would be done, and nothing was. */
  plan?: PlanEntry[]
  /** Files of the host's list this peer's .fpeerignore kept out. */
  ignored: string[]
  /** Files of the host's list not fetched because the chosen protocol cannot carry their names (Transport.canName; E_UNSUPPORTED). */
  unsupported: string[]
  transfer: FetchResult
  confirmedAt: string
}

/**
 * Which files the user has not placed (yet) with the right size and hash. `seen` remembers
 * the hash of an unchanged file (same size, mtime, inode), so polling does not rehash it.
 */
async function placedState(root: string, files: FileEntry[], seen = new Map<string, {key: string; ok: boolean}>()): Promise<PlacedState> {
  const missing: string[] = []
  const wrong: string[] = []
  for (const f of files) {
    const target = await prepareForWrite(root, f.path)
    const st = await stat(target).catch(() => undefined)
    if (!st?.isFile()) {
      missing.push(f.path)
      continue
    }
    if (f.size !== undefined && st.size !== f.size) {
      wrong.push(f.path)
      continue
    }
    const key = `${st.size}:${st.mtimeMs}:${st.ino}`
    let ok = seen.get(f.path)?.key === key ? seen.get(f.path)!.ok : undefined
    if (ok === undefined) {
      ok = (await sha256File(target).catch(() => undefined)) === f.sha256
      seen.set(f.path, {key, ok})
    }
    if (!ok) wrong.push(f.path)
  }
  return {missing, wrong}
}

/** Checks files the user placed by hand: each must exist and match its hash. */
async function checkPlaced(root: string, files: FileEntry[]): Promise<FetchResult> {
  const {missing, wrong} = await placedState(root, files)
  if (wrong.length)
    throw new FpeerError('E_HASH_MISMATCH', `${wrong.length} placed file(s) do not match: ${wrong.slice(0, 5).join(', ')}`, {details: {files: wrong}})
  if (missing.length)
    throw new FpeerError('E_PENDING', `${missing.length} file(s) not placed yet: ${missing.slice(0, 5).join(', ')}`, {
      details: {files: missing},
      hint: 'place them, then run the request again with --resume',
    })
  return {files: files.length, fetched: 0, skipped: files.length, bytes: 0}
}

export type {ManualRequest}

/**
 * Makes `into` (and what is missing above it) and checks this user may write there, before
 * anything is asked of the host. Returns its real path and the first directory it created.
 */
async function prepareInto(into: string): Promise<{root: string; created: string | undefined}> {
  let created: string | undefined
  try {
    created = await mkdir(into, {recursive: true})
    const root = await realpath(into)
    if (!(await stat(root)).isDirectory()) throw Object.assign(new Error('not a directory'), {code: 'ENOTDIR'})
    await access(root, constants.W_OK | constants.X_OK)
    return {root, created}
  } catch (err) {
    if (created) await removeEmpty(into, created)
    throw fromLocalError(err, into, 'fill')
  }
}

/** Removes the directories a failed request created, from `into` up to `top`, while they are empty (part files stay, to resume). */
async function removeEmpty(into: string, top: string): Promise<void> {
  let dir = path.resolve(into)
  const stop = path.dirname(path.resolve(top))
  while (dir !== stop && dir.startsWith(stop)) {
    if (
      !(await rmdir(dir).then(
        () => true,
        () => false,
      ))
    )
      return
    dir = path.dirname(dir)
  }
}

/** One line of a plan, as a literal (no `{...base, action}`: see withExt). */
function planEntry(f: FileEntry, action: PlanEntry['action'], conflict?: string): PlanEntry {
  const e: PlanEntry = f.size === undefined ? {path: f.path, action} : {path: f.path, size: f.size, action}
  if (conflict !== undefined) e.conflict = conflict
  return e
}

/**
 * What landing `files` in `into` would do, read without writing: each target is looked at
 * through the folder's directories held without following links, and hashed only when
 * there is a regular file to compare.
 */
async function planLanding(into: string, files: FileEntry[], ignored: Set<string>, unsupported: Set<string>, identity: Identity): Promise<PlanEntry[]> {
  const root = await realpath(into).catch(() => undefined)
  const dirs = root && (await lstat(root)).isDirectory() ? new FolderDirs(root) : undefined
  const out: PlanEntry[] = []
  try {
    for (const f of files) {
      if (ignored.has(f.path)) {
        out.push(planEntry(f, 'ignored'))
        continue
      }
      if (unsupported.has(f.path)) {
        out.push(planEntry(f, 'unsupported'))
        continue
      }
      const segments = f.path.split('/')
      const name = segments.pop()!
      let dir
      try {
        dir = dirs?.open(segments, false)
      } catch {
        dir = undefined // a symlink or file in the way: the real request refuses it (E_PATH_UNSAFE)
      }
      try {
        const st = dir?.lstat(name)
        if (!dir || !st?.isFile()) {
          out.push(planEntry(f, 'fetch'))
          continue
        }
        const local = await hashExisting(dir, name)
        if (local === f.sha256) out.push(planEntry(f, 'same'))
        else out.push(planEntry(f, 'conflict', conflictPath({path: f.path, origin: identity.id.compact, sha256: local})))
      } finally {
        dir?.release()
      }
    }
  } finally {
    dirs?.close()
  }
  return out
}

/**
 * Creates the host's empty directories (`type=dir` lines) through the folder's directories
 * held by descriptor: mkdir never follows a symlink, and one in the way is refused
 * (E_PATH_UNSAFE) like for a file. Something other than a directory there is left alone.
 */
function makeDirs(root: string, entries: FileEntry[], log: Logger): void {
  if (entries.length === 0) return
  const dirs = new FolderDirs(root)
  try {
    for (const e of entries) {
      try {
        dirs.need(checkRelativePath(e.path)).release()
      } catch (err) {
        log.warn('empty directory not created', {path: e.path, reason: (err as Error).message})
      }
    }
  } finally {
    dirs.close()
  }
}

export async function requestFolder(opts: RequestOptions): Promise<RequestResult> {
  if (opts.dryRun) {
    // A dry run writes nothing, not even --into: it reads what is there, if anything.
    return requestInto(opts, await realpath(opts.into).catch(() => opts.into))
  }
  const {root, created} = await prepareInto(opts.into)
  try {
    return await requestInto(opts, root)
  } catch (err) {
    if (created) await removeEmpty(opts.into, created)
    throw err
  }
}

async function requestInto(opts: RequestOptions, root: string): Promise<RequestResult> {
  opts.signal?.throwIfAborted()
  const channel = await connectChannel(opts.host, opts.port, {
    ...(opts.bind ? {localAddress: opts.bind} : {}),
    timeoutMs: opts.timeouts.io,
    messageTimeoutMs: opts.timeouts.message,
    ...(opts.onWire ? {tap: opts.onWire} : {}),
  })
  let server: TransportServer | undefined
  let stopKeepAlive = () => {}
  let announcer: LandedAnnouncer | undefined
  let landedHook: ((file: FileEntry) => void) | undefined
  let followed: FollowedFiles | undefined
  // Bytes moved by our transfer: what our keep-alives report as progress.
  let moved = 0
  // An apply waiting its turn (ApplyProgress): every keep-alive tick counts.
  let queued = false
  const onEvent: RequestOptions['onEvent'] = (ev) => {
    if (ev.event === 'bytes') moved += ev.bytes
    opts.onEvent?.(ev)
  }
  const abort = () => channel.socket.destroy()
  opts.signal?.addEventListener('abort', abort, {once: true})
  try {
    const nonce = randomNonce()
    const protocols = opts.registry.protocols((t) => t.supports.fetch || t.protocol === 'MANUAL')
    // Bound to this host (its ID when known, else the address and port we dialled) and to now (§4.5).
    // ka=: we send keep-alives while we fetch, so the host may wait on progress rather than a clock (4.7); its value is our own stall timeout.
    const meta: Record<string, string> = {
      ...opts.extraMeta,
      ka: String(opts.timeouts.stall),
      nonce,
      ts: String(Date.now()),
      dst: formatDestination(channel.remoteAddress, channel.remotePort),
      protocols: protocols.join(','),
      dirs: '1',
    }
    if (opts.expectedHost) meta.to = opts.expectedHost.compact
    if (opts.protocol) meta.want = opts.protocol.toUpperCase()
    if (opts.controlPort) meta.ctl = String(opts.controlPort)
    if (opts.early !== false && !opts.dryRun) {
      meta.early = '1'
      if (opts.follow !== false) meta.follow = '1'
    }
    const bpr: BePeerRequest = signMessage({type: 'BePeerRequest', folder: opts.folder, meta}, opts.identity)
    opts.onEvent?.({event: 'phase', phase: 'BePeerRequest'})
    await channel.send(bpr)
    // While the host answers: load the client of the protocol it will most likely name (the
    // one asked for, else the first of ours, as an fpeer host picks), so that overlaps the wait.
    const likely = meta.want ?? protocols.find((p) => p !== 'MANUAL')
    if (likely) opts.registry.prepare(likely)

    const first = await channel.next(opts.timeouts.reply)
    if (first.type === 'PeerError' && first.code === 'E_DELEGATED' && opts.followDelegation !== false && !opts.extraMeta?.ticket) {
      // Seed step 8: the host is busy and names a peer of the folder to ask instead. Only a
      // delegation signed by the host we asked (and answering our nonce) is followed, and
      // only to the peer it names, whose own signature we then require.
      const host = verifyReply(first, opts.expectedHost, nonce)
      const to = PeerId.tryParse(first.meta.delegate ?? '')
      const port = Number(first.meta.ctl)
      if (!to || !first.meta.addr || !Number.isInteger(port) || port < 1 || port > 65535) throw new FpeerError('E_MSG_BAD_FIELD', 'incomplete delegation')
      opts.log.info('host is busy; asking the peer it delegated to', {host: host.short, delegate: to.short, address: `${first.meta.addr}:${port}`})
      await channel.close()
      const ticket = {ticket: first.meta.ticket ?? '', 'ticket-by': first.meta['ticket-by'] ?? '', 'ticket-exp': first.meta['ticket-exp'] ?? ''}
      const result = await requestFolder({...opts, host: first.meta.addr, port, expectedHost: to, extraMeta: ticket})
      return {...result, delegatedBy: host.toString()}
    }
    const ftg: FilesToGet = expectType(
      first,
      'FilesToGet',
      opts.folder,
      opts.expectedHost ? {peer: opts.expectedHost, nonce, self: opts.identity.id} : undefined,
    )
    const hostId = verifyReply(ftg, opts.expectedHost, nonce)
    if (opts.protocol && ftg.protocol !== opts.protocol.toUpperCase())
      throw new FpeerError('E_NO_COMMON_PROTOCOL', `asked for ${opts.protocol.toUpperCase()}, host chose ${ftg.protocol}`)
    const hostAddress = channel.remoteAddress
    // A host that announced keep-alives understands ours, and sends its own while it checks our copy.
    const theirStall = parseKeepAlive(ftg.meta.ka)
    const keepAlives = theirStall !== undefined
    if (keepAlives) stopKeepAlive = channel.keepAlive(() => (queued ? ++moved : moved), keepAliveEvery(theirStall))
    opts.onEvent?.({
      event: 'files-to-get',
      host: hostId.toString(),
      files: ftg.files.length,
      bytes: ftg.files.reduce((n, f) => n + (f.size ?? 0), 0),
      protocol: ftg.protocol,
    })
    opts.log.debug('got FilesToGet', {host: hostId.short, files: ftg.files.length, protocol: ftg.protocol})

    // Seed step 10: fetch over Line 4's protocol, from the address the message came from.
    let transfer: FetchResult
    // Our own .fpeerignore decides what lands here: the host's names it matches are skipped
    // (and marked `ign=1` in FilesUpdated, so the host does not look for them in our copy).
    const rules = IgnoreRules.load(root)
    const ignored = new Set(ftg.files.filter((f) => f.ext?.del !== '1' && rules.ignores(f.path)).map((f) => f.path))
    for (const p of ignored) opts.log.warn('file ignored here (.fpeerignore): not fetched', {folder: opts.folder, path: p})
    const emptyDirs = ftg.files.filter((f) => isDirEntry(f) && !ignored.has(f.path))
    // A name the chosen protocol cannot carry (FTP: CR or LF) is left out like an ignored one,
    // so one hostile name in the host's folder cannot fail the whole request.
    const unsupported = unnameable(
      opts.registry.has(ftg.protocol) ? opts.registry.get(ftg.protocol) : undefined,
      ftg.files.filter((f) => f.ext?.del !== '1' && !isDirEntry(f) && !ignored.has(f.path)).map((f) => f.path),
    )
    for (const p of unsupported) opts.log.warn(`file not fetched: ${ftg.protocol} cannot carry its name`, {folder: opts.folder, path: p, code: 'E_UNSUPPORTED'})
    const skippedHere = new Set([...ignored, ...unsupported])
    const live = ftg.files.filter((f) => f.ext?.del !== '1' && !skippedHere.has(f.path) && !isDirEntry(f))
    if (opts.dryRun) {
      const plan = await planLanding(
        root,
        ftg.files.filter((f) => f.ext?.del !== '1' && !isDirEntry(f)),
        ignored,
        unsupported,
        opts.identity,
      )
      const fetch = plan.filter((p) => p.action === 'fetch' || p.action === 'conflict')
      return {
        folder: opts.folder,
        into: root,
        host: {id: hostId.toString(), address: hostAddress, port: opts.port},
        protocol: ftg.protocol,
        files: ftg.files,
        plan,
        ignored: [...ignored],
        unsupported: [...unsupported],
        transfer: {files: live.length, fetched: 0, skipped: live.length - fetch.length, bytes: 0},
        confirmedAt: '',
      }
    }
    // Which entries are in our copy now (`got=1`): every live one for a plain fetch, without a set of 100,000 paths.
    let gotHere = (f: FileEntry) => f.ext?.del !== '1' && !isDirEntry(f)
    // Seed steps 11-12 (prepared): serve our copies to the host alone; FilesUpdated tells it where.
    const serveProtocol = opts.registry.has(ftg.protocol) && opts.registry.get(ftg.protocol).supports.serve ? ftg.protocol : 'HTTP'
    const serving = opts.registry.get(serveProtocol)
    // The host alone may read our copies: by the secret we send it (or, over SFTP, by its key).
    const grants = new GrantTable()
    const {token: grant} = grants.issue(opts.folder, hostId)
    const isHost = (who: AccessContext) => grants.allows(opts.folder, who)
    const local = new LocalFileSource({root: (f) => (f === opts.folder ? root : undefined), mayRead: (f, who) => isHost(who) && f === opts.folder}, () => [
      opts.folder,
    ])
    // 4.10: a large file still being fetched is served from its part as it is written.
    const source = followingSource(local, opts.folder, isHost, () => followed)
    // The temporary server is an implementation detail of this handshake: its chatter is debug.
    // Started before the fetch, so a busy --fetch-port stops the request before any byte moves.
    server = await serving.serve!({
      host: channel.localAddress,
      port: opts.fetchPort ?? 0,
      files: source,
      identity: opts.identity,
      admit: isHost,
      log: {...opts.log, info: opts.log.debug},
    }).catch((err: unknown) => {
      if (opts.fetchPort && isFpeerError(err))
        throw new FpeerError(err.code, err.message, {cause: err, hint: 'pick another --fetch-port, or leave it out for any free port'})
      throw err
    })
    const from = {protocol: ftg.protocol, host: hostAddress, port: ftg.port, peer: hostId, grant: ftg.meta.grant, localAddress: opts.bind}
    if (opts.apply) {
      queued = true
      const progress: ApplyProgress = {onEvent, fetching: () => void (queued = false)}
      const r = await opts.apply(unsupported.size ? {...ftg, files: ftg.files.filter((f) => !unsupported.has(f.path))} : ftg, from, progress).finally(() => {
        queued = false
      })
      transfer = r.transfer
      const got = r.got
      gotHere = (f) => got.has(f.path)
    } else if (ftg.protocol === 'MANUAL') {
      if (!opts.manual) throw new FpeerError('E_NO_TRANSPORT', 'no handler for protocol MANUAL', {hint: 'install it with `fpeer plugins:install manual`'})
      const seen = new Map<string, {key: string; ok: boolean}>()
      await opts.manual(
        {
          folder: opts.folder,
          host: hostAddress,
          port: ftg.port,
          ...(ftg.meta.via ? {via: ftg.meta.via} : {}),
          ...(ftg.meta.grant ? {grant: ftg.meta.grant} : {}),
          hostId: hostId.toString(),
          into: root,
          files: live,
        },
        () => placedState(root, live, seen),
      )
      transfer = await checkPlaced(root, live)
    } else {
      const resume = opts.registry.get(ftg.protocol).supports.resume
      // The entries in place so far (each checked), as fetchFiles hands them over: no map from path to entry.
      const landed: FileEntry[] = []
      // 4.9: a host that answered early=1 checks our copies back while we fetch the rest: we
      // tell it which have landed (in place, each hash-checked), in signed progress messages.
      if (meta.early === '1' && ftg.meta.early === '1') {
        const port = server.port
        announcer = new LandedAnnouncer(async (files) => {
          const part: FilesUpdated = signMessage(
            {
              type: 'FilesUpdated',
              folder: opts.folder,
              port,
              protocol: serveProtocol,
              files,
              meta: {part: '1', nonce: randomNonce(), re: ftg.meta.nonce ?? '', grant},
            },
            opts.identity,
          )
          await channel.send(part)
        })
        const a = announcer
        landedHook = (f) => a.landed(f)
        if (meta.follow === '1' && ftg.meta.follow === '1') followed = new FollowedFiles((f) => a.growing(f))
      }
      try {
        // A transfer that moves no byte for the stall timeout fails, whatever the connection timeout says.
        transfer = await withPeerClient({...opts, timeouts: {...opts.timeouts, io: Math.min(opts.timeouts.io, opts.timeouts.stall)}}, from, (client, sup) => {
          opts.onEvent?.({event: 'phase', phase: 'fetch'})
          // A differing file already in --into is never overwritten unseen: it stays as a conflict copy, named as sync names them.
          // A file holding what this peer last recorded for it (a re-request of a folder held here) is an old copy, not an edit: replaced without a conflict copy.
          const conflictName = (p: string, sha256: string) =>
            opts.recorded?.(p) === sha256 ? undefined : conflictPath({path: p, origin: opts.identity.id.compact, sha256})
          const done = (f: FileEntry, stat?: LandedStat) => {
            landed.push(f)
            if (stat) opts.onLanded?.(f, stat)
            landedHook?.(f)
          }
          return fetchFiles({
            client,
            folder: opts.folder,
            files: live,
            mode: 'land',
            root,
            concurrency: opts.concurrency,
            resume,
            batch: sup.batch,
            conflictName,
            onEvent,
            onFileDone: done,
            ...(followed ? {follow: followed} : {}),
            ...(opts.followFrom === undefined ? {} : {followFrom: opts.followFrom}),
            ...(opts.signal ? {signal: opts.signal} : {}),
          })
        })
      } catch (err) {
        // What landed (each file checked) is recorded, so a folder held here and its records agree.
        await opts.onPartial?.(landed).catch((e: Error) => opts.log.warn('cannot record the files that landed', {reason: e.message}))
        throw err
      } finally {
        // Nothing is followed past the fetch: what landed is read from the folder from now on.
        followed?.end()
      }
    }

    // What is still unannounced is in the final FilesUpdated, which must follow the progress messages.
    await announcer?.stop()
    if (!opts.apply) makeDirs(root, emptyDirs, opts.log)

    const fuNonce = randomNonce()
    // ign=1: not in our copy (ignored here, or a name the protocol cannot carry), so the host does not check it.
    // Entries without attributes of their own share one: 100,000 `got=1` objects were as many allocations.
    const fuFiles = ftg.files.map((f) =>
      skippedHere.has(f.path)
        ? withExt(f, f.ext ? extWith(f.ext, 'ign', '1') : IGNORED_HERE)
        : gotHere(f)
          ? withExt(f, f.ext ? extWith(f.ext, 'got', '1') : GOT_HERE)
          : f,
    )
    const fu: FilesUpdated = signMessage(
      {
        type: 'FilesUpdated',
        folder: opts.folder,
        port: server.port,
        protocol: serveProtocol,
        files: fuFiles,
        meta: {nonce: fuNonce, re: ftg.meta.nonce ?? '', grant},
      },
      opts.identity,
    )
    opts.onEvent?.({event: 'phase', phase: 'FilesUpdated'})
    await channel.send(fu)

    // Seed steps 14-15: the host's signed confirmation.
    stopKeepAlive()
    const tpc = expectType(
      await (keepAlives ? channel.next(keepAliveCeiling(opts.timeouts, live), {stallMs: opts.timeouts.stall}) : channel.next(opts.timeouts.transfer)),
      'TrustedPeerConfirm',
      opts.folder,
    )
    verifyReply(tpc, hostId, fuNonce)
    if (!sameFiles(ftg.files, tpc.files)) throw new FpeerError('E_MSG_BAD_FIELD', 'TrustedPeerConfirm does not confirm the files that were fetched')
    return {
      folder: opts.folder,
      into: root,
      host: {id: hostId.toString(), address: hostAddress, port: opts.port},
      protocol: ftg.protocol,
      files: ftg.files,
      ignored: [...ignored],
      unsupported: [...unsupported],
      transfer,
      confirmedAt: new Date().toISOString(),
    }
  } catch (err) {
    // A host that found a bad copy while we still fetched (4.9) says why and closes, which
    // breaks our fetch (its grant is gone) or our send: its reason is the one to report, and
    // it may be a moment behind. Our own timeouts and interruptions stay ours.
    if (announcer && !opts.signal?.aborted && isFpeerError(err) && CUT_BY_HOST.has(err.code)) {
      const said = await channel.next(REASON_WAIT_MS).catch(() => undefined)
      if (said?.type === 'PeerError') {
        channel.socket.destroy()
        expectType(said, 'TrustedPeerConfirm', opts.folder)
      }
    }
    // A failed handshake has nothing more to say: do not wait for a silent peer to close its side.
    channel.socket.destroy()
    // An abort destroys the socket and the transfer: report why it was aborted, not what broke.
    if (opts.signal?.aborted) throw opts.signal.reason
    throw err
  } finally {
    stopKeepAlive()
    await announcer?.stop()
    opts.signal?.removeEventListener('abort', abort)
    await server?.close().catch(() => {})
    await channel.close()
  }
}

/** The `ext` of a FilesUpdated line that carries only `ign=1` or `got=1` (shared, never changed: fileToLine copies it). */
const IGNORED_HERE: Readonly<Record<string, string>> = Object.freeze({ign: '1'})
const GOT_HERE: Readonly<Record<string, string>> = Object.freeze({got: '1'})

/**
 * What an `apply` tells the handshake of its progress, for the keep-alives the host waits on
 * (4.7): its fetch's events, and the moment its fetch starts. Until then it waits its turn
 * behind the folder's other applies (one at a time), and every tick counts as progress, as it
 * does for a received update (sync/update.ts): a busy peer is not a hung one, and a host that
 * gave up would leave the apply fetching with a revoked grant (E_ACCESS) when its turn came.
 */
export interface ApplyProgress {
  onEvent(ev: FetchEvent): void
  fetching(): void
}

/** Failures of ours that a host ending the handshake causes (its connection closed, its grant revoked). */
const CUT_BY_HOST: ReadonlySet<string> = new Set(['E_CONNECTION_LOST', 'E_ACCESS', 'E_TRANSFER', 'E_CONNECT', 'E_NOT_FOUND'])
/** How long a failed early exchange waits for the host's PeerError (it follows the cut at once, or the connection closes). */
const REASON_WAIT_MS = 1000

/** Keep-alives go out four times per stall timeout of the peer (its `ka=`), so one late packet does not look like a stall. */
export function keepAliveEvery(peerStallMs: number): number {
  return Math.max(200, Math.min(15_000, Math.floor(peerStallMs / 4)))
}

/** A `ka=` attribute: the sender's stall timeout in ms (section 4.7), or undefined when absent or malformed (then no keep-alives are sent to it). */
export function parseKeepAlive(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{1,10}$/.test(value)) return undefined
  const ms = Number(value)
  return ms >= 1 ? ms : undefined
}
