// The one way core connects to a peer's transfer server: by the protocol a message named, at the address the message came from.
import {FpeerError} from '../errors.js'
import type {Identity, PeerId} from '../identity.js'
import type {TransportRegistry} from '../registry.js'
import type {Logger, TransferClient} from '../transport.js'

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
 * is E_UNSUPPORTED here, where a peer's message named it, rather than a crash.
 */
export async function connectToPeer(ctx: PeerClientContext, to: PeerEndpoint): Promise<TransferClient> {
  const transport = ctx.registry.get(to.protocol)
  if (!transport.supports.fetch || !transport.connect)
    throw new FpeerError('E_UNSUPPORTED', `${transport.protocol} cannot fetch files by itself; the peer must offer another protocol`)
  return transport.connect({
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
}

/** Connects, runs `work` with the client, and always closes it. */
export async function withPeerClient<T>(ctx: PeerClientContext, to: PeerEndpoint, work: (client: TransferClient) => Promise<T>): Promise<T> {
  const client = await connectToPeer(ctx, to)
  try {
    return await work(client)
  } finally {
    await client.close()
  }
}
