// A transfer client's pool of connections to one peer, shared by the plugins whose libraries run one operation per connection (FTP, SFTP).
//
// basic-ftp and ssh2-sftp-client cannot run two operations on one connection at once, so a
// client keeps several and lends each to one operation at a time. What is common to both
// lives here: the cap per peer (lowered when the server refuses more), waiting for a free
// connection (abortable), parking, closing a connection idle too long, and destroying one
// that failed. What a connection is, and when one is still good, stays the plugin's.
import {FpeerError} from '../errors.js'
import {type Logger, silentLogger} from '../transport.js'

/** How a pool makes, checks and ends its connections. */
export interface ConnectionPoolOptions<C> {
  /** For messages and logs, e.g. `FTP`. */
  name: string
  /** Opens one ready (logged-in) connection. Its error reaches the borrower as thrown: map it to a FpeerError first. */
  open(): Promise<C>
  /** Ends a connection at once. Must not throw; may be called for a connection already gone. */
  destroy(conn: C): void
  /** Says goodbye to a connection when the pool closes (a clean logout); bounded by the caller. Default: `destroy`. */
  end?(conn: C): Promise<void>
  /** Whether a parked connection may still be lent (false: it is destroyed instead). Default: always. */
  alive?(conn: C): boolean
  /** Connections to this peer at most (the transfer concurrency); at least 1. */
  max: number
  /** A connection parked this long is closed (servers drop idle ones anyway); 0: never. Default 30 s. */
  idleTimeoutMs?: number
  log?: Logger
}

/** A connection lent by `acquire`: `reused` says it was parked before, so it may have died meanwhile. */
export interface Lease<C> {
  conn: C
  reused: boolean
}

export const DEFAULT_POOL_IDLE_TIMEOUT_MS = 30_000

/**
 * Up to `max` connections to one peer, each lent to one borrower at a time. Every `acquire`
 * is matched by one `release`: with `reusable` the connection is parked for the next
 * borrower, without it (it failed, or its state is unknown, e.g. a reply may still be owed)
 * it is destroyed and its place freed.
 */
export class ConnectionPool<C> {
  readonly #o: ConnectionPoolOptions<C>
  readonly #log: Logger
  readonly #idleMs: number
  /** Parked connections, most recently parked last, each with its idle timer. */
  readonly #idle: Array<{conn: C; timer: NodeJS.Timeout | undefined}> = []
  readonly #lent = new Set<C>()
  readonly #waiters: Array<() => void> = []
  #max: number
  /** Connections being opened now. */
  #opening = 0
  #closed = false

  constructor(options: ConnectionPoolOptions<C>) {
    this.#o = options
    this.#log = options.log ?? silentLogger
    this.#max = Math.max(1, Math.floor(options.max) || 1)
    this.#idleMs = options.idleTimeoutMs ?? DEFAULT_POOL_IDLE_TIMEOUT_MS
  }

  /** Connections open now (lent, parked, or being opened). */
  get size(): number {
    return this.#opening + this.#lent.size + this.#idle.length
  }

  /** Connections parked now. */
  get idle(): number {
    return this.#idle.length
  }

  /** The cap now: `max`, or fewer after the server refused one. */
  get max(): number {
    return this.#max
  }

  /**
   * Lends a connection: a parked one that is still alive, else a new one while under the cap,
   * else the next one released. Errors: the open's own (when no connection is open at all),
   * E_TRANSFER when `signal` aborts the wait, E_STATE once the pool is closed.
   */
  async acquire(signal?: AbortSignal): Promise<Lease<C>> {
    for (;;) {
      if (this.#closed) throw this.#closedError()
      if (signal?.aborted) throw this.#abortError(signal)
      const parked = this.#idle.pop()
      if (parked) {
        clearTimeout(parked.timer)
        if (this.#o.alive && !this.#o.alive(parked.conn)) {
          this.#o.destroy(parked.conn)
          continue
        }
        this.#lent.add(parked.conn)
        return {conn: parked.conn, reused: true}
      }
      if (this.size < this.#max) {
        this.#opening++
        let conn: C
        try {
          conn = await this.#o.open()
        } catch (err) {
          this.#opening--
          // A busy server may refuse more connections than it gives us (its per-address share):
          // make do with those we have rather than fail the file.
          const live = this.size
          if (live > 0 && !this.#closed) {
            this.#log.debug(`${this.#o.name.toLowerCase()}: another connection refused; going on with fewer`, {live})
            this.#max = live
            continue
          }
          this.#wake()
          throw err
        }
        this.#opening--
        if (this.#closed) {
          this.#o.destroy(conn)
          throw this.#closedError()
        }
        this.#lent.add(conn)
        return {conn, reused: false}
      }
      await this.#wait(signal)
    }
  }

  /** Takes back a lent connection: parked when `reusable` (and the pool is open), else destroyed. */
  release(conn: C, reusable: boolean): void {
    if (!this.#lent.delete(conn)) return
    if (reusable && !this.#closed && (this.#o.alive?.(conn) ?? true)) this.#park(conn)
    else this.#o.destroy(conn)
    this.#wake()
  }

  /**
   * Ends every connection, lent ones included (their borrowers see the loss): `end` each
   * (parked ones log out cleanly), then `destroy` it. Fails every waiter. Safe twice.
   */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const wake of this.#waiters.splice(0)) wake()
    const all: C[] = [...this.#lent]
    this.#lent.clear()
    for (const {conn, timer} of this.#idle.splice(0)) {
      clearTimeout(timer)
      all.push(conn)
    }
    await Promise.all(
      all.map(async (conn) => {
        if (this.#o.end) await this.#o.end(conn).catch(() => {})
        this.#o.destroy(conn)
      }),
    )
  }

  #park(conn: C): void {
    const entry: {conn: C; timer: NodeJS.Timeout | undefined} = {conn, timer: undefined}
    if (this.#idleMs > 0) {
      entry.timer = setTimeout(() => {
        const i = this.#idle.indexOf(entry)
        if (i < 0) return
        this.#idle.splice(i, 1)
        this.#o.destroy(conn)
        this.#wake()
      }, this.#idleMs)
      // A parked connection must not keep the process alive.
      entry.timer.unref()
    }
    this.#idle.push(entry)
  }

  #wake(): void {
    this.#waiters.shift()?.()
  }

  #wait(signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiters.indexOf(wake)
        if (i >= 0) this.#waiters.splice(i, 1)
        reject(this.#abortError(signal))
      }
      const wake = () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      }
      this.#waiters.push(wake)
      signal?.addEventListener('abort', onAbort, {once: true})
    })
  }

  #abortError(signal: AbortSignal | undefined): FpeerError {
    return new FpeerError('E_TRANSFER', `${this.#o.name} transfer aborted`, {cause: signal?.reason})
  }

  #closedError(): FpeerError {
    return new FpeerError('E_STATE', `the ${this.#o.name} client is closed`)
  }
}
