// A large file's GET on a connection of its own: the bytes and ranges of fpeer's server, the general client's fallback, and hostile or dying servers.
import assert from 'node:assert/strict'
import {createHash, randomBytes} from 'node:crypto'
import {mkdir, mkdtemp, rm, truncate, writeFile} from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {after, before, describe, it} from 'node:test'
import {type FpeerError, Identity, LocalFileSource, generateKeyPair, type TransportServer} from '@fpeer/core'
import {readReleasing} from '@fpeer/core/testing'
import {parseHead} from './bulk-get.js'
import {connectHttp} from './client.js'
import {serveHttp} from './server.js'

const identity = new Identity(generateKeyPair())

async function drain(stream: Readable): Promise<{bytes: number; sha256: string}> {
  const hash = createHash('sha256')
  let bytes = 0
  for await (const chunk of stream) {
    hash.update(chunk as Buffer)
    bytes += (chunk as Buffer).length
  }
  return {bytes, sha256: hash.digest('hex')}
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex')
}

/** A raw TCP server that answers every connection with `reply(socket)`, counting connections. */
async function rawServer(reply: (socket: net.Socket) => void): Promise<{port: number; connections: () => number; close(): Promise<void>}> {
  let n = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((socket) => {
    n++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    socket.once('data', () => reply(socket))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => n,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

describe('parseHead', () => {
  it('reads the status and lower-cased headers', () => {
    assert.deepEqual(parseHead('HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nContent-Range: bytes 1-5/6'), {
      status: 206,
      headers: {'content-length': '5', 'content-range': 'bytes 1-5/6'},
    })
  })
  it('is undefined for what is not an HTTP/1.x head', () => {
    assert.equal(parseHead('SSH-2.0-OpenSSH'), undefined)
    assert.equal(parseHead('HTTP/1.1 200 OK\r\nno colon here'), undefined)
  })
  it('joins a repeated Content-Length, so it is no longer a plain number', () => {
    assert.equal(parseHead('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7')?.headers['content-length'], '5,7')
  })
})

describe('HTTP client: large files on connections of their own', {timeout: 600_000}, () => {
  let dir: string
  let server: TransportServer
  const big = randomBytes(5 * (1 << 20) + 123)

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fpeer-bulk-'))
    await mkdir(path.join(dir, 'docs'), {recursive: true})
    await writeFile(path.join(dir, 'docs', 'big.bin'), big)
    const source = new LocalFileSource({root: (f) => (f === 'docs' ? path.join(dir, 'docs') : undefined), mayRead: () => true}, () => ['docs'])
    server = await serveHttp({host: '127.0.0.1', port: 0, files: source, identity})
  })
  after(async () => {
    await server.close()
    await rm(dir, {recursive: true, force: true})
  })

  it('fetches the whole file, and from an offset (206), byte for byte', async () => {
    const client = await connectHttp({host: '127.0.0.1', port: server.port, identity, concurrency: 2, timeoutMs: 30_000})
    try {
      const whole = await client.get('docs', 'big.bin', {size: big.length})
      assert.equal(whole.size, big.length)
      assert.deepEqual(await drain(whole.stream), {bytes: big.length, sha256: sha(big)})
      const offset = (1 << 20) + 17
      const rest = await client.get('docs', 'big.bin', {size: big.length, offset})
      assert.equal(rest.size, big.length)
      assert.deepEqual(await drain(rest.stream), {bytes: big.length - offset, sha256: sha(big.subarray(offset))})
    } finally {
      await client.close()
    }
  })

  it('a reader that releases what it read gets the rest in the same few buffers; a chunk kept, or released twice, is never overwritten', async () => {
    const many = randomBytes(40 << 20)
    await writeFile(path.join(dir, 'docs', 'many.bin'), many)
    const client = await connectHttp({host: '127.0.0.1', port: server.port, identity, concurrency: 1, timeoutMs: 30_000})
    try {
      const read = async (releasing: boolean) => {
        const got = await client.get('docs', 'many.bin', {size: many.length})
        assert.ok(got.release, 'a bulk GET lets its chunks be released')
        const {buffers, keptIntact} = await readReleasing(got, many, releasing)
        assert.ok(keptIntact, 'the chunk never released is intact')
        return buffers
      }
      // 40 MiB is twenty 2 MiB slabs: read whole without releases, in far fewer with them.
      assert.ok((await read(false)) >= 20)
      const reused = await read(true)
      assert.ok(reused <= 14, `${reused} buffers for 40 MiB read with releases`)
    } finally {
      await client.close()
      await rm(path.join(dir, 'docs', 'many.bin'))
    }
  })

  it('a file that shrinks while it is sent (by reads into reused buffers) reaches the client as E_CONNECTION_LOST, and the server goes on serving', async () => {
    const shrinking = path.join(dir, 'docs', 'shrinks.bin')
    // Far more than the reader's buffers, the sender's three and the sockets' can hold before the reader reads.
    await writeFile(shrinking, Buffer.alloc(96 << 20, 3))
    const client = await connectHttp({host: '127.0.0.1', port: server.port, identity, concurrency: 1, timeoutMs: 30_000})
    try {
      const got = await client.get('docs', 'shrinks.bin', {size: 96 << 20})
      // The failure may come before the first read: it is kept for the reader, not thrown at nobody.
      got.stream.on('error', () => {})
      await truncate(shrinking, 1 << 20)
      await assert.rejects(drain(got.stream), (err: FpeerError) => err.code === 'E_CONNECTION_LOST')
      const again = await client.get('docs', 'big.bin', {size: big.length})
      assert.deepEqual(await drain(again.stream), {bytes: big.length, sha256: sha(big)})
    } finally {
      await client.close()
    }
  })

  it('a missing file is E_NOT_FOUND, as through the pool', async () => {
    const client = await connectHttp({host: '127.0.0.1', port: server.port, identity, concurrency: 1, timeoutMs: 30_000})
    try {
      await assert.rejects(client.get('docs', 'nope.bin', {size: 8 << 20}), (err: FpeerError) => err.code === 'E_NOT_FOUND')
    } finally {
      await client.close()
    }
  })

  it('a chunked reply is read again through the general client', async () => {
    const body = randomBytes(2 << 20)
    let requests = 0
    const chunked = http.createServer((_req, res) => {
      requests++
      res.writeHead(200, {'content-type': 'application/octet-stream'})
      // write() before end(): node then sends the body chunked, with no Content-Length.
      res.write(body)
      res.end()
    })
    await new Promise<void>((resolve) => chunked.listen(0, '127.0.0.1', resolve))
    const client = await connectHttp({host: '127.0.0.1', port: (chunked.address() as net.AddressInfo).port, identity, concurrency: 1, timeoutMs: 30_000})
    try {
      const got = await client.get('docs', 'big.bin', {size: body.length})
      assert.deepEqual(await drain(got.stream), {bytes: body.length, sha256: sha(body)})
      // Once on its own connection (chunked: not taken), once through the pool.
      assert.equal(requests, 2)
    } finally {
      await client.close()
      chunked.closeAllConnections()
      await new Promise<void>((resolve) => chunked.close(() => resolve()))
    }
  })

  it('a connection cut mid-body is E_CONNECTION_LOST, and bytes past Content-Length are never passed on', async () => {
    const cut = await rawServer((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n')
      socket.end(Buffer.alloc(1 << 20, 1))
    })
    const extra = await rawServer((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2097152\r\n\r\n')
      socket.end(Buffer.alloc(3 << 20, 2))
    })
    const c1 = await connectHttp({host: '127.0.0.1', port: cut.port, identity, concurrency: 1, timeoutMs: 30_000})
    const c2 = await connectHttp({host: '127.0.0.1', port: extra.port, identity, concurrency: 1, timeoutMs: 30_000})
    try {
      const got = await c1.get('docs', 'big.bin', {size: 4 << 20})
      await assert.rejects(drain(got.stream), (err: FpeerError) => err.code === 'E_CONNECTION_LOST')
      const more = await c2.get('docs', 'big.bin', {size: 2 << 20})
      assert.equal((await drain(more.stream)).bytes, 2 << 20)
    } finally {
      await c1.close()
      await c2.close()
      await cut.close()
      await extra.close()
    }
  })

  it('a server that stops sending is E_TIMEOUT after the idle timeout, and a stop by signal ends the GET', async () => {
    const silent = await rawServer((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 4194304\r\n\r\n')
      socket.write(Buffer.alloc(1 << 16))
    })
    const c = await connectHttp({host: '127.0.0.1', port: silent.port, identity, concurrency: 1, timeoutMs: 300})
    try {
      const got = await c.get('docs', 'big.bin', {size: 4 << 20})
      await assert.rejects(drain(got.stream), (err: FpeerError) => err.code === 'E_TIMEOUT')
      const ac = new AbortController()
      const c2 = await connectHttp({host: '127.0.0.1', port: silent.port, identity, concurrency: 1, timeoutMs: 60_000})
      try {
        const held = await c2.get('docs', 'big.bin', {size: 4 << 20, signal: ac.signal})
        ac.abort()
        await assert.rejects(drain(held.stream), (err: FpeerError) => err.code === 'E_TRANSFER')
      } finally {
        await c2.close()
      }
    } finally {
      await c.close()
      await silent.close()
    }
  })

  it('bytes that arrived while this process had no CPU are read before the idle timeout is judged', async () => {
    const body = Buffer.alloc(1 << 20, 7)
    const late = await rawServer((socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`)
      socket.write(body.subarray(0, 1 << 16))
      // 100 ms in, the rest reaches this process's socket, and then this process is busy for
      // twice the idle timeout, after the timers of that turn of the event loop: the next turn
      // runs the idle timer before it reads the socket.
      setTimeout(() => {
        setImmediate(() => {
          socket.end(body.subarray(1 << 16))
          const until = Date.now() + 400
          while (Date.now() < until);
        })
      }, 100)
    })
    const c = await connectHttp({host: '127.0.0.1', port: late.port, identity, concurrency: 1, timeoutMs: 200})
    try {
      const got = await c.get('docs', 'big.bin', {size: body.length})
      assert.deepEqual(await drain(got.stream), {bytes: body.length, sha256: sha(body)})
    } finally {
      await c.close()
      await late.close()
    }
  })

  it('a reader slower than the idle timeout is not the peer stalling: the file still arrives whole', async () => {
    // Far more than the reader's buffers and the sockets' hold, so the socket is paused for the reader.
    const huge = Buffer.alloc(64 << 20, 5)
    await writeFile(path.join(dir, 'docs', 'huge.bin'), huge)
    const client = await connectHttp({host: '127.0.0.1', port: server.port, identity, concurrency: 1, timeoutMs: 300})
    try {
      const got = await client.get('docs', 'huge.bin', {size: huge.length})
      const hash = createHash('sha256')
      let bytes = 0
      for await (const chunk of got.stream) {
        // Each pause is longer than the timeout, with the socket's buffers full behind it.
        if (bytes === 0) await new Promise((resolve) => setTimeout(resolve, 700))
        hash.update(chunk as Buffer)
        bytes += (chunk as Buffer).length
      }
      assert.deepEqual({bytes, sha256: hash.digest('hex')}, {bytes: huge.length, sha256: sha(huge)})
    } finally {
      await client.close()
    }
  })

  it('a reply that is not HTTP is E_TRANSFER', async () => {
    const ssh = await rawServer((socket) => socket.end('SSH-2.0-OpenSSH_9.6\r\n\r\n'))
    const c = await connectHttp({host: '127.0.0.1', port: ssh.port, identity, concurrency: 1, timeoutMs: 30_000})
    try {
      await assert.rejects(c.get('docs', 'big.bin', {size: 4 << 20}), (err: FpeerError) => err.code === 'E_TRANSFER')
    } finally {
      await c.close()
      await ssh.close()
    }
  })
})
