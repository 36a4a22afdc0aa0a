// An in-memory transport: a server and client that honour the transfer contract without sockets, for in-process tests.
import {Readable} from 'node:stream'
import {FpeerError, isFpeerError} from '../errors.js'
import {normalizeAddress} from '../net/channel.js'
import type {
  AccessContext,
  BatchItem,
  ConnectOptions,
  FileSource,
  HandOverIO,
  ManualFile,
  ManualRequest,
  ServeOptions,
  TransferClient,
  Transport,
  TransportServer,
} from '../transport.js'

export interface MemoryTransportOptions {
  /** Line 4's name; default `MEMORY`. */
  protocol?: string
  /** The server knows the client's identity (`who.peer`) and calls `admit()`; default false. */
  peerAuth?: boolean
  /** The client checks the server's identity against `expectedPeer`; default true. */
  serverAuth?: boolean
  /** Declares `supports.batch` and its client has `getMany()`; default true. False: neither. `'refused'`: declared, and the server cannot batch (E_UNSUPPORTED). */
  batch?: boolean | 'refused'
}

/** One served folder set on the in-memory network: what `serve()` made. */
interface Listener {
  host: string
  port: number
  options: ServeOptions
  /** Streams under way: `close()` ends them, as a real server's close ends its connections. */
  open: Set<Readable>
  closed: boolean
}

/** What a read through the FileSource means to the client: the contract's codes, as a real server's replies would say them. */
function served(err: unknown, context: string): FpeerError {
  if (isFpeerError(err)) {
    if (err.code === 'E_UNKNOWN_FOLDER') return new FpeerError('E_NOT_FOUND', `${context}: ${err.message}`, {cause: err})
    if (err.code === 'E_NOT_FOUND' || err.code === 'E_ACCESS' || err.code === 'E_PATH_UNSAFE') return err
  }
  return new FpeerError('E_TRANSFER', `${context}: the server failed: ${(err as Error)?.message ?? String(err)}`, {cause: err})
}

function aborted(context: string): FpeerError {
  return new FpeerError('E_TRANSFER', `${context}: aborted`)
}

/**
 * Builds a transport whose servers live in this transport's own map (no module state: two
 * transports are two networks). Ports count up from 10000; a port with no server is E_CONNECT.
 */
export function createMemoryTransport(
  options: MemoryTransportOptions = {},
): Transport & Required<Pick<Transport, 'serve' | 'connect'>> & {readonly listeners: number} {
  const listeners = new Map<string, Listener>()
  let nextPort = 10_000
  const peerAuth = options.peerAuth ?? false
  const serverAuth = options.serverAuth ?? true
  const batch = options.batch ?? true
  const key = (host: string, port: number) => `${normalizeAddress(host)}:${port}`
  /** The server-side stream behind each client stream ("wire"), so that ending a wire also ends its source. */
  const sources = new WeakMap<Readable, Readable>()
  /**
   * Ends a wire with `err`. Its source is destroyed too: the wire's generator may be waiting
   * on a source that sends nothing (a stalled server), and only then can the wire's destroy
   * finish (an async generator returns only once its pending await settles).
   */
  const cut = (wire: Readable, err: FpeerError): void => {
    wire.destroy(err)
    sources.get(wire)?.destroy()
  }

  async function serve(serveOptions: ServeOptions): Promise<TransportServer> {
    let port = serveOptions.port
    if (port === 0) while (listeners.has(key(serveOptions.host, (port = nextPort++))));
    if (listeners.has(key(serveOptions.host, port))) throw new FpeerError('E_BAD_ADDRESS', `${serveOptions.host}:${port} is in use`)
    const listener: Listener = {host: serveOptions.host, port, options: serveOptions, open: new Set(), closed: false}
    listeners.set(key(serveOptions.host, port), listener)
    return {
      host: serveOptions.host,
      port,
      async close() {
        if (listener.closed) return
        listener.closed = true
        listeners.delete(key(serveOptions.host, port))
        for (const s of listener.open) cut(s, new FpeerError('E_CONNECTION_LOST', `${serveOptions.host}:${port} closed the connection mid-file`))
      },
    }
  }

  async function connect(co: ConnectOptions): Promise<TransferClient> {
    const context = `${co.host}:${co.port}`
    const find = (): Listener => {
      const l = listeners.get(key(co.host, co.port))
      if (!l || l.closed)
        throw new FpeerError('E_CONNECT', `${context}: nobody serves there (in memory)`, {hint: 'is the peer running `fpeer serve` at that address?'})
      return l
    }
    const first = find()
    if (serverAuth && co.expectedPeer && !first.options.identity.id.equals(co.expectedPeer)) {
      throw new FpeerError('E_HOST_KEY_MISMATCH', `${context} is ${first.options.identity.id.toString()}, not the expected peer`)
    }
    const who: AccessContext = {
      address: normalizeAddress(co.localAddress ?? '127.0.0.1'),
      ...(peerAuth ? {peer: co.identity.id} : {}),
      ...(!peerAuth && co.grant ? {grant: co.grant} : {}),
    }
    if (peerAuth && first.options.admit && !first.options.admit(who)) throw new FpeerError('E_ACCESS', `${context} refused this peer`)
    let closed = false
    const mine = new Set<Readable>()

    /** Opens one file on the server, as one request would. */
    const open = async (files: FileSource, folder: string, rel: string, offset: number): Promise<{stream: Readable; size: number}> => {
      try {
        return await files.open(folder, rel, who, offset > 0 ? {start: offset} : undefined)
      } catch (err) {
        throw served(err, `${context} ${folder}/${rel}`)
      }
    }

    const client: TransferClient = {
      async get(folder, rel, getOptions = {}) {
        const what = `${context} ${folder}/${rel}`
        if (closed) throw new FpeerError('E_CONNECTION_LOST', `${what}: the client was closed`)
        if (getOptions.signal?.aborted) throw aborted(what)
        const offset = getOptions.offset ?? 0
        const l = find()
        const opened = await open(l.options.files, folder, rel, offset)
        if (offset > opened.size) {
          opened.stream.destroy()
          throw new FpeerError('E_TRANSFER', `${what}: offset ${offset} is beyond the end of the file`)
        }
        // The "wire": pulled chunk by chunk (nothing read ahead but one chunk), so what was sent
        // before a failed read on the server arrives, then the loss: never a clean short end.
        const source = opened.stream
        const wire = Readable.from(
          (async function* () {
            try {
              for await (const chunk of source) yield chunk as Buffer
            } catch (err) {
              throw isFpeerError(err, 'E_CONNECTION_LOST') ? err : new FpeerError('E_CONNECTION_LOST', `${what}: ${(err as Error)?.message}`, {cause: err})
            }
          })(),
          {objectMode: false, highWaterMark: 1},
        )
        sources.set(wire, source)
        l.open.add(wire)
        mine.add(wire)
        const onAbort = () => cut(wire, aborted(what))
        getOptions.signal?.addEventListener('abort', onAbort, {once: true})
        wire.once('close', () => {
          l.open.delete(wire)
          mine.delete(wire)
          getOptions.signal?.removeEventListener('abort', onAbort)
          source.destroy()
        })
        return {stream: wire, size: opened.size}
      },
      close: async () => {
        closed = true
        for (const s of mine) cut(s, new FpeerError('E_CONNECTION_LOST', `${context}: the client was closed`))
      },
    }
    if (batch) {
      client.getMany = async function* (folder, items, manyOptions = {}): AsyncIterable<BatchItem> {
        const what = `${context} ${folder} (${items.length} files)`
        if (batch === 'refused') throw new FpeerError('E_UNSUPPORTED', `${what}: the peer cannot batch`)
        for (const item of items) {
          if (manyOptions.signal?.aborted) throw aborted(what)
          if (closed) throw new FpeerError('E_CONNECTION_LOST', `${what}: the client was closed`)
          let opened
          try {
            opened = await open(find().options.files, folder, item.path, 0)
          } catch (err) {
            if (isFpeerError(err) && err.code !== 'E_CONNECT' && err.code !== 'E_TRANSFER') {
              yield {path: item.path, error: err}
              continue
            }
            throw err
          }
          if (opened.size > item.size) {
            opened.stream.destroy()
            yield {path: item.path, error: new FpeerError('E_SIZE_MISMATCH', `${item.path}: peer sent more than the ${item.size} bytes announced`)}
            continue
          }
          const chunks: Buffer[] = []
          // An abort ends a read the server holds open (a stalled file), as it ends a get()'s.
          const source = opened.stream
          const onAbort = () => source.destroy(aborted(what))
          manyOptions.signal?.addEventListener('abort', onAbort, {once: true})
          try {
            for await (const c of source) chunks.push(c as Buffer)
          } catch (err) {
            if (manyOptions.signal?.aborted) throw aborted(what)
            throw new FpeerError('E_CONNECTION_LOST', `${what}: ${(err as Error).message}`, {cause: err})
          } finally {
            manyOptions.signal?.removeEventListener('abort', onAbort)
          }
          yield {path: item.path, data: Buffer.concat(chunks)}
        }
      }
    }
    return client
  }

  return {
    protocol: options.protocol ?? 'MEMORY',
    description: 'in memory, for tests: a server and client with no sockets',
    supports: {serve: true, fetch: true, resume: true, peerAuth, serverAuth, batch: batch !== false},
    serve,
    connect,
    get listeners() {
      return listeners.size
    },
  }
}

export interface HandOverTransportOptions {
  protocol?: string
  /**
   * The person (or script) that moves the bytes: called once per file still to place, after
   * the listing is shown. Without it nobody acts, and only files already in place count.
   */
  place?(file: ManualFile, request: ManualRequest): Promise<void> | void
}

/**
 * A hand-over transport (`supports.fetch` false, like MANUAL): shows what is missing, lets
 * `place` put files in place, then checks through core's `io.check()` until nothing is
 * missing or wrong, or `io.waitMs` runs out: E_PENDING while files are missing (present but
 * wrong ones are left to core's final check). Listings shown are kept in `shown`.
 */
export function createHandOverTransport(
  options: HandOverTransportOptions = {},
): Transport & Required<Pick<Transport, 'handOver'>> & {readonly shown: ManualFile[][]} {
  const shown: ManualFile[][] = []
  return {
    protocol: options.protocol ?? 'BYHAND',
    description: 'in memory, for tests: a scripted person places the files',
    supports: {serve: false, fetch: false, resume: false, peerAuth: false, serverAuth: false, batch: false},
    shown,
    async handOver(request: ManualRequest, io: HandOverIO): Promise<void> {
      let state = await io.check()
      const todo = () => new Set([...state.missing, ...state.wrong])
      // Nothing missing and no wait: core's final check names the wrong ones (E_HASH_MISMATCH).
      if (state.missing.length === 0 && (state.wrong.length === 0 || io.waitMs <= 0)) return
      const files: ManualFile[] = request.files
        .filter((f) => todo().has(f.path))
        .map((f) => ({
          path: f.path,
          size: f.size ?? 0,
          sha256: f.sha256 ?? '',
          target: `${request.into}/${f.path}`,
          state: state.missing.includes(f.path) ? 'missing' : 'wrong',
        }))
      shown.push(files)
      io.show({folder: request.folder, host: request.host, hostId: request.hostId, into: request.into, ...(request.via ? {via: request.via} : {}), files})
      if (options.place) for (const f of files) await options.place(f, request)
      const deadline = Date.now() + io.waitMs
      for (;;) {
        state = await io.check()
        if (todo().size === 0) return
        if (io.signal?.aborted || Date.now() >= deadline) {
          if (state.missing.length === 0 && !io.signal?.aborted) return
          break
        }
        await new Promise((r) => setTimeout(r, 20))
      }
      throw new FpeerError('E_PENDING', `${todo().size} file(s) of ${request.folder} still to place in ${request.into}`)
    },
  }
}
