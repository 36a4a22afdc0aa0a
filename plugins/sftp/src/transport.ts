// The SFTP transport as the CLI registers it: its client and server (and ssh2 with them) load on first use, not when the hook runs.
import {loadOnUse, type ConnectOptions, type ServeOptions, type TransferClient, type Transport, type TransportServer} from '@fpeer/core/plugin'
import type {SftpClientTuning} from './client.js'
import type {SftpServerLimits} from './server.js'

const client = () => loadOnUse('SFTP', 'client', () => import('./client.js'))

/** Knobs for tests and benchmarks; the defaults suit fpeer. */
export interface SftpTransportOptions {
  server?: Partial<SftpServerLimits>
  client?: Partial<SftpClientTuning>
}

/** Builds the SFTP transport; `sftpTransport` is this with the defaults. */
export function createSftpTransport(options: SftpTransportOptions = {}): Transport {
  return {
    protocol: 'SFTP',
    description: "SFTP over SSH; host key and login key are the peers' fpeer identities (read-only server, resumable, per-peer access)",
    supports: {serve: true, fetch: true, resume: true, peerAuth: true, serverAuth: true, batch: true},
    async serve(serveOptions: ServeOptions): Promise<TransportServer> {
      return (await loadOnUse('SFTP', 'server', () => import('./server.js'))).serveSftp(serveOptions, options.server)
    },
    async connect(connectOptions: ConnectOptions): Promise<TransferClient> {
      return (await client()).connectSftp(connectOptions, options.client)
    },
    // A requester loads the client (ssh2-sftp-client and ssh2) while the host answers, not after its FilesToGet.
    prepare: async () => void (await client()),
  }
}

export const sftpTransport: Transport = createSftpTransport()
