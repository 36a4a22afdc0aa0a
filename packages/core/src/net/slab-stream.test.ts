// SlabStream over real loopback sockets: views of a few reused buffers, a reader's backpressure pausing the socket, releases that cannot free a buffer still viewed.
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import net from 'node:net'
import {describe, it} from 'node:test'
import {readReleasing} from '../testing/checks.js'
import {SlabStream} from './slab-stream.js'

/** Sends `data` to one client and closes; resolves with what the client side made of it. */
async function receive<T>(data: Buffer, read: (body: SlabStream, socket: net.Socket) => Promise<T>): Promise<T> {
  const server = net.createServer((s) => {
    s.on('error', () => {})
    s.end(data)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  let socket: net.Socket | undefined
  try {
    const body = new SlabStream({pause: () => socket?.pause(), resume: () => socket?.resume(), destroy: () => socket?.destroy()})
    let got = 0
    socket = net.connect({
      host: '127.0.0.1',
      port: (server.address() as net.AddressInfo).port,
      onread: {
        buffer: () => body.room(),
        callback: (n) => {
          got += n
          body.commit(n)
          if (got === data.length) body.end()
          return true
        },
      },
    })
    socket.on('error', (err) => body.fail(err))
    return await read(body, socket)
  } finally {
    socket?.destroy()
    await new Promise((r) => server.close(r))
  }
}

describe('SlabStream', {timeout: 60_000}, () => {
  const data = randomBytes(24 << 20)

  it('hands on every byte in order as views; released views are read into again, a kept one never', async () => {
    const {buffers, keptIntact} = await receive(data, (body) => readReleasing({stream: body.stream, release: (c) => body.release(c)}, data))
    assert.ok(keptIntact, 'the view never released is intact')
    // 24 MiB is twelve 2 MiB slabs.
    assert.ok(buffers <= 10, `${buffers} buffers`)
  })

  it('without releases every slab is fresh, and the bytes are the same', async () => {
    const {buffers} = await receive(data, (body) => readReleasing({stream: body.stream}, data, false))
    assert.ok(buffers >= 12, `${buffers} buffers`)
  })

  it('a reader that does not read pauses the socket; reading resumes it and everything arrives', async () => {
    await receive(data, async (body, socket) => {
      // Nothing reads yet: the stream's buffer fills, and the socket is paused, not read into more slabs.
      await new Promise<void>((resolve) => {
        const check = () => (socket.isPaused() ? resolve() : setImmediate(check))
        check()
      })
      assert.ok(body.stream.readableLength <= 16)
      let at = 0
      for await (const chunk of body.stream) {
        at += (chunk as Buffer).length
        body.release(chunk as Buffer)
      }
      assert.equal(at, data.length)
    })
  })

  it('fail() ends the reader with the error; destroying the stream destroys the socket', async () => {
    await receive(data, async (body) => {
      const it = body.stream[Symbol.asyncIterator]()
      await it.next()
      body.fail(new Error('cut'))
      await assert.rejects(async () => {
        for (let r = await it.next(); !r.done; r = await it.next());
      }, /cut/)
    })
    await receive(data, async (body, socket) => {
      const closed = new Promise((r) => socket.once('close', r))
      body.stream.destroy()
      await closed
      assert.ok(socket.destroyed)
    })
  })
})
