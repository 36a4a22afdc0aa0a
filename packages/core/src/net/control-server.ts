// The control server: the listening socket, its connections under the guard's limits, framing into message channels, and shutdown within a grace.
import net from 'node:net'
import {silentLogger, type Logger} from '../transport.js'
import {
  CONTROL_BUFFER_BYTES,
  CONTROL_MAX_CONNECTIONS,
  CONTROL_REPLY_BYTES,
  CONTROL_MAX_PER_ADDRESS,
  DEFAULT_FIRST_LINE_TIMEOUT_MS,
  MAX_UPDATE_VERSIONS,
} from '../wire/limits.js'
import type {Startable} from '../lifecycle.js'
import {MessageChannel} from './channel.js'
import {listenError} from './listen-error.js'
import {ByteBudget, ConnectionGuard} from './limits.js'

export interface ControlServerOptions {
  host: string
  /** 0 picks a free one (see `port` once started). */
  port: number
  /** Runs one conversation; a rejection is logged and the connection cut. */
  serve: (channel: MessageChannel) => Promise<void>
  /** A message's deadline once its first line came (the handshake's message timeout). */
  messageTimeoutMs: number
  /** From accept to the first complete line (default 10 s). */
  firstLineTimeoutMs?: number
  maxConnections?: number
  maxConnectionsPerAddress?: number
  /** Bytes of unparsed messages held across all connections (default 64 MiB). */
  bufferBytes?: number
  /** Bytes of replies to our own file lists held beyond bufferBytes, across all connections (default CONTROL_REPLY_BYTES, 256 MiB). */
  replyBytes?: number
  /** How long conversations under way may go on after the stop began before they are cut. */
  graceMs: number
  log?: Logger
}

/** How long closing the listening socket may take once every connection is cut. */
const CLOSE_MS = 1500

/**
 * Accepts control connections and hands each, framed, to `serve`. On abort (or stop) it
 * stops listening and drops idle connections at once; conversations under way get the
 * grace, then every socket is cut.
 */
export class ControlServer implements Startable {
  readonly #options: ControlServerOptions
  readonly #log: Logger
  readonly #connections = new Set<net.Socket>()
  #server: net.Server | undefined
  #guard: ConnectionGuard | undefined
  #closed: Promise<void> | undefined
  #graceEnds: number | undefined
  #signal: AbortSignal | undefined
  readonly #onAbort = () => this.#beginStop()

  constructor(options: ControlServerOptions) {
    this.#options = options
    this.#log = options.log ?? silentLogger
  }

  /** The port listened on (the one asked for until started). */
  get port(): number {
    const addr = this.#server?.address()
    return typeof addr === 'object' && addr ? addr.port : this.#options.port
  }

  get listening(): boolean {
    return this.#server?.listening ?? false
  }

  /** Connections open now (admitted, not yet closed). */
  get connections(): number {
    return this.#connections.size
  }

  /** Connections running a conversation rather than waiting for their peer. */
  get busy(): number {
    return this.#guard?.busy ?? 0
  }

  async start(signal: AbortSignal): Promise<void> {
    if (signal.aborted || this.#graceEnds !== undefined || this.#server) return
    const o = this.#options
    const firstMs = o.firstLineTimeoutMs ?? DEFAULT_FIRST_LINE_TIMEOUT_MS
    const messageMs = o.messageTimeoutMs
    // One budget for every control connection: many large messages at once cannot add up past it.
    const budget = new ByteBudget(o.bufferBytes ?? CONTROL_BUFFER_BYTES)
    // Replies to the lists we send (a FilesUpdated repeating our FilesToGet) have a budget of their own, used only up to what they can hold.
    const replyBudget = new ByteBudget(o.replyBytes ?? CONTROL_REPLY_BYTES)
    const guard = new ConnectionGuard({
      name: 'control',
      // After its first line a connection is bounded by the channel's message deadline (a typed
      // E_MSG_TIMEOUT); the guard's idle deadline is only the backstop. After its first message it
      // runs a conversation, bounded by the handshake's own reply and transfer timeouts.
      limits: {
        maxConnections: o.maxConnections ?? CONTROL_MAX_CONNECTIONS,
        maxPerAddress: o.maxConnectionsPerAddress ?? CONTROL_MAX_PER_ADDRESS,
        firstMs,
        idleMs: messageMs + 5000,
      },
      log: this.#log,
      farewell: (why, conn) =>
        why !== 'timeout'
          ? 'PeerError\n*\nE_BUSY\ntoo many connections\n\n'
          : `PeerError\n*\nE_MSG_TIMEOUT\n${conn?.started ? `message not complete within ${messageMs} ms` : `no complete line within ${firstMs} ms`}\n\n`,
    })
    this.#guard = guard
    const server = net.createServer({allowHalfOpen: true}, (socket) => {
      const conn = guard.admit(socket)
      if (!conn) return
      this.#connections.add(socket)
      socket.once('close', () => this.#connections.delete(socket))
      // A conversation opens with a request (no files) or an update (at most MAX_UPDATE_VERSIONS): a bigger first message is refused as it arrives.
      const channel = new MessageChannel(socket, {
        messageTimeoutMs: messageMs,
        budget,
        replyBudget,
        firstMaxFiles: MAX_UPDATE_VERSIONS,
        onProgress: (what) => (what === 'line' ? conn.idle() : conn.busy()),
      })
      o.serve(channel).catch((err: Error) => {
        this.#log.error('control connection failed', {reason: err.message})
        socket.destroy()
      })
    })
    this.#server = server
    server.on('error', (err) => this.#log.warn('control server error', {reason: err.message}))
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(listenError(err, 'control port', o.host, o.port, '--port PORT')))
      server.listen(o.port, o.host, () => resolve())
    })
    // Stopped while it began listening: nothing may be left open.
    if (this.#graceEnds !== undefined || signal.aborted) {
      await new Promise<void>((resolve) => server.close(() => resolve()))
      return
    }
    this.#signal = signal
    signal.addEventListener('abort', this.#onAbort, {once: true})
  }

  async stop(): Promise<void> {
    this.#signal?.removeEventListener('abort', this.#onAbort)
    const ends = this.#beginStop()
    // Conversations under way (a handshake, an update being applied) may finish within the grace.
    while (this.#connections.size > 0 && Date.now() < ends) await new Promise((r) => setTimeout(r, Math.min(50, Math.max(0, ends - Date.now()))))
    this.#guard?.close()
    // A socket's 'close' may come after the server's: both are awaited, so none is left when stop() returns.
    const gone = [...this.#connections].map((s) => new Promise((resolve) => s.once('close', resolve)))
    for (const s of this.#connections) s.destroy()
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all([this.#closed, ...gone]), new Promise((r) => (timer = setTimeout(r, CLOSE_MS)))])
    clearTimeout(timer)
  }

  /** No new connections; the idle ones go now, whatever their peers do. Returns when the grace ends. */
  #beginStop(): number {
    if (this.#graceEnds === undefined) {
      this.#graceEnds = Date.now() + this.#options.graceMs
      const server = this.#server
      this.#closed = server?.listening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve()
      this.#guard?.closeIdle()
    }
    return this.#graceEnds
  }
}
