// Local I/O faults end to end: a full disk (a real small tmpfs), damaged state files, leftovers of kill -9, and a slow or vanished stdout reader.
import assert from 'node:assert/strict'
import {type ChildProcess, spawn, spawnSync} from 'node:child_process'
import {mkdir, mkdtemp, readFile, readdir, rm, utimes, writeFile} from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FPEER, Peer, type RunResult, exists, pseudoRandom} from './harness.js'

/** Runs fpeer under `--unhandled-rejections=strict`: any rejection nobody handles fails the run. */
function runStrict(peer: Peer, args: string[]): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--unhandled-rejections=strict', FPEER, ...args], {env: peer.env, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const t = setTimeout(() => child.kill('SIGKILL'), 180_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(t)
      resolve({code, stdout, stderr})
    })
  })
}

/** Whether `peer`'s serve still accepts control connections. */
function serving(peer: Peer): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({host: peer.address, port: peer.ready!.control}, () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** Every path under `dir` (directories with a trailing /). */
async function listing(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = []
  for (const ent of await readdir(path.join(dir, rel), {withFileTypes: true})) {
    const r = rel ? `${rel}/${ent.name}` : ent.name
    if (ent.isDirectory()) out.push(`${r}/`, ...(await listing(dir, r)))
    else out.push(r)
  }
  return out.sort()
}

/** Mounts a tmpfs of `size` at `dir`; undefined when mounting is refused (not root, no privilege). */
function mountTmpfs(dir: string, size: string): string | undefined {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir])
  return r.status === 0 ? undefined : `cannot mount a tmpfs (${r.stderr.toString().trim() || `exit ${r.status}`}): run as root`
}

function umount(dir: string): void {
  spawnSync('umount', [dir])
}

/** The one JSON document on stdout, which must be an error with `code`. */
function errorDoc(r: RunResult, code: string): {code: string; details?: {path?: string}} {
  let doc: {error?: {code: string; details?: {path?: string}}}
  try {
    doc = JSON.parse(r.stdout)
  } catch {
    assert.fail(`stdout is not one JSON document: ${r.stdout}\nstderr: ${r.stderr}`)
  }
  assert.equal(doc.error?.code, code, `${r.stdout}\n${r.stderr}`)
  return doc.error!
}

describe('a full disk', () => {
  let work: string
  let host: Peer
  let mnt: string
  let skip: string | undefined

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-io-'))
    mnt = path.join(work, 'mnt')
    await mkdir(mnt)
    skip = mountTmpfs(mnt, '8m')
    host = await Peer.create('127.0.0.2')
    await mkdir(path.join(work, 'big'), {recursive: true})
    await writeFile(path.join(work, 'big', 'twenty.bin'), pseudoRandom(20 << 20, 3))
    await mkdir(path.join(work, 'small'), {recursive: true})
    // 60 files of 200 KiB: 12 MiB of small files, each under the small-file limit.
    for (let i = 0; i < 60; i++) await writeFile(path.join(work, 'small', `s${String(i).padStart(2, '0')}.bin`), pseudoRandom(200 << 10, i + 10))
    assert.equal((await host.run(['share', path.join(work, 'small'), '--name', 'Small', '--open'])).code, 0)
    await host.serve([path.join(work, 'big'), '--name', 'Big', '--open'])
  })

  after(async () => {
    await host.destroy()
    umount(mnt)
    await rm(work, {recursive: true, force: true})
  })

  for (const folder of ['Big', 'Small']) {
    it(`${folder}: E_DISK_FULL (exit 8) with the --json document, no part file kept, and the same clean error again`, async (t) => {
      if (skip) return t.skip(skip)
      const requester = await Peer.create('127.0.0.3')
      const into = path.join(mnt, folder)
      try {
        for (let run = 0; run < 2; run++) {
          const r = await runStrict(requester, ['request', host.control, folder, '--into', into, '--bind', requester.address, '--json'])
          assert.equal(r.code, 8, `run ${run}: ${r.stdout}\n${r.stderr}`)
          const err = errorDoc(r, 'E_DISK_FULL')
          assert.ok(err.details?.path?.startsWith(into), `the error names the path it could not write: ${JSON.stringify(err)}`)
          assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
          const left = await listing(mnt)
          assert.deepEqual(
            left.filter((p) => path.basename(p).startsWith('.fpeer')),
            [],
            `run ${run}: nothing partial kept: ${left.join(', ')}`,
          )
          // Whatever landed was checked: every file there is whole and right.
          for (const p of left.filter((x) => !x.endsWith('/'))) {
            assert.deepEqual(await readFile(path.join(mnt, p)), await readFile(path.join(work, folder.toLowerCase(), path.basename(p))), p)
          }
        }
        assert.equal((await requester.run(['status', '--json'])).code, 0, 'the requester home is intact')
      } finally {
        await requester.destroy()
        await rm(into, {recursive: true, force: true})
      }
      assert.ok(await serving(host), 'the host still serves')
    })
  }
})

describe('a read-only file system', () => {
  it('is E_IO (exit 8) naming the path, with the --json document and nothing written', async (t) => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-io-ro-'))
    const mnt = path.join(work, 'mnt')
    await mkdir(mnt)
    const skip = mountTmpfs(mnt, '8m')
    if (skip) {
      await rm(work, {recursive: true, force: true})
      return t.skip(skip)
    }
    const host = await Peer.create('127.0.0.2')
    const requester = await Peer.create('127.0.0.3')
    try {
      const f = path.join(work, 'f')
      await mkdir(f)
      await writeFile(path.join(f, 'small.txt'), 'small\n')
      await writeFile(path.join(f, 'large.bin'), pseudoRandom(1 << 20, 9))
      await host.serve([f, '--name', 'F', '--open'])
      const into = path.join(mnt, 'F')
      await mkdir(into)
      assert.equal(spawnSync('mount', ['-o', 'remount,ro', mnt]).status, 0, 'remount read-only')
      const r = await runStrict(requester, ['request', host.control, 'F', '--into', into, '--bind', requester.address, '--json', '--concurrency', '1'])
      assert.equal(r.code, 8, `${r.stdout}\n${r.stderr}`)
      const err = errorDoc(r, 'E_LOCAL_ACCESS')
      assert.ok(err.details?.path?.startsWith(into), JSON.stringify(err))
      assert.deepEqual(await listing(mnt), ['F/'])
      assert.ok(await serving(host), 'the host still serves')
    } finally {
      await host.destroy()
      await requester.destroy()
      umount(mnt)
      await rm(work, {recursive: true, force: true})
    }
  })
})

describe('a re-request that fails midway', () => {
  it("leaves the folder and its records agreeing: files that landed carry the host's hashes", async (t) => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-io-re-'))
    const mnt = path.join(work, 'mnt')
    await mkdir(mnt)
    const skip = mountTmpfs(mnt, '8m')
    if (skip) {
      await rm(work, {recursive: true, force: true})
      return t.skip(skip)
    }
    const host = await Peer.create('127.0.0.2')
    const requester = await Peer.create('127.0.0.3')
    try {
      const f = path.join(work, 'f')
      await mkdir(f)
      for (let i = 0; i < 5; i++) await writeFile(path.join(f, `s${i}.txt`), `first ${i}\n`)
      await writeFile(path.join(f, 'big.bin'), 'small for now')
      await host.serve([f, '--name', 'F', '--open'])
      const into = path.join(mnt, 'F')
      const first = await runStrict(requester, ['request', host.control, 'F', '--into', into, '--bind', requester.address, '--json'])
      assert.equal(first.code, 0, first.stderr)
      for (let i = 0; i < 5; i++) await writeFile(path.join(f, `s${i}.txt`), `second ${i}\n`)
      await writeFile(path.join(f, 'big.bin'), pseudoRandom(20 << 20, 5))
      const again = await runStrict(requester, ['request', host.control, 'F', '--into', into, '--bind', requester.address, '--json'])
      assert.equal(again.code, 8, `${again.stdout}\n${again.stderr}`)
      errorDoc(again, 'E_DISK_FULL')
      const records = new Map((await requester.json<{files: Array<{path: string; sha256: string}>}>(['files', 'F'])).files.map((r) => [r.path, r.sha256]))
      const {createHash} = await import('node:crypto')
      for (const name of await readdir(into)) {
        assert.ok(!name.startsWith('.fpeer'), name)
        const onDisk = createHash('sha256')
          .update(await readFile(path.join(into, name)))
          .digest('hex')
        assert.equal(records.get(name), onDisk, `${name}: the records agree with the disk`)
      }
    } finally {
      await host.destroy()
      await requester.destroy()
      umount(mnt)
      await rm(work, {recursive: true, force: true})
    }
  })
})

describe('a full disk under FPEER_HOME', () => {
  it('is E_DISK_FULL naming the state file, keeps the old state readable and leaves no temporary file', async (t) => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-io-home-'))
    const home = path.join(work, 'home')
    await mkdir(home)
    const skip = mountTmpfs(home, '1m')
    if (skip) {
      await rm(work, {recursive: true, force: true})
      return t.skip(skip)
    }
    try {
      const peer = new Peer(home, '127.0.0.3')
      await mkdir(path.join(work, 'a'))
      await writeFile(path.join(work, 'a', 'x.txt'), 'x')
      await mkdir(path.join(work, 'b'))
      await writeFile(path.join(work, 'b', 'y.txt'), 'y')
      assert.equal((await runStrict(peer, ['share', path.join(work, 'a'), '--name', 'A', '--json'])).code, 0)
      const config = await readFile(path.join(home, 'config.json'), 'utf8')
      // Fill the file system: the write stops at ENOSPC with the disk full.
      await writeFile(path.join(home, 'filler'), Buffer.alloc(2 << 20)).catch((err: NodeJS.ErrnoException) => assert.equal(err.code, 'ENOSPC'))
      const r = await runStrict(peer, ['share', path.join(work, 'b'), '--name', 'B', '--json'])
      assert.equal(r.code, 8, `${r.stdout}\n${r.stderr}`)
      const err = errorDoc(r, 'E_DISK_FULL')
      assert.ok(err.details?.path?.startsWith(home), JSON.stringify(err))
      assert.equal(await readFile(path.join(home, 'config.json'), 'utf8'), config, 'the old configuration is untouched')
      assert.deepEqual(
        (await readdir(home)).filter((n) => n.endsWith('.tmp') || n.endsWith('.lock')),
        [],
      )
      await rm(path.join(home, 'filler'))
      const again = await runStrict(peer, ['share', path.join(work, 'b'), '--name', 'B', '--json'])
      assert.equal(again.code, 0, `with space again it works: ${again.stdout}\n${again.stderr}`)
    } finally {
      umount(home)
      await rm(work, {recursive: true, force: true})
    }
  })
})

describe('damaged state', () => {
  let work: string
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-io-state-'))
    await mkdir(path.join(work, 'f'))
    await writeFile(path.join(work, 'f', 'x.txt'), 'x')
  })
  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  /** A home sharing folder F, with its identity and state written. */
  async function sharedHome(name: string): Promise<Peer> {
    const peer = new Peer(path.join(work, name), '127.0.0.3')
    const r = await peer.run(['share', path.join(work, 'f'), '--name', 'F', '--json'])
    assert.equal(r.code, 0, r.stderr)
    return peer
  }

  for (const [file, damage] of [
    ['config.json', '{"version":1,"folders":{"F":'],
    ['identity.json', '{"version":1,"secretKey":"abc'],
    ['folders/F/peers.json', 'garbage\u0000'],
  ] as const) {
    it(`a damaged ${file}: E_STATE_CORRUPT (exit 8) naming it, with a hint; serve refuses to start`, async () => {
      const peer = await sharedHome(`home-${path.basename(file)}`)
      await writeFile(path.join(peer.home, file), damage)
      const cmd = file.includes('peers') ? ['peers', 'F'] : ['status']
      const r = await runStrict(peer, [...cmd, '--json'])
      assert.equal(r.code, 8, `${r.stdout}\n${r.stderr}`)
      const err = errorDoc(r, 'E_STATE_CORRUPT') as {details?: {path?: string}; hint?: string}
      assert.equal(err.details?.path, path.join(peer.home, file))
      assert.ok(err.hint)
      if (!file.includes('peers')) {
        const s = await runStrict(peer, [
          'serve',
          '--host',
          peer.address,
          '--port',
          '0',
          '--data-port',
          'HTTP=0',
          '--data-port',
          'FTP=0',
          '--data-port',
          'SFTP=0',
          '--json',
        ])
        assert.equal(s.code, 8, `${s.stdout}\n${s.stderr}`)
        errorDoc(s, 'E_STATE_CORRUPT')
      }
      assert.equal(await readFile(path.join(peer.home, file), 'utf8'), damage, 'the damaged file is left for the user to inspect')
    })
  }

  it('a deleted identity.json is refused while the home shares folders; `id --new --yes` replaces it on purpose', async () => {
    const peer = await sharedHome('home-lost-id')
    const before = await peer.id()
    await rm(path.join(peer.home, 'identity.json'))
    for (const cmd of [['id'], ['status']]) {
      const r = await runStrict(peer, [...cmd, '--json'])
      assert.equal(r.code, 8, `${r.stdout}\n${r.stderr}`)
      errorDoc(r, 'E_STATE_CORRUPT')
    }
    assert.equal(await exists(path.join(peer.home, 'identity.json')), false, 'no identity was made silently')
    const unconfirmed = await runStrict(peer, ['id', '--new', '--json'])
    assert.equal(unconfirmed.code, 2)
    errorDoc(unconfirmed, 'E_USAGE')
    const fresh = await peer.json<{id: string}>(['id', '--new', '--yes'])
    assert.notEqual(fresh.id, before)
    assert.equal(await peer.id(), fresh.id)
  })
})

describe('kill -9 of commands writing state', () => {
  it('leaves no lost or damaged state, and no lock that delays the next command', async () => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-io-kill-'))
    const peer = new Peer(path.join(work, 'home'), '127.0.0.3')
    const other = await Peer.create('127.0.0.4')
    try {
      await mkdir(path.join(work, 'f'))
      await writeFile(path.join(work, 'f', 'x.txt'), 'x')
      assert.equal((await peer.run(['share', path.join(work, 'f'), '--name', 'F'])).code, 0)
      const id = await other.id()
      // Kill moments spread over a command's life (start-up, lock, write); bounded to 12 runs.
      for (let i = 0; i < 12; i++) {
        const child = spawn(process.execPath, [FPEER, i % 2 ? 'allow' : 'share', ...(i % 2 ? ['F', id] : [path.join(work, 'f'), '--name', `G${i}`])], {
          env: peer.env,
          stdio: 'ignore',
        })
        const exited = new Promise((resolve) => child.once('exit', resolve))
        await new Promise((r) => setTimeout(r, 150 + ((i * 397) % 1200)))
        child.kill('SIGKILL')
        await exited
        const status = await peer.run(['status', '--json'])
        assert.equal(status.code, 0, `after kill ${i}: ${status.stdout}\n${status.stderr}`)
        const folders = (JSON.parse(status.stdout) as {folders: Array<{name: string}>}).folders.map((f) => f.name)
        assert.ok(folders.includes('F'), `after kill ${i}: F is still shared: ${folders.join(', ')}`)
        // The next writer must not wait for a dead holder's lock: it would run into E_LOCKED's wait.
        const allow = await peer.run(['allow', 'F', id, '--json'])
        assert.equal(allow.code, 0, `after kill ${i}: ${allow.stdout}\n${allow.stderr}`)
      }
      assert.equal(await peer.id(), await peer.id(), 'the identity is stable')
    } finally {
      await other.destroy()
      await rm(work, {recursive: true, force: true})
    }
  })
})

describe('leftovers of kill -9', () => {
  it('serve removes old staging folders and part files from its shared folders at start, and nothing else', async () => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-io-left-'))
    const peer = await Peer.create('127.0.0.3')
    try {
      const f = path.join(work, 'f')
      await mkdir(path.join(f, '.fpeer-part-staging-0123456789abcdef', 'sub'), {recursive: true})
      await writeFile(path.join(f, '.fpeer-part-staging-0123456789abcdef', 'sub', 'x'), 'staged')
      await mkdir(path.join(f, 'd'), {recursive: true})
      await writeFile(path.join(f, 'd', '.fpeer-part-00112233445566778899aabb-xyz'), 'part')
      await writeFile(path.join(f, 'd', 'keep.txt'), 'keep')
      const old = new Date(Date.now() - 3600_000)
      for (const p of ['.fpeer-part-staging-0123456789abcdef', 'd/.fpeer-part-00112233445566778899aabb-xyz']) await utimes(path.join(f, p), old, old)
      await peer.serve([f, '--name', 'F'])
      assert.deepEqual(await listing(f), ['d/', 'd/keep.txt'])
    } finally {
      await peer.destroy()
      await rm(work, {recursive: true, force: true})
    }
  })
})

describe('stdout that cannot be cut', () => {
  let work: string
  let peer: Peer
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-io-out-'))
    peer = await Peer.create('127.0.0.3')
    const f = path.join(work, 'f')
    await mkdir(f)
    // Long names: the --json listing is several hundred KiB, far more than a pipe holds.
    for (let i = 0; i < 2000; i++) await writeFile(path.join(f, `a-rather-long-file-name-so-the-listing-outgrows-any-pipe-buffer-${i}.txt`), String(i))
    assert.equal((await peer.run(['share', f, '--name', 'F'])).code, 0)
  })
  after(async () => {
    await peer.destroy()
    await rm(work, {recursive: true, force: true})
  })

  function start(): {child: ChildProcess; exit: Promise<number | null>; stderr: () => string} {
    const child = spawn(process.execPath, ['--unhandled-rejections=strict', FPEER, 'files', 'F', '--json'], {env: peer.env, stdio: ['ignore', 'pipe', 'pipe']})
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    const exit = new Promise<number | null>((resolve) => child.once('close', resolve))
    return {child, exit, stderr: () => stderr}
  }

  it("a reader that waits longer than oclif's 10 s flush limit still gets the whole document, and exit 0", async () => {
    const full = (await peer.run(['files', 'F', '--json'])).stdout
    assert.ok(full.length > 256 << 10, `the document (${full.length} bytes) outgrows the pipe`)
    const {child, exit, stderr} = start()
    // Wait for the first byte without taking it, then hold the pipe full for longer than
    // oclif's flush limit: that wait is what this test is about, not a guess at a condition.
    await new Promise((resolve) => child.stdout!.once('readable', resolve))
    let exited = false
    void exit.then(() => (exited = true))
    await new Promise((r) => setTimeout(r, 12_000))
    assert.equal(exited, false, 'fpeer waits for its reader')
    const chunks: Buffer[] = []
    for await (const c of child.stdout!) chunks.push(c as Buffer)
    assert.equal(await exit, 0, stderr())
    assert.equal(Buffer.concat(chunks).toString(), full)
  })

  it('a reader that goes away does not change the exit code and prints no stack', async () => {
    const {child, exit, stderr} = start()
    await new Promise((resolve) => child.stdout!.once('data', resolve))
    child.stdout!.destroy()
    assert.equal(await exit, 0, stderr())
    assert.doesNotMatch(stderr(), /EPIPE|\n\s+at /)
  })
})
