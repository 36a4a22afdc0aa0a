// The SFTP transport as the CLI registers it: its client and server (and ssh2 with them) load on first use, not when the hook runs.
import type {ConnectOptions, ServeOptions, TransferClient, Transport, TransportServer} from '@fpeer/core/plugin'
import type {SftpClientTuning} from './client.js'
import type {SftpServerLimits} from './server.js'

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
      return (await import('./server.js')).serveSftp(serveOptions, options.server)
    },
    async connect(connectOptions: ConnectOptions): Promise<TransferClient> {
      return (await import('./client.js')).connectSftp(connectOptions, options.client)
    },
    // A requester loads the client (ssh2-sftp-client and ssh2) while the host answers, not after its FilesToGet.
    prepare: async () => void (await import('./client.js')),
  }
}

export const sftpTransport: Transport = createSftpTransport()
