// @fpeer/plugin-sftp: the SFTP transport, a read-only SFTP server keyed by fpeer identities and a pooled, pipelined SFTP client.
export {createSftpTransport, sftpTransport, type SftpTransportOptions} from './transport.js'
export {connectSftp, mapSshError, DEFAULT_CLIENT_TUNING, type SftpClientTuning} from './client.js'
export {serveSftp, normalizeSftpPath, longname, DEFAULT_SERVER_LIMITS, type SftpServerLimits} from './server.js'
export {publicKeyBlob, parsePublicKeyBlob, publicKeyLine, knownHostsLine, privateKeyPem, fingerprint} from './keys.js'
