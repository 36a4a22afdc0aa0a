// The connection pool FTP and SFTP share, over real loopback sockets: the cap, one borrower per connection, parking, the idle timeout, destroy on error, a refusing server, abort and close.
import assert from 'node:assert/strict'
import net from 'node:net'
import {after, before, describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {ConnectionPool, type ConnectionPoolOptions} from './pool.js'

/** A loopback server that counts the connections it has, and can drop them all. */
class Server {
  readonly sockets = new Set<net.Socket>()
  accepted = 0
  readonly #server = net.createServer((s) => {
    this.accepted++
    this.sockets.add(s)
    s.on('error', () => {})
    s.once('close', () => {
      this.sockets.delete(s)
      this.#changed()
    })
    this.#changed()
  })
  #watchers: Array<() => void> = []
  port = 0

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.2', resolve))
    this.port = (this.#server.address() as net.AddressInfo).port
  }

  /** Resolves once `test()` holds (checked at every connect and close), failing after 10 s. */
  until(test: () => boolean, what: string): Promise<void> {
    if (test()) return Promise.resolve()
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 10_000)
      const check = () => {
        if (!test()) return
        clearTimeout(timer)
        this.#watchers = this.#watchers.filter((w) => w !== check)
        resolve()
      }
      this.#watchers.push(check)
    })
  }

  #changed(): void {
    for (const w of [...this.#watchers]) w()
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }
}

function dial(port: number): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({host: '127.0.0.2', port})
    s.once('connect', () => {
      s.off('error', reject)
      s.on('error', () => {})
      resolve(s)
    })
    s.once('error', reject)
  })
}

function poolOf(server: Server, extra: Partial<ConnectionPoolOptions<net.Socket>> = {}): ConnectionPool<net.Socket> {
  return new ConnectionPool<net.Socket>({
    name: 'TEST',
    max: 2,
    open: () => dial(server.port),
    destroy: (s) => s.destroy(),
    alive: (s) => !s.destroyed && s.readyState === 'open',
    ...extra,
  })
}

/** A port nothing listens on: connecting to it is refused. */
async function refusedPort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.2', resolve))
  const port = (srv.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

describe('ConnectionPool', () => {
  let server: Server
  before(async () => {
    server = new Server()
    await server.listen()
  })
  after(async () => {
    await server.close()
  })

  it('lends each connection to one borrower, opens at most `max`, and hands a released one to the next waiter', async () => {
    const pool = poolOf(server)
    const start = server.accepted
    const a = await pool.acquire()
    const b = await pool.acquire()
    assert.notEqual(a.conn, b.conn)
    assert.equal(a.reused || b.reused, false)
    let third: {conn: net.Socket; reused: boolean} | undefined
    const waiting = pool.acquire().then((l) => (third = l))
    await server.until(() => server.accepted - start === 2, 'two connections')
    assert.equal(third, undefined, 'a third borrower waits: the cap is 2')
    pool.release(a.conn, true)
    const got = await waiting
    assert.equal(got.conn, a.conn)
    assert.equal(got.reused, true)
    assert.equal(server.accepted - start, 2, 'no third connection was opened')
    await pool.close()
    await server.until(() => server.sockets.size === 0, 'every connection closed')
  })

  it('destroys a connection released as not reusable, and opens a new one in its place', async () => {
    const pool = poolOf(server, {max: 1})
    const start = server.accepted
    const a = await pool.acquire()
    pool.release(a.conn, false)
    assert.ok(a.conn.destroyed)
    const b = await pool.acquire()
    assert.notEqual(b.conn, a.conn)
    assert.equal(b.reused, false)
    assert.equal(server.accepted - start, 2)
    await pool.close()
  })

  it('does not lend a parked connection the server closed meanwhile', async () => {
    const pool = poolOf(server, {max: 1})
    const a = await pool.acquire()
    pool.release(a.conn, true)
    for (const s of server.sockets) s.destroy()
    await new Promise<void>((resolve) => (a.conn.destroyed ? resolve() : a.conn.once('close', () => resolve())))
    const b = await pool.acquire()
    assert.notEqual(b.conn, a.conn)
    assert.equal(b.reused, false)
    await pool.close()
  })

  it('closes a connection parked longer than the idle timeout', async () => {
    const pool = poolOf(server, {max: 1, idleTimeoutMs: 20})
    await server.until(() => server.sockets.size === 0, 'no connection left from earlier cases')
    const a = await pool.acquire()
    pool.release(a.conn, true)
    assert.equal(pool.idle, 1)
    await server.until(() => server.sockets.size === 0, 'the idle connection closed')
    assert.equal(pool.size, 0)
    assert.equal((await pool.acquire()).reused, false)
    await pool.close()
  })

  it('goes on with the connections it has when the server refuses one more, and lowers its cap', async () => {
    const refused = await refusedPort()
    let opened = 0
    const pool = poolOf(server, {max: 3, open: () => dial(++opened <= 1 ? server.port : refused)})
    const a = await pool.acquire()
    let second: {conn: net.Socket} | undefined
    const waiting = pool.acquire().then((l) => (second = l))
    // The second open is refused: the borrower waits for the one connection there is.
    await new Promise<void>((resolve) => {
      const poll = () => (pool.max === 1 ? resolve() : setImmediate(poll))
      poll()
    })
    assert.equal(second, undefined)
    pool.release(a.conn, true)
    assert.equal((await waiting).conn, a.conn)
    await pool.close()
  })

  it("fails with the open's own error when no connection can be made at all", async () => {
    const refused = await refusedPort()
    const pool = poolOf(server, {open: () => dial(refused)})
    await assert.rejects(pool.acquire(), (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED')
    assert.equal(pool.size, 0)
    await pool.close()
  })

  it('gives up waiting when the signal aborts (E_TRANSFER), and refuses after close (E_STATE), failing its waiters', async () => {
    const pool = poolOf(server, {max: 1})
    const a = await pool.acquire()
    const ac = new AbortController()
    const aborted = pool.acquire(ac.signal)
    ac.abort()
    await assert.rejects(aborted, (e: unknown) => isFpeerError(e, 'E_TRANSFER'))
    const waiter = pool.acquire()
    await pool.close()
    await assert.rejects(waiter, (e: unknown) => isFpeerError(e, 'E_STATE'))
    await assert.rejects(pool.acquire(), (e: unknown) => isFpeerError(e, 'E_STATE'))
    assert.ok(a.conn.destroyed, 'a lent connection is ended by close too')
    pool.release(a.conn, true)
    await pool.close()
  })
})
