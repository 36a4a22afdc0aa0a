// A large file's GET over its own socket: bytes read straight into a few reused buffers, no HTTP client between socket and caller.
import {connect, type Socket} from 'node:net'
import type {Readable} from 'node:stream'
import {FpeerError, SlabStream} from '@fpeer/core/plugin'

/**
 * Why a file of a few hundred MiB does not go through undici: every 64 KiB socket read
 * becomes a Buffer, a parser callback, a stream push and a promise hop in the caller's
 * `for await`, which cost more CPU than the bytes' SHA-256 (1.1 CPU-s against 0.45 for
 * 512 MiB, with undici at 1.4). Here the body is read by core's SlabStream: straight into
 * a few reused buffers, handed on as views.
 */
/** Bytes of response head the client reads before it calls the reply hostile. */
const HEAD_LIMIT = 64 << 10

export interface BulkGetOptions {
  host: string
  port: number
  localAddress?: string
  /** The request target, already encoded. */
  path: string
  headers: Record<string, string>
  /** Without a byte either way for this long (connecting included), the GET fails with E_TIMEOUT. */
  timeoutMs: number
  signal?: AbortSignal
  /** Maps a socket error to the contract's codes; `midBody` once the body has begun. */
  mapError(err: unknown, midBody: boolean): FpeerError
}

/** The parsed head of a reply: status, lower-cased headers, and the body bytes that came with it. */
export interface BulkHead {
  status: number
  headers: Record<string, string>
}

/**
 * What a bulk GET gives: a simple reply (a status, a Content-Length, no transfer coding) has
 * its body as `stream`; anything else is left to the general client (`simple: false`, the
 * socket already closed), which knows every form of HTTP/1.1 reply.
 */
export type BulkReply = {simple: true; head: BulkHead; length: number; stream: Readable; release(chunk: Buffer): void} | {simple: false; head?: BulkHead}

/** Parses a response head (`HTTP/1.1 200 OK` and header lines); undefined when it is not one. */
export function parseHead(text: string): BulkHead | undefined {
  const lines = text.split('\r\n')
  const m = /^HTTP\/1\.[01] (\d{3})(?: .*)?$/.exec(lines[0] ?? '')
  if (!m) return undefined
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':')
    if (colon <= 0) return undefined
    const name = line.slice(0, colon).trim().toLowerCase()
    // A repeated Content-Length may disagree with itself: such a reply is not a simple one.
    if (name in headers && name === 'content-length') headers[name] += ','
    headers[name] = (headers[name] ?? '') + line.slice(colon + 1).trim()
  }
  return {status: Number(m[1]), headers}
}

/**
 * Sends one GET on a new connection (`Connection: close`: a large body is worth a connection
 * of its own) and resolves once the reply's head is in. The body stream ends after exactly
 * Content-Length bytes; a connection that ends earlier fails it with E_CONNECTION_LOST, and
 * bytes past the length are never passed on. Destroying the stream closes the socket.
 */
export function bulkGet(opts: BulkGetOptions): Promise<BulkReply> {
  return new Promise<BulkReply>((resolve, reject) => {
    let head: Buffer | undefined = Buffer.alloc(0)
    let left = 0
    let settled = false
    // Read into before the head is complete too: the head's bytes are copied out of it.
    let room: Buffer
    const fail = (err: FpeerError) => {
      if (!settled) {
        settled = true
        reject(err)
      } else body.fail(err)
      socket.destroy()
    }
    const body = new SlabStream({
      // The reader is behind: no byte read is our silence, not the peer's, so the idle timer waits too.
      pause: () => {
        socket.pause()
        socket.setTimeout(0)
      },
      resume: () => {
        socket.setTimeout(opts.timeoutMs)
        socket.resume()
      },
      destroy: () => socket.destroy(),
    })
    const socket: Socket = connect({
      host: opts.host,
      port: opts.port,
      ...(opts.localAddress ? {localAddress: opts.localAddress} : {}),
      noDelay: true,
      onread: {
        buffer: () => (room = body.room()),
        callback: (n: number) => {
          if (head) {
            // The head is rare and small: gathered by copy, then the body's first bytes are written in.
            head = Buffer.concat([head, room.subarray(0, n)])
            const end = head.indexOf('\r\n\r\n')
            if (end < 0) {
              if (head.length > HEAD_LIMIT) fail(new FpeerError('E_TRANSFER', 'the reply head is too long'))
              return true
            }
            const parsed = parseHead(head.subarray(0, end).toString('latin1'))
            const rest = head.subarray(end + 4)
            head = undefined
            if (!parsed) {
              fail(new FpeerError('E_TRANSFER', 'the reply is not HTTP/1.1'))
              return false
            }
            const length = parsed.headers['content-length']
            if (
              parsed.headers['transfer-encoding'] !== undefined ||
              length === undefined ||
              !/^\d{1,15}$/.test(length) ||
              (parsed.status !== 200 && parsed.status !== 206)
            ) {
              settled = true
              socket.destroy()
              resolve({simple: false, head: parsed})
              return false
            }
            left = Number(length)
            const first = rest.subarray(0, Math.min(rest.length, left))
            left -= first.length
            body.write(first)
            settled = true
            resolve({simple: true, head: parsed, length: Number(length), stream: body.stream, release: (chunk) => body.release(chunk)})
          } else {
            // Bytes past Content-Length are not the file's: they are dropped with the connection.
            const take = Math.min(n, left)
            left -= take
            body.commit(take)
          }
          if (left === 0) {
            body.end()
            socket.destroy()
            return false
          }
          return true
        },
      },
    })
    socket.setTimeout(opts.timeoutMs, () => {
      // A timer runs before the sockets are read in the same turn of the event loop: when this
      // process itself had no CPU for a while, the peer's bytes may be waiting already. They
      // are read first (a read re-arms the idle timer); only a socket that still read nothing,
      // and that no slow reader holds paused, is the peer's silence.
      const seen = socket.bytesRead
      setImmediate(() => {
        if (socket.bytesRead === seen && !socket.isPaused()) fail(new FpeerError('E_TIMEOUT', `no byte from the peer in ${opts.timeoutMs} ms`))
      })
    })
    socket.on('error', (err) => fail(opts.mapError(err, settled)))
    socket.on('close', () => {
      if (!settled) fail(opts.mapError(Object.assign(new Error('the connection closed before a reply'), {code: 'ECONNRESET'}), false))
      else if (!head && left > 0) body.fail(new FpeerError('E_CONNECTION_LOST', `the connection closed ${left} bytes before the end`))
    })
    socket.on('connect', () => {
      const lines = Object.entries(opts.headers).map(([k, v]) => `${k}: ${v}\r\n`)
      socket.write(
        `GET ${opts.path} HTTP/1.1\r\nhost: ${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}\r\nconnection: close\r\n${lines.join('')}\r\n`,
      )
    })
    const signal = opts.signal
    if (signal) {
      const onAbort = () => fail(opts.mapError(signal.reason ?? new DOMException('aborted', 'AbortError'), settled))
      if (signal.aborted) onAbort()
      else {
        signal.addEventListener('abort', onAbort, {once: true})
        socket.once('close', () => signal.removeEventListener('abort', onAbort))
      }
    }
  })
}
