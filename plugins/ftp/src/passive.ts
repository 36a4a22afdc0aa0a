// Passive-mode data endpoints: one listener per control session, each PASV/EPSV a slot that accepts exactly one connection from the control peer.
import {createServer, type Server, type Socket} from 'node:net'
import type {Logger} from '@fpeer/core/plugin'
import {plainAddress} from './server-commands.js'

export interface PassiveEndpoint {
  readonly port: number
  /** The accepted data connection; rejects when none came in time or the endpoint was closed. */
  connection(): Promise<Socket>
  /** Stops listening and destroys the data connection, if any. Safe to call twice. */
  close(): void
  /**
   * Hands the accepted data connection over to the caller, who then owns it (block mode keeps
   * one across transfers): close() no longer destroys it. Undefined before a connection came.
   */
  keep(): Socket | undefined
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
 * One session's passive listener, opened at its first PASV/EPSV and kept until the session
 * ends; each PASV/EPSV is a slot on it that takes the next connection from the control peer.
 * A listener per file cost a port search in the kernel per file (among thousands of TIME_WAIT
 * sockets after a few thousand small files: 12-16% of both sides' CPU) and left a TIME_WAIT on
 * a fresh port each time, which made the other side's bind-before-connect slow too.
 * A connection that comes while no slot waits, or from another address, is dropped; a slot
 * that ends without its connection takes the listener with it (a late connection meant for it
 * must not land in the next slot).
 */
export class PassivePort {
  readonly #options: PassiveOptions
  #server: Server | undefined
  /** The listener and its port, read once: each address() is a getsockname(2), per file. */
  #listening: Promise<{server: Server; port: number}> | undefined
  #slot: {take(socket: Socket): boolean} | undefined
  #closed = false

  constructor(options: PassiveOptions) {
    this.#options = options
  }

  /** A slot for one data connection; the previous slot, if still open, is closed. */
  async open(): Promise<PassiveEndpoint> {
    if (this.#closed) throw new Error('passive port closed')
    const {server, port} = await this.#listen()
    let accepted: Socket | undefined
    let closed = false
    let kept = false
    let settle: {resolve(s: Socket): void; reject(e: Error): void}
    const connected = new Promise<Socket>((resolve, reject) => (settle = {resolve, reject}))
    connected.catch(() => {})
    const slot = {
      take: (socket: Socket) => {
        if (closed || accepted) return false
        accepted = socket
        clearTimeout(timer)
        if (this.#slot === slot) this.#slot = undefined
        settle.resolve(socket)
        return true
      },
    }
    const timer = setTimeout(() => {
      if (!accepted) endpoint.close()
    }, this.#options.acceptTimeoutMs)
    timer.unref()
    const endpoint: PassiveEndpoint = {
      port,
      connection: () => connected,
      close: () => {
        if (closed) return
        closed = true
        clearTimeout(timer)
        if (this.#slot === slot) this.#slot = undefined
        // A slot that ends without its connection (a 550, a timeout) may still get one, late,
        // from a client that connected as soon as it read the port: that connection must not
        // become the next slot's. This listener goes, and the next PASV/EPSV opens another.
        if (!accepted) this.#drop(server)
        if (!kept) accepted?.destroy()
        settle.reject(new Error('no data connection'))
      },
      keep: () => {
        if (!accepted || closed) return undefined
        kept = true
        return accepted
      },
    }
    this.#slot = slot
    return endpoint
  }

  /** Stops listening; open slots are closed by their owners. Safe to call twice. */
  close(): void {
    this.#closed = true
    this.#slot = undefined
    if (this.#server?.listening) this.#server.close()
  }

  /** Stops `server` if it is still this port's listener; the next open() listens anew. */
  #drop(server: Server): void {
    if (this.#server !== server) return
    this.#server = undefined
    this.#listening = undefined
    if (server.listening) server.close()
  }

  #listen(): Promise<{server: Server; port: number}> {
    if (this.#listening) return this.#listening
    const o = this.#options
    const server: Server = createServer({pauseOnConnect: true})
    this.#server = server
    server.on('connection', (socket) => {
      socket.on('error', () => {})
      socket.setNoDelay(true)
      const from = plainAddress(socket.remoteAddress)
      if (from !== o.peer) {
        o.log.warn('ftp: data connection from a foreign address refused', {from, peer: o.peer})
        socket.destroy()
        return
      }
      if (this.#closed || this.#server !== server || !this.#slot?.take(socket)) socket.destroy()
    })
    server.on('error', (err) => {
      o.log.warn('ftp: passive listener failed', {error: err.message})
      this.close()
    })
    this.#listening = new Promise<{server: Server; port: number}>((resolve, reject) => {
      server.once('error', reject)
      server.listen({host: o.host, port: 0, exclusive: true}, () => {
        server.off('error', reject)
        const addr = server.address()
        const port = typeof addr === 'object' && addr ? addr.port : 0
        // Closed while it started (the session ended): let go of the port at once.
        if (this.#closed) server.close()
        resolve({server, port})
      })
    })
    // A failed listen is tried again at the next PASV/EPSV.
    this.#listening.catch(() => (this.#listening = undefined))
    return this.#listening
  }
}
