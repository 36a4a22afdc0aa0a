// The one way core connects to a peer's transfer server: by the protocol a message named, at the address the message came from.
import {FpeerError, isFpeerError} from '../errors.js'
import type {Identity, PeerId} from '../identity.js'
import {untilAborted} from '../net/abort.js'
import type {TransportRegistry} from '../registry.js'
import type {Logger, TransferClient, TransportSupports} from '../transport.js'

/** Where a peer's files are: always the control connection's address, with Line 3's port, Line 4's protocol and the message's grant. */
export interface PeerEndpoint {
  protocol: string
  host: string
  port: number
  /** Who must be serving there (checked by transports that authenticate servers). */
  peer: PeerId | undefined
  /** `grant=` of the message that named this endpoint. */
  grant: string | undefined
  /** Our address to connect from. */
  localAddress?: string | undefined
}

/** What connecting needs from the caller. */
export interface PeerClientContext {
  identity: Identity
  registry: TransportRegistry
  log: Logger
  concurrency: number
  timeouts: {io: number}
}

/**
 * Connects to a peer's transfer server. A protocol that cannot fetch by itself (MANUAL)
 * is E_UNSUPPORTED here, where a peer's message named it, rather than a crash. A client
 * that lacks what its transport declares (`supports.batch` without `getMany()`) is E_PLUGIN:
 * the registry's shape check (registry.ts) sees the transport, only a connect sees a client.
 */
export async function connectToPeer(ctx: PeerClientContext, to: PeerEndpoint): Promise<TransferClient> {
  const transport = ctx.registry.get(to.protocol)
  if (!transport.supports.fetch || !transport.connect)
    throw new FpeerError('E_UNSUPPORTED', `${transport.protocol} cannot fetch files by itself; the peer must offer another protocol`)
  const client = await transport.connect({
    host: to.host,
    port: to.port,
    identity: ctx.identity,
    ...(to.peer ? {expectedPeer: to.peer} : {}),
    concurrency: ctx.concurrency,
    timeoutMs: ctx.timeouts.io,
    ...(to.localAddress ? {localAddress: to.localAddress} : {}),
    ...(to.grant ? {grant: to.grant} : {}),
    log: ctx.log,
  })
  if (transport.supports.batch && typeof client.getMany !== 'function') {
    await client.close().catch(() => {})
    throw new FpeerError('E_PLUGIN', `${transport.protocol} declares supports.batch but its client has no getMany()`, {
      hint: 'update or remove the plugin that provides it (`fpeer plugins`)',
    })
  }
  return client
}

/** Why a connect was given up: the signal's own reason when typed, else E_INTERRUPTED. */
function abortReason(signal: AbortSignal): FpeerError {
  return isFpeerError(signal.reason) ? signal.reason : new FpeerError('E_INTERRUPTED', 'stopped while connecting to the peer')
}

/**
 * Connects, runs `work` with the client and what its transport declares (`supports.batch`,
 * `supports.resume` for fetchFiles), and always closes it. With `signal`, an abort during the
 * connect rejects at once (a client that connects later is closed), as `work` must on abort.
 */
export async function withPeerClient<T>(
  ctx: PeerClientContext,
  to: PeerEndpoint,
  work: (client: TransferClient, supports: TransportSupports) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const client = await untilAborted(connectToPeer(ctx, to), signal, abortReason, (late) => void late.close().catch(() => {}))
  try {
    return await work(client, ctx.registry.get(to.protocol).supports)
  } finally {
    await client.close()
  }
}
