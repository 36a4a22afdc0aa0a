// The FTP transport server: a small, strict, read-only FTP server on node:net that reads only through core's FileSource.
import {createServer, type Socket} from 'node:net'
import {silentLogger, type ServeOptions, type TransportServer} from '@fpeer/core'
import {formatReply, plainAddress} from './server-commands.js'
import {DEFAULT_LIMITS, FtpSession, type FtpLimits} from './server-session.js'

export {DEFAULT_LIMITS, type FtpLimits} from './server-session.js'

/**
 * Starts serving `options.files` over FTP. The root `/` lists the folders the client may
 * read; `/<folder>/<path>` is a file. `limits` exists for tests and tuning; core passes none.
 */
export async function startFtpServer(options: ServeOptions, limits: Partial<FtpLimits> = {}): Promise<TransportServer> {
  const log = options.log ?? silentLogger
  const lim: FtpLimits = {...DEFAULT_LIMITS, ...limits}
  const sessions = new Set<FtpSession>()
  const perAddress = new Map<string, number>()
  let closing: Promise<void> | undefined

  const refuse = (socket: Socket, why: string) => {
    log.warn('ftp: connection refused', {peer: plainAddress(socket.remoteAddress), why})
    socket.on('error', () => {})
    socket.end(formatReply(421, why))
    setTimeout(() => socket.destroy(), 1000).unref()
  }

  const server = createServer((socket) => {
    const address = plainAddress(socket.remoteAddress)
    if (closing) return void socket.destroy()
    if (sessions.size >= lim.maxConnections) return refuse(socket, 'Too many connections, try again later')
    const mine = perAddress.get(address) ?? 0
    if (mine >= lim.maxConnectionsPerAddress) return refuse(socket, 'Too many connections from your address')
    perAddress.set(address, mine + 1)
    const session: FtpSession = new FtpSession(socket, {
      files: options.files,
      log,
      limits: lim,
      onClose: () => {
        sessions.delete(session)
        const n = (perAddress.get(address) ?? 1) - 1
        if (n > 0) perAddress.set(address, n)
        else perAddress.delete(address)
      },
    })
    sessions.add(session)
    session.start()
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({host: options.host, port: options.port}, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', (err) => log.error('ftp: server error', {error: err.message}))

  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : options.port
  log.info('ftp: serving', {host: options.host, port})

  return {
    host: options.host,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const s of [...sessions]) s.destroy()
      })
      return closing
    },
  }
}
