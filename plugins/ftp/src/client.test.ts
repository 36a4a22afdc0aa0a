// Tests of the FTP client beyond the conformance suite: pool bounds, local address binding, timeouts, stale and abandoned connections.
import assert from 'node:assert/strict'
import {readFile, rm, writeFile} from 'node:fs/promises'
import {createServer, type Socket} from 'node:net'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {after, before, describe, it} from 'node:test'
import {
  Identity,
  generateKeyPair,
  isFpeerError,
  type AccessContext,
  type ConnectOptions,
  type ErrorCode,
  type FileSource,
  type TransportServer,
} from '@fpeer/core'
import {FaultySource} from '@fpeer/core/conformance'
import {readReleasing} from '@fpeer/core/testing'
import {connectFtp} from './client.js'
import {BIG_BYTES, BIG_FILE, FOLDER, FTP_HOSTILE_NAMES, UNSENDABLE_NAMES, localSource, makeTree, serve, type Tree} from './fixtures.js'
import {ftpTransport} from './index.js'

const identity = new Identity(generateKeyPair())

function options(port: number, extra: Partial<ConnectOptions> = {}): ConnectOptions {
  return {host: '127.0.0.1', port, identity, concurrency: 2, timeoutMs: 5000, ...extra}
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

async function rejectsWith(p: Promise<unknown> | (() => Promise<unknown>), code: ErrorCode): Promise<void> {
  await assert.rejects(typeof p === 'function' ? p() : p, (err: unknown) => {
    assert.ok(isFpeerError(err), `not a FpeerError: ${String(err)}`)
    assert.equal(err.code, code, err.message)
    return true
  })
}

/** Counts the file streams open at once and remembers who asked. */
class CountingSource implements FileSource {
  open_ = 0
  maxOpen = 0
  readonly whos: AccessContext[] = []
  constructor(readonly base: FileSource) {}
  folders(who: AccessContext) {
    this.whos.push(who)
    return this.base.folders(who)
  }
  stat(f: string, p: string, who: AccessContext) {
    this.whos.push(who)
    return this.base.stat(f, p, who)
  }
  list(f: string, p: string, who: AccessContext) {
    this.whos.push(who)
    return this.base.list(f, p, who)
  }
  async open(f: string, p: string, who: AccessContext, range?: {start?: number; end?: number}) {
    this.whos.push(who)
    const opened = await this.base.open(f, p, who, range)
    this.open_++
    this.maxOpen = Math.max(this.maxOpen, this.open_)
    // Done once its last byte is read ('end') or once the server destroys it. A large file is
    // read by positional reads (positionalReader), so its stream never ends: the server
    // destroys it before the 226, and only then may the client start its next transfer.
    // Counting to 'close' (the fd closed in the thread pool, later on a loaded machine) counted
    // the finished one as still open: CI on Node 26 saw 3 at once with a bound of 2.
    let done = false
    const finish = () => {
      if (!done) this.open_--
      done = true
    }
    const stream = opened.stream
    const destroy = stream.destroy.bind(stream)
    stream.destroy = (err?: Error) => {
      finish()
      return destroy(err)
    }
    stream.once('end', finish)
    stream.once('close', finish)
    return opened
  }
}

describe('FTP client', {timeout: 600_000}, () => {
  let tree: Tree
  let source: CountingSource
  let server: TransportServer
  let big: Buffer
  before(async () => {
    tree = await makeTree()
    source = new CountingSource(localSource(tree))
    server = await serve(source)
    big = await readFile(path.join(tree.root, BIG_FILE))
  })
  after(async () => {
    await server.close()
    await tree.dispose()
  })

  it('runs at most `concurrency` transfers at once and queues the rest', async () => {
    const client = await connectFtp(options(server.port, {concurrency: 2}))
    try {
      source.maxOpen = 0
      const results = await Promise.all(
        Array.from({length: 6}, async () => {
          const {stream, size} = await client.get(FOLDER, BIG_FILE)
          assert.equal(size, BIG_BYTES)
          // Read slowly, so transfers overlap and the bound is what limits them.
          await new Promise((r) => setTimeout(r, 150))
          return readAll(stream)
        }),
      )
      for (const r of results) assert.ok(r.equals(big))
      // The bound is the property: never more than `concurrency` at once. (Exactly 2 is usual;
      // on a loaded machine a second login may be refused or slow, and the pool then makes do
      // with one rather than fail a file.)
      assert.ok(source.maxOpen >= 1 && source.maxOpen <= 2, `open at once: ${source.maxOpen}`)
    } finally {
      await client.close()
    }
  })

  it('binds control and data connections to localAddress', async () => {
    const client = await connectFtp(options(server.port, {localAddress: '127.0.0.2'}))
    try {
      source.whos.length = 0
      const {stream} = await client.get(FOLDER, FTP_HOSTILE_NAMES[0]!)
      assert.equal((await readAll(stream)).toString(), `file 0: ${FTP_HOSTILE_NAMES[0]}\n`)
      assert.ok(source.whos.length > 0)
      // The server only accepts a data connection from the control connection's address,
      // so this transfer working at all proves the data socket was bound too.
      for (const who of source.whos) assert.equal(who.address, '127.0.0.2')
    } finally {
      await client.close()
    }
  })

  it('refuses names FTP cannot carry with E_PATH_UNSAFE before sending anything', async () => {
    const client = await connectFtp(options(server.port))
    try {
      await rejectsWith(client.get(FOLDER, 'new\nline.txt'), 'E_PATH_UNSAFE')
      await rejectsWith(client.get(FOLDER, 'x\r\nDELE y'), 'E_PATH_UNSAFE')
      assert.equal((await readAll((await client.get(FOLDER, 'empty.bin')).stream)).length, 0)
    } finally {
      await client.close()
    }
  })

  it('declares the names it cannot carry (canName), so core skips them instead of failing the exchange', () => {
    for (const name of UNSENDABLE_NAMES) assert.equal(ftpTransport.canName!(name), false, JSON.stringify(name))
    for (const name of ['a b.txt', 'tab\there.txt', '100% #1.txt', 'dir/ünï.md', 'x\u001b]0;t\u0007'])
      assert.equal(ftpTransport.canName!(name), true, JSON.stringify(name))
  })

  it('reconnects when the server dropped a parked connection', async () => {
    const impatient = await serve(source, {idleTimeoutMs: 1000})
    const client = await connectFtp(options(impatient.port, {concurrency: 1}))
    try {
      assert.equal((await readAll((await client.get(FOLDER, 'empty.bin')).stream)).length, 0)
      await new Promise((r) => setTimeout(r, 2500))
      const {stream} = await client.get(FOLDER, BIG_FILE)
      assert.ok((await readAll(stream)).equals(big))
    } finally {
      await client.close()
      await impatient.close()
    }
  })

  it('a transfer cut before its first byte on a parked connection is E_CONNECTION_LOST, never fetched again', async () => {
    // The server answers 150, its read fails at once, it closes the data connection and sends
    // 451: no byte ever reaches the client. This once raced with replacing a dead parked
    // connection, and the file was quietly fetched a second time and read as whole.
    const faulty = new FaultySource(localSource(tree), {drop: new Map([[BIG_FILE, {times: 1, afterBytes: 0}]])})
    const cutting = await serve(faulty)
    const client = await connectFtp(options(cutting.port, {concurrency: 1}))
    try {
      await rejectsWith(async () => readAll((await client.get(FOLDER, BIG_FILE)).stream), 'E_CONNECTION_LOST')
      assert.equal(faulty.opens.filter((o) => o.path === BIG_FILE).length, 1, 'the cut file was opened again inside one get()')
      const {stream} = await client.get(FOLDER, BIG_FILE)
      assert.ok((await readAll(stream)).equals(big))
    } finally {
      await client.close()
      await cutting.close()
    }
  })

  it('a reader that stops early frees the slot for the next transfer', async () => {
    const client = await connectFtp(options(server.port, {concurrency: 1}))
    try {
      const first = await client.get(FOLDER, BIG_FILE)
      first.stream.destroy()
      const {stream} = await client.get(FOLDER, BIG_FILE, {offset: 5})
      assert.ok((await readAll(stream)).equals(big.subarray(5)))
    } finally {
      await client.close()
    }
  })

  it('an abort signal ends the transfer; the client still works', async () => {
    const client = await connectFtp(options(server.port, {concurrency: 1}))
    try {
      const ac = new AbortController()
      const {stream} = await client.get(FOLDER, BIG_FILE, {signal: ac.signal})
      const it = stream[Symbol.asyncIterator]()
      await it.next()
      ac.abort()
      await rejectsWith(async () => {
        for (let r = await it.next(); !r.done; r = await it.next());
      }, 'E_TRANSFER')
      const aborted = new AbortController()
      aborted.abort()
      await rejectsWith(client.get(FOLDER, BIG_FILE, {signal: aborted.signal}), 'E_TRANSFER')
      assert.ok((await readAll((await client.get(FOLDER, BIG_FILE)).stream)).equals(big))
    } finally {
      await client.close()
    }
  })

  it('a large file arrives in views of a few buffers that come back by release(); one kept is never overwritten', async () => {
    const many = Buffer.from(Array.from({length: 40 << 20}, (_, i) => (i * 7 + (i >> 12)) & 0xff))
    const file = path.join(tree.root, 'many.bin')
    await writeFile(file, many)
    const client = await connectFtp(options(server.port, {concurrency: 1}))
    try {
      const got = await client.get(FOLDER, 'many.bin')
      assert.ok(got.release, 'a large get lets its chunks be released')
      const {buffers, keptIntact} = await readReleasing(got, many)
      assert.ok(keptIntact, 'the chunk never released is intact')
      assert.ok(buffers <= 14, `${buffers} buffers for 40 MiB read with releases`)
      // The connection goes back to the pool after a whole file, and serves the next one.
      assert.ok((await readAll((await client.get(FOLDER, BIG_FILE)).stream)).equals(big))
    } finally {
      await client.close()
      await rm(file)
    }
  })

  it('close() fails waiting gets, is safe twice, and later gets fail', async () => {
    // Larger than what the reader buffers before it stops the data connection (a few MiB), so the unread transfer is still running at close().
    const huge = path.join(tree.root, 'huge.bin')
    await writeFile(huge, Buffer.alloc(48 << 20, 5))
    try {
      const client = await connectFtp(options(server.port, {concurrency: 1}))
      const busy = await client.get(FOLDER, 'huge.bin')
      const waiting = client.get(FOLDER, BIG_FILE)
      await new Promise((r) => setTimeout(r, 50))
      await client.close()
      await client.close()
      await rejectsWith(waiting, 'E_STATE')
      await rejectsWith(readAll(busy.stream), 'E_CONNECTION_LOST')
      await rejectsWith(client.get(FOLDER, BIG_FILE), 'E_STATE')
    } finally {
      await rm(huge)
    }
  })
})

describe('FTP client against misbehaving servers', {timeout: 60_000}, () => {
  it('a server that never greets is E_TIMEOUT', async () => {
    const sockets = new Set<Socket>()
    const silent = createServer((s) => {
      sockets.add(s)
      s.on('error', () => {})
    })
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    try {
      const started = Date.now()
      await rejectsWith(connectFtp(options((silent.address() as {port: number}).port, {timeoutMs: 300})), 'E_TIMEOUT')
      assert.ok(Date.now() - started < 3000)
    } finally {
      for (const s of sockets) s.destroy()
      await new Promise<void>((r) => silent.close(() => r()))
    }
  })

  it('a server that hangs up at once is E_CONNECT', async () => {
    const rude = createServer((s) => s.destroy())
    await new Promise<void>((r) => rude.listen(0, '127.0.0.1', r))
    try {
      await rejectsWith(connectFtp(options((rude.address() as {port: number}).port)), 'E_CONNECT')
    } finally {
      await new Promise<void>((r) => rude.close(() => r()))
    }
  })

  it('a server that stalls mid-file is E_TIMEOUT, not a short clean end', async () => {
    let tree: Tree | undefined
    let server: TransportServer | undefined
    try {
      tree = await makeTree()
      // A source that sends one chunk and then nothing, forever.
      const base = localSource(tree)
      const stalling: FileSource = {
        folders: (w) => base.folders(w),
        stat: (f, p, w) => base.stat(f, p, w),
        list: (f, p, w) => base.list(f, p, w),
        async open(f, p, w, range) {
          const opened = await base.open(f, p, w, range)
          const {Readable} = await import('node:stream')
          const stream = new Readable({read() {}})
          stream.push(Buffer.alloc(1000))
          opened.stream.destroy()
          return {...opened, stream}
        },
      }
      server = await serve(stalling)
      const client = await connectFtp(options(server.port, {timeoutMs: 500}))
      try {
        const {stream} = await client.get(FOLDER, BIG_FILE)
        await rejectsWith(readAll(stream), 'E_TIMEOUT')
      } finally {
        await client.close()
      }
    } finally {
      await server?.close()
      await tree?.dispose()
    }
  })
})
