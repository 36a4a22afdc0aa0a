// @fpeer/plugin-ftp: the FTP transport, a read-only passive-mode server on node:net and a basic-ftp client.
import type {Transport} from '@fpeer/core'
import {canNameOverFtp, connectFtp} from './client.js'
import {startFtpServer} from './server.js'

export const ftpTransport: Transport = {
  protocol: 'FTP',
  description: 'FTP: read-only passive-mode server, basic-ftp client; no encryption, no peer authentication',
  supports: {serve: true, fetch: true, resume: true, peerAuth: false, serverAuth: false},
  serve: (options) => startFtpServer(options),
  connect: (options) => connectFtp(options),
  canName: canNameOverFtp,
}

export {startFtpServer, DEFAULT_LIMITS, type FtpLimits} from './server.js'
export {canNameOverFtp, connectFtp, FtpClientPool} from './client.js'
