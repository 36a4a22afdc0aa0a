// The batch endpoint on the wire, with real curl: literal frames, refusals, limits, and fetchFiles falling back to GET; the client's reading of oversized frames.
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {execFile} from 'node:child_process'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {type FpeerError, Identity, LocalFileSource, generateKeyPair, type TransportServer} from '@fpeer/core'
import {connectHttp, parseFrame} from './client.js'
import {serveHttp} from './server.js'

function curl(args: string[], input?: string): Promise<{code: number; out: string}> {
  return new Promise((resolve) => {
    const child = execFile('/usr/bin/curl', ['-sS', ...args], {timeout: 30_000}, (err, stdout) => resolve({code: err ? 1 : 0, out: stdout}))
    if (input !== undefined) child.stdin!.end(input)
  })
}

describe('HTTP batch endpoint', {timeout: 60_000}, () => {
  let dir: string
  let server: TransportServer
  let base: string

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fpeer-batch-'))
    await mkdir(path.join(dir, 'docs', 'sub dir'), {recursive: true})
    await writeFile(path.join(dir, 'docs', 'a.txt'), 'hello')
    await writeFile(path.join(dir, 'docs', 'sub dir', '100% #1.txt'), 'percent\n')
    await writeFile(path.join(dir, 'docs', 'empty'), '')
    const source = new LocalFileSource(
      {root: (f) => (f === 'docs' ? path.join(dir, 'docs') : f === 'private' ? dir : undefined), mayRead: (f) => f === 'docs'},
      () => ['docs', 'private'],
    )
    server = await serveHttp({host: '127.0.0.1', port: 0, files: source, identity: new Identity(generateKeyPair())})
    base = `http://127.0.0.1:${server.port}`
  })
  after(async () => {
    await server.close()
    await rm(dir, {recursive: true, force: true})
  })

  it('streams the asked files in order, each framed as "<status> <size>\\n" and its bytes', async () => {
    const body = 'a.txt\nsub%20dir/100%25%20%231.txt\nmissing\nempty\n'
    const r = await curl(['--data-binary', '@-', '-H', 'content-type: text/plain', `${base}/docs/.fpeer/batch`], body)
    assert.equal(r.code, 0)
    assert.equal(r.out, '200 5\nhello200 8\npercent\n404 0\n200 0\n')
  })

  it('refuses traversal, encoded slashes and a folder the peer may not read, per file', async () => {
    const r = await curl(['--data-binary', '@-', `${base}/docs/.fpeer/batch`], '..%2F..%2Fetc%2Fpasswd\n../a.txt\n%zz\n')
    assert.equal(r.out, '404 0\n404 0\n404 0\n')
    const p = await curl(['--data-binary', '@-', `${base}/private/.fpeer/batch`], 'docs/a.txt\n')
    assert.equal(p.out, '403 0\n')
  })

  it('other POSTs are refused with 405', async () => {
    const r = await curl(['-o', '/dev/null', '-w', '%{http_code}', '--data-binary', 'x', `${base}/docs/a.txt`])
    assert.equal(r.out, '405')
  })

  it('batch bodies held at once share one server-wide budget: past it, 503 E_BUSY, and the budget comes back', async () => {
    const {port} = server
    // Eight unfinished bodies of just under 4 MiB each hold about 31 MiB of the 32 MiB budget.
    const held: net.Socket[] = []
    const part = Buffer.alloc(4 * 1024 * 1024 - 64 * 1024, 0x61)
    try {
      for (let i = 0; i < 8; i++) {
        const s = net.connect({host: '127.0.0.1', port, localAddress: `127.0.0.${10 + i}`})
        s.on('error', () => {})
        held.push(s)
        s.write(`POST /docs/.fpeer/batch HTTP/1.1\r\nHost: x\r\nContent-Length: ${4 * 1024 * 1024}\r\n\r\n`)
        await new Promise<void>((resolve) => s.write(part, () => resolve()))
      }
      const busy = await curl(['-o', '/dev/null', '-w', '%{http_code}', '--data-binary', '@-', `${base}/docs/.fpeer/batch`], 'a.txt\n'.repeat(400_000))
      assert.equal(busy.out, '503')
    } finally {
      for (const s of held) s.destroy()
    }
    // Once those connections are gone, the same request gets through (413 here: too many files, but read).
    let code = ''
    for (let i = 0; i < 100 && code !== '413'; i++) {
      code = (await curl(['-o', '/dev/null', '-w', '%{http_code}', '--data-binary', '@-', `${base}/docs/.fpeer/batch`], 'a.txt\n'.repeat(400_000))).out
      if (code !== '413') await new Promise((r) => setTimeout(r, 50))
    }
    assert.equal(code, '413')
  })

  it('a request naming too many files is refused with 413', async () => {
    const many = Array.from({length: 5000}, (_, i) => `f${i}`).join('\n')
    const r = await curl(['-o', '/dev/null', '-w', '%{http_code}', '--data-binary', '@-', `${base}/docs/.fpeer/batch`], many)
    assert.equal(r.out, '413')
  })
})

describe('batch frame lines', () => {
  const at = (line: string) => {
    const b = Buffer.from(line, 'latin1')
    return parseFrame(b, b.indexOf(0x0a))
  }
  it('reads `<status> <size>` exactly', () => {
    assert.deepEqual(at('200 4096\nrest'), {status: 200, size: 4096})
    assert.deepEqual(at('404 0\n'), {status: 404, size: 0})
    assert.deepEqual(at('200 999999999999\n'), {status: 200, size: 999999999999})
  })
  it('refuses anything else', () => {
    for (const bad of ['200 \n', '20 5\n', '2000 5\n', '200  5\n', '200 -5\n', '200 5 \n', '200 1234567890123\n', 'abc 5\n', '200\t5\n', '200 +5\n', '\n'])
      assert.equal(at(bad), undefined, JSON.stringify(bad))
  })
})

describe('getMany() against a server whose files grew since they were listed', {timeout: 60_000}, () => {
  /** A server that answers every batch POST with `reply`, as raw frames; on 127.0.0.43 (this suite's own address). */
  async function withReply(reply: Buffer, fn: (port: number) => Promise<void>): Promise<void> {
    const server = http.createServer((req, res) => {
      req.resume()
      req.once('end', () => {
        res.writeHead(200, {'content-type': 'application/vnd.fpeer.batch'})
        res.end(reply)
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.43', resolve))
    try {
      await fn((server.address() as net.AddressInfo).port)
    } finally {
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    }
  }
  const frame = (status: number, body: Buffer) => Buffer.concat([Buffer.from(`${status} ${body.length}\n`), body])
  const collect = async (port: number, items: Array<{path: string; size: number}>) => {
    const client = await connectHttp({host: '127.0.0.43', port, identity: new Identity(generateKeyPair()), concurrency: 1, timeoutMs: 10_000})
    const got: Array<string | number> = []
    try {
      for await (const item of client.getMany!('docs', items)) got.push('error' in item ? item.error.code : item.data.length)
    } catch (err) {
      got.push(`thrown ${(err as FpeerError).code}`)
    } finally {
      await client.close()
    }
    return got
  }

  it('a reply that arrives cut anywhere (inside frame lines, across bodies, one byte at a time) gives every file byte for byte', async () => {
    const files = [randomBytes(1000), randomBytes(300_000), Buffer.alloc(0), randomBytes(5), randomBytes(70_000)]
    const reply = Buffer.concat([
      frame(200, files[0]!),
      frame(200, files[1]!),
      frame(200, files[2]!),
      frame(404, Buffer.alloc(0)),
      frame(200, files[3]!),
      frame(200, files[4]!),
    ])
    const server = http.createServer((req, res) => {
      req.resume()
      req.once('end', async () => {
        res.writeHead(200, {'content-type': 'application/vnd.fpeer.batch', 'content-length': reply.length})
        res.socket?.setNoDelay(true)
        const sizes = [1, 3, 7, 1, 2, 1000, 65_541, 9, 1, 40_000]
        for (let at = 0, i = 0; at < reply.length; i++) {
          const piece = reply.subarray(at, at + sizes[i % sizes.length]!)
          at += piece.length
          // Each piece reaches the socket before the next is written, so the client reads it apart more often than not.
          await new Promise<void>((resolve) => res.write(piece, () => setImmediate(resolve)))
        }
        res.end()
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.43', resolve))
    const client = await connectHttp({
      host: '127.0.0.43',
      port: (server.address() as net.AddressInfo).port,
      identity: new Identity(generateKeyPair()),
      concurrency: 1,
      timeoutMs: 10_000,
    })
    try {
      const items = [...files.slice(0, 3), Buffer.alloc(1), ...files.slice(3)].map((b, i) => ({path: `f${i}`, size: b.length}))
      const got: Array<Buffer | string> = []
      for await (const item of client.getMany!('docs', items)) got.push('error' in item ? item.error.code : Buffer.from(item.data))
      assert.equal(got.length, 6)
      assert.equal(got[3], 'E_NOT_FOUND')
      for (const [i, want] of [0, 1, 2, 4, 5].entries()) assert.ok((got[want] as Buffer).equals(files[i]!), `file ${want}`)
    } finally {
      await client.close()
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    }
  })

  it('an oversized body fails alone (E_SIZE_MISMATCH): it is dropped and the files after it arrive', async () => {
    const reply = Buffer.concat([
      frame(200, Buffer.alloc(3, 1)),
      frame(200, Buffer.alloc(300_000, 2)),
      frame(404, Buffer.alloc(0)),
      frame(200, Buffer.alloc(5, 3)),
    ])
    const items = [
      {path: 'a', size: 3},
      {path: 'grew', size: 10},
      {path: 'gone', size: 1},
      {path: 'b', size: 5},
    ]
    await withReply(reply, async (port) => assert.deepEqual(await collect(port, items), [3, 'E_SIZE_MISMATCH', 'E_NOT_FOUND', 5]))
  })

  it('a frame past the protocol’s 4 MiB per file, or more dropped bytes than a batch holds, ends the reply: E_TRANSFER after that item’s own error', async () => {
    const huge = Buffer.concat([frame(200, Buffer.alloc((4 << 20) + 1)), frame(200, Buffer.alloc(5))])
    await withReply(huge, async (port) =>
      assert.deepEqual(
        await collect(port, [
          {path: 'a', size: 10},
          {path: 'b', size: 5},
        ]),
        ['E_SIZE_MISMATCH', 'thrown E_TRANSFER'],
      ),
    )
    // Three oversized bodies of 3 MiB each: the third passes the 8 MiB a batch may make the client drop.
    const many = Buffer.concat([1, 2, 3, 4].map(() => frame(200, Buffer.alloc(3 << 20))))
    const items = [1, 2, 3, 4].map((i) => ({path: `f${i}`, size: 10}))
    await withReply(many, async (port) =>
      assert.deepEqual(await collect(port, items), ['E_SIZE_MISMATCH', 'E_SIZE_MISMATCH', 'E_SIZE_MISMATCH', 'thrown E_TRANSFER']),
    )
  })
})
