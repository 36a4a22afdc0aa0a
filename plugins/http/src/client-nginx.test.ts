// fpeer's HTTP client against a real nginx: hostile names, resume with and without Range support, errors.
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {after, before, describe, it} from 'node:test'
import {Identity, fetchFiles, generateKeyPair, isFpeerError, type TransferClient} from '@fpeer/core'
import {HOSTILE_NAMES, createFixture, listTree, sameBytes, type Fixture} from '@fpeer/core/conformance'
import {connectHttp} from './client.js'
import {freePort, waitForPort} from '@fpeer/core/testing'

const NGINX = '/usr/sbin/nginx'

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

async function rejectsCode(fn: () => Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(fn, (err: unknown) => {
    assert.ok(isFpeerError(err), `not a FpeerError: ${String(err)}`)
    assert.equal(err.code, code, err.message)
    return true
  })
}

describe('fpeer HTTP client against nginx', {timeout: 600_000}, () => {
  let fx: Fixture
  let work: string
  let nginx: ChildProcess
  let port: number
  let noRangePort: number
  let slowPort: number
  const clients: TransferClient[] = []
  const client = async (p = port, extra: {localAddress?: string; concurrency?: number} = {}) => {
    const c = await connectHttp({
      host: '127.0.0.1',
      port: p,
      identity: new Identity(generateKeyPair()),
      concurrency: extra.concurrency ?? 4,
      timeoutMs: 10_000,
      ...(extra.localAddress ? {localAddress: extra.localAddress} : {}),
    })
    clients.push(c)
    return c
  }
  const src = (rel: string) => path.join(fx.root, ...rel.split('/'))

  before(async () => {
    fx = await createFixture({largeBytes: 8 << 20, manyFiles: 50})
    work = await mkdtemp(path.join(tmpdir(), 'fpeer-nginx-'))
    ;[port, noRangePort, slowPort] = [await freePort(), await freePort(), await freePort()]
    const t = (name: string) => JSON.stringify(path.join(work, name))
    // The served root is the fixture's base, so its `share` directory is the fpeer folder.
    const conf = `daemon off;
master_process off;
pid ${t('nginx.pid')};
error_log ${t('error.log')} info;
events { worker_connections 64; }
http {
  access_log ${t('access.log')};
  client_body_temp_path ${t('body')};
  proxy_temp_path ${t('proxy')};
  fastcgi_temp_path ${t('fastcgi')};
  uwsgi_temp_path ${t('uwsgi')};
  scgi_temp_path ${t('scgi')};
  default_type application/octet-stream;
  server { listen 127.0.0.1:${port}; root ${JSON.stringify(fx.base)}; }
  server { listen 127.0.0.1:${noRangePort}; root ${JSON.stringify(fx.base)}; max_ranges 0; }
  server { listen 127.0.0.1:${slowPort}; root ${JSON.stringify(fx.base)}; limit_rate 256k; }
}
`
    await writeFile(path.join(work, 'nginx.conf'), conf)
    nginx = spawn(NGINX, ['-p', work, '-c', path.join(work, 'nginx.conf'), '-e', path.join(work, 'error.log')], {stdio: ['ignore', 'ignore', 'pipe']})
    let stderr = ''
    nginx.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    try {
      await waitForPort(port, {child: nginx, timeoutMs: 10_000, name: 'nginx'})
    } catch (err) {
      throw new Error(`${(err as Error).message}: ${stderr}${await readFile(path.join(work, 'error.log'), 'utf8').catch(() => '')}`)
    }
  })

  after(async () => {
    for (const c of clients) await c.close()
    if (nginx && nginx.exitCode === null && nginx.signalCode === null) {
      const exited = new Promise((resolve) => nginx.once('exit', resolve))
      nginx.kill('SIGTERM')
      await exited
    }
    if (work) await rm(work, {recursive: true, force: true})
    await fx?.dispose()
  })

  it('fetchFiles lands hostile names, empty, large and many files from nginx, byte for byte', async () => {
    const dest = await fx.makeDest()
    const files = [...fx.entries.values()].filter((e) => e.path !== 'secret.txt')
    const c = await client(port, {concurrency: 6})
    // HTTP declares batching, as core passes it: nginx has no batch endpoint, so this also covers the fall back to GET.
    const result = await fetchFiles({client: c, batch: true, folder: 'share', files, mode: 'land', root: dest, concurrency: 6, resume: true})
    assert.equal(result.fetched, files.length)
    assert.deepEqual(await listTree(dest), files.map((f) => f.path).sort())
    for (const f of files) assert.ok(await sameBytes(src(f.path), path.join(dest, ...f.path.split('/'))), `${f.path} differs`)
    for (const name of HOSTILE_NAMES)
      assert.ok(
        files.some((f) => f.path === name),
        `fixture lacks ${name}`,
      )
  })

  it('get() with an offset returns exactly the rest of the file (206 from nginx)', async () => {
    const whole = await readFile(src('resume.bin'))
    const c = await client()
    for (const offset of [0, 1, 65_536, whole.length - 1, whole.length]) {
      const {stream, size} = await c.get('share', 'resume.bin', {offset})
      assert.equal(size, whole.length)
      assert.ok((await readAll(stream)).equals(whole.subarray(offset)), `offset ${offset}`)
    }
  })

  it('get() with an offset is right when the server ignores Range and answers 200', async () => {
    const whole = await readFile(src('resume.bin'))
    const c = await client(noRangePort)
    for (const offset of [1, 65_537, whole.length - 1, whole.length]) {
      const {stream} = await c.get('share', 'resume.bin', {offset})
      assert.ok((await readAll(stream)).equals(whole.subarray(offset)), `offset ${offset}`)
    }
  })

  it('404 is E_NOT_FOUND; a redirect is E_TRANSFER and is not followed', async () => {
    const c = await client()
    await rejectsCode(() => c.get('share', 'no such file.txt'), 'E_NOT_FOUND')
    // nginx answers a directory without its trailing slash with 301.
    await rejectsCode(() => c.get('share', 'sub dir'), 'E_TRANSFER')
  })

  it('an unsafe path is refused before any request reaches the server', async () => {
    const c = await client()
    const log = path.join(work, 'access.log')
    const before = (await readFile(log, 'utf8')).length
    for (const bad of ['../outside/secret', '/etc/passwd', 'a/../../x', '']) await rejectsCode(() => c.get('share', bad), 'E_PATH_UNSAFE')
    assert.equal((await readFile(log, 'utf8')).length, before, 'a request was sent')
  })

  it('connects from the requested local address', async () => {
    const c = await client(port, {localAddress: '127.0.0.2'})
    await readAll((await c.get('share', HOSTILE_NAMES[0]!)).stream)
    const lines = (await readFile(path.join(work, 'access.log'), 'utf8')).trim().split('\n')
    assert.match(lines[lines.length - 1]!, /^127\.0\.0\.2 /)
  })

  // Last: it kills nginx.
  it('nginx dying mid-body surfaces as E_CONNECTION_LOST', async () => {
    const c = await client(slowPort)
    const {stream} = await c.get('share', 'large.bin')
    await rejectsCode(async () => {
      let got = 0
      for await (const chunk of stream) {
        got += (chunk as Buffer).length
        if (got > 0 && nginx.exitCode === null && nginx.signalCode === null) nginx.kill('SIGKILL')
      }
    }, 'E_CONNECTION_LOST')
  })
})
