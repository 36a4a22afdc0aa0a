// @fpeer/plugin-ftp: the FTP transport, a read-only passive-mode server on node:net and a basic-ftp client.
export {createFtpTransport, ftpTransport} from './transport.js'
export {serveFtp, DEFAULT_LIMITS, type FtpLimits} from './server.js'
export {canNameOverFtp, connectFtp, FtpClientPool} from './client.js'
