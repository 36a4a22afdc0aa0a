// One connection guard for every listening port: fair caps per address and in all, short deadlines, and sockets that are always destroyed.
import type net from 'node:net'
import {silentLogger, type Logger} from '../transport.js'

/** What a guard allows on one port; every field is documented in docs/protocol.md §7. */
export interface ConnectionLimits {
  /** Connections open at once on the port. */
  maxConnections: number
  /** Connections open at once from one address; more are refused, never admitted by evicting others. */
  maxPerAddress: number
  /** From accept until the server first reports progress (a complete line, HTTP headers, a login); then closed. */
  firstMs: number
  /** A connection reported idle (waiting for its peer's next request) for this long is closed; 0: never. */
  idleMs: number
  /** After `touch()`, the connection counts as busy for this long (servers without a clear end of a request). */
  quietMs?: number
}

/** Why the guard ends a connection; the server may say goodbye in its own protocol. */
export type Farewell = 'busy' | 'timeout' | 'evicted'

export interface GuardOptions {
  /** Names the port in logs (`control`, `http`, …). */
  name: string
  limits: ConnectionLimits
  log?: Logger
  /**
   * Bytes to write before the socket is closed (a PeerError, an HTTP status, an FTP 421);
   * undefined: none. `conn` is the admitted connection (undefined for a refused newcomer).
   */
  farewell?(why: Farewell, conn: GuardedConnection | undefined): string | undefined
}

/** How long a farewell may take to write before the socket is destroyed anyway: a busy reply never blocks. */
export const FAREWELL_MS = 1000

type State = 'new' | 'idle' | 'busy'

/** Strips the IPv4-mapped prefix so `::ffff:127.0.0.2` and `127.0.0.2` are one address. */
function plain(address: string | undefined): string {
  if (!address) return ''
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

/**
 * The key connections are counted under: the address for IPv4, the /64 prefix for IPv6
 * (one host is routinely given a whole /64, so one IPv6 address per connection is free).
 */
export function addressKey(address: string): string {
  if (!address.includes(':')) return address
  const [head = '', tail] = address.split('%')[0]!.split('::') as [string, string | undefined]
  const left = head ? head.split(':') : []
  const right = tail ? tail.split(':') : []
  const groups = tail === undefined ? left : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`
}

/** One admitted connection; the server reports its progress so deadlines and eviction know what it is doing. */
export class GuardedConnection {
  readonly socket: net.Socket
  readonly address: string
  /** What the caps count it under (addressKey). */
  readonly key: string
  readonly acceptedAt = Date.now()
  #state: State = 'new'
  #since = Date.now()
  #busyUntil = 0
  readonly #guard: ConnectionGuard

  constructor(guard: ConnectionGuard, socket: net.Socket, address: string) {
    this.#guard = guard
    this.socket = socket
    this.address = address
    this.key = addressKey(address)
  }

  /** Waiting for the peer's next request: the idle deadline runs, and a newcomer may evict it when the port is full. */
  idle(): void {
    if (this.#state === 'idle') return
    this.#state = 'idle'
    this.#since = Date.now()
  }

  /** Work under way (a handshake, a transfer): no deadline of the guard applies and it is never evicted. */
  busy(): void {
    this.#state = 'busy'
    this.#since = Date.now()
  }

  /** Activity now: busy for `quietMs`, then idle again (for servers that see requests but no end of them). */
  touch(): void {
    if (this.#state === 'new') this.idle()
    this.#busyUntil = Date.now() + (this.#guard.limits.quietMs ?? 5000)
  }

  /** Has the server reported any progress (a line, a request, a login)? */
  get started(): boolean {
    return this.#state !== 'new'
  }

  get isBusy(): boolean {
    return this.#state === 'busy' || Date.now() < this.#busyUntil
  }

  /** ms since the connection last became idle (or was accepted); 0 while busy. */
  idleFor(now: number): number {
    return this.isBusy ? 0 : now - Math.max(this.#since, this.#busyUntil)
  }

  /** The deadline that has passed, if any. */
  expired(now: number): boolean {
    if (this.isBusy) return false
    if (this.#state === 'new') return now - this.#since > this.#guard.limits.firstMs
    const idleMs = this.#guard.limits.idleMs
    return idleMs > 0 && this.idleFor(now) > idleMs
  }

  /** Ends the connection at once. */
  destroy(): void {
    this.socket.destroy()
  }
}

/**
 * Admits the sockets a server accepts. Every socket gets an 'error' handler first (a reset
 * must never reach an unhandled 'error' event) and is destroyed on every path: refused,
 * evicted, past a deadline, or when the guard closes. When the port is full, a newcomer
 * from an address with fewer connections evicts the oldest idle connection of the
 * most-connected address, so that one address (or a few) holding the budget cannot lock
 * the others out; otherwise it is refused.
 */
export class ConnectionGuard {
  readonly name: string
  readonly limits: ConnectionLimits
  readonly #log: Logger
  readonly #farewell: GuardOptions['farewell']
  /** Admitted connections by address, oldest first (a Set keeps insertion order). */
  readonly #byAddress = new Map<string, Set<GuardedConnection>>()
  readonly #bySocket = new WeakMap<net.Socket, GuardedConnection>()
  /** Sockets being refused or said goodbye to: destroyed within FAREWELL_MS, or at close(). */
  readonly #leaving = new Set<net.Socket>()
  #size = 0
  #sweeper: NodeJS.Timeout | undefined
  #closed = false
  /** Counters for logs and tests. */
  readonly counts = {admitted: 0, refused: 0, evicted: 0, expired: 0}

  constructor(options: GuardOptions) {
    this.name = options.name
    this.limits = options.limits
    this.#log = options.log ?? silentLogger
    this.#farewell = options.farewell
  }

  /** Connections admitted and still open. */
  get size(): number {
    return this.#size
  }

  /** Connections doing work (a handshake, a transfer) rather than waiting for their peer. */
  get busy(): number {
    let n = 0
    for (const set of this.#byAddress.values()) for (const c of set) if (c.isBusy) n++
    return n
  }

  /** The guarded connection of a socket this guard admitted. */
  of(socket: net.Socket): GuardedConnection | undefined {
    return this.#bySocket.get(socket)
  }

  /** Admits a freshly accepted socket; undefined when it was refused (it is then already being closed). */
  admit(socket: net.Socket): GuardedConnection | undefined {
    socket.on('error', (err: NodeJS.ErrnoException) => this.#log.debug(`${this.name}: connection error`, {peer: plain(socket.remoteAddress), code: err.code}))
    const address = plain(socket.remoteAddress)
    if (this.#closed) {
      socket.destroy()
      return undefined
    }
    const mine = this.#byAddress.get(addressKey(address))?.size ?? 0
    if (mine >= this.limits.maxPerAddress) return this.#refuse(socket, address, 'too many connections from this address')
    if (this.#size >= this.limits.maxConnections && !this.#evictFor(mine)) return this.#refuse(socket, address, 'too many connections')
    const conn = new GuardedConnection(this, socket, address)
    let set = this.#byAddress.get(conn.key)
    if (!set) this.#byAddress.set(conn.key, (set = new Set()))
    set.add(conn)
    this.#size++
    this.counts.admitted++
    this.#bySocket.set(socket, conn)
    socket.once('close', () => this.#forget(conn))
    this.#startSweeper()
    return conn
  }

  /** Destroys the connections that are not busy (a server stopping: work under way gets a grace, idle ones do not). */
  closeIdle(): void {
    for (const set of [...this.#byAddress.values()]) for (const c of [...set]) if (!c.isBusy) c.socket.destroy()
    for (const s of this.#leaving) s.destroy()
  }

  /** Destroys every connection, admitted or leaving; later sockets are destroyed on admit. */
  close(): void {
    this.#closed = true
    for (const set of this.#byAddress.values()) for (const c of set) c.socket.destroy()
    for (const s of this.#leaving) s.destroy()
    this.#leaving.clear()
    this.#stopSweeper()
  }

  #forget(conn: GuardedConnection): void {
    const set = this.#byAddress.get(conn.key)
    if (!set?.delete(conn)) return
    this.#size--
    if (set.size === 0) this.#byAddress.delete(conn.key)
    if (this.#size === 0) this.#stopSweeper()
  }

  /** Frees a slot for a newcomer whose address has `mine` connections; false when nothing fair can go. */
  #evictFor(mine: number): boolean {
    const now = Date.now()
    // Most-connected addresses first; only one with more connections than the newcomer's gives one up.
    const addresses = [...this.#byAddress].filter(([, set]) => set.size > mine + 1).sort((a, b) => b[1].size - a[1].size)
    for (const [, set] of addresses) {
      let victim: GuardedConnection | undefined
      for (const c of set) if (!c.isBusy && (!victim || c.idleFor(now) > victim.idleFor(now))) victim = c
      if (!victim) continue
      this.#forget(victim)
      this.counts.evicted++
      this.#log.debug(`${this.name}: evicted an idle connection for a newcomer`, {peer: victim.address})
      this.#leave(victim.socket, 'evicted', victim)
      return true
    }
    return false
  }

  #refuse(socket: net.Socket, address: string, why: string): undefined {
    this.counts.refused++
    this.#log.debug(`${this.name}: connection refused`, {peer: address, why})
    this.#leave(socket, 'busy', undefined)
    return undefined
  }

  /** Says goodbye (best effort, bounded by FAREWELL_MS) and destroys the socket. */
  #leave(socket: net.Socket, why: Farewell, conn: GuardedConnection | undefined): void {
    const text = this.#farewell?.(why, conn)
    if (text === undefined || socket.destroyed || !socket.writable) {
      socket.destroy()
      return
    }
    this.#leaving.add(socket)
    const timer = setTimeout(() => socket.destroy(), FAREWELL_MS)
    timer.unref()
    socket.once('close', () => {
      clearTimeout(timer)
      this.#leaving.delete(socket)
    })
    // Unread input would only be discarded; the peer sees the reply, then the close.
    socket.removeAllListeners('data')
    socket.resume()
    socket.end(text, () => socket.destroy())
  }

  #startSweeper(): void {
    if (this.#sweeper) return
    const every = Math.max(50, Math.min(1000, Math.floor(Math.min(this.limits.firstMs, this.limits.idleMs || Infinity) / 4)))
    this.#sweeper = setInterval(() => this.#sweep(), every)
    this.#sweeper.unref()
  }

  #stopSweeper(): void {
    if (this.#sweeper) clearInterval(this.#sweeper)
    this.#sweeper = undefined
  }

  #sweep(): void {
    const now = Date.now()
    for (const set of [...this.#byAddress.values()]) {
      for (const c of [...set]) {
        if (!c.expired(now)) continue
        this.#forget(c)
        this.counts.expired++
        this.#log.debug(`${this.name}: connection past its deadline closed`, {peer: c.address})
        this.#leave(c.socket, 'timeout', c)
      }
    }
  }
}

/**
 * A byte budget shared by all connections of one server: bytes of messages received but
 * not yet parsed count against it, so memory for messages in flight is bounded globally,
 * not per connection.
 */
export class ByteBudget {
  readonly limit: number
  #used = 0

  constructor(limit: number) {
    this.limit = limit
  }

  get used(): number {
    return this.#used
  }

  /** Takes `n` bytes; false (and nothing taken) when that would pass the limit. */
  take(n: number): boolean {
    if (this.#used + n > this.limit) return false
    this.#used += n
    return true
  }

  give(n: number): void {
    this.#used = Math.max(0, this.#used - n)
  }
}
