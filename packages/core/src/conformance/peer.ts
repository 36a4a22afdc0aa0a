// Starts a transport server over the fixture and a client to it, and closes both whatever happens.
import {Identity, generateKeyPair, type PeerId} from '../identity.js'
import {LocalFileSource} from '../fs/local-source.js'
import type {AccessContext, ConnectOptions, TransferClient, Transport, TransportServer} from '../transport.js'
import {FaultySource, type FaultPlan} from './faults.js'
import {FOLDER, type Fixture} from './fixture.js'

export interface PeerSetup {
  plan?: FaultPlan
  /** Decides FolderAccess.mayRead; default everyone may read. */
  mayRead?(folder: string, who: AccessContext): boolean
  admit?(who: AccessContext): boolean
  concurrency?: number
  /** Overrides the peer the client expects (to test serverAuth). */
  expectedPeer?: PeerId
  /** The grant secret the client presents (ConnectOptions.grant). */
  grant?: string
}

export interface Served {
  server: TransportServer
  source: FaultySource
  identity: Identity
}

export interface Peer extends Served {
  client: TransferClient
  clientIdentity: Identity
}

/** Serves the fixture's folder on 127.0.0.1 at a free port. */
export async function serveFixture(transport: Transport, fx: Fixture, setup: PeerSetup = {}): Promise<Served> {
  const base = new LocalFileSource(
    {
      root: (folder) => (folder === FOLDER ? fx.root : undefined),
      mayRead: (folder, who) => setup.mayRead?.(folder, who) ?? true,
    },
    () => [FOLDER],
  )
  const source = new FaultySource(base, setup.plan)
  const identity = new Identity(generateKeyPair())
  const server = await transport.serve!({host: '127.0.0.1', port: 0, files: source, identity, ...(setup.admit ? {admit: setup.admit} : {})})
  return {server, source, identity}
}

export function connectOptions(served: Served, clientIdentity: Identity, setup: PeerSetup, timeoutMs: number): ConnectOptions {
  return {
    host: '127.0.0.1',
    port: served.server.port,
    identity: clientIdentity,
    expectedPeer: setup.expectedPeer ?? served.identity.id,
    concurrency: setup.concurrency ?? 4,
    timeoutMs,
    ...(setup.grant ? {grant: setup.grant} : {}),
  }
}

/** Runs `fn` with a server and a connected client; both are closed afterwards even when `fn` throws. */
export async function withPeer<T>(transport: Transport, fx: Fixture, timeoutMs: number, setup: PeerSetup, fn: (peer: Peer) => Promise<T>): Promise<T> {
  const served = await serveFixture(transport, fx, setup)
  let client: TransferClient | undefined
  try {
    const clientIdentity = new Identity(generateKeyPair())
    client = await transport.connect!(connectOptions(served, clientIdentity, setup, timeoutMs))
    return await fn({...served, client, clientIdentity})
  } finally {
    await client?.close()
    await served.server.close()
  }
}
