// A passive-mode data endpoint: one listener per PASV/EPSV that accepts exactly one connection from the control peer.
import {createServer, type Server, type Socket} from 'node:net'
import type {Logger} from '@fpeer/core/plugin'
import {plainAddress} from './server-commands.js'

export interface PassiveEndpoint {
  readonly port: number
  /** The accepted data connection; rejects when none came in time or the endpoint was closed. */
  connection(): Promise<Socket>
  /** Stops listening and destroys the data connection, if any. Safe to call twice. */
  close(): void
}

export interface PassiveOptions {
  /** The control connection's local address: data connections come to the same host. */
  host: string
  /** The control connection's remote address: the only one allowed to connect. */
  peer: string
  acceptTimeoutMs: number
  log: Logger
}

/**
 * Opens a listener on an OS-chosen port. A connection from any other address than the
 * control peer is dropped (otherwise anyone who guesses the port could take the file),
 * and the listener stops after the first good one or after the timeout.
 */
export async function openPassive(options: PassiveOptions): Promise<PassiveEndpoint> {
  const server: Server = createServer({pauseOnConnect: true})
  let accepted: Socket | undefined
  let closed = false
  let settle: {resolve(s: Socket): void; reject(e: Error): void}
  const connected = new Promise<Socket>((resolve, reject) => (settle = {resolve, reject}))
  // Nobody may be waiting yet; the rejection is observed by connection() when it is.
  connected.catch(() => {})

  const stopListening = () => {
    clearTimeout(timer)
    if (server.listening) server.close()
  }

  server.on('connection', (socket) => {
    socket.on('error', () => {})
    // A small file is one write followed by the end: nothing for Nagle to coalesce.
    socket.setNoDelay(true)
    const from = plainAddress(socket.remoteAddress)
    if (closed || accepted || from !== options.peer) {
      if (from !== options.peer) options.log.warn('ftp: data connection from a foreign address refused', {from, peer: options.peer})
      socket.destroy()
      return
    }
    accepted = socket
    stopListening()
    settle.resolve(socket)
  })
  server.on('error', (err) => {
    options.log.warn('ftp: passive listener failed', {error: err.message})
    endpoint.close()
  })

  const timer = setTimeout(() => {
    if (!accepted) endpoint.close()
  }, options.acceptTimeoutMs)
  timer.unref()

  const endpoint: PassiveEndpoint = {
    get port() {
      const addr = server.address()
      return typeof addr === 'object' && addr ? addr.port : 0
    },
    connection: () => connected,
    close() {
      if (closed) return
      closed = true
      stopListening()
      accepted?.destroy()
      settle.reject(new Error('no data connection'))
    },
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({host: options.host, port: 0, exclusive: true}, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return endpoint
}
