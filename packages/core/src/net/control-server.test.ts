// The control server's lifecycle with real loopback sockets: listening, framing, a stop that cuts conversations past the grace, abort, a busy port.
import assert from 'node:assert/strict'
import net from 'node:net'
import {describe, it} from 'node:test'
import {FpeerError} from '../errors.js'
import type {MessageChannel} from './channel.js'
import {ControlServer, type ControlServerOptions} from './control-server.js'

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

function server(serve: ControlServerOptions['serve'], graceMs = 60_000): ControlServer {
  return new ControlServer({host: '127.0.0.1', port: 0, serve, messageTimeoutMs: 30_000, graceMs})
}

/** A client connection; `closed` resolves when the server ends it. */
async function connect(port: number): Promise<{socket: net.Socket; text: () => string; closed: Promise<void>}> {
  const socket = net.connect(port, '127.0.0.1')
  let text = ''
  socket.setEncoding('utf8')
  socket.on('data', (d: string) => (text += d))
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  return {socket, text: () => text, closed}
}

describe('ControlServer', () => {
  it('hands each connection, framed, to serve; stop closes the port and leaves no connection', async () => {
    const got: string[] = []
    const s = server(async (channel: MessageChannel) => {
      const msg = await channel.next(10_000)
      got.push(msg.type)
      await channel.close()
    })
    await s.start(new AbortController().signal)
    assert.equal(s.listening, true)
    const port = s.port
    assert.ok(port > 0)
    const c = await connect(port)
    c.socket.write('PeerError\n*\nE_BUSY\nlater\n\n')
    await c.closed
    assert.deepEqual(got, ['PeerError'])
    await s.stop()
    assert.equal(s.listening, false)
    assert.equal(s.connections, 0)
    await assert.rejects(connect(port), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED')
    await s.stop()
  })

  it('a conversation under way gets the grace, then is cut: stop() does not wait for it to end', async () => {
    let release = () => {}
    const hung = new Promise<void>((resolve) => (release = resolve))
    const s = server(async (channel) => {
      await channel.next(10_000)
      await hung // a handshake that never ends by itself
    }, 200)
    await s.start(new AbortController().signal)
    const c = await connect(s.port)
    c.socket.write('PeerError\n*\nE_BUSY\nlater\n\n')
    await until('the conversation to start', () => s.busy === 1)
    await s.stop()
    await c.closed
    assert.equal(s.connections, 0)
    assert.equal(s.listening, false)
    release()
  })

  it('abort through the signal stops listening and drops idle connections at once', async () => {
    const s = server(async (channel) => void (await channel.next(10_000)))
    const ac = new AbortController()
    await s.start(ac.signal)
    const idle = await connect(s.port)
    await until('the connection to be admitted', () => s.connections === 1)
    ac.abort()
    await idle.closed
    await until('the port to close', () => !s.listening)
    await s.stop()
    assert.equal(s.connections, 0)
  })

  it('stop before start: start then does nothing', async () => {
    const s = server(async () => {})
    await s.stop()
    await s.start(new AbortController().signal)
    assert.equal(s.listening, false)
  })

  it('a busy port is E_USAGE naming --port', async () => {
    const a = server(async () => {})
    await a.start(new AbortController().signal)
    const b = new ControlServer({host: '127.0.0.1', port: a.port, serve: async () => {}, messageTimeoutMs: 30_000, graceMs: 100})
    await assert.rejects(b.start(new AbortController().signal), (err: FpeerError) => err.code === 'E_USAGE' && /--port/.test(err.hint ?? ''))
    await b.stop()
    assert.equal(b.listening, false)
    assert.equal(a.listening, true, 'the first server still serves')
    await a.stop()
  })
})

describe('ControlServer stopped while it starts', () => {
  it('a stop during listen leaves the port closed', async () => {
    const s = server(async () => {})
    const starting = s.start(new AbortController().signal)
    const stopping = s.stop()
    await Promise.all([starting, stopping])
    assert.equal(s.listening, false)
  })
})
