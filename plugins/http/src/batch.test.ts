// The batch endpoint on the wire, with real curl: literal frames, refusals, limits, and fetchFiles falling back to GET.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Identity, LocalFileSource, generateKeyPair, type TransportServer} from '@fpeer/core'
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
    const source = new LocalFileSource({root: (f) => (f === 'docs' ? path.join(dir, 'docs') : f === 'private' ? dir : undefined), mayRead: (f) => f === 'docs'}, () => ['docs', 'private'])
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

  it('a request naming too many files is refused with 413', async () => {
    const many = Array.from({length: 5000}, (_, i) => `f${i}`).join('\n')
    const r = await curl(['-o', '/dev/null', '-w', '%{http_code}', '--data-binary', '@-', `${base}/docs/.fpeer/batch`], many)
    assert.equal(r.out, '413')
  })
})
