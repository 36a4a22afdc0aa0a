// The HTTP transport's server: read-only GET and HEAD of shared files over node:http, with single byte ranges.
import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {Socket} from 'node:net'
import {Transform, type TransformCallback} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {
  ByteBudget,
  ConnectionGuard,
  FpeerError,
  isFpeerError,
  positionalReader,
  silentLogger,
  type AccessContext,
  type FileSource,
  type Logger,
  type ServeOptions,
  type TransportServer,
} from '@fpeer/core/plugin'
import {encodeSegment, parseTarget} from './url.js'

/** Server-side timeouts, in ms. Idle sockets and stalled readers are dropped so a slow peer cannot pin the server. */
export const SERVER_TIMEOUTS = {
  /** Time to receive a request's headers (from accept, for the first request). */
  headers: 10_000,
  /** Time to receive a whole request (GET and HEAD have no body). */
  request: 30_000,
  /** How long an idle keep-alive connection stays open. */
  keepAlive: 5_000,
  /** A socket with no traffic either way for this long is destroyed, even mid-response. */
  socketIdle: 120_000,
}

/**
 * Connections at once, in all and from one address (core's ConnectionGuard shares them
 * fairly), and request-body bytes held at once across all of them (batch requests).
 */
export const SERVER_LIMITS = {maxConnections: 256, maxPerAddress: 32, bodyBytes: 32 << 20}

/** Each request's server-wide body budget, so that many batch bodies at once cannot add up. */
const bodyBudgets = new WeakMap<IncomingMessage, ByteBudget>()

/** What the guard writes before it closes a connection: a status only to one that has not sent a request yet. */
function farewell(why: string, started: boolean): string | undefined {
  if (started) return undefined
  const [status, code] = why === 'timeout' ? ['408 Request Timeout', 'E_TIMEOUT'] : ['503 Service Unavailable', 'E_BUSY']
  const body = `${status.slice(0, 3)} ${code}\n`
  return `HTTP/1.1 ${status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n${why === 'timeout' ? '' : 'Retry-After: 1\r\n'}\r\n${body}`
}

const ALLOW = 'GET, HEAD' // and POST, for /<folder>/.fpeer/batch only
/** Bodies up to this size are read whole and sent in one write. */
const SMALL_BODY = 256 * 1024

/** The outcome of reading a `Range` header against a file of `size` bytes. */
export type RangeRequest = {kind: 'full'} | {kind: 'partial'; start: number; end: number} | {kind: 'unsatisfiable'}

/**
 * Reads a single-range `Range: bytes=a-b | a- | -n` header (RFC 9110 §14). A header that
 * is malformed, not in bytes or asks for several ranges is ignored, which the RFC allows,
 * so the whole file is sent.
 */
export function parseRange(header: string | undefined, size: number): RangeRequest {
  if (header === undefined) return {kind: 'full'}
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header)
  if (!m || (m[1] === '' && m[2] === '')) return {kind: 'full'}
  if (m[1] === '') {
    const suffix = Number(m[2])
    if (suffix === 0 || size === 0) return {kind: 'unsatisfiable'}
    return {kind: 'partial', start: Math.max(0, size - suffix), end: size - 1}
  }
  const start = Number(m[1])
  // `a-b` with b < a is malformed (ignored); `a-` past the end is unsatisfiable.
  if (m[2] !== '' && Number(m[2]) < start) return {kind: 'full'}
  if (start >= size) return {kind: 'unsatisfiable'}
  return {kind: 'partial', start, end: m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)}
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** Node gives IPv4 peers of a dual-stack socket as `::ffff:a.b.c.d`; the contract wants plain IPv4. */
function remoteAddress(req: IncomingMessage): string {
  const addr = req.socket.remoteAddress ?? ''
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr
}

/**
 * Who is asking: the address, and the grant secret presented as `Authorization: Bearer
 * <secret>` or, for URLs typed by hand (MANUAL), as the query `?grant=<secret>` (§4.6).
 */
function requester(req: IncomingMessage): AccessContext {
  const who: AccessContext = {address: remoteAddress(req)}
  const auth = req.headers.authorization
  const bearer = auth !== undefined ? /^Bearer ([A-Za-z0-9_-]{16,128})$/.exec(auth)?.[1] : undefined
  let grant = bearer
  const q = req.url?.indexOf('?') ?? -1
  if (grant === undefined && q >= 0) {
    const v = new URLSearchParams(req.url!.slice(q + 1)).get('grant')
    if (v !== null && /^[A-Za-z0-9_-]{16,128}$/.test(v)) grant = v
  }
  if (grant !== undefined) who.grant = grant
  return who
}

function statusFor(err: unknown): number {
  if (!isFpeerError(err)) return 500
  switch (err.code) {
    case 'E_NOT_FOUND':
    case 'E_UNKNOWN_FOLDER':
    // 404 rather than 400: a path that leaves the folder should look like one that does not exist.
    case 'E_PATH_UNSAFE':
      return 404
    case 'E_ACCESS':
      return 403
    case 'E_BUSY':
      return 503
    default:
      return 500
  }
}

function sendStatus(res: ServerResponse, status: number, code: string, extra: Record<string, string> = {}): void {
  // Only the status and code: source errors name absolute server paths, which a peer has no business seeing.
  const body = `${status} ${code}\n`
  res.writeHead(status, {'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff', ...extra})
  res.end(res.req.method === 'HEAD' ? undefined : body)
}

/** Passes exactly `length` bytes; more or fewer (the file changed or the read failed) is an error, so the socket is torn down. */
class ExactLength extends Transform {
  #left: number
  constructor(length: number) {
    super()
    this.#left = length
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.#left -= chunk.length
    if (this.#left < 0) cb(new Error('file grew while being sent'))
    else cb(null, chunk)
  }
  override _flush(cb: TransformCallback): void {
    cb(this.#left === 0 ? null : new Error(`file ended ${this.#left} bytes early`))
  }
}

function listingPage(title: string, entries: Array<{name: string; directory: boolean}>, parent: boolean): string {
  const items = entries.map((e) => {
    const label = e.directory ? `${e.name}/` : e.name
    // `./` keeps a name like `a:b` from being read as a URL scheme.
    return `<li><a href="./${encodeSegment(e.name)}${e.directory ? '/' : ''}">${escapeHtml(label)}</a></li>`
  })
  if (parent) items.unshift('<li><a href="../">../</a></li>')
  return `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>\n<body><h1>${escapeHtml(title)}</h1>\n<ul>\n${items.join('\n')}\n</ul></body></html>\n`
}

function sendListing(res: ServerResponse, title: string, entries: Array<{name: string; directory: boolean}>, parent: boolean): void {
  const body = listingPage(title, entries, parent)
  res.writeHead(200, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  })
  res.end(res.req.method === 'HEAD' ? undefined : body)
}

type Opened = Awaited<ReturnType<FileSource['open']>>

async function sendFile(
  req: IncomingMessage,
  res: ServerResponse,
  files: FileSource,
  folder: string,
  rel: string,
  who: AccessContext,
  st: {size: number; mtimeMs: number},
): Promise<void> {
  const lastModified = new Date(st.mtimeMs).toUTCString()
  // If-Range with anything but our current Last-Modified means the client's copy is stale: send it all.
  const ifRange = req.headers['if-range']
  const range = parseRange(ifRange === undefined || ifRange === lastModified ? req.headers.range : undefined, st.size)
  if (range.kind === 'unsatisfiable') {
    sendStatus(res, 416, 'E_RANGE', {'Content-Range': `bytes */${st.size}`, 'Accept-Ranges': 'bytes'})
    return
  }
  const start = range.kind === 'partial' ? range.start : 0
  const end = range.kind === 'partial' ? range.end : st.size - 1
  const opened = await files.open(folder, rel, who, {start, end})
  if (opened.size !== st.size) {
    opened.stream.destroy()
    sendStatus(res, 503, 'E_CHANGED', {'Retry-After': '1'})
    return
  }
  await sendOpened(req, res, opened, range.kind === 'partial' ? {start, end} : undefined)
}

/** Sends an opened file, whole or the byte range given (already checked against its size). */
async function sendOpened(req: IncomingMessage, res: ServerResponse, opened: Opened, range?: {start: number; end: number}): Promise<void> {
  const start = range ? range.start : 0
  const end = range ? range.end : opened.size - 1
  const length = end - start + 1
  const headers: Record<string, string | number> = {
    'Content-Type': 'application/octet-stream',
    'Content-Length': length,
    'Last-Modified': new Date(opened.mtimeMs).toUTCString(),
    'Accept-Ranges': 'bytes',
    'X-Content-Type-Options': 'nosniff',
  }
  if (range) headers['Content-Range'] = `bytes ${start}-${end}/${opened.size}`
  res.writeHead(range ? 206 : 200, headers)
  if (req.method === 'HEAD') {
    opened.stream.destroy()
    res.end()
    return
  }
  if (length <= SMALL_BODY) {
    // A small body is gathered and sent with one end(): pipeline's per-call machinery (an
    // AbortController, listeners on three streams) costs more than the bytes themselves.
    const chunks: Buffer[] = []
    let got = 0
    for await (const chunk of opened.stream) {
      got += (chunk as Buffer).length
      if (got > length) break
      chunks.push(chunk as Buffer)
    }
    opened.stream.destroy()
    if (got !== length) throw new Error(got > length ? 'file grew while being sent' : `file ended ${length - got} bytes early`)
    res.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, length))
    return
  }
  const read = positionalReader(opened.stream)
  if (read) {
    await sendByReads(res, opened, read, length)
    return
  }
  // pipeline keeps backpressure end to end; on any failure it destroys the response, so a
  // short body is never ended cleanly and the client sees the connection drop.
  await pipeline(opened.stream, new ExactLength(length), res)
}

/** Buffers one large body is sent through, each reused once the socket has taken it. */
const SEND_BUFFERS = 3
const SEND_BUFFER_BYTES = 1 << 20

/**
 * The few buffers a response is written from, each handed out again once the socket has
 * taken it: a fresh buffer per write left one per write for the garbage collector, which
 * cost a sender more CPU than the bytes. Once the client goes away (or a write fails),
 * take() and end() throw.
 */
class SendBuffers {
  readonly #res: ServerResponse
  readonly #free: Buffer[] = []
  readonly #count: number
  readonly #bytes: number
  #made = 0
  #failure: Error | undefined
  #wake: (() => void) | undefined
  readonly #onClose = () => this.#fail(new Error('the client went away'))

  constructor(res: ServerResponse, count: number, bytes: number) {
    this.#res = res
    this.#count = count
    this.#bytes = bytes
    res.once('close', this.#onClose)
  }

  /** A buffer to fill: a new one while fewer than `count` exist, else the next the socket gives back. */
  async take(): Promise<Buffer> {
    if (this.#free.length === 0 && this.#made < this.#count && !this.#failure) {
      this.#made++
      return Buffer.allocUnsafe(this.#bytes)
    }
    while (this.#free.length === 0 && !this.#failure) await new Promise<void>((r) => (this.#wake = r))
    if (this.#failure) throw this.#failure
    return this.#free.pop() as Buffer
  }

  /** Writes the first `length` bytes of `buf`, a buffer take() gave; it comes back once written. */
  send(buf: Buffer, length: number): void {
    this.#res.write(length === buf.length ? buf : buf.subarray(0, length), (err) => {
      if (err) this.#fail(err)
      else this.#free.push(buf)
      this.#notify()
    })
  }

  /** Ends the response; resolves once all of it is written. */
  async end(): Promise<void> {
    const res = this.#res
    await new Promise<void>((resolve, reject) => {
      if (this.#failure) return reject(this.#failure)
      res.end(() => (this.#failure ? reject(this.#failure) : resolve()))
      res.once('close', () => (res.writableFinished ? resolve() : reject(this.#failure ?? new Error('the client went away'))))
    })
  }

  dispose(): void {
    this.#res.off('close', this.#onClose)
  }

  #fail(err: Error): void {
    this.#failure ??= err
    this.#notify()
  }

  #notify(): void {
    const w = this.#wake
    this.#wake = undefined
    w?.()
  }
}

/**
 * Sends exactly `length` bytes of a large file by positional reads into SendBuffers (a
 * stream would hand out a new MiB per read). A file that ends early (it shrank) destroys
 * the response, so the client sees the drop.
 */
async function sendByReads(res: ServerResponse, opened: Opened, read: (buf: Buffer) => Promise<number>, length: number): Promise<void> {
  const buffers = new SendBuffers(res, SEND_BUFFERS, SEND_BUFFER_BYTES)
  try {
    let sent = 0
    while (sent < length) {
      const buf = await buffers.take()
      const n = await read(buf.length <= length - sent ? buf : buf.subarray(0, length - sent))
      if (n === 0) throw new Error(`file ended ${length - sent} bytes early`)
      sent += n
      buffers.send(buf, n)
    }
    await buffers.end()
  } catch (err) {
    res.destroy(err as Error)
    throw err
  } finally {
    buffers.dispose()
    opened.stream.destroy()
  }
}

/** Limits of one batch request (docs/protocol.md §6, "HTTP batch"). */
export const BATCH_LIMITS = {files: 4096, requestBytes: 4 << 20, fileBytes: 4 << 20}
/** Bytes of batch frames gathered before one write to the socket, and the buffers they are gathered in. */
const BATCH_WRITE_BYTES = 64 << 10
const BATCH_WRITE_BUFFERS = 4

/** Reads a request body of at most `limit` bytes; undefined when it is larger. */
async function readBody(req: IncomingMessage, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = []
  let bytes = 0
  const budget = bodyBudgets.get(req)
  try {
    for await (const chunk of req) {
      if (bytes + (chunk as Buffer).length > limit) return undefined
      if (budget && !budget.take((chunk as Buffer).length))
        throw new FpeerError('E_BUSY', 'request bodies in flight use the whole server budget; try again later')
      bytes += (chunk as Buffer).length
      chunks.push(chunk as Buffer)
    }
    return Buffer.concat(chunks).toString('utf8')
  } finally {
    budget?.give(bytes)
  }
}

/**
 * `POST /<folder>/.fpeer/batch`: the body names files, one percent-encoded path per line;
 * the reply streams them back in that order, each as a line `<status> <size>` and then
 * `<size>` bytes. Every file goes through the same FileSource checks as a GET; `.fpeer` is
 * never a served name, so this URL cannot shadow a real file.
 */
async function sendBatch(req: IncomingMessage, res: ServerResponse, files: FileSource, folder: string, who: AccessContext): Promise<void> {
  const body = await readBody(req, BATCH_LIMITS.requestBytes)
  if (body === undefined) {
    sendStatus(res, 413, 'E_TOO_LARGE')
    return
  }
  const paths: string[] = []
  for (const line of body.split('\n')) {
    if (line === '') continue
    const segs = line.split('/').map((seg) => {
      try {
        return decodeURIComponent(seg)
      } catch {
        return '/'
      }
    })
    // A bad escape or an encoded `/` is refused per file below, as an unsafe path.
    paths.push(segs.some((seg) => seg.includes('/')) ? '' : segs.join('/'))
  }
  if (paths.length > BATCH_LIMITS.files) {
    sendStatus(res, 413, 'E_TOO_LARGE')
    return
  }
  res.writeHead(200, {'Content-Type': 'application/vnd.fpeer.batch', 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff'})
  // Frames are gathered and written BATCH_WRITE_BYTES at a time: a write per 4 KiB file was
  // one writev(2) per file, the largest share of serving a batch of small files. They are
  // gathered by copy into SendBuffers, not joined into a fresh buffer per write.
  const buffers = new SendBuffers(res, BATCH_WRITE_BUFFERS, BATCH_WRITE_BYTES)
  let cur: Buffer | undefined
  let curBytes = 0
  const flush = () => {
    if (!cur || curBytes === 0) return
    buffers.send(cur, curBytes)
    cur = undefined
    curBytes = 0
  }
  const push = async (bytes: Buffer) => {
    for (let at = 0; at < bytes.length; ) {
      cur ??= await buffers.take()
      const n = bytes.copy(cur, curBytes, at)
      at += n
      curBytes += n
      if (curBytes === cur.length) flush()
    }
  }
  try {
    for (const rel of paths) {
      let opened: Opened | undefined
      let status = 200
      try {
        if (rel === '') throw new FpeerError('E_PATH_UNSAFE', 'bad path')
        opened = await files.open(folder, rel, who)
        if (opened.size > BATCH_LIMITS.fileBytes) status = 413
      } catch (err) {
        status = statusFor(err)
      }
      if (status !== 200 || !opened) {
        if (opened && !opened.data) opened.stream.destroy()
        await push(Buffer.from(`${status} 0\n`))
        continue
      }
      const chunks: Buffer[] = []
      let got = 0
      if (opened.data) {
        got = opened.data.length
        chunks.push(opened.data)
      } else {
        for await (const chunk of opened.stream) {
          got += (chunk as Buffer).length
          if (got > opened.size) break
          chunks.push(chunk as Buffer)
        }
        opened.stream.destroy()
      }
      // A file that changed under us cannot be framed honestly: drop the connection (the caller tears it down).
      if (got !== opened.size) throw new Error(`file changed while being sent`)
      await push(Buffer.from(`200 ${got}\n`, 'latin1'))
      for (const c of chunks) await push(c)
    }
    flush()
    await buffers.end()
  } finally {
    buffers.dispose()
  }
}

async function handle(req: IncomingMessage, res: ServerResponse, files: FileSource): Promise<void> {
  if (req.method === 'POST') {
    const t = parseTarget(req.url ?? '')
    if (t && t.segments.length === 3 && t.segments[1] === '.fpeer' && t.segments[2] === 'batch' && !t.directory) {
      await sendBatch(req, res, files, t.segments[0]!, requester(req))
      return
    }
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    sendStatus(res, 405, 'E_METHOD', {Allow: ALLOW})
    return
  }
  const target = parseTarget(req.url ?? '')
  if (!target) {
    sendStatus(res, 400, 'E_BAD_REQUEST')
    return
  }
  const who = requester(req)
  const [folder, ...rest] = target.segments
  if (folder === undefined) {
    const names = await files.folders(who)
    sendListing(
      res,
      'fpeer shared folders',
      names.map((name) => ({name, directory: true})),
      false,
    )
    return
  }
  const rel = rest.join('/')
  if (req.method === 'GET' && !target.directory && rel !== '' && req.headers.range === undefined) {
    // The common case, a whole file: open it straight away (one resolve, one open) instead
    // of a stat then an open. Not a file (a directory, or missing): the general path below.
    const opened = await files.open(folder, rel, who).catch((err: unknown) => {
      if (isFpeerError(err) && err.code === 'E_NOT_FOUND') return undefined
      throw err
    })
    if (opened) {
      await sendOpened(req, res, opened)
      return
    }
  }
  const st = await files.stat(folder, rel, who)
  if (st.type === 'directory') {
    if (!target.directory) {
      // Relative links in the listing only resolve against a URL ending in `/`. Rebuilt from
      // the decoded segments so that `//host`-style targets can never become an open redirect.
      res.writeHead(301, {Location: `/${target.segments.map(encodeSegment).join('/')}/`, 'Content-Length': 0})
      res.end()
      return
    }
    const entries = await files.list(folder, rel, who)
    sendListing(
      res,
      `/${[folder, ...rest].join('/')}/`,
      entries.map((e) => ({name: e.name, directory: e.type === 'directory'})),
      true,
    )
    return
  }
  if (target.directory) throw new FpeerError('E_NOT_FOUND', `${rel} is not a directory`)
  await sendFile(req, res, files, folder, rel, who, st)
}

/** A running HTTP server; close() stops it and drops every connection. */
export class HttpTransportServer implements TransportServer {
  readonly host: string
  readonly port: number
  readonly #server: Server
  readonly #guard: ConnectionGuard | undefined
  #closing: Promise<void> | undefined

  constructor(server: Server, host: string, port: number, guard?: ConnectionGuard) {
    this.#server = server
    this.host = host
    this.port = port
    this.#guard = guard
  }

  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#server.close(() => resolve())
      // Transfers in flight are cut, not drained: core closes the server when it is done serving.
      this.#server.closeAllConnections()
      this.#guard?.close()
    })
    return this.#closing
  }
}

/** Starts the HTTP server on `options.host:options.port`. */
export async function serveHttp(options: ServeOptions): Promise<TransportServer> {
  const log: Logger = options.log ?? silentLogger
  const guard = new ConnectionGuard({
    name: 'http',
    // Between requests node closes a keep-alive connection after keepAlive; the guard's idle deadline is the backstop.
    limits: {...SERVER_LIMITS, firstMs: SERVER_TIMEOUTS.headers, idleMs: SERVER_TIMEOUTS.keepAlive + 1000},
    log,
    farewell: (why, conn) => farewell(why, conn?.started ?? false),
  })
  const inFlight = new WeakMap<Socket, number>()
  const bodies = new ByteBudget(SERVER_LIMITS.bodyBytes)
  const server = createServer((req, res) => {
    bodyBudgets.set(req, bodies)
    // A request under way (a 512 MiB body streaming) is busy: never idle-closed, never evicted.
    // Pipelined requests overlap, so the connection is idle only once every response is done.
    const socket = req.socket
    const conn = guard.of(socket)
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1)
    conn?.busy()
    res.once('close', () => {
      const left = (inFlight.get(socket) ?? 1) - 1
      inFlight.set(socket, left)
      if (left === 0) conn?.idle()
    })
    handle(req, res, options.files).catch((err: unknown) => {
      log.debug('http request failed', {method: req.method, url: req.url, code: isFpeerError(err) ? err.code : undefined, error: (err as Error)?.message})
      if (!res.headersSent && !res.destroyed) {
        sendStatus(res, statusFor(err), isFpeerError(err) ? err.code : 'E_INTERNAL')
      } else {
        res.destroy()
        req.socket.destroy()
      }
    })
  })
  server.headersTimeout = SERVER_TIMEOUTS.headers
  server.requestTimeout = SERVER_TIMEOUTS.request
  server.keepAliveTimeout = SERVER_TIMEOUTS.keepAlive
  server.setTimeout(SERVER_TIMEOUTS.socketIdle)
  server.on('connection', (socket: Socket) => void guard.admit(socket))
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      reject(
        new FpeerError('E_BAD_ADDRESS', `cannot listen on ${options.host}:${options.port}: ${err.message}`, {
          cause: err,
          ...(err.code === 'EADDRINUSE' ? {hint: 'another program uses that port; pick another with --port'} : {}),
        }),
      )
    }
    server.once('error', onError)
    server.listen({host: options.host, port: options.port}, () => {
      server.off('error', onError)
      resolve()
    })
  })
  const addr = server.address()
  const port = typeof addr === 'object' && addr ? addr.port : options.port
  log.info('http server listening', {host: options.host, port})
  return new HttpTransportServer(server, options.host, port, guard)
}
