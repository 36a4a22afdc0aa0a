// fpeer's HTTP server against the real curl and wget: hostile names by URL, ranges, HEAD, methods, traversal.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Identity, LocalFileSource, generateKeyPair, type TransportServer} from '@fpeer/core'
import {HOSTILE_NAMES, createFixture, listTree, sameBytes, type Fixture} from '@fpeer/core/conformance'
import {serveHttp} from './server.js'
import {encodeSegment} from './url.js'
import {runTool as run} from '@fpeer/core/testing'

const CURL = '/usr/bin/curl'
const WGET = '/usr/bin/wget'

let headerFiles = 0

/** curl's status code, body and response headers for a raw target; `--path-as-is` sends `..` untouched. */
async function curl(fx: Fixture, url: string, ...extra: string[]): Promise<{status: number; body: Buffer; headers: string}> {
  const headerFile = path.join(fx.base, `headers-${++headerFiles}`)
  const r = await run(CURL, ['-sS', '--path-as-is', '-D', headerFile, '-w', '\n%{http_code}', ...extra, url])
  assert.equal(r.code, 0, `curl ${url} failed (${r.code}): ${r.stderr}`)
  const cut = r.stdout.lastIndexOf('\n')
  return {status: Number(r.stdout.subarray(cut + 1).toString()), body: r.stdout.subarray(0, cut), headers: await readFile(headerFile, 'utf8')}
}

describe('fpeer HTTP server with curl and wget', {timeout: 600_000}, () => {
  let fx: Fixture
  let server: TransportServer
  let origin: string
  const url = (rel: string) => `${origin}/share/${rel.split('/').map(encodeSegment).join('/')}`
  const src = (rel: string) => path.join(fx.root, ...rel.split('/'))

  before(async () => {
    fx = await createFixture({largeBytes: 2 << 20, manyFiles: 5})
    const files = new LocalFileSource({root: (f) => (f === 'share' ? fx.root : undefined), mayRead: () => true}, () => ['share'])
    server = await serveHttp({host: '127.0.0.1', port: 0, files, identity: new Identity(generateKeyPair())})
    origin = `http://127.0.0.1:${server.port}`
  })
  after(async () => {
    await server?.close()
    await fx?.dispose()
  })

  it('curl fetches every hostile name by its percent-encoded URL', async () => {
    for (const name of HOSTILE_NAMES) {
      const r = await curl(fx, url(name), '-f')
      assert.equal(r.status, 200, name)
      assert.ok(r.body.equals(await readFile(src(name))), `bytes of ${name}`)
    }
  })

  it('wget fetches hostile names by URL', async () => {
    const dest = await fx.makeDest()
    for (const [i, name] of HOSTILE_NAMES.entries()) {
      const out = path.join(dest, `out-${i}`)
      const r = await run(WGET, ['-q', '-O', out, url(name)])
      assert.equal(r.code, 0, `wget ${name}: ${r.stderr}`)
      assert.ok(await sameBytes(src(name), out), `bytes of ${name}`)
    }
  })

  it('wget -r mirrors the whole folder through the HTML listings', async () => {
    const dest = await fx.makeDest()
    // nocontrol: wget would otherwise escape UTF-8 continuation bytes 0x80-0x9f (the NFD accent).
    const r = await run(WGET, [
      '-q',
      '-r',
      '-l',
      'inf',
      '-np',
      '-nH',
      '--cut-dirs=1',
      '-e',
      'robots=off',
      '--restrict-file-names=nocontrol',
      '-R',
      'index.html*',
      '-P',
      dest,
      `${origin}/share/`,
    ])
    assert.equal(r.code, 0, `wget -r: ${r.stderr}`)
    // wget rewrites some local names on its own (it decodes `%XX` once more and trims very
    // long names), so names are compared where wget keeps them and contents everywhere: every
    // fixture file has distinct content, so a wrong or missing URL shows as a missing hash.
    const got = await listTree(dest)
    const want = [...fx.entries.values()]
    const hashes = await Promise.all(
      got.map(async (rel) =>
        createHash('sha256')
          .update(await readFile(path.join(dest, ...rel.split('/'))))
          .digest('hex'),
      ),
    )
    assert.deepEqual(hashes.sort(), want.map((e) => e.sha256!).sort())
    for (const {path: rel} of want) {
      if (rel.includes('%') || Buffer.byteLength(path.posix.basename(rel)) > 200) continue
      assert.ok(got.includes(rel), `wget did not store ${rel} under its name`)
      assert.ok(await sameBytes(src(rel), path.join(dest, ...rel.split('/'))), `bytes of ${rel}`)
    }
  })

  it('curl -r gets 206 with the exact slice and Content-Range; an impossible range is 416', async () => {
    const name = 'resume.bin'
    const whole = await readFile(src(name))
    const cases: Array<[string, number, number]> = [
      ['5-9', 5, 9],
      ['1000-', 1000, whole.length - 1],
      ['-100', whole.length - 100, whole.length - 1],
      [`0-${whole.length + 50}`, 0, whole.length - 1],
    ]
    for (const [spec, start, end] of cases) {
      const r = await curl(fx, url(name), '-r', spec)
      assert.equal(r.status, 206, spec)
      assert.ok(r.body.equals(whole.subarray(start, end + 1)), `bytes for ${spec}`)
      assert.match(r.headers, new RegExp(`^content-range: bytes ${start}-${end}/${whole.length}\\r$`, 'im'))
    }
    const bad = await curl(fx, url(name), '-r', `${whole.length}-`)
    assert.equal(bad.status, 416)
    assert.match(bad.headers, new RegExp(`^content-range: bytes \\*/${whole.length}\\r$`, 'im'))
  })

  it('HEAD answers with length, type, ranges and date, and no body', async () => {
    const name = HOSTILE_NAMES[2]!
    const r = await curl(fx, url(name), '-I')
    assert.equal(r.status, 200)
    // curl -I prints the headers as its output: anything beyond them would be a body.
    assert.equal(r.body.toString(), r.headers)
    assert.match(r.headers, new RegExp(`^content-length: ${(await readFile(src(name))).length}\\r$`, 'im'))
    assert.match(r.headers, /^content-type: application\/octet-stream\r$/im)
    assert.match(r.headers, /^accept-ranges: bytes\r$/im)
    assert.match(r.headers, /^last-modified: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r$/im)
  })

  it('refuses every method but GET and HEAD with 405 and Allow', async () => {
    for (const method of ['PUT', 'POST', 'DELETE', 'PATCH']) {
      const r = await curl(fx, url(HOSTILE_NAMES[0]!), '-X', method, '--data-binary', 'overwrite')
      assert.equal(r.status, 405, method)
      assert.match(r.headers, /^allow: GET, HEAD\r$/im)
    }
    assert.ok((await readFile(src(HOSTILE_NAMES[0]!), 'utf8')).startsWith('file 0:'), 'file was changed')
  })

  it('traversal attempts sent raw get 404 or 400 and never the outside file', async () => {
    const targets = [
      '/share/../outside/secret',
      '/share/sub%20dir/../../outside/secret',
      '/share/%2e%2e/outside/secret',
      '/share/%2E%2E/%2E%2E/etc/passwd',
      '/share/..%2foutside%2fsecret',
      '/share/%2fetc%2fpasswd',
      '/../outside/secret',
      '/%2e%2e/outside/secret',
      '/share//etc/passwd',
      '/share/escape.txt',
      '/share/bad%zzescape',
      '/share/a%00b',
    ]
    for (const target of targets) {
      const r = await curl(fx, `${origin}${target}`)
      assert.ok(r.status === 404 || r.status === 400, `${target} gave ${r.status}`)
      assert.ok(!r.body.toString().includes('outside the shared folder'), `${target} leaked the outside file`)
      assert.ok(!r.body.toString().includes('root:'), `${target} leaked /etc/passwd`)
    }
  })

  it('a directory redirects to its slash form and lists percent-encoded links', async () => {
    const redirect = await curl(fx, `${origin}/share/sub%20dir`)
    assert.equal(redirect.status, 301)
    assert.match(redirect.headers, /^location: \/share\/sub%20dir\/\r$/im)
    const listing = await curl(fx, `${origin}/share/`)
    assert.equal(listing.status, 200)
    const html = listing.body.toString()
    for (const href of ['./%23hash.txt', './100%25.txt', './%2520literal.txt', './what%3F.txt', './it%27s.txt', './say%20%22hi%22.txt', './sub%20dir/']) {
      assert.ok(html.includes(`href="${href}"`), `listing lacks ${href}`)
    }
    assert.ok(!html.includes('escape.txt'), 'a symlink leaving the folder is listed')
  })

  it('a missing file is 404 and an unknown folder is 404', async () => {
    assert.equal((await curl(fx, url('no such file'))).status, 404)
    assert.equal((await curl(fx, `${origin}/nope/x`)).status, 404)
  })
})
