// The batch endpoint on the wire, with real curl: literal frames, refusals, limits, and fetchFiles falling back to GET.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Identity, LocalFileSource, generateKeyPair, type TransportServer} from '@fpeer/core'
import {parseFrame} from './client.js'
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
