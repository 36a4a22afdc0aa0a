// The connection guard and the shared byte budget, with real loopback sockets.
import assert from 'node:assert/strict'
import net from 'node:net'
import {describe, it} from 'node:test'
import {FpeerError} from '../errors.js'
import type {FilesToGet} from '../wire/types.js'
import {MessageChannel} from './channel.js'
import {ByteBudget, ConnectionGuard, addressKey, type ConnectionLimits, type GuardedConnection} from './limits.js'

interface Client {
  socket: net.Socket
  text: string
  closed: Promise<void>
}

/** A server whose sockets go through a guard; `onAdmit` sees each admitted connection. */
async function guarded(
  limits: ConnectionLimits,
  onAdmit: (c: GuardedConnection) => void = () => {},
): Promise<{guard: ConnectionGuard; port: number; close(): Promise<void>}> {
  const guard = new ConnectionGuard({name: 'test', limits, farewell: (why) => `bye ${why}\n`})
  const server = net.createServer((socket) => {
    const c = guard.admit(socket)
    if (c) onAdmit(c)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  return {
    guard,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        guard.close()
        server.close(() => resolve())
      }),
  }
}

async function connect(port: number, from: string): Promise<Client> {
  const socket = net.connect({host: '127.0.0.1', port, localAddress: from})
  const c: Client = {socket, text: '', closed: new Promise((resolve) => socket.once('close', () => resolve()))}
  socket.on('error', () => {})
  socket.on('data', (d: Buffer) => (c.text += d.toString()))
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  return c
}

async function connectTo(host: string, port: number, from: string): Promise<Client> {
  const socket = net.connect({host, port, localAddress: from})
  const c: Client = {socket, text: '', closed: new Promise((resolve) => socket.once('close', () => resolve()))}
  socket.on('error', () => {})
  socket.on('data', (d: Buffer) => (c.text += d.toString()))
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  return c
}

async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (check()) return
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`timed out waiting for ${what}`)
}

const LONG = 60_000

describe('ConnectionGuard', () => {
  it('caps one address, and lets a newcomer from a less-connected address evict the oldest idle connection of the most-connected one', async () => {
    const admitted: GuardedConnection[] = []
    const s = await guarded({maxConnections: 4, maxPerAddress: 3, firstMs: LONG, idleMs: LONG}, (c) => admitted.push(c))
    const clients: Client[] = []
    try {
      for (let i = 0; i < 3; i++) clients.push(await connect(s.port, '127.0.0.2'))
      await until('three admitted', () => s.guard.size === 3)
      // The oldest is busy: it must not be the one evicted.
      admitted[0]!.busy()
      const over = await connect(s.port, '127.0.0.2')
      await over.closed
      assert.equal(over.text, 'bye busy\n')
      clients.push(await connect(s.port, '127.0.0.3'))
      await until('four admitted', () => s.guard.size === 4)
      // Full: 127.0.0.2 holds 3, the newcomer's address none.
      const fair = await connect(s.port, '127.0.0.4')
      await clients[1]!.closed
      assert.equal(clients[1]!.text, 'bye evicted\n')
      assert.equal(clients[0]!.socket.closed, false)
      await until('the newcomer admitted', () => s.guard.size === 4)
      // 127.0.0.2 holds 2 now: a newcomer from 127.0.0.3, which holds 1, would only swap places with it: refused.
      const unfair = await connect(s.port, '127.0.0.3')
      await unfair.closed
      assert.equal(unfair.text, 'bye busy\n')
      assert.deepEqual(s.guard.counts, {admitted: 5, refused: 2, evicted: 1, expired: 0})
      clients.push(fair)
    } finally {
      await s.close()
    }
    await Promise.all(clients.map((c) => c.closed))
  })

  it('closes a connection that shows no progress by the first deadline, and an idle one by the idle deadline; busy and touched ones stay', async () => {
    const admitted: GuardedConnection[] = []
    const s = await guarded({maxConnections: 10, maxPerAddress: 10, firstMs: 200, idleMs: 300, quietMs: 10_000}, (c) => admitted.push(c))
    try {
      const silent = await connect(s.port, '127.0.0.2')
      const idle = await connect(s.port, '127.0.0.2')
      const busy = await connect(s.port, '127.0.0.2')
      const touched = await connect(s.port, '127.0.0.2')
      await until('four admitted', () => admitted.length === 4)
      admitted[1]!.idle()
      admitted[2]!.busy()
      admitted[3]!.touch()
      await silent.closed
      assert.equal(silent.text, 'bye timeout\n')
      await idle.closed
      assert.equal(idle.text, 'bye timeout\n')
      assert.equal(busy.socket.closed, false)
      assert.equal(touched.socket.closed, false)
      assert.equal(s.guard.counts.expired, 2)
    } finally {
      await s.close()
    }
  })

  it('survives a reset on a refused connection that sent bytes, and close() destroys every socket', async () => {
    const s = await guarded({maxConnections: 1, maxPerAddress: 1, firstMs: LONG, idleMs: LONG})
    const held = await connect(s.port, '127.0.0.2')
    await until('one admitted', () => s.guard.size === 1)
    for (let i = 0; i < 20; i++) {
      const c = await connect(s.port, '127.0.0.2')
      c.socket.write('hello\n')
      c.socket.resetAndDestroy()
      await c.closed
    }
    await until('the refused ones gone', () => s.guard.counts.refused === 20)
    await s.close()
    await held.closed
  })
})

describe('addressKey', () => {
  it('counts IPv4 by address and IPv6 by its /64', () => {
    assert.equal(addressKey('127.0.0.2'), '127.0.0.2')
    assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64')
    assert.equal(addressKey('2001:db8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64')
    assert.equal(addressKey('2001:db8::5'), '2001:db8:0:0::/64')
    assert.equal(addressKey('::1'), '0:0:0:0::/64')
    assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64')
  })
})

describe('ByteBudget', () => {
  it("is shared by the channels of a server: a message past what is left fails with E_BUSY, and bytes come back on close, a parsed message's only once it is handled", async () => {
    const budget = new ByteBudget(1000)
    const errors: string[] = []
    const parsed: string[] = []
    const server = net.createServer((socket) => {
      socket.on('error', () => {})
      const ch = new MessageChannel(socket, {budget})
      ch.next(LONG).then(
        (m) => parsed.push(m.type),
        (err: FpeerError) => {
          errors.push(err.code)
          socket.destroy()
        },
      )
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as net.AddressInfo).port
    const clients: Client[] = []
    try {
      const big = await connect(port, '127.0.0.2')
      big.socket.write(`FilesToGet\n${'a'.repeat(800)}\n`)
      await until('800 bytes held', () => budget.used > 800)
      clients.push(big)
      const second = await connect(port, '127.0.0.3')
      second.socket.write(`BePeerRequest\n${'b'.repeat(200)}\n\n`)
      await second.closed
      assert.deepEqual(errors, ['E_BUSY'])
      big.socket.destroy()
      await until('the budget given back', () => budget.used === 0)
      const third = await connect(port, '127.0.0.3')
      clients.push(third)
      third.socket.write(`BePeerRequest\n${'b'.repeat(200)}\n\n`)
      await until('the message parsed', () => parsed.length === 1)
      // Parsed but not yet handled (its reader has not asked for the next one): still charged.
      assert.ok(budget.used > 200, `${budget.used} bytes held`)
      third.socket.destroy()
      await until('the handled message given back on close', () => budget.used === 0)
      assert.deepEqual(errors, ['E_BUSY', 'E_CONNECTION_LOST'])
    } finally {
      for (const c of clients) c.socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  })

  it('lets the reply to a list we sent pass the shared budget, from the reply budget and only for what that reply can hold; an unasked-for message of that size is E_BUSY', async () => {
    const budget = new ByteBudget(1000)
    const replyBudget = new ByteBudget(1 << 20)
    const lines = Array.from({length: 60}, (_, i) => `f-${String(i).padStart(4, '0')}.dat\tmtime=1\tsha256=${'c'.repeat(64)}\tsize=1`)
    const list: FilesToGet = {
      type: 'FilesToGet',
      folder: 'big',
      port: 1,
      protocol: 'HTTP',
      meta: {},
      files: lines.map((_, i) => ({path: `f-${String(i).padStart(4, '0')}.dat`, size: 1, sha256: 'c'.repeat(64), mtimeMs: 1})),
    }
    // The reply repeats the list with a mark on each line: several times the shared budget.
    const reply = `FilesUpdated\nbig\n2\nHTTP\n${lines.map((l) => l.replace('\tmtime', '\tgot=1\tmtime')).join('\n')}\n\n`
    assert.ok(reply.length > 3 * budget.limit)
    const results: string[] = []
    const server = net.createServer((socket) => {
      socket.on('error', () => {})
      const ch = new MessageChannel(socket, {budget, replyBudget})
      void (async () => {
        // The first connection is sent the list; the second is not.
        if (socket.remotePort && socket.localPort && results.length === 0) await ch.send(list)
        for (;;) {
          const m = await ch.next(LONG)
          results.push(`${m.type}:${'files' in m ? m.files.length : 0}:${budget.used}:${replyBudget.used >= reply.length}`)
        }
      })().catch((err: FpeerError) => {
        results.push(err.code)
        socket.destroy()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.40.1', resolve))
    const port = (server.address() as net.AddressInfo).port
    const clients: Client[] = []
    try {
      const asked = await connectTo('127.0.40.1', port, '127.0.40.2')
      clients.push(asked)
      await until('the list received', () => asked.text.endsWith('\n\n'))
      asked.socket.write(reply)
      await until('the reply parsed', () => results.length === 1)
      // Parsed with nothing of it charged to the shared budget; held in the reply budget until handled.
      assert.deepEqual(results, ['FilesUpdated:60:0:true'])
      // The allowance is spent as it is used: more than a reply can hold meets the shared budget.
      asked.socket.write(`FilesUpdated\nbig\n2\nHTTP\n${`${'x'.repeat(99)}\n`.repeat(3000)}`)
      await asked.closed
      assert.deepEqual(results, ['FilesUpdated:60:0:true', 'E_BUSY'])
      await until('both budgets given back', () => budget.used === 0 && replyBudget.used === 0)
      // A connection that was sent no list has no allowance: the same reply is refused.
      const unasked = await connectTo('127.0.40.1', port, '127.0.40.3')
      clients.push(unasked)
      unasked.socket.write(reply)
      await unasked.closed
      assert.deepEqual(results, ['FilesUpdated:60:0:true', 'E_BUSY', 'E_BUSY'])
      await until('both budgets given back again', () => budget.used === 0 && replyBudget.used === 0)
    } finally {
      for (const c of clients) c.socket.destroy()
      await new Promise((resolve) => server.close(resolve))
    }
  })
})
