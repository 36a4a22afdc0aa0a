// @fpeer/plugin-ftp: the FTP transport, a read-only passive-mode server on node:net and a basic-ftp client.
import type {Transport} from '@fpeer/core/plugin'
import {canNameOverFtp, connectFtp} from './client.js'
import {serveFtp} from './server.js'

/** Builds the FTP transport; `ftpTransport` is this one. Every plugin has a `createXTransport`, `serveX` and `connectX`. */
export function createFtpTransport(): Transport {
  return {
    protocol: 'FTP',
    description: 'FTP: read-only passive-mode server, basic-ftp client; no encryption, no peer authentication',
    supports: {serve: true, fetch: true, resume: true, peerAuth: false, serverAuth: false, batch: true},
    serve: (options) => serveFtp(options),
    connect: (options) => connectFtp(options),
    canName: canNameOverFtp,
  }
}

export const ftpTransport: Transport = createFtpTransport()

export {serveFtp, DEFAULT_LIMITS, type FtpLimits} from './server.js'
export {canNameOverFtp, connectFtp, FtpClientPool} from './client.js'
