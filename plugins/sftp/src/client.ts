// The SFTP transport client: a pool of ssh2-sftp-client connections logged in with this peer's key, checking the server's host key, reading files with many READs in flight.
//
// An SFTP connection runs one transfer at a time here (ssh2-sftp-client is not made for
// concurrent operations on one connection), so the client keeps up to `concurrency`
// connections in core's ConnectionPool and lends each to one get() at a time. A file is read with many READ
// requests outstanding, as OpenSSH's sftp and ssh2's fastGet do: one READ at a time
// would make throughput a matter of round trips.
import {Readable} from 'node:stream'
import SftpClient from 'ssh2-sftp-client'
import type {Client as SshClient, ConnectConfig, SFTPWrapper} from 'ssh2'
import {ConnectionPool, FpeerError, checkRelativePath, isFpeerError, mapNetworkError, silentLogger} from '@fpeer/core/plugin'
import type {BatchItem, ConnectOptions, Logger, TransferClient} from '@fpeer/core/plugin'
import {ED25519, fingerprint, parsePublicKeyBlob, privateKeyPem, publicKeyBlob} from './keys.js'

/** How a file is read: READ size and how many READs may be in flight. */
export interface SftpClientTuning {
  /** Bytes per READ; capped by what the server's SFTP implementation allows. */
  chunkBytes: number
  /** READ requests in flight per transfer. */
  maxOutstanding: number
  /** The SSH user name. fpeer servers ignore it (the key is the login); other servers may need a real account. */
  username: string
}

export const DEFAULT_CLIENT_TUNING: Readonly<SftpClientTuning> = {
  chunkBytes: 256 * 1024,
  maxOutstanding: 64,
  username: 'fpeer',
}

/**
 * Files of one getMany() open at once on its connection. Each holds a server handle between
 * its OPEN and CLOSE: fpeer's server allows 32 per session, OpenSSH far more.
 */
const BATCH_WINDOW = 16

/** SFTP v3 status codes ssh2 puts in `err.code`. */
const FX_NO_SUCH_FILE = 2
const FX_PERMISSION_DENIED = 3

// ─── errors ─────────────────────────────────────────────────────────────────

/** What an ssh2 / ssh2-sftp-client error means to fpeer, as a FpeerError. */
export function mapSshError(err: unknown, context: string): FpeerError {
  if (isFpeerError(err)) return err
  const e = err as {code?: unknown; level?: unknown; message?: unknown} | undefined
  const message = `${context}: ${typeof e?.message === 'string' ? e.message : String(err)}`
  const opts = {cause: err}
  if (e?.code === FX_NO_SUCH_FILE) return new FpeerError('E_NOT_FOUND', message, opts)
  if (e?.code === FX_PERMISSION_DENIED) return new FpeerError('E_ACCESS', message, opts)
  if (e?.level === 'client-authentication') {
    return new FpeerError('E_ACCESS', message, {...opts, hint: 'the peer does not accept this identity: has it added you as a peer?'})
  }
  if (e?.level === 'client-timeout') return new FpeerError('E_TIMEOUT', message, opts)
  const mapped = mapNetworkError(err, context)
  if (mapped.code !== 'E_TRANSFER') return mapped
  // ssh2 and ssh2-sftp-client say "lost" and "timed out" by text alone.
  const text = typeof e?.message === 'string' ? e.message : ''
  if (/No response from server|Connection lost|Not connected|No SFTP connection|closed|Unexpected (end|close)/i.test(text)) {
    return new FpeerError('E_CONNECTION_LOST', message, opts)
  }
  if (/timed out/i.test(text)) return new FpeerError('E_TIMEOUT', message, opts)
  return new FpeerError('E_TRANSFER', message, opts)
}

// ─── one connection ─────────────────────────────────────────────────────────

/** One logged-in SFTP connection of the pool. */
class Connection {
  readonly sc: SftpClient
  sftp: SFTPWrapper | undefined
  alive = false
  /** The ssh2 error that ended the connection, when one did. */
  lastError: unknown
  /** Set by the host key check, so a refused host key is told apart from other failures. */
  hostKeyMismatch = false

  constructor(log: Logger) {
    const dead = () => {
      this.alive = false
    }
    // Without callbacks of our own ssh2-sftp-client would print its events on stdout.
    this.sc = new SftpClient('fpeer', {
      error: (err) => {
        this.lastError = err
        dead()
        log.debug('sftp connection error', {error: (err as Error)?.message})
      },
      end: dead,
      close: dead,
    })
    const ssh = this.ssh
    ssh.prependListener('error', (err: Error) => {
      this.lastError = err
    })
    ssh.on('close', dead)
    ssh.on('end', dead)
  }

  get ssh(): SshClient {
    return (this.sc as unknown as {client: SshClient}).client
  }

  async open(options: ConnectOptions, username: string): Promise<void> {
    const expected = options.expectedPeer ? publicKeyBlob(options.expectedPeer.publicKey) : undefined
    const config: ConnectConfig = {
      host: options.host,
      port: options.port,
      username,
      privateKey: privateKeyPem(options.identity),
      authHandler: ['publickey'],
      readyTimeout: options.timeoutMs,
      keepaliveInterval: Math.max(1000, Math.min(15_000, options.timeoutMs)),
      keepaliveCountMax: 3,
      // fpeer host keys are ed25519; asking for nothing else means a server cannot offer
      // some other key to dodge the check.
      algorithms: {serverHostKey: [ED25519]},
      hostVerifier: (key: Buffer) => {
        if (!expected) return true
        if (Buffer.isBuffer(key) && key.equals(expected)) return true
        this.hostKeyMismatch = true
        const got = parsePublicKeyBlob(key)
        options.log?.warn('sftp host key mismatch', {host: options.host, port: options.port, got: got ? fingerprint(got) : 'not ed25519'})
        return false
      },
      ...(options.localAddress ? {localAddress: options.localAddress} : {}),
    }
    // Many small READ requests go out back to back; Nagle's algorithm would hold them for ACKs.
    this.ssh.once('connect', () => this.ssh.setNoDelay(true))
    try {
      this.sftp = await this.sc.connect(config)
      this.alive = true
    } catch (err) {
      this.destroy()
      if (this.hostKeyMismatch) {
        throw new FpeerError('E_HOST_KEY_MISMATCH', `the SFTP server at ${options.host}:${options.port} is not peer ${options.expectedPeer?.short}`, {
          cause: err,
          hint: 'someone else answers at that address, or the peer changed its identity',
        })
      }
      // ssh2-sftp-client rewraps errors and drops ssh2's `level`; the raw error keeps it.
      throw mapSshError((this.lastError as {level?: unknown})?.level ? this.lastError : err, `connecting to ${options.host}:${options.port}`)
    }
  }

  destroy(): void {
    this.alive = false
    this.sc.end().catch(() => {})
    try {
      this.ssh.destroy()
    } catch {
      // already gone
    }
  }
}

// ─── reading one file ───────────────────────────────────────────────────────

interface ReadReq {
  pos: number
  len: number
  buf: Buffer
  done: boolean
  n: number
  err: unknown
}

/**
 * A file read from `start` to `end` (exclusive; the size the server reported) with up to
 * `maxOutstanding` READs in flight, delivered in order. A short read asks for the rest
 * first; a zero read (EOF) before `end` ends the stream early, and core, which knows the
 * expected size, decides what that means. Any failure is E_CONNECTION_LOST (or E_TIMEOUT)
 * so that core retries and resumes.
 */
class PipelinedReader extends Readable {
  readonly #sftp: SFTPWrapper
  readonly #handle: Buffer
  readonly #end: number
  readonly #chunk: number
  readonly #maxOutstanding: number
  readonly #timeoutMs: number
  readonly #onDone: (err: Error | null) => void
  #next: number
  #queue: ReadReq[] = []
  #wantMore = true
  #finished = false
  #timer: NodeJS.Timeout | undefined
  #gotData = false
  #startError: FpeerError | undefined
  #ready!: {resolve(): void; reject(err: FpeerError): void}
  /**
   * Settles with the first READ: an error there (no such file, permission denied) is the
   * server's answer to this file, not a lost connection, and get() rejects with it.
   */
  readonly ready: Promise<void>

  constructor(opts: {
    sftp: SFTPWrapper
    handle: Buffer
    start: number
    end: number
    chunk: number
    maxOutstanding: number
    timeoutMs: number
    onDone(err: Error | null): void
  }) {
    super({highWaterMark: opts.chunk * 4})
    this.#sftp = opts.sftp
    this.#handle = opts.handle
    this.#next = opts.start
    this.#end = opts.end
    this.#chunk = opts.chunk
    this.#maxOutstanding = opts.maxOutstanding
    this.#timeoutMs = opts.timeoutMs
    this.#onDone = opts.onDone
    this.ready = new Promise<void>((resolve, reject) => {
      this.#ready = {resolve, reject}
    })
    this.#pump()
    if (this.#queue.length === 0) this.#finish()
  }

  override _read(): void {
    this.#wantMore = true
    this.#pump()
    this.#deliver()
  }

  #issue(pos: number, len: number, front = false): void {
    const req: ReadReq = {pos, len, buf: Buffer.allocUnsafe(len), done: false, n: 0, err: undefined}
    if (front) this.#queue.unshift(req)
    else this.#queue.push(req)
    this.#arm()
    try {
      this.#sftp.read(this.#handle, req.buf, 0, len, pos, (err, n) => {
        req.done = true
        req.err = err
        req.n = n ?? 0
        this.#arm()
        this.#deliver()
      })
    } catch (err) {
      req.done = true
      req.err = err
    }
  }

  #pump(): void {
    while (!this.#finished && this.#wantMore && this.#queue.length < this.#maxOutstanding && this.#next < this.#end) {
      const len = Math.min(this.#chunk, this.#end - this.#next)
      this.#issue(this.#next, len)
      this.#next += len
    }
  }

  #deliver(): void {
    if (this.#finished) return
    while (this.#queue.length > 0 && this.#queue[0]!.done) {
      const req = this.#queue.shift()!
      if (req.err && !this.#gotData) {
        this.#startError = mapSshError(req.err, 'reading')
        this.#ready.reject(this.#startError)
        this.destroy()
        return
      }
      if (req.err) {
        // Mid-transfer every failure is retryable: core resumes from what it has.
        const mapped = mapSshError(req.err, 'SFTP read failed')
        this.destroy(mapped.code === 'E_TIMEOUT' ? mapped : new FpeerError('E_CONNECTION_LOST', mapped.message, {cause: req.err}))
        return
      }
      if (req.n === 0) {
        // The file ended before the size the server reported: it shrank under us.
        this.#finish()
        return
      }
      if (req.n < req.len) this.#issue(req.pos + req.n, req.len - req.n, true)
      if (!this.#gotData) {
        this.#gotData = true
        this.#ready.resolve()
      }
      this.#wantMore = this.push(req.n === req.len ? req.buf : req.buf.subarray(0, req.n))
      if (this.#finished) return
    }
    if (this.#queue.length === 0 && this.#next >= this.#end) {
      this.#finish()
      return
    }
    this.#pump()
  }

  #finish(): void {
    if (this.#finished) return
    this.#finished = true
    clearTimeout(this.#timer)
    this.#gotData = true
    this.#ready.resolve()
    this.push(null)
  }

  /** The watchdog: READs in flight and no answer for `timeoutMs` means the server is gone. */
  #arm(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#finished || this.#queue.length === 0) return
    this.#timer = setTimeout(() => {
      const err = new FpeerError('E_TIMEOUT', `no SFTP data for ${this.#timeoutMs} ms`)
      if (!this.#gotData) {
        this.#startError = err
        this.#ready.reject(err)
        this.destroy()
      } else {
        this.destroy(err)
      }
    }, this.#timeoutMs)
    this.#timer.unref()
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#finished = true
    clearTimeout(this.#timer)
    this.#queue = []
    try {
      this.#sftp.close(this.#handle, () => {})
    } catch {
      // connection already gone
    }
    // A transfer abandoned with READs in flight leaves stale answers on the wire; the
    // connection still works (answers are matched by request id), so only errors drop it.
    if (!this.#gotData) {
      // Destroyed before the first byte (e.g. aborted): get() must not wait for ever.
      this.#gotData = true
      this.#ready.reject(this.#startError ?? new FpeerError('E_TRANSFER', 'the transfer was stopped before it started'))
    }
    this.#onDone(err ?? this.#startError ?? null)
    cb(err)
  }
}

// ─── many small files on one connection ─────────────────────────────────────

/**
 * The requests of one getMany() on one connection. A watchdog fails every file in flight
 * (E_TIMEOUT) and drops the connection when no answer came for `timeoutMs`; an abort fails
 * them with the caller's reason.
 */
class SmallFileBatch {
  readonly #conn: Connection
  readonly #sftp: SFTPWrapper
  readonly #timeoutMs: number
  readonly #signal: AbortSignal | undefined
  readonly #chunk: number
  /** Files waiting for answers: how to fail each. */
  readonly #waiting = new Set<(err: FpeerError) => void>()
  #timer: NodeJS.Timeout | undefined
  #stopped = false
  readonly #onAbort = () => this.#failAll(aborted(this.#signal!))

  constructor(conn: Connection, timeoutMs: number, signal: AbortSignal | undefined) {
    this.#conn = conn
    this.#sftp = conn.sftp!
    this.#timeoutMs = timeoutMs
    this.#signal = signal
    this.#chunk = Math.max(1024, maxReadLen(this.#sftp))
    signal?.addEventListener('abort', this.#onAbort, {once: true})
  }

  /** One file whole: its bytes, or its own error (E_NOT_FOUND, E_ACCESS refused; E_SIZE_MISMATCH larger than announced). Rejects for anything else. */
  fetch(path: string, remote: string, size: number): Promise<BatchItem> {
    const p = new Promise<BatchItem>((resolve, reject) => {
      let settled = false
      const fail = (err: FpeerError) => {
        if (settled) return
        settled = true
        this.#waiting.delete(fail)
        this.#arm()
        reject(err)
      }
      const done = (item: BatchItem) => {
        if (settled) return
        settled = true
        this.#waiting.delete(fail)
        this.#arm()
        resolve(item)
      }
      if (this.#stopped || !this.#conn.alive) return fail(new FpeerError('E_CONNECTION_LOST', `opening ${remote}: the connection is closed`))
      this.#waiting.add(fail)
      this.#arm()
      try {
        this.#sftp.open(remote, 'r', (err, handle) => {
          this.#arm()
          if (err) {
            const e = mapSshError(err, `opening ${remote}`)
            if (e.code === 'E_NOT_FOUND' || e.code === 'E_ACCESS') done({path, error: e})
            else fail(e)
            return
          }
          if (settled) return void this.#close(handle)
          this.#readAll(handle, remote, size, (e, data) => {
            this.#close(handle)
            // fpeer's server opens the bytes at the first READ, so a refusal may come there.
            if (e && (e.code === 'E_NOT_FOUND' || e.code === 'E_ACCESS' || e.code === 'E_SIZE_MISMATCH')) done({path, error: e})
            else if (e) fail(e)
            else done({path, data: data!})
          })
        })
      } catch (err) {
        fail(mapSshError(err, `opening ${remote}`))
      }
    })
    // Looked at only when its turn comes; a failure before that must not count as unhandled.
    p.catch(() => {})
    return p
  }

  /**
   * READs of the whole announced size, plus one just past it, all sent at once. A short
   * answer asks for the rest of its range; an EOF before `size` ends the file there (core
   * sees the short body and retries); data past `size` is E_SIZE_MISMATCH.
   */
  #readAll(handle: Buffer, remote: string, size: number, cb: (err: FpeerError | undefined, data?: Buffer) => void): void {
    const buf = Buffer.allocUnsafe(size)
    let outstanding = 0
    let end = size
    let failed: FpeerError | undefined
    let finished = false
    const finish = () => {
      if (finished || outstanding > 0) return
      finished = true
      if (failed) return cb(failed)
      cb(undefined, end === size ? buf : buf.subarray(0, end))
    }
    const read = (pos: number, len: number) => {
      outstanding++
      try {
        this.#sftp.read(handle, buf, pos, len, pos, (err, n) => {
          outstanding--
          this.#arm()
          if (err) failed ??= mapSshError(err, `reading ${remote}`)
          else if (n === 0) end = Math.min(end, pos)
          else if (n < len) read(pos + n, len - n)
          finish()
        })
      } catch (err) {
        outstanding--
        failed ??= mapSshError(err, `reading ${remote}`)
      }
    }
    for (let pos = 0; pos < size; pos += this.#chunk) read(pos, Math.min(this.#chunk, size - pos))
    // The probe past the end: EOF is the only good answer.
    outstanding++
    try {
      this.#sftp.read(handle, Buffer.allocUnsafe(1), 0, 1, size, (err, n) => {
        outstanding--
        this.#arm()
        if (err) failed ??= mapSshError(err, `reading ${remote}`)
        else if (n > 0) failed ??= new FpeerError('E_SIZE_MISMATCH', `${remote} is larger than the ${size} bytes announced`)
        finish()
      })
    } catch (err) {
      outstanding--
      failed ??= mapSshError(err, `reading ${remote}`)
    }
    finish()
  }

  #close(handle: Buffer): void {
    try {
      this.#sftp.close(handle, () => {})
    } catch {
      // the connection is gone, and the handle with it
    }
  }

  /** Restarts the watchdog while files wait for answers; stops it when none does. */
  #arm(): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#stopped || this.#waiting.size === 0) return
    this.#timer = setTimeout(() => {
      // Dead to the pool from now on: getMany's release destroys it.
      this.#conn.destroy()
      this.#failAll(new FpeerError('E_TIMEOUT', `no SFTP answer for ${this.#timeoutMs} ms`))
    }, this.#timeoutMs)
    this.#timer.unref()
  }

  #failAll(err: FpeerError): void {
    for (const fail of [...this.#waiting]) fail(err)
  }

  /** Ends the batch: files still in flight fail, the watchdog and the abort listener go. */
  stop(): void {
    if (this.#stopped) return
    this.#failAll(new FpeerError('E_TRANSFER', 'the batch was stopped'))
    this.#stopped = true
    clearTimeout(this.#timer)
    this.#signal?.removeEventListener('abort', this.#onAbort)
  }
}

// ─── the pool ───────────────────────────────────────────────────────────────

/** What an aborted transfer ends with: the caller's typed reason, else E_TRANSFER (a bare AbortError would reach core untyped, as E_INTERNAL). */
function aborted(signal: AbortSignal): FpeerError {
  return isFpeerError(signal.reason) ? signal.reason : new FpeerError('E_TRANSFER', 'SFTP transfer aborted', {cause: signal.reason})
}

/** The TransferClient: up to `concurrency` SFTP connections to one peer, in core's ConnectionPool. */
class SftpTransferClient implements TransferClient {
  readonly #options: ConnectOptions
  readonly #tuning: SftpClientTuning
  readonly #log: Logger
  readonly #pool: ConnectionPool<Connection>

  constructor(options: ConnectOptions, tuning: SftpClientTuning) {
    this.#options = options
    this.#tuning = tuning
    this.#log = options.log ?? silentLogger
    this.#pool = new ConnectionPool<Connection>({
      name: 'SFTP',
      max: options.concurrency,
      open: async () => {
        const conn = new Connection(this.#log)
        await conn.open(this.#options, this.#tuning.username)
        return conn
      },
      destroy: (conn) => conn.destroy(),
      // A clean goodbye, bounded: a server that does not answer is cut after a second.
      end: (conn) =>
        Promise.race([
          conn.sc.end().then(
            () => {},
            () => {},
          ),
          new Promise<void>((r) => setTimeout(r, 1000).unref()),
        ]),
      alive: (conn) => conn.alive && conn.sftp !== undefined,
      log: this.#log,
    })
  }

  /** Opens the first connection, so that a wrong host key or a refused login fails connect(). */
  async start(): Promise<void> {
    const {conn} = await this.#pool.acquire()
    this.#pool.release(conn, true)
  }

  async get(folder: string, path: string, options: {offset?: number; signal?: AbortSignal} = {}): Promise<{stream: Readable; size?: number}> {
    const {signal} = options
    const offset = options.offset ?? 0
    if (signal?.aborted) throw aborted(signal)
    // Core checks names before calling; checking again here keeps a stray `..` from ever
    // reaching the wire, where the server would resolve it against its own tree.
    if (folder === '' || folder === '.' || folder === '..' || /[/\0]/.test(folder))
      throw new FpeerError('E_PATH_UNSAFE', `not a folder name: ${JSON.stringify(folder)}`)
    checkRelativePath(path)
    const remote = `/${folder}/${path}`
    // A connection idle in the pool may have been closed by the server meanwhile; one
    // that fails before the first byte is replaced once by a fresh one.
    for (let attempt = 0; ; attempt++) {
      const {conn, reused} = await this.#pool.acquire(signal)
      let handle: Buffer
      let size: number
      try {
        handle = await this.#call(conn, (cb) => conn.sftp!.open(remote, 'r', cb), `opening ${remote}`)
        try {
          size = (await this.#call<{size: number}>(conn, (cb) => conn.sftp!.fstat(handle, cb), `reading the size of ${remote}`)).size
        } catch (err) {
          conn.sftp?.close(handle, () => {})
          throw err
        }
      } catch (err) {
        const e = mapSshError(err, `opening ${remote}`)
        const connectionLevel = e.code === 'E_CONNECTION_LOST' || e.code === 'E_TIMEOUT'
        this.#pool.release(conn, !connectionLevel)
        if (connectionLevel && reused && attempt === 0) continue
        throw e
      }
      const chunk = Math.max(1024, Math.min(this.#tuning.chunkBytes, maxReadLen(conn.sftp!)))
      const stream = new PipelinedReader({
        sftp: conn.sftp!,
        handle,
        start: offset,
        end: Math.max(offset, size),
        chunk,
        maxOutstanding: Math.max(1, Math.min(this.#tuning.maxOutstanding, Math.ceil((16 << 20) / chunk))),
        timeoutMs: this.#options.timeoutMs,
        onDone: (err) => {
          signal?.removeEventListener('abort', onAbort)
          this.#pool.release(conn, !(err && (isFpeerError(err, 'E_CONNECTION_LOST') || isFpeerError(err, 'E_TIMEOUT') || !isFpeerError(err))))
        },
      })
      const onAbort = () => stream.destroy(aborted(signal!))
      signal?.addEventListener('abort', onAbort, {once: true})
      try {
        await stream.ready
      } catch (err) {
        const e = mapSshError(err, `reading ${remote}`)
        if (reused && attempt === 0 && (e.code === 'E_CONNECTION_LOST' || e.code === 'E_TIMEOUT') && !signal?.aborted) continue
        throw e
      }
      return {stream, size}
    }
  }

  /**
   * Small files, many at once on one connection: up to BATCH_WINDOW files in flight, each an
   * OPEN, then all its READs and one READ past its announced end (which must say EOF, else
   * the file is larger: E_SIZE_MISMATCH) sent together, then a CLOSE whose answer nobody
   * waits for. Per file that is two round trips, overlapped with the other files' instead of
   * the three one after the other that get() costs. Results come in the order asked; core
   * checks each one's size and SHA-256. A file the server refuses (no such file, permission)
   * is that item's error; anything else fails the whole call and core retries what is left.
   */
  async *getMany(folder: string, items: Array<{path: string; size: number}>, options: {signal?: AbortSignal} = {}): AsyncIterable<BatchItem> {
    const {signal} = options
    if (signal?.aborted) throw aborted(signal)
    if (folder === '' || folder === '.' || folder === '..' || /[/\0]/.test(folder))
      throw new FpeerError('E_PATH_UNSAFE', `not a folder name: ${JSON.stringify(folder)}`)
    for (const item of items) checkRelativePath(item.path)
    if (items.length === 0) return
    const {conn} = await this.#pool.acquire(signal)
    const batch = new SmallFileBatch(conn, this.#options.timeoutMs, signal)
    let next = 0
    const inFlight: Array<Promise<BatchItem>> = []
    const fill = () => {
      while (next < items.length && inFlight.length < BATCH_WINDOW) {
        const {path, size} = items[next++]!
        inFlight.push(batch.fetch(path, `/${folder}/${path}`, size))
      }
    }
    let clean = false
    try {
      fill()
      while (inFlight.length > 0) {
        const result = await inFlight.shift()!
        fill()
        yield result
      }
      clean = true
    } finally {
      batch.stop()
      // Cut short (the caller stopped, or the connection failed) with files in flight: their
      // handles may still be open on the server, so the connection is not lent again.
      this.#pool.release(conn, clean && conn.alive)
    }
  }

  /** One SFTP request with the connect/idle timeout; a request that times out drops the connection. */
  #call<T>(conn: Connection, start: (cb: (err: Error | undefined | null, value: T) => void) => void, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        // Dead to the pool from now on: the borrower's release destroys it.
        conn.destroy()
        reject(new FpeerError('E_TIMEOUT', `${what}: no answer for ${this.#options.timeoutMs} ms`))
      }, this.#options.timeoutMs)
      timer.unref()
      try {
        if (!conn.sftp || !conn.alive) throw new FpeerError('E_CONNECTION_LOST', `${what}: the connection is closed`)
        start((err, value) => {
          clearTimeout(timer)
          if (err) reject(mapSshError(err, what))
          else resolve(value)
        })
      } catch (err) {
        clearTimeout(timer)
        reject(mapSshError(err, what))
      }
    })
  }

  async close(): Promise<void> {
    await this.#pool.close()
  }
}

/**
 * The longest READ ssh2 sends in one request to this server (it splits longer ones into
 * sequential requests, which would undo the pipelining). ssh2 knows it from the server's
 * software name and the limits@openssh.com extension but does not expose it.
 */
function maxReadLen(sftp: SFTPWrapper): number {
  const n = (sftp as unknown as {_maxReadLen?: unknown})._maxReadLen
  return typeof n === 'number' && n > 0 ? n : 32 * 1024 - 2048
}

/** Connects to a peer's SFTP server (first connection now, more on demand). */
export async function connectSftp(options: ConnectOptions, tuning: Partial<SftpClientTuning> = {}): Promise<TransferClient> {
  const client = new SftpTransferClient(options, {...DEFAULT_CLIENT_TUNING, ...tuning})
  await client.start()
  return client
}
