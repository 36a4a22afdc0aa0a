// @fpeer/plugin-sftp: the SFTP transport, a read-only SFTP server keyed by fpeer identities and a pooled, pipelined SFTP client.
import type {ConnectOptions, ServeOptions, TransferClient, Transport, TransportServer} from '@fpeer/core/plugin'
import {connectSftp, type SftpClientTuning} from './client.js'
import {serveSftp, type SftpServerLimits} from './server.js'

export {connectSftp, mapSshError, DEFAULT_CLIENT_TUNING, type SftpClientTuning} from './client.js'
export {serveSftp, normalizeSftpPath, longname, DEFAULT_SERVER_LIMITS, type SftpServerLimits} from './server.js'
export {publicKeyBlob, parsePublicKeyBlob, publicKeyLine, knownHostsLine, privateKeyPem, fingerprint} from './keys.js'

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
    serve(serveOptions: ServeOptions): Promise<TransportServer> {
      return serveSftp(serveOptions, options.server)
    },
    connect(connectOptions: ConnectOptions): Promise<TransferClient> {
      return connectSftp(connectOptions, options.client)
    },
  }
}

export const sftpTransport: Transport = createSftpTransport()
