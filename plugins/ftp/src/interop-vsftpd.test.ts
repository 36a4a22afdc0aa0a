// fpeer's FTP client against a real vsftpd (anonymous, read-only) started by the test on a loopback port.
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {access, chmod, mkdir, readFile, writeFile} from 'node:fs/promises'
import {connect} from 'node:net'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {after, before, describe, it} from 'node:test'
import {Identity, fetchFiles, generateKeyPair, isFpeerError, scanFolder, type ConnectOptions, type ErrorCode, type TransferClient} from '@fpeer/core'
import {listTree} from '@fpeer/core/conformance'
import {connectFtp} from './client.js'
import {readReleasing} from '@fpeer/core/testing'
import {BIG_BYTES, BIG_FILE, FOLDER, UNSENDABLE_NAMES, freePort, makeTree, type Tree} from './fixtures.js'

const VSFTPD = '/usr/sbin/vsftpd'
const isRoot = process.getuid?.() === 0

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of stream) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

async function rejectsWith(p: Promise<unknown>, codes: ErrorCode[]): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isFpeerError(err), `not a FpeerError: ${String(err)}`)
    assert.ok(codes.includes(err.code), `${err.code}: ${err.message}`)
    return true
  })
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`vsftpd exited (${child.exitCode}): ${stderr()}`)
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({host: '127.0.0.1', port})
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`vsftpd did not listen on ${port}: ${stderr()}`)
}

describe('the FTP client against vsftpd', {timeout: 600_000, skip: !isRoot && 'vsftpd must be started as root (it chroots anonymous users)'}, () => {
  let tree: Tree
  let vsftpd: ChildProcess | undefined
  let port: number
  let big: Buffer
  const clients: TransferClient[] = []
  const connectTo = async (extra: Partial<ConnectOptions> = {}) => {
    const c = await connectFtp({host: '127.0.0.1', port, identity: new Identity(generateKeyPair()), concurrency: 4, timeoutMs: 10_000, ...extra})
    clients.push(c)
    return c
  }

  before(async () => {
    await access(VSFTPD).catch(() => assert.fail(`${VSFTPD} is not installed (apt-get install vsftpd)`))
    tree = await makeTree()
    big = await readFile(path.join(tree.root, BIG_FILE))
    // vsftpd chroots into anon_root and reads as the unprivileged ftp user, so the tree must
    // be world-readable; and it refuses ("500 OOPS: vsftpd: refusing to run with writable root
    // inside chroot()") an anon_root the ftp user could write, so it stays root-owned 0755.
    await chmod(tree.base, 0o755)
    await writeFile(path.join(tree.root, 'unreadable.txt'), 'root only\n', {mode: 0o600})
    await mkdir('/var/run/vsftpd/empty', {recursive: true})
    port = await freePort()
    const pasvMin = 40_000 + Math.floor(Math.random() * 200) * 100
    const conf = path.join(tree.base, 'vsftpd.conf')
    await writeFile(
      conf,
      [
        'listen=YES',
        'listen_ipv6=NO',
        'listen_address=127.0.0.1',
        `listen_port=${port}`,
        'anonymous_enable=YES',
        'local_enable=NO',
        `anon_root=${tree.base}`,
        'no_anon_password=YES',
        'write_enable=NO',
        'pasv_enable=YES',
        `pasv_min_port=${pasvMin}`,
        `pasv_max_port=${pasvMin + 99}`,
        'seccomp_sandbox=NO',
        'background=NO',
        'secure_chroot_dir=/var/run/vsftpd/empty',
        'xferlog_enable=NO',
        'utf8_filesystem=YES',
        'max_per_ip=0',
        'max_clients=0',
        '',
      ].join('\n'),
      {mode: 0o600},
    )
    let stderr = ''
    // Its own process group, so every per-connection child goes with it at the end.
    vsftpd = spawn(VSFTPD, [conf], {stdio: ['ignore', 'pipe', 'pipe'], detached: true})
    vsftpd.stdout!.on('data', (d: Buffer) => (stderr += d.toString()))
    vsftpd.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    await waitForPort(port, vsftpd, () => stderr)
  })

  after(async () => {
    for (const c of clients) await c.close()
    if (vsftpd?.pid && vsftpd.exitCode === null) {
      const exited = new Promise((r) => vsftpd!.once('exit', r))
      process.kill(-vsftpd.pid, 'SIGTERM')
      const timer = setTimeout(() => process.kill(-vsftpd!.pid!, 'SIGKILL'), 5000)
      await exited
      clearTimeout(timer)
    }
    await tree?.dispose()
  })

  it('downloads every hostile name byte for byte', async () => {
    const client = await connectTo()
    for (const name of tree.files) {
      const {stream, size} = await client.get(FOLDER, name)
      const want = await readFile(path.join(tree.root, ...name.split('/')))
      assert.ok((await readAll(stream)).equals(want), `${name} differs`)
      assert.equal(size, want.length)
    }
  })

  it('resumes from an offset (REST)', async () => {
    const client = await connectTo()
    for (const offset of [1, 65_536, 1_000_001, BIG_BYTES - 1, BIG_BYTES]) {
      const {stream} = await client.get(FOLDER, BIG_FILE, {offset})
      assert.ok((await readAll(stream)).equals(big.subarray(offset)), `offset ${offset}`)
    }
  })

  it('maps missing and unreadable files to stable codes and stays usable', async () => {
    const client = await connectTo({concurrency: 1})
    await rejectsWith(client.get(FOLDER, 'no such file.txt'), ['E_NOT_FOUND'])
    await rejectsWith(client.get('no-such-folder', 'x'), ['E_NOT_FOUND'])
    // vsftpd answers "550 Failed to open file." for an unreadable file too: it does not say why.
    await rejectsWith(client.get(FOLDER, 'unreadable.txt'), ['E_NOT_FOUND', 'E_ACCESS'])
    // A large file from vsftpd comes in reused buffers too (core's release), every byte in order.
    const got = await client.get(FOLDER, BIG_FILE)
    assert.ok(got.release, 'a large RETR from vsftpd lets its chunks be released')
    assert.ok((await readReleasing(got, big)).keptIntact)
  })

  it('getMany pipelines small files: every one byte for byte, in order; a missing one fails alone and the connection goes on', async () => {
    const client = await connectTo({concurrency: 1})
    const names = tree.files.filter((f) => f !== BIG_FILE)
    const items = [...names.slice(0, 3), 'no such file.txt', ...names.slice(3)].map((p) => ({p, size: p === 'no such file.txt' ? 1 : 0}))
    for (const item of items) if (item.p !== 'no such file.txt') item.size = (await readFile(path.join(tree.root, ...item.p.split('/')))).length
    const got: string[] = []
    for await (const item of client.getMany!(
      FOLDER,
      items.map(({p, size}) => ({path: p, size})),
    )) {
      got.push(item.path)
      if ('error' in item) {
        assert.equal(item.path, 'no such file.txt')
        assert.equal(item.error.code, 'E_NOT_FOUND')
        continue
      }
      assert.ok(item.data.equals(await readFile(path.join(tree.root, ...item.path.split('/')))), `${item.path} differs`)
    }
    assert.deepEqual(
      got,
      items.map((i) => i.p),
    )
    // The one connection was lent back clean: a plain get() works on it.
    assert.ok((await readAll((await client.get(FOLDER, BIG_FILE)).stream)).equals(big))
  })

  it('lands the whole tree with fetchFiles at concurrency 4', async () => {
    const client = await connectTo({concurrency: 4})
    const files = (await scanFolder(tree.root))
      .filter((f) => tree.files.includes(f.path))
      .map((f) => ({path: f.path, size: f.size, sha256: f.sha256, mtimeMs: f.mtimeMs}))
    assert.equal(files.length, tree.files.length)
    const dest = path.join(tree.base, 'landed')
    await mkdir(dest)
    const result = await fetchFiles({client, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 4, resume: true})
    assert.equal(result.fetched, files.length)
    assert.deepEqual(await listTree(dest), tree.files)
    assert.ok(!tree.files.some((f) => UNSENDABLE_NAMES.includes(f)))
  })

  it('binds to localAddress (vsftpd also checks the data connection comes from the control address)', async () => {
    const client = await connectTo({localAddress: '127.0.0.2', concurrency: 1})
    const {stream} = await client.get(FOLDER, BIG_FILE, {offset: 3})
    assert.ok((await readAll(stream)).equals(big.subarray(3)))
  })
})
