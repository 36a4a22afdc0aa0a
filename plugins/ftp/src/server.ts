// The FTP transport server: a small, strict, read-only FTP server on node:net that reads only through core's FileSource.
import {createServer} from 'node:net'
import {ConnectionGuard, silentLogger, type ServeOptions, type TransportServer} from '@fpeer/core/plugin'
import {formatReply} from './server-commands.js'
import {DEFAULT_LIMITS, FtpSession, type FtpLimits} from './server-session.js'

export {DEFAULT_LIMITS, type FtpLimits} from './server-session.js'

/**
 * Starts serving `options.files` over FTP. The root `/` lists the folders the client may
 * read; `/<folder>/<path>` is a file. `limits` exists for tests and tuning; core passes none.
 */
export async function serveFtp(options: ServeOptions, limits: Partial<FtpLimits> = {}): Promise<TransportServer> {
  const log = options.log ?? silentLogger
  const lim: FtpLimits = {...DEFAULT_LIMITS, ...limits}
  const sessions = new Set<FtpSession>()
  let closing: Promise<void> | undefined
  const guard = new ConnectionGuard({
    name: 'ftp',
    // The session closes a quiet connection itself (421); the guard also closes one that drips bytes without a command.
    limits: {
      maxConnections: lim.maxConnections,
      maxPerAddress: lim.maxConnectionsPerAddress,
      firstMs: lim.firstLineTimeoutMs,
      idleMs: lim.idleTimeoutMs + 1000,
    },
    log,
    farewell: (why) =>
      formatReply(
        421,
        why === 'busy'
          ? 'Too many connections, try again later'
          : why === 'evicted'
            ? 'Idle connection closed to admit another client'
            : 'Timeout, closing control connection',
      ),
  })

  const server = createServer((socket) => {
    if (closing) return void socket.destroy()
    // Replies are small writes answered by small writes: without this, Nagle and delayed
    // ACKs stall each command/reply round trip by ~40 ms.
    socket.setNoDelay(true)
    const conn = guard.admit(socket)
    if (!conn) return
    const session: FtpSession = new FtpSession(socket, {
      files: options.files,
      log,
      limits: lim,
      onClose: () => sessions.delete(session),
      onActivity: (busy) => (busy ? conn.busy() : conn.idle()),
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
        guard.close()
      })
      return closing
    },
  }
}
