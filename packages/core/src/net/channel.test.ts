// The control channel: keep-alives (empty lines) hold off a stall timeout, silence ends it with E_TIMEOUT and the address; a large message goes in slices, whole.
import assert from 'node:assert/strict'
import net from 'node:net'
import {after, before, describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {formatMessage, parseMessages} from '../wire/codec.js'
import type {FilesToGet} from '../wire/types.js'
import {connectChannel} from './channel.js'

describe('MessageChannel stall timeout', () => {
  let server: net.Server
  let port: number
  /** What the server side does with each connection. */
  let behave: (s: net.Socket) => void = () => {}
  const sockets = new Set<net.Socket>()

  before(async () => {
    server = net.createServer((s) => {
      sockets.add(s)
      s.on('error', () => {})
      behave(s)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as net.AddressInfo).port
  })

  after(async () => {
    for (const s of sockets) s.destroy()
    await new Promise((r) => server.close(r))
  })

  it('keep-alives for several stall periods, then a message: the message arrives', async () => {
    behave = (s) => {
      let n = 0
      const t = setInterval(() => {
        // Six keep-alives 100 ms apart outlast the 300 ms stall timeout twice over.
        if (++n <= 6) s.write('\n')
        else {
          clearInterval(t)
          s.write('PeerError\n*\nE_BUSY\nlater\n\n')
        }
      }, 100)
      s.once('close', () => clearInterval(t))
    }
    const channel = await connectChannel('127.0.0.1', port)
    try {
      const msg = await channel.next(Infinity, {stallMs: 300})
      assert.equal(msg.type, 'PeerError')
    } finally {
      await channel.close()
    }
  })

  it('a message that arrived while this process had no CPU is read before the stall clock is judged', async () => {
    behave = (s) => {
      // 100 ms in, the peer's whole message reaches this process's socket, and then this process
      // is busy for twice the stall timeout: when it runs again the clock is out, yet the
      // message is waiting to be read.
      // (After the timers of this turn of the loop: the next turn runs its timers, the stall
      // clock's among them, before it reads any socket.)
      setTimeout(() => {
        setImmediate(() => {
          s.write('PeerError\n*\nE_BUSY\nlater\n\n')
          const until = Date.now() + 400
          while (Date.now() < until);
        })
      }, 100)
    }
    const channel = await connectChannel('127.0.0.1', port)
    try {
      const msg = await channel.next(Infinity, {stallMs: 200})
      assert.equal(msg.type, 'PeerError')
    } finally {
      await channel.close()
    }
  })

  it('silence past the stall timeout is E_TIMEOUT naming the address', async () => {
    behave = () => {}
    const channel = await connectChannel('127.0.0.1', port)
    try {
      await assert.rejects(
        channel.next(Infinity, {stallMs: 200}),
        (e: unknown) => isFpeerError(e, 'E_TIMEOUT') && (e.details as {address: string}).address === `127.0.0.1:${port}`,
      )
    } finally {
      await channel.close()
    }
  })

  it('the stall clock starts with the wait: a peer silent before it (waiting on us) is not stalled', async () => {
    let sock: net.Socket | undefined
    let connected: () => void = () => {}
    behave = (s) => {
      sock = s
      s.write('PeerError\n*\nE_BUSY\nfirst\n\n')
      connected()
    }
    const ready = new Promise<void>((resolve) => (connected = resolve))
    const channel = await connectChannel('127.0.0.1', port)
    try {
      await ready
      assert.equal((await channel.next(10_000)).type, 'PeerError')
      const lastByte = Date.now()
      // Longer than the stall timeout passes with nothing from the peer, before we wait on it.
      while (Date.now() - lastByte < 3500) await new Promise((r) => setTimeout(r, 100))
      const second = channel.next(60_000, {stallMs: 3000})
      sock!.write('PeerError\n*\nE_BUSY\nsecond\n\n')
      const msg = await second
      assert.equal(msg.type === 'PeerError' && msg.text, 'second')
    } finally {
      await channel.close()
    }
  })

  it('keepAlive() sends only while progress moves', async () => {
    let received = ''
    let got: () => void = () => {}
    behave = (s) =>
      s.on('data', (d: Buffer) => {
        received += d.toString()
        got()
      })
    const channel = await connectChannel('127.0.0.1', port)
    let progress = 0
    const stop = channel.keepAlive(() => progress, 50)
    try {
      progress = 1
      await new Promise<void>((resolve) => (got = resolve))
      assert.equal(received, '\n')
      stop()
      progress = 2
      // Stopped: nothing more is sent, however long we give it; a message then arrives alone.
      await channel.sendRaw('X\n\n')
      await new Promise<void>((resolve) => (got = () => received.endsWith('X\n\n') && resolve()))
      assert.equal(received, '\nX\n\n')
    } finally {
      stop()
      await channel.close()
    }
  })
})

describe('MessageChannel sending a large file list', () => {
  it('a 20,000-file message goes in slices, and a keep-alive sent meanwhile goes after it, never inside', async () => {
    const received: Buffer[] = []
    let ended!: () => void
    const done = new Promise<void>((r) => (ended = r))
    const server = net.createServer((s) => {
      s.on('data', (d: Buffer) => received.push(d))
      s.on('end', () => {
        s.end()
        ended()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as net.AddressInfo).port
    const files = Array.from({length: 20_000}, (_, i) => ({path: `d${i % 100}/f${i}`, size: i, sha256: 'c'.repeat(64), mtimeMs: 1_700_000_000_000}))
    const msg: FilesToGet = {type: 'FilesToGet', folder: 'big', port: 1, protocol: 'HTTP', files, meta: {nonce: 'n'}}
    const channel = await connectChannel('127.0.0.1', port)
    try {
      // The keep-alive is asked for while the message is under way (its first slice is being written).
      const sent = channel.send(msg)
      const alive = channel.sendRaw('\n')
      await Promise.all([sent, alive])
      await channel.close()
      await done
    } finally {
      channel.socket.destroy()
      await new Promise((r) => server.close(r))
    }
    const text = Buffer.concat(received).toString('utf8')
    assert.equal(text, formatMessage(msg) + '\n')
    const parsed = parseMessages(text)
    assert.equal(parsed.length, 1)
    assert.equal((parsed[0] as FilesToGet).files.length, 20_000)
  })
})
