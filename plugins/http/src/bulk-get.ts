// A large file's GET over its own socket: bytes read straight into big fresh buffers, no HTTP client between socket and caller.
import {connect, type Socket} from 'node:net'
import {Readable} from 'node:stream'
import {FpeerError} from '@fpeer/core/plugin'

/**
 * Why a file of a few hundred MiB does not go through undici: every 64 KiB socket read
 * becomes a Buffer, a parser callback, a stream push and a promise hop in the caller's
 * `for await`, which cost more CPU than the bytes' SHA-256 (1.1 CPU-s against 0.45 for
 * 512 MiB, with undici at 1.4). Here each read lands in the free tail of a SLAB-sized
 * buffer (`onread`), and the caller receives views of whole runs of reads, never a copy.
 */
const SLAB = 2 << 20
/** A slab with less room than this is left for a new one: a read into a sliver would be a wasted syscall. */
const SLAB_MIN_ROOM = 64 << 10
/** Bytes gathered before they are handed on; less is handed on once the reads of one turn of the event loop are done. */
const PUSH_BYTES = 1 << 20
/** Bytes of response head the client reads before it calls the reply hostile. */
const HEAD_LIMIT = 64 << 10
/**
 * Released slabs kept for reuse by one GET. A fresh slab costs a page fault per 4 KiB the
 * first time it is written, and the GC of its memory later: for 512 MiB, as much system time
 * as the transfer itself. Reused, a GET touches only the few slabs its reader holds at once.
 */
const SPARE_SLABS = 8

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
    // Slab reuse: each slab counts the views of it handed on and not yet released. A slab the
    // socket no longer reads into, with every view released, goes to `spare`; only a view
    // this GET handed on, released for the first time, counts (`given`).
    const spare: Buffer[] = []
    const held = new Map<ArrayBufferLike, {slab: Buffer; out: number; retired: boolean}>()
    const given = new WeakSet<Buffer>()
    const recycle = (state: {slab: Buffer; out: number; retired: boolean}) => {
      if (!state.retired || state.out > 0) return
      held.delete(state.slab.buffer)
      if (spare.length < SPARE_SLABS) spare.push(state.slab)
    }
    const release = (chunk: Buffer) => {
      if (!given.delete(chunk)) return
      const state = held.get(chunk.buffer)
      if (!state) return
      state.out--
      recycle(state)
    }
    const newSlab = () => {
      const state = {slab: spare.pop() ?? Buffer.allocUnsafe(SLAB), out: 0, retired: false}
      held.set(state.slab.buffer, state)
      return state
    }
    let slabState = newSlab()
    let slab = slabState.slab
    let used = 0
    // Where the bytes not yet handed on begin, in the current slab.
    let from = 0
    let head: Buffer | undefined = Buffer.alloc(0)
    let left = 0
    let settled = false
    let flushQueued = false
    let body: Readable | undefined
    const fail = (err: FpeerError) => {
      if (!settled) {
        settled = true
        reject(err)
      } else body?.destroy(err)
      socket.destroy()
    }
    const handOn = () => {
      flushQueued = false
      if (used > from && body) {
        const view = slab.subarray(from, used)
        from = used
        given.add(view)
        slabState.out++
        if (!body.push(view)) {
          // The reader is behind: no byte read is our silence, not the peer's, so the idle timer waits too.
          socket.pause()
          socket.setTimeout(0)
        }
      }
    }
    const socket: Socket = connect({
      host: opts.host,
      port: opts.port,
      ...(opts.localAddress ? {localAddress: opts.localAddress} : {}),
      noDelay: true,
      onread: {
        buffer: () => {
          if (SLAB - used < SLAB_MIN_ROOM) {
            handOn()
            slabState.retired = true
            recycle(slabState)
            slabState = newSlab()
            slab = slabState.slab
            used = from = 0
          }
          return slab.subarray(used)
        },
        callback: (n: number) => {
          if (head) {
            // The head is rare and small: gathered by copy, then the body's first bytes move to the front of the slab.
            head = Buffer.concat([head, slab.subarray(used, used + n)])
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
            rest.copy(slab, 0, 0, Math.min(rest.length, left))
            used = Math.min(rest.length, left)
            left -= used
            from = 0
            body = new Readable({
              // Chunks are counted, not measured: `read()` in byte mode would join buffered chunks into a copy.
              objectMode: true,
              highWaterMark: 8,
              read: () => {
                if (!socket.isPaused()) return
                socket.setTimeout(opts.timeoutMs)
                socket.resume()
              },
              destroy: (err, cb) => {
                socket.destroy()
                cb(err)
              },
            })
            settled = true
            resolve({simple: true, head: parsed, length: Number(length), stream: body, release})
          } else {
            // Bytes past Content-Length are not the file's: they are dropped with the connection.
            const take = Math.min(n, left)
            used += take
            left -= take
          }
          if (left === 0) {
            handOn()
            body?.push(null)
            socket.destroy()
            return false
          }
          if (used - from >= PUSH_BYTES) handOn()
          else if (!flushQueued) {
            flushQueued = true
            setImmediate(handOn)
          }
          return true
        },
      },
    })
    socket.setTimeout(opts.timeoutMs, () => fail(new FpeerError('E_TIMEOUT', `no byte from the peer in ${opts.timeoutMs} ms`)))
    socket.on('error', (err) => fail(opts.mapError(err, settled)))
    socket.on('close', () => {
      if (!settled) fail(opts.mapError(Object.assign(new Error('the connection closed before a reply'), {code: 'ECONNRESET'}), false))
      else if (body && left > 0 && !body.destroyed) body.destroy(new FpeerError('E_CONNECTION_LOST', `the connection closed ${left} bytes before the end`))
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
