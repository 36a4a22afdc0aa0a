// Tests for server.ts: path normalisation, listings, and what a misbehaving or nosy SSH client gets (raw ssh2 client).
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import ssh2 from 'ssh2'
import type {Client as SshClient, SFTPWrapper} from 'ssh2'
import {Identity, LocalFileSource, generateKeyPair, type TransportServer} from '@fpeer/core'
import {privateKeyPem} from './keys.js'
import {longname, normalizeSftpPath, serveSftp, type SftpServerLimits} from './server.js'

describe('normalizeSftpPath', () => {
  const cases: Array<[string, string[]]> = [
    ['', []],
    ['/', []],
    ['.', []],
    ['/..', []],
    ['../../..', []],
    ['/share', ['share']],
    ['share/a b', ['share', 'a b']],
    ['//share///x//', ['share', 'x']],
    ['/share/../../etc/passwd', ['etc', 'passwd']],
    ['/share/./sub/../file', ['share', 'file']],
    ['/share/a\\..\\b', ['share', 'a\\..\\b']],
    ['/share/...', ['share', '...']],
  ]
  for (const [input, want] of cases) {
    it(`${JSON.stringify(input)} → ${JSON.stringify(want)}`, () => assert.deepEqual(normalizeSftpPath(input), want))
  }
})

describe('longname', () => {
  const now = Date.UTC(2026, 5, 15, 12, 0)
  it('formats files and directories like ls -l', () => {
    assert.equal(
      longname('a b.txt', {type: 'file', size: 1234, mtimeMs: Date.UTC(2026, 5, 1, 9, 5)}, now),
      '-r--r--r--    1 fpeer    fpeer        1234 Jun  1 09:05 a b.txt',
    )
    assert.equal(
      longname('old', {type: 'directory', size: 0, mtimeMs: Date.UTC(2020, 0, 9)}, now),
      'dr-xr-xr-x    1 fpeer    fpeer           0 Jan  9  2020 old',
    )
  })
  it('cannot be made to forge listing lines', () => {
    assert.equal(
      longname('x\n-rwxrwxrwx evil\r', {type: 'file', size: 1, mtimeMs: now}, now),
      '-r--r--r--    1 fpeer    fpeer           1 Jun 15 12:00 x?-rwxrwxrwx evil?',
    )
  })
})

function connect(port: number, config: Partial<ssh2.ConnectConfig>): Promise<SshClient> {
  return new Promise((resolve, reject) => {
    const c = new ssh2.Client()
    c.once('ready', () => resolve(c))
    c.once('error', reject)
    c.connect({host: '127.0.0.1', port, username: 'anyone', readyTimeout: 5000, ...config})
  })
}

function sftpOf(c: SshClient): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => c.sftp((err, s) => (err ? reject(err) : resolve(s))))
}

/** Calls an ssh2 SFTP method and resolves with its error code (0 = success). */
function codeOf(fn: (cb: (err?: (Error & {code?: number}) | null) => void) => void): Promise<number> {
  return new Promise((resolve) => fn((err) => resolve(err ? (err.code ?? -1) : 0)))
}

describe('the SFTP server with a raw ssh2 client', {timeout: 60_000}, () => {
  let base: string
  let server: TransportServer
  const serverId = new Identity(generateKeyPair())
  const clientId = new Identity(generateKeyPair())
  const limits: Partial<SftpServerLimits> = {maxHandlesPerSession: 4, idleTimeoutMs: 60_000}
  const login = {privateKey: privateKeyPem(clientId)}

  before(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'fpeer-sftp-server-'))
    await mkdir(path.join(base, 'share', 'dir'), {recursive: true})
    await writeFile(path.join(base, 'share', 'f.txt'), 'hello world\n')
    await writeFile(path.join(base, 'outside.txt'), 'secret\n')
    const files = new LocalFileSource({root: (f) => (f === 'share' ? path.join(base, 'share') : undefined), mayRead: () => true}, () => ['share'])
    server = await serveSftp({host: '127.0.0.1', port: 0, files, identity: serverId, admit: (who) => who.peer?.equals(clientId.id) === true}, limits)
  })

  after(async () => {
    await server?.close()
    await rm(base, {recursive: true, force: true})
  })

  it('refuses password, keyboard-interactive and unknown keys', async () => {
    await assert.rejects(connect(server.port, {password: 'x', authHandler: ['password']}), {level: 'client-authentication'})
    await assert.rejects(connect(server.port, {tryKeyboard: true, authHandler: ['keyboard-interactive']}), {level: 'client-authentication'})
    await assert.rejects(connect(server.port, {privateKey: privateKeyPem(new Identity(generateKeyPair())), authHandler: ['publickey']}), {
      level: 'client-authentication',
    })
  })

  it('refuses shells, commands and port forwarding', async () => {
    const c = await connect(server.port, login)
    try {
      await assert.rejects(new Promise((resolve, reject) => c.exec('cat /etc/passwd', (err, ch) => (err ? reject(err) : resolve(ch)))))
      await assert.rejects(new Promise((resolve, reject) => c.shell((err, ch) => (err ? reject(err) : resolve(ch)))))
      await assert.rejects(
        new Promise((resolve, reject) => c.forwardOut('127.0.0.1', 0, '127.0.0.1', server.port, (err, ch) => (err ? reject(err) : resolve(ch)))),
      )
    } finally {
      c.end()
    }
  })

  it('answers writes with PERMISSION_DENIED and survives nonsense requests', async () => {
    const c = await connect(server.port, login)
    try {
      const s = await sftpOf(c)
      const DENIED = 3
      assert.equal(await codeOf((cb) => s.open('/share/new.txt', 'w', (err) => cb(err))), DENIED)
      assert.equal(await codeOf((cb) => s.open('/share/f.txt', 'r+', (err) => cb(err))), DENIED)
      assert.equal(await codeOf((cb) => s.open('/share/f.txt', 'a', (err) => cb(err))), DENIED)
      assert.equal(await codeOf((cb) => s.mkdir('/share/d', cb)), DENIED)
      assert.equal(await codeOf((cb) => s.rmdir('/share/dir', cb)), DENIED)
      assert.equal(await codeOf((cb) => s.unlink('/share/f.txt', cb)), DENIED)
      assert.equal(await codeOf((cb) => s.rename('/share/f.txt', '/share/g.txt', cb)), DENIED)
      assert.equal(await codeOf((cb) => s.setstat('/share/f.txt', {mode: 0o777}, cb)), DENIED)
      assert.equal(await codeOf((cb) => s.symlink('/etc/passwd', '/share/l', cb)), DENIED)
      // Handles that were never issued, a closed one, an absurd READ length.
      const bogus = Buffer.from('nope')
      assert.notEqual(await codeOf((cb) => s.read(bogus, Buffer.alloc(10), 0, 10, 0, (err) => cb(err))), 0)
      assert.notEqual(await codeOf((cb) => s.close(bogus, cb)), 0)
      assert.notEqual(await codeOf((cb) => s.fstat(Buffer.from([0xff, 0xff, 0xff, 0xff]), (err) => cb(err))), 0)
      // Escapes land inside the virtual tree, never on disk outside it.
      assert.equal(await codeOf((cb) => s.stat('/../outside.txt', (err) => cb(err))), 2)
      assert.equal(await codeOf((cb) => s.stat('/share/../../outside.txt', (err) => cb(err))), 2)
      const real = await new Promise<string>((resolve, reject) => s.realpath('/share/../../..', (err, p) => (err ? reject(err) : resolve(p))))
      assert.equal(real, '/')
      // Still serving after all that.
      const data = await new Promise<Buffer>((resolve, reject) =>
        s.open('/share/f.txt', 'r', (err, h) => {
          if (err) return reject(err)
          s.read(h, Buffer.alloc(100), 0, 100, 6, (e, n, buf) => (e ? reject(e) : s.close(h, () => resolve(buf.subarray(0, n)))))
        }),
      )
      assert.equal(data.toString(), 'world\n')
    } finally {
      c.end()
    }
  })

  it('limits open handles per session', async () => {
    const c = await connect(server.port, login)
    try {
      const s = await sftpOf(c)
      const results = await Promise.all(
        Array.from({length: 8}, () => new Promise<Buffer | undefined>((resolve) => s.open('/share/f.txt', 'r', (err, h) => resolve(err ? undefined : h)))),
      )
      assert.equal(results.filter(Boolean).length, 4)
      for (const h of results) if (h) await codeOf((cb) => s.close(h, cb))
      assert.equal(await codeOf((cb) => s.open('/share/f.txt', 'r', (err, h) => (err ? cb(err) : s.close(h, cb)))), 0, 'closed handles are freed')
    } finally {
      c.end()
    }
  })

  it('lists only the folders at / and refuses to open directories', async () => {
    const c = await connect(server.port, login)
    try {
      const s = await sftpOf(c)
      const names = await new Promise<string[]>((resolve, reject) => s.readdir('/', (err, list) => (err ? reject(err) : resolve(list.map((e) => e.filename)))))
      assert.deepEqual(names, ['share'])
      const inShare = await new Promise<string[]>((resolve, reject) =>
        s.readdir('/share', (err, list) => (err ? reject(err) : resolve(list.map((e) => e.filename).sort()))),
      )
      assert.deepEqual(inShare, ['dir', 'f.txt'])
      assert.notEqual(await codeOf((cb) => s.open('/share/dir', 'r', (err) => cb(err))), 0)
      assert.notEqual(await codeOf((cb) => s.open('/', 'r', (err) => cb(err))), 0)
    } finally {
      c.end()
    }
  })

  it('drops a connection that never logs in, and one that idles', async () => {
    const files = new LocalFileSource({root: () => path.join(base, 'share'), mayRead: () => true}, () => ['share'])
    const quick = await serveSftp({host: '127.0.0.1', port: 0, files, identity: serverId}, {loginTimeoutMs: 300, idleTimeoutMs: 300})
    try {
      const net = await import('node:net')
      const sock = net.connect(quick.port, '127.0.0.1')
      sock.on('error', () => {})
      sock.resume()
      const t0 = Date.now()
      await new Promise((resolve) => sock.once('close', resolve))
      assert.ok(Date.now() - t0 < 5000)
      const c = await connect(quick.port, login)
      await new Promise((resolve) => c.on('close', () => resolve(undefined)))
    } finally {
      await quick.close()
    }
  })

  it('close() ends logged-in connections and resolves', async () => {
    const files = new LocalFileSource({root: () => path.join(base, 'share'), mayRead: () => true}, () => ['share'])
    const other = await serveSftp({host: '127.0.0.1', port: 0, files, identity: serverId})
    const c = await connect(other.port, login)
    c.on('error', () => {})
    await sftpOf(c)
    const closed = new Promise((resolve) => c.on('close', () => resolve(undefined)))
    await other.close()
    await closed
  })
})
