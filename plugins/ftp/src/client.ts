// The FTP transport client: basic-ftp connections in core's ConnectionPool, one per concurrent transfer, each RETR streamed to the caller.
import {Socket, type SocketConnectOpts, type SocketConstructorOpts} from 'node:net'
import {PassThrough, Readable, Writable} from 'node:stream'
import {Client} from 'basic-ftp'
import {
  ConnectionPool,
  FpeerError,
  SlabStream,
  isFpeerError,
  silentLogger,
  type BatchItem,
  type ConnectOptions,
  type Logger,
  type TransferClient,
} from '@fpeer/core/plugin'
import {pipelineRetr} from './client-batch.js'
import {blockModeRefused, blockRetr} from './client-block.js'
import {mapFtpError} from './client-errors.js'
import {UNSENDABLE_NAME} from './names.js'

export {canNameOverFtp} from './names.js'

/** Files of one getMany() whose EPSV and RETR are sent before the oldest has ended (stream mode). */
const PIPELINE_WINDOW = 4
/** Files of one getMany() whose RETR is sent before the oldest has ended, in block mode: one data connection for all, so more. */
const BLOCK_WINDOW = 16

/** Replies to SIZE that mean "not supported here", not "no such file". */
const SIZE_UNSUPPORTED = new Set([500, 501, 502, 504])

function replyCode(err: unknown): number | undefined {
  const code = (err as {code?: unknown})?.code
  return typeof code === 'number' ? code : undefined
}

function abortError(signal: AbortSignal): FpeerError {
  return new FpeerError('E_TRANSFER', 'FTP transfer aborted', {cause: signal.reason})
}

/**
 * A large file's data connection, while its RETR runs: read with `onread` into core's
 * SlabStream, not through 'data' events into basic-ftp's pipeline (which then sees none and
 * only waits for the end). `attach` learns the socket, for pausing it.
 */
interface DataBody {
  onread: {buffer: () => Buffer; callback: (n: number) => boolean}
  attach(socket: Socket): void
}
const dataBodies = new WeakMap<Client, DataBody>()

/** Files of at least this many bytes still to fetch are read into slabs (DataBody); smaller ones as basic-ftp reads them. */
const BULK_FROM = 1 << 20

/**
 * basic-ftp has no option for the local address or TCP_NODELAY. Its one socket seam,
 * `FTPContext._newSocket` (public in its typings, used for control and data sockets alike),
 * is wrapped so both bind to `localAddress` when given (fpeer's server accepts a data
 * connection only from the control connection's address) and send without Nagle's delay,
 * which otherwise stalls every command/reply round trip by a delayed ACK (~40 ms).
 * While a large file's RETR runs, the data socket is made with its DataBody's `onread`.
 */
function tuneSockets(client: Client, localAddress: string | undefined): void {
  client.ftp._newSocket = () => {
    const body = dataBodies.get(client)
    // `onread` is read by the constructor (net.connect passes its options there); @types/node lists it under connect only.
    const socket = new Socket((body ? {onread: body.onread} : {}) as SocketConstructorOpts)
    body?.attach(socket)
    socket.setNoDelay(true)
    if (localAddress) {
      const connect = socket.connect.bind(socket) as (options: SocketConnectOpts, listener?: () => void) => Socket
      ;(socket as unknown as {connect: unknown}).connect = (options: SocketConnectOpts, listener?: () => void) =>
        connect({...options, localAddress} as SocketConnectOpts, listener)
    }
    return socket
  }
}

/**
 * A parked connection that turned out dead on its first command (no reply at all). Only this
 * may be retried on a fresh connection inside one get(): once the server has answered, the
 * connection was alive, and a later failure is the transfer's own (a cut file must reach the
 * caller as E_CONNECTION_LOST, never be quietly fetched again).
 */
class StaleConnection extends Error {
  constructor(readonly mapped: FpeerError) {
    super(mapped.message)
  }
}

/** Connects to a peer's FTP server; the first connection is made now so a wrong address fails here (E_CONNECT). */
export async function connectFtp(options: ConnectOptions): Promise<TransferClient> {
  const pool = new FtpClientPool(options)
  await pool.prime()
  return pool
}

/**
 * Up to `concurrency` logged-in connections, in core's ConnectionPool. basic-ftp runs one
 * command at a time per connection, so each get() borrows a connection for the whole
 * transfer. A connection whose transfer failed after it started is closed, never reused:
 * its control channel may still owe a reply that would confuse the next command.
 */
export class FtpClientPool implements TransferClient {
  readonly #opts: ConnectOptions
  readonly #log: Logger
  readonly #pool: ConnectionPool<Client>
  /** Whether the server takes MODE B: unknown until the first getMany() asks; false after a refusal. */
  #blockMode: boolean | undefined

  constructor(options: ConnectOptions) {
    this.#opts = options
    this.#log = options.log ?? silentLogger
    this.#pool = new ConnectionPool<Client>({
      name: 'FTP',
      max: options.concurrency,
      open: () => this.#open(),
      destroy: (client) => client.close(),
      alive: (client) => !client.closed,
      log: this.#log,
    })
  }

  /** Opens one connection and parks it. */
  async prime(): Promise<void> {
    const {conn} = await this.#pool.acquire()
    this.#pool.release(conn, true)
  }

  async get(
    folder: string,
    path: string,
    options: {offset?: number; signal?: AbortSignal} = {},
  ): Promise<{stream: Readable; size?: number; release?(chunk: Buffer): void}> {
    if (UNSENDABLE_NAME.test(folder) || UNSENDABLE_NAME.test(path)) {
      throw new FpeerError('E_PATH_UNSAFE', `FTP cannot name ${JSON.stringify(path)}: CR and LF cannot travel in FTP commands`)
    }
    const remote = `/${folder}/${path}`
    const offset = options.offset ?? 0
    const signal = options.signal
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw abortError(signal)
      const {conn: client, reused} = await this.#pool.acquire(signal)
      try {
        return await this.#download(client, remote, offset, signal, reused)
      } catch (err) {
        // One fresh connection is part of borrowing a parked one, not a retry of the transfer.
        if (err instanceof StaleConnection) {
          if (attempt === 0) continue
          throw err.mapped
        }
        throw err
      }
    }
  }

  async close(): Promise<void> {
    await this.#pool.close()
  }

  /**
   * Small files on one borrowed connection, pipelined. In block mode (client-block.ts) where
   * the server takes it (fpeer's does): one data connection for the whole batch. Else in
   * stream mode (client-batch.ts): EPSV and RETR only,
   * no SIZE (core knows each size, and checks it and the hash), several files' commands
   * ahead, each file whole into memory. A 550 is that item's error; a body larger than
   * announced stops at the first byte too many (E_SIZE_MISMATCH); any other failure is
   * thrown and core retries the files not yet yielded. A server without EPSV makes it throw
   * E_UNSUPPORTED, and core falls back to get().
   */
  async *getMany(folder: string, items: Array<{path: string; size: number}>, options: {signal?: AbortSignal} = {}): AsyncIterable<BatchItem> {
    const signal = options.signal
    for (const name of [folder, ...items.map((i) => i.path)]) {
      if (UNSENDABLE_NAME.test(name)) throw new FpeerError('E_PATH_UNSAFE', `FTP cannot name ${JSON.stringify(name)}: CR and LF cannot travel in FTP commands`)
    }
    let from = 0
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw abortError(signal)
      const {conn: client, reused} = await this.#pool.acquire(signal)
      let outcome = {clean: false, silent: false}
      let yielded = 0
      try {
        const {host, localAddress, timeoutMs} = this.#opts
        const rest = items.slice(from)
        const block = this.#blockMode !== false
        const retr = block ? blockRetr : pipelineRetr
        const window = block ? BLOCK_WINDOW : PIPELINE_WINDOW
        for await (const item of retr(client, {host, localAddress, folder, items: rest, window, timeoutMs, signal}, (o) => (outcome = o))) {
          yielded++
          yield item
        }
        // Ended early without an error: a body overran, and the rest goes on a fresh connection.
        if (yielded === rest.length) return
        continue
      } catch (err) {
        if (signal?.aborted) throw abortError(signal)
        // MODE B refused (any server but fpeer's), or not kept to: stream mode from now on, on a
        // fresh connection, for the files not handed over yet. Once only: the mode is then stream.
        if (blockModeRefused(err)) {
          this.#log.debug('ftp: block mode not available, using stream mode', {host: this.#opts.host, error: (err as Error).message})
          this.#blockMode = false
          continue
        }
        // A parked connection the server closed while idle answers nothing at all: one fresh
        // connection is part of borrowing it, not a retry of the transfer.
        if (attempt === 0 && reused && yielded === 0 && outcome.silent && isFpeerError(err, 'E_CONNECTION_LOST')) continue
        throw err
      } finally {
        from += yielded
        this.#pool.release(client, outcome.clean)
      }
    }
  }

  /** Runs one RETR on a borrowed connection; returns it to the pool (or closes it) in every outcome. */
  async #download(
    client: Client,
    remote: string,
    offset: number,
    signal: AbortSignal | undefined,
    reused: boolean,
  ): Promise<{stream: Readable; size?: number; release?(chunk: Buffer): void}> {
    const onAbort = () => client.close()
    signal?.addEventListener('abort', onAbort, {once: true})
    const unlisten = () => signal?.removeEventListener('abort', onAbort)

    let size: number | undefined
    try {
      size = await client.size(remote)
    } catch (err) {
      const code = replyCode(err)
      if (code === undefined || !SIZE_UNSUPPORTED.has(code)) {
        unlisten()
        // After an error reply the connection is in a clean state and can be reused.
        this.#pool.release(client, code !== undefined)
        if (signal?.aborted) throw abortError(signal)
        const mapped = mapFtpError(err, `FTP SIZE ${remote}`, 'start')
        // No reply at all to the first command on a parked connection: the server closed it while idle.
        throw reused && code === undefined && mapped.code === 'E_CONNECTION_LOST' ? new StaleConnection(mapped) : mapped
      }
    }

    // basic-ftp writes into `sink`, which forwards into `inner` with backpressure; the caller
    // reads `out`, which replays `inner` and then throws if the transfer failed. Ending `inner`
    // on failure too (and throwing after it) hands the caller every byte that did arrive, so a
    // resumed fetch continues from there; destroying the stream would discard what is buffered.
    // A large file's bytes go to `slabs` instead (DataBody), and `out` is its stream.
    const inner = new PassThrough({highWaterMark: 1 << 18})
    let failure: FpeerError | undefined
    let started = false
    let done = false
    let dataSocket: Socket | undefined
    const slabs =
      size !== undefined && size - offset >= BULK_FROM
        ? new SlabStream({
            pause: () => dataSocket?.pause(),
            resume: () => dataSocket?.resume(),
            // Closing `out` closes `inner`, which closes the connection (below).
            destroy: () => {},
          })
        : undefined
    const out = slabs
      ? slabs.stream
      : Readable.from(
          (async function* () {
            for await (const chunk of inner) yield chunk as Buffer
            if (failure) throw failure
          })(),
          {objectMode: false, highWaterMark: 1 << 16},
        )
    return new Promise((resolve, reject) => {
      const begin = () => {
        if (started) return
        started = true
        const release = slabs ? {release: (chunk: Buffer) => slabs.release(chunk)} : {}
        resolve(size === undefined ? {stream: out, ...release} : {stream: out, size, ...release})
      }
      if (slabs) {
        dataBodies.set(client, {
          onread: {
            buffer: () => slabs.room(),
            callback: (n) => {
              begin()
              slabs.commit(n)
              return true
            },
          },
          attach: (socket) => (dataSocket = socket),
        })
      }
      // Never ends `inner` itself: basic-ftp ends its destination even when the transfer
      // failed, and a reader must not take a cut file for a whole one.
      const sink = new Writable({
        highWaterMark: 1 << 16,
        write(chunk: Buffer, _enc, cb) {
          begin()
          if (inner.destroyed) return cb(new Error('the reader went away'))
          if (inner.write(chunk)) return cb()
          const go = () => {
            inner.off('drain', go)
            inner.off('close', go)
            cb(inner.destroyed ? new Error('the reader went away') : null)
          }
          inner.on('drain', go)
          inner.on('close', go)
        },
        final(cb) {
          cb()
        },
      })
      // A reader that stops early (even before its first read) abandons the transfer; the
      // connection cannot be reused.
      out.on('close', () => {
        if (!done) inner.destroy()
      })
      inner.on('close', () => {
        if (!done) client.close()
      })
      client.downloadTo(sink, remote, offset).then(
        () => {
          done = true
          dataBodies.delete(client)
          unlisten()
          begin()
          if (slabs) slabs.end()
          inner.end()
          this.#pool.release(client, true)
        },
        (err: unknown) => {
          done = true
          dataBodies.delete(client)
          unlisten()
          const e = signal?.aborted ? abortError(signal) : mapFtpError(err, `FTP RETR ${remote}`, started ? 'transfer' : 'start')
          // Only a clean error reply before any byte (550: no such file) leaves the connection reusable.
          this.#pool.release(client, !started && replyCode(err) === 550)
          if (started && slabs) {
            // Chunks not yet read are dropped with the stream: core resumes after what it wrote.
            slabs.fail(e)
            inner.destroy()
          } else if (started) {
            failure = e
            inner.end()
          } else {
            inner.destroy()
            out.destroy()
            reject(e)
          }
        },
      )
    })
  }

  /** Opens and logs in one connection, for the pool. Errors: mapped (E_CONNECT, E_ACCESS, …). */
  async #open(): Promise<Client> {
    const {host, port, timeoutMs, localAddress} = this.#opts
    const client = new Client(timeoutMs)
    tuneSockets(client, localAddress)
    try {
      // The grant secret is the password (§4.6); without one, only open folders can be read.
      const grant = this.#opts.grant
      await client.access({host, port, user: grant ? 'fpeer' : 'anonymous', password: grant ?? 'fpeer@'})
    } catch (err) {
      client.close()
      throw mapFtpError(err, `FTP connect to ${host}:${port}`, 'connect')
    }
    this.#log.debug('ftp: connected', {host, port, live: this.#pool.size})
    return client
  }
}
