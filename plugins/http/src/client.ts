// The HTTP transport's client: fetches files from a peer's HTTP server through an undici connection pool.
import {createRequire} from 'node:module'
import {Transform, type Readable, type TransformCallback} from 'node:stream'
import type {Pool} from 'undici'
import {FpeerError, checkRelativePath, mapNetworkError, type BatchItem, type ConnectOptions, type ExtraCodes, type TransferClient} from '@fpeer/core/plugin'
import {bulkGet} from './bulk-get.js'
import {encodeSegment, filePath} from './url.js'

/** undici's own error codes, by the contract code they mean; Node's system codes are core's (mapNetworkError). */
const UNDICI_CODES: ExtraCodes = {
  UND_ERR_ABORTED: 'E_TRANSFER',
  UND_ERR_CONNECT_TIMEOUT: 'E_TIMEOUT',
  UND_ERR_HEADERS_TIMEOUT: 'E_TIMEOUT',
  UND_ERR_BODY_TIMEOUT: 'E_TIMEOUT',
  UND_ERR_SOCKET: 'E_CONNECTION_LOST',
  UND_ERR_CLOSED: 'E_CONNECTION_LOST',
  UND_ERR_DESTROYED: 'E_CONNECTION_LOST',
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: 'E_CONNECTION_LOST',
}

/**
 * Maps what undici or the socket threw to the contract's codes. `midBody` is true once the
 * response has started: any failure then is a lost connection, which fetchFiles retries.
 */
export function mapError(err: unknown, context: string, midBody = false): FpeerError {
  return mapNetworkError(err, context, {extra: UNDICI_CODES, ...(midBody ? {phase: 'transfer'} : {})})
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

function statusError(status: number, context: string): FpeerError {
  if (status === 404 || status === 410) return new FpeerError('E_NOT_FOUND', `${context}: not found (HTTP ${status})`)
  if (status === 401 || status === 403) return new FpeerError('E_ACCESS', `${context}: access denied (HTTP ${status})`)
  // Redirects are never followed: the peer's address comes from the control connection, not from its replies.
  if (status >= 300 && status < 400) return new FpeerError('E_TRANSFER', `${context}: the server redirected (HTTP ${status}); redirects are not followed`)
  return new FpeerError('E_TRANSFER', `${context}: unexpected HTTP ${status}`)
}

/**
 * Re-emits `body` with the first `skip` bytes dropped (for a server that ignored Range) and
 * with its errors mapped to FpeerError, so a connection lost mid-file reads as E_CONNECTION_LOST.
 * Destroying the returned stream destroys the body, which frees its connection.
 */
function wrapBody(body: Readable, skip: number, context: string): Readable {
  let toSkip = skip
  const out = new Transform({
    highWaterMark: 1 << 18,
    transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback) {
      if (toSkip > 0) {
        if (chunk.length <= toSkip) {
          toSkip -= chunk.length
          cb()
          return
        }
        chunk = chunk.subarray(toSkip)
        toSkip = 0
      }
      cb(null, chunk)
    },
    flush(cb: TransformCallback) {
      cb(toSkip > 0 ? new FpeerError('E_CONNECTION_LOST', `${context}: body ended before offset ${skip}`) : null)
    },
  })
  body.on('error', (err) => out.destroy(mapError(err, context, true)))
  out.on('close', () => {
    if (!body.destroyed) body.destroy()
  })
  body.pipe(out)
  return out
}

/**
 * The chunks of `body` one at a time, as they came off the socket. `for await` on a byte
 * stream reads with read(), which joins every chunk buffered meanwhile into a new one: a copy
 * of most of a batch reply whenever the reader (core, landing files) is behind. Ends when
 * the body ends or closes; throws its error.
 */
async function* chunksOf(body: Readable): AsyncGenerator<Buffer> {
  const queue: Buffer[] = []
  let ended = false
  let failed: {err: unknown} | undefined
  let wake: (() => void) | undefined
  const notify = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  const onData = (chunk: Buffer) => {
    queue.push(chunk)
    if (queue.length >= 8) body.pause()
    notify()
  }
  const onEnd = () => {
    ended = true
    notify()
  }
  const onError = (err: unknown) => {
    failed ??= {err}
    notify()
  }
  body.on('data', onData)
  body.on('end', onEnd)
  body.on('close', onEnd)
  body.on('error', onError)
  try {
    for (;;) {
      const chunk = queue.shift()
      if (chunk) {
        if (queue.length < 2 && body.isPaused()) body.resume()
        yield chunk
        continue
      }
      if (failed) throw failed.err
      if (ended) return
      await new Promise<void>((resolve) => (wake = resolve))
    }
  } finally {
    body.off('data', onData)
    body.off('end', onEnd)
    body.off('close', onEnd)
    body.off('error', onError)
  }
}

function emptyStream(): Readable {
  const out = new Transform()
  out.end()
  return out
}

/**
 * A batch frame's line `<3-digit status> <size of 1-12 digits>`, ending at `nl`; undefined
 * when it is anything else. Read byte by byte: a regular expression and a string per file
 * showed in the profile of a 10,000-file fetch.
 */
export function parseFrame(buf: Buffer, nl: number): {status: number; size: number} | undefined {
  if (nl < 5 || nl > 16 || buf[3] !== 0x20) return undefined
  let status = 0
  for (let i = 0; i < 3; i++) {
    const d = buf[i]! - 0x30
    if (d < 0 || d > 9) return undefined
    status = status * 10 + d
  }
  let size = 0
  for (let i = 4; i < nl; i++) {
    const d = buf[i]! - 0x30
    if (d < 0 || d > 9) return undefined
    size = size * 10 + d
  }
  return {status, size}
}

/** A pool of keep-alive connections to one peer's HTTP server. */
export class HttpTransferClient implements TransferClient {
  readonly #pool: Pool
  /** Sent with every request: the grant secret of the message that named this server (§4.6). */
  readonly #auth: Record<string, string>
  /** Where large files are fetched from on connections of their own (bulk-get.ts); without it, every GET goes through the pool. */
  readonly #bulk: BulkTarget | undefined
  #closing: Promise<void> | undefined
  readonly #open = new Set<Readable>()

  constructor(pool: Pool, grant?: string, bulk?: BulkTarget) {
    this.#pool = pool
    this.#auth = grant ? {authorization: `Bearer ${grant}`} : {}
    this.#bulk = bulk
  }

  async get(
    folder: string,
    rel: string,
    options: {offset?: number; signal?: AbortSignal; size?: number} = {},
  ): Promise<{stream: Readable; size?: number; release?(chunk: Buffer): void}> {
    const offset = options.offset ?? 0
    if (!Number.isSafeInteger(offset) || offset < 0) throw new FpeerError('E_INTERNAL', `bad offset ${offset}`)
    const path = filePath(folder, rel)
    const context = `GET ${path}`
    if (this.#bulk && options.size !== undefined && options.size - offset >= BULK_FROM) {
      const got = await this.#getBulk(path, context, offset, options.signal)
      if (got) return got
    }
    let res
    try {
      res = await this.#pool.request({
        method: 'GET',
        path,
        headers: {'accept-encoding': 'identity', ...this.#auth, ...(offset > 0 ? {range: `bytes=${offset}-`} : {})},
        ...(options.signal ? {signal: options.signal} : {}),
      })
    } catch (err) {
      throw mapError(err, context)
    }
    const {statusCode: status, headers, body} = res
    const drop = async (err: FpeerError): Promise<never> => {
      await body.dump().catch(() => {})
      throw err
    }
    if (status === 200) {
      const length = header(headers, 'content-length')
      const size = length === undefined ? undefined : Number(length)
      // A server without Range support sends the whole file; skip what we already have.
      if (size !== undefined && size < offset) return drop(new FpeerError('E_TRANSFER', `${context}: file is ${size} bytes, shorter than offset ${offset}`))
      return {stream: wrapBody(body, offset, context), ...(size === undefined ? {} : {size})}
    }
    if (status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(header(headers, 'content-range') ?? '')
      if (!m || Number(m[1]) !== offset)
        return drop(new FpeerError('E_TRANSFER', `${context}: server sent range ${JSON.stringify(header(headers, 'content-range'))} for offset ${offset}`))
      return {stream: wrapBody(body, 0, context), ...(m[3] === '*' ? {} : {size: Number(m[3])})}
    }
    if (status === 416 && offset > 0) {
      // Resuming a part file that already holds every byte: there is nothing left to send.
      const m = /^bytes \*\/(\d+)$/.exec(header(headers, 'content-range') ?? '')
      if (m && Number(m[1]) === offset) {
        await body.dump().catch(() => {})
        return {stream: emptyStream(), size: offset}
      }
      return drop(new FpeerError('E_TRANSFER', `${context}: offset ${offset} is beyond the end of the file`))
    }
    return drop(statusError(status, context))
  }

  /**
   * A large file on a connection of its own (bulk-get.ts). Resolves undefined when the reply
   * is not a plain 200 or 206 with a length (an error status, a server that ignored Range, a
   * chunked body): the pool's GET then asks again and reads whatever form it has.
   */
  async #getBulk(
    path: string,
    context: string,
    offset: number,
    signal?: AbortSignal,
  ): Promise<{stream: Readable; size: number; release(chunk: Buffer): void} | undefined> {
    if (this.#closing) throw new FpeerError('E_CONNECTION_LOST', `${context}: the client is closed`)
    const reply = await bulkGet({
      ...this.#bulk!,
      path,
      headers: {'accept-encoding': 'identity', ...this.#auth, ...(offset > 0 ? {range: `bytes=${offset}-`} : {})},
      ...(signal ? {signal} : {}),
      mapError: (err, midBody) => mapError(err, context, midBody),
    })
    if (!reply.simple) return undefined
    const {head, stream, release} = reply
    let size = reply.length
    if (head.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(head.headers['content-range'] ?? '')
      if (!m || Number(m[1]) !== offset || Number(m[3]) !== offset + reply.length) {
        stream.destroy()
        throw new FpeerError('E_TRANSFER', `${context}: server sent range ${JSON.stringify(head.headers['content-range'])} for offset ${offset}`)
      }
      size = Number(m[3])
    } else if (offset > 0) {
      // A server that ignored Range: the pool's GET skips the bytes already here.
      stream.destroy()
      return undefined
    }
    // close() ends bulk connections too, as it ends the pool's.
    this.#open.add(stream)
    stream.once('close', () => this.#open.delete(stream))
    return {stream, size, release}
  }

  /**
   * Many small files in one POST to `/<folder>/.fpeer/batch` (docs/protocol.md §6): the
   * reply frames each file as `<status> <size>\n` plus its bytes, in the order asked. A
   * body larger than announced is E_SIZE_MISMATCH for that file alone (dropped unread, within
   * bounds) and the others still arrive; a server without the
   * endpoint (404, 405, 501) is E_UNSUPPORTED, and core falls back to GET.
   */
  async *getMany(folder: string, items: Array<{path: string; size: number}>, options: {signal?: AbortSignal} = {}): AsyncIterable<BatchItem> {
    const path = `/${encodeSegment(folder)}/.fpeer/batch`
    const context = `POST ${path} (${items.length} files)`
    const body = items.map((i) => checkRelativePath(i.path).map(encodeSegment).join('/')).join('\n') + '\n'
    let res
    try {
      res = await this.#pool.request({
        method: 'POST',
        path,
        body,
        headers: {'content-type': 'text/plain; charset=utf-8', 'accept-encoding': 'identity', ...this.#auth},
        ...(options.signal ? {signal: options.signal} : {}),
      })
    } catch (err) {
      throw mapError(err, context)
    }
    if (res.statusCode === 404 || res.statusCode === 405 || res.statusCode === 501) {
      await res.body.dump().catch(() => {})
      throw new FpeerError('E_UNSUPPORTED', `${context}: the peer cannot batch (HTTP ${res.statusCode})`)
    }
    if (res.statusCode !== 200) {
      await res.body.dump().catch(() => {})
      throw statusError(res.statusCode, context)
    }
    let buf: Buffer = Buffer.alloc(0)
    let index = 0
    let want: {status: number; size: number} | undefined
    let complete = false
    // Bytes of an oversized body still to drop, and all dropped so far in this reply.
    let drop = 0
    let dropped = 0
    // A body that spans chunks is gathered in `gather`, into one buffer of its size: joining what is
    // left with each whole new chunk would copy every byte of the reply once more, and leave
    // a fresh 64 KiB buffer behind per chunk for the GC.
    let gather: Buffer | undefined
    let gatheredBytes = 0
    try {
      for await (const chunk of chunksOf(res.body)) {
        let rest = chunk
        if (gather && want) {
          const n = Math.min(want.size - gatheredBytes, rest.length)
          rest.copy(gather, gatheredBytes, 0, n)
          gatheredBytes += n
          rest = rest.subarray(n)
          if (gatheredBytes < want.size) continue
          yield {path: items[index]!.path, data: gather}
          gather = undefined
          want = undefined
          index++
        }
        // What is left over here is at most a frame line's first bytes.
        buf = buf.length === 0 ? rest : Buffer.concat([buf, rest])
        for (;;) {
          if (drop > 0) {
            const n = Math.min(drop, buf.length)
            buf = buf.subarray(n)
            drop -= n
            if (drop > 0) break
          }
          if (!want) {
            const nl = buf.indexOf(0x0a)
            if (nl < 0) {
              if (buf.length > 32) throw new FpeerError('E_TRANSFER', `${context}: bad frame`)
              break
            }
            const frame = parseFrame(buf, nl)
            if (!frame || index >= items.length) throw new FpeerError('E_TRANSFER', `${context}: bad frame`)
            want = frame
            buf = buf.subarray(nl + 1)
            const asked = items[index]!
            if (want.status === 200 && want.size > asked.size) {
              // A body larger than announced (the file grew since it was listed) fails alone: its
              // frame says how long it is, so it is dropped as it arrives, never buffered, and the
              // files after it are still read. A frame past the protocol's per-file limit, or more
              // dropped bytes than one batch may carry, is a hostile reply: the rest is not read.
              yield {path: asked.path, error: new FpeerError('E_SIZE_MISMATCH', `${asked.path}: peer sent more than the ${asked.size} bytes announced`)}
              dropped += want.size
              if (want.size > BATCH_FILE_BYTES || dropped > MAX_DROPPED_BYTES)
                throw new FpeerError('E_TRANSFER', `${context}: the peer sent ${dropped} bytes beyond what was asked; the rest of the batch is not read`)
              drop = want.size
              want = undefined
              index++
              continue
            }
          }
          const item = items[index]!
          if (want.status !== 200) {
            yield {path: item.path, error: statusError(want.status, `${context}: ${item.path}`)}
          } else {
            if (buf.length < want.size) {
              gather = Buffer.allocUnsafe(want.size)
              gatheredBytes = buf.copy(gather)
              buf = buf.subarray(buf.length)
              break
            }
            // A view of the received bytes, not a copy (core hashes and lands it at once: transport.ts BatchItem).
            yield {path: item.path, data: buf.subarray(0, want.size)}
            buf = buf.subarray(want.size)
          }
          want = undefined
          index++
        }
      }
      complete = true
    } catch (err) {
      throw mapError(err, context, true)
    } finally {
      // Stopped early (an error here or in the caller): drop the connection, not the rest of the reply.
      if (!complete && !res.body.destroyed) res.body.destroy()
    }
    if (index !== items.length || drop > 0 || gather) throw new FpeerError('E_CONNECTION_LOST', `${context}: reply ended after ${index} files`)
  }

  close(): Promise<void> {
    for (const s of this.#open) s.destroy()
    this.#closing ??= this.#pool.destroy().catch(() => {})
    return this.#closing
  }
}

/** The protocol's limit on one file of a batch reply (docs/protocol.md 6.1; the server's 413 above it). */
const BATCH_FILE_BYTES = 4 << 20

/** Bytes of oversized bodies one batch reply may make the client read and drop: core's bound on the bytes of one batch. */
const MAX_DROPPED_BYTES = 8 << 20

/** Where a client opens the connections of large files (bulk-get.ts). */
interface BulkTarget {
  host: string
  port: number
  localAddress?: string
  timeoutMs: number
}

/** Files of at least this many bytes still to fetch are read on a connection of their own (bulk-get.ts); smaller ones share the pool's. */
const BULK_FROM = 1 << 20

let poolClass: typeof Pool | undefined

/**
 * undici's Pool, loaded on first use from its own module and the request API undici's index
 * puts on every dispatcher (the same `Object.assign(Dispatcher.prototype, api)` as the index):
 * 31 modules, not the index's 111 (fetch, WebSocket, the cache and the mocks as well); 0.17
 * against 0.28 CPU-s for a process to load. client.test.ts checks that it is the very class
 * undici exports and that it can request without the index; should a later undici move these
 * files, the index is loaded instead.
 */
export function undiciPool(): typeof Pool {
  if (poolClass) return poolClass
  const require = createRequire(import.meta.url)
  try {
    const pool = require('undici/lib/dispatcher/pool.js') as typeof Pool
    const dispatcher = require('undici/lib/dispatcher/dispatcher.js') as {prototype: object}
    const api = require('undici/lib/api/index.js') as object
    if (!('request' in dispatcher.prototype)) Object.assign(dispatcher.prototype, api)
    poolClass = pool
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw err
    poolClass = (require('undici') as typeof import('undici')).Pool
  }
  return poolClass
}

/** Creates the pool; no connection is made until the first get(). */
export async function connectHttp(options: ConnectOptions): Promise<TransferClient> {
  const host = options.host.includes(':') ? `[${options.host}]` : options.host
  const Pool = undiciPool()
  const pool = new Pool(`http://${host}:${options.port}`, {
    connections: Math.max(1, options.concurrency),
    pipelining: 1,
    // undici hands its own `localAddress` to the connector, overriding one set in `connect`.
    ...(options.localAddress ? {localAddress: options.localAddress} : {}),
    connect: {timeout: options.timeoutMs},
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
  })
  return new HttpTransferClient(pool, options.grant, {
    host: options.host,
    port: options.port,
    timeoutMs: options.timeoutMs,
    ...(options.localAddress ? {localAddress: options.localAddress} : {}),
  })
}
