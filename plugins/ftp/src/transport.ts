// The FTP transport as the CLI registers it: its client (and basic-ftp with it) and its server load on first use, not when the hook runs.
import {loadOnUse, type Transport} from '@fpeer/core/plugin'
import {canNameOverFtp} from './names.js'

const client = () => loadOnUse('FTP', 'client', () => import('./client.js'))

/** Builds the FTP transport; `ftpTransport` is this one. Every plugin has a `createXTransport`, `serveX` and `connectX`. */
export function createFtpTransport(): Transport {
  return {
    protocol: 'FTP',
    description: 'FTP: read-only passive-mode server, basic-ftp client; no encryption, no peer authentication',
    supports: {serve: true, fetch: true, resume: true, peerAuth: false, serverAuth: false, batch: true},
    serve: async (options) => (await loadOnUse('FTP', 'server', () => import('./server.js'))).serveFtp(options),
    connect: async (options) => (await client()).connectFtp(options),
    // A requester loads the client while the host answers, not after its FilesToGet.
    prepare: async () => void (await client()),
    canName: canNameOverFtp,
  }
}

export const ftpTransport: Transport = createFtpTransport()
