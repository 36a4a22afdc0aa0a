// The transfer servers of a running peer: one per protocol whose transport serves, started together, closed together.
import type {Identity} from '../identity.js'
import type {Startable} from '../lifecycle.js'
import {listenError} from '../net/listen-error.js'
import type {TransportRegistry} from '../registry.js'
import {type AccessContext, type FileSource, type Logger, type TransportServer, silentLogger} from '../transport.js'

/** The documented default ports of the built-in protocols (the control port's is the node's). */
export const DEFAULT_PORTS: Readonly<Record<string, number>> = {HTTP: 7735, FTP: 7736, SFTP: 7737}

/** How long closing the servers may take; a server that hangs past it is left behind. */
const CLOSE_MS = 1500

export interface TransportServersOptions {
  registry: TransportRegistry
  host: string
  /** Port per protocol; 0 picks a free one; protocols not named use DEFAULT_PORTS or 0. */
  ports?: Record<string, number>
  files: FileSource
  identity: Identity
  /** May this authenticated peer connect at all (peerAuth transports)? */
  admit: (who: AccessContext) => boolean
  log?: Logger
}

/** Starts every serving transport of the registry, or none: one that cannot listen closes the others (via stop) and throws. */
export class TransportServers implements Startable {
  readonly #options: TransportServersOptions
  readonly #log: Logger
  readonly #servers = new Map<string, TransportServer>()
  #closing: Promise<unknown> | undefined
  #signal: AbortSignal | undefined
  readonly #onAbort = () => void this.#beginClose()

  constructor(options: TransportServersOptions) {
    this.#options = options
    this.#log = options.log ?? silentLogger
  }

  /** The running servers' ports, by protocol (upper case). */
  get ports(): Record<string, number> {
    return Object.fromEntries([...this.#servers].map(([p, s]) => [p, s.port]))
  }

  /** Servers running now. */
  get size(): number {
    return this.#servers.size
  }

  port(protocol: string): number | undefined {
    return this.#servers.get(protocol.toUpperCase())?.port
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.#closing || signal.aborted) return
    this.#signal = signal
    signal.addEventListener('abort', this.#onAbort, {once: true})
    const o = this.#options
    for (const {transport} of o.registry.list()) {
      if (this.#closing) break
      if (!transport.supports.serve || !transport.serve) continue
      const p = transport.protocol.toUpperCase()
      const port = o.ports?.[p] ?? DEFAULT_PORTS[p] ?? 0
      const server = await transport.serve({host: o.host, port, files: o.files, identity: o.identity, admit: o.admit, log: this.#log}).catch((err: unknown) => {
        throw listenError(err, `${p} transfer server`, o.host, port, `--data-port ${p}=PORT (0: any free port)`)
      })
      // Aborted while it started: it closes with the rest.
      this.#servers.set(p, server)
      if (this.#closing) void this.#beginClose()
      else this.#log.info('serving files', {protocol: p, address: `${server.host}:${server.port}`})
    }
  }

  async stop(): Promise<void> {
    this.#signal?.removeEventListener('abort', this.#onAbort)
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.#beginClose(), new Promise((r) => (timer = setTimeout(r, CLOSE_MS)))])
    clearTimeout(timer)
  }

  /** Closes every server started so far (and any that finishes starting later). */
  #beginClose(): Promise<unknown> {
    const all = [...this.#servers.values()].map((s) => s.close().catch(() => {}))
    this.#servers.clear()
    this.#closing = Promise.all([this.#closing, ...all])
    return this.#closing
  }
}
