// Files on disk: symlinked parents, a directory swapped mid-transfer, planted part files, fpeer's own names and deep paths change nothing outside the folder.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, writeFile} from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {
  type FileEntry,
  type FileVersion,
  FrameDecoder,
  Identity,
  type Message,
  PeerId,
  formatMessage,
  generateKeyPair,
  loadIdentity,
  parseLines,
  signMessage,
  signVersion,
  versionToEntry,
} from '@fpeer/core'
import {Peer, pseudoRandom, tempDir, waitFor} from '../src/harness.js'

const sha = (b: string | Buffer) => createHash('sha256').update(b).digest('hex')

/** Every entry under `dir`, symlinks not followed: path, type, and content hash or link target. The before/after proof. */
async function snapshot(dir: string, rel = ''): Promise<string[]> {
  const out: string[] = []
  for (const name of (await readdir(path.join(dir, rel))).sort()) {
    const r = rel ? `${rel}/${name}` : name
    const abs = path.join(dir, r)
    const st = await lstat(abs)
    if (st.isSymbolicLink()) out.push(`${r} -> ${await readlink(abs)}`)
    else if (st.isDirectory()) out.push(`${r}/`, ...(await snapshot(dir, r)))
    else out.push(`${r} ${st.size} ${sha(await readFile(abs))} mode=${(st.mode & 0o777).toString(8)}`)
  }
  return out
}

/** A directory outside every folder, with files an attacker would like to reach. */
async function makeOutside(work: string, name: string): Promise<string> {
  const outside = path.join(work, name)
  await mkdir(outside, {recursive: true})
  await writeFile(path.join(outside, 'x'), 'precious, outside the folder\n')
  await writeFile(path.join(outside, 'victim.txt'), 'do not overwrite\n')
  return outside
}

interface Offer {
  path: string
  content: Buffer
}

/**
 * A hostile host as a real server pair in this process: answers a BePeerRequest with a
 * signed FilesToGet for `files`, serves them over HTTP (GET and the batch POST) through
 * `serve`, which may stall a body, and confirms the requester's FilesUpdated.
 */
async function hostileHost(identity: Identity, files: Offer[], serve?: (rel: string, body: Buffer, res: http.ServerResponse) => Promise<void>) {
  const byPath = new Map(files.map((f) => [f.path, f.content]))
  const web = http.createServer((req, res) => {
    res.on('error', () => {})
    const parts = (req.url ?? '').split('/').slice(2).map(decodeURIComponent)
    if (req.method === 'POST' && parts.join('/') === '.fpeer/batch') {
      let text = ''
      req.on('data', (d: Buffer) => (text += d.toString()))
      req.on('end', () => {
        void (async () => {
          res.writeHead(200, {'content-type': 'application/vnd.fpeer.batch'})
          for (const line of text.split('\n').filter(Boolean)) {
            const rel = line.split('/').map(decodeURIComponent).join('/')
            const body = byPath.get(rel) ?? Buffer.alloc(0)
            res.write(`200 ${body.length}\n`)
            if (serve) await serve(rel, body, res)
            else res.write(body)
          }
          res.end()
        })()
      })
      return
    }
    const rel = parts.join('/')
    const body = byPath.get(rel)
    if (body === undefined) return res.writeHead(404).end()
    res.writeHead(200, {'content-length': body.length})
    void (serve ? serve(rel, body, res) : Promise.resolve(void res.write(body))).then(() => res.end())
  })
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r))
  const webPort = (web.address() as net.AddressInfo).port
  const control = net.createServer((socket) => {
    const dec = new FrameDecoder()
    const send = (m: Message) => socket.write(formatMessage(m))
    socket.on('data', (d) => {
      for (const lines of dec.push(d)) {
        const msg = parseLines(lines)
        if (msg.type === 'BePeerRequest') {
          const list: FileEntry[] = files.map((f) => ({path: f.path, size: f.content.length, sha256: sha(f.content)}))
          send(
            signMessage(
              {type: 'FilesToGet', folder: msg.folder, port: webPort, protocol: 'HTTP', meta: {nonce: 'host-nonce', re: msg.meta.nonce!}, files: list},
              identity,
            ),
          )
        } else if (msg.type === 'FilesUpdated') {
          send(
            signMessage(
              {type: 'TrustedPeerConfirm', folder: msg.folder, port: webPort, protocol: 'HTTP', files: msg.files, meta: {nonce: 'n2', re: msg.meta.nonce!}},
              identity,
            ),
          )
        }
      }
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((r) => control.listen(0, '127.0.0.1', r))
  return {
    port: (control.address() as net.AddressInfo).port,
    close: async () => {
      web.closeAllConnections()
      await new Promise((r) => web.close(r))
      await new Promise((r) => control.close(r))
    },
  }
}

/** A signal the test raises once, awaited by the host's stalled body. */
function gate(): {wait: Promise<void>; open: () => void} {
  let open!: () => void
  const wait = new Promise<void>((r) => (open = r))
  return {wait, open}
}

describe('a hostile host cannot make the requester write outside its folder', () => {
  let work: string
  let requester: Peer
  const hostIdentity = new Identity(generateKeyPair())

  before(async () => {
    work = await tempDir()
    requester = await Peer.create('127.0.21.2')
  })
  after(async () => {
    await requester.destroy()
    await rm(work, {recursive: true, force: true})
  })

  /** Runs `fpeer request`; each test asks for its own folder name, since a completed request records one. */
  async function request(into: string, host: {port: number}) {
    const r = await requester.run([
      'request',
      `127.0.0.1:${host.port}`,
      path.basename(path.dirname(into)),
      '--into',
      into,
      '--bind',
      '127.0.21.2',
      '--concurrency',
      '1',
      '--json',
    ])
    let body: any
    try {
      body = JSON.parse(r.stdout)
    } catch {
      assert.fail(`no JSON on stdout: ${r.stdout} ${r.stderr}`)
    }
    return {r, body}
  }

  it('a directory swapped for a symlink while a batch body is stalled: E_PATH_UNSAFE, nothing written outside', async () => {
    const outside = await makeOutside(work, 'outside-batch')
    const into = path.join(work, 'batch', 'into')
    await mkdir(into, {recursive: true})
    const before = await snapshot(outside)
    const stalled = gate()
    const release = gate()
    const files = [
      {path: 'sub/a.txt', content: Buffer.from('first file, lands before the swap\n')},
      {path: 'sub/victim.txt', content: Buffer.from('attacker-chosen bytes\n')},
    ]
    const host = await hostileHost(hostIdentity, files, async (rel, body, res) => {
      if (rel !== 'sub/victim.txt') return void res.write(body)
      res.write(body.subarray(0, 5))
      stalled.open()
      await release.wait
      res.write(body.subarray(5))
    })
    try {
      const running = request(into, host)
      // The requester has checked sub/ and is receiving the second file: swap sub/ for a symlink out.
      await stalled.wait
      await rename(path.join(into, 'sub'), path.join(into, 'sub-moved'))
      await symlink(outside, path.join(into, 'sub'))
      release.open()
      const {r, body} = await running
      assert.equal(r.code, 5, r.stdout + r.stderr)
      assert.equal(body.error.code, 'E_PATH_UNSAFE')
    } finally {
      await host.close()
    }
    assert.deepEqual(await snapshot(outside), before)
    // Nothing half-written stays behind where the directory went either.
    assert.deepEqual(
      (await readdir(path.join(into, 'sub-moved'))).filter((n) => n.startsWith('.fpeer-')),
      [],
    )
  })

  it('a directory swapped for a symlink while a large body is stalled: E_PATH_UNSAFE, nothing written outside', async () => {
    const outside = await makeOutside(work, 'outside-large')
    const into = path.join(work, 'large', 'into')
    await mkdir(into, {recursive: true})
    const before = await snapshot(outside)
    const stalled = gate()
    const release = gate()
    const big = pseudoRandom(1 << 20, 3)
    const host = await hostileHost(hostIdentity, [{path: 'sub/victim.txt', content: big}], async (_rel, body, res) => {
      res.write(body.subarray(0, 64 * 1024))
      stalled.open()
      await release.wait
      res.write(body.subarray(64 * 1024))
    })
    try {
      const running = request(into, host)
      await stalled.wait
      await rename(path.join(into, 'sub'), path.join(into, 'sub-moved'))
      await symlink(outside, path.join(into, 'sub'))
      release.open()
      const {r, body} = await running
      assert.equal(r.code, 5, r.stdout + r.stderr)
      assert.equal(body.error.code, 'E_PATH_UNSAFE')
    } finally {
      await host.close()
    }
    assert.deepEqual(await snapshot(outside), before)
    assert.deepEqual(await readdir(path.join(into, 'sub-moved')), [])
  })

  it('symlinks planted at part-file names are never followed; the transfer still lands', async () => {
    const outside = await makeOutside(work, 'outside-parts')
    const into = path.join(work, 'parts', 'into')
    await mkdir(path.join(into, 'p'), {recursive: true})
    const big = pseudoRandom(600 * 1024, 5)
    const small = Buffer.from('small file\n')
    // Every name a part file of these targets could have had, old fixed ones and new-style prefixes.
    for (const name of ['big.bin', 'small.txt']) {
      const h = sha(name).slice(0, 24)
      await symlink(path.join(outside, 'victim.txt'), path.join(into, 'p', `.fpeer-part-${h}`))
      await symlink(path.join(outside, 'victim.txt'), path.join(into, 'p', `.fpeer-part-${h}-0000000000000000`))
      await symlink(outside, path.join(into, 'p', `.fpeer-part-${h}-dir`))
    }
    const before = await snapshot(outside)
    const host = await hostileHost(hostIdentity, [
      {path: 'p/big.bin', content: big},
      {path: 'p/small.txt', content: small},
    ])
    try {
      const {r} = await request(into, host)
      assert.equal(r.code, 0, r.stdout + r.stderr)
    } finally {
      await host.close()
    }
    assert.deepEqual(await snapshot(outside), before)
    assert.equal(sha(await readFile(path.join(into, 'p', 'big.bin'))), sha(big))
    assert.equal(await readFile(path.join(into, 'p', 'small.txt'), 'utf8'), 'small file\n')
    // A landed file is a regular file, not a planted link.
    assert.ok((await lstat(path.join(into, 'p', 'big.bin'))).isFile())
  })

  let n = 0
  for (const [label, bad] of [
    ['.fpeer', '.fpeer'],
    ['.Fpeer/x', '.Fpeer/x'],
    ['.fpeer with a zero-width joiner', '.fpeer\u200d'],
    ['a full-width .ｆｐｅｅｒ inside a path', 'a/\uff0e\uff46\uff50\uff45\uff45\uff52/x'],
    ['a part-file name', 'a/.fpeer-part-0123456789abcdef01234567-00'],
    ['a 1,000-level deep path', `${Array(1000).fill('d').join('/')}/deep.txt`],
  ] as const) {
    const i = n++
    it(`a FilesToGet naming ${label} is refused with E_PATH_UNSAFE before anything is created`, async () => {
      const outside = await makeOutside(work, `outside-name-${i}`)
      const into = path.join(work, `name-${i}`, 'into')
      await mkdir(into, {recursive: true})
      const before = await snapshot(outside)
      const host = await hostileHost(hostIdentity, [
        {path: 'ok.txt', content: Buffer.from('fine\n')},
        {path: bad, content: Buffer.from('evil\n')},
      ])
      try {
        const {r, body} = await request(into, host)
        assert.equal(r.code, 5, r.stdout + r.stderr)
        assert.equal(body.error.code, 'E_PATH_UNSAFE')
      } finally {
        await host.close()
      }
      assert.deepEqual(await readdir(into), [])
      assert.deepEqual(await snapshot(outside), before)
    })
  }
})

/** Sends one update FilesToGet from `from` and plays the pusher's part; returns the reply. */
async function sendUpdate(target: {host: string; port: number}, from: string, wire: string, signer: Identity): Promise<Message> {
  return new Promise((resolve, reject) => {
    const s = net.connect({host: target.host, port: target.port, localAddress: from})
    const dec = new FrameDecoder()
    const t = setTimeout(() => {
      s.destroy()
      reject(new Error('no reply'))
    }, 30_000)
    s.on('data', (d) => {
      for (const lines of dec.push(d)) {
        const msg = parseLines(lines)
        clearTimeout(t)
        if (msg.type === 'FilesUpdated') {
          s.end(
            formatMessage(
              signMessage(
                {
                  type: 'TrustedPeerConfirm',
                  folder: msg.folder,
                  port: msg.port,
                  protocol: msg.protocol,
                  files: msg.files,
                  meta: {nonce: `tpc-${Math.random()}`, re: msg.meta.nonce!},
                },
                signer,
              ),
            ),
          )
        } else {
          s.end()
        }
        resolve(msg)
      }
    })
    s.on('error', () => {})
    s.on('connect', () => s.write(wire))
  })
}

describe('a confirmed peer cannot delete, read or write through a symlink in the folder', () => {
  const TARGET = '127.0.21.5'
  const MIDDLE = '127.0.21.6'
  const origin = new Identity(generateKeyPair())
  let work: string
  let dir: string
  let outside: string
  let target: Peer
  let middle: Peer
  let mIdentity: Identity
  let files: http.Server
  let filesPort: number
  const served = new Map<string, string>()
  let lamport = 1000

  before(async () => {
    work = await tempDir()
    dir = path.join(work, 'share')
    outside = await makeOutside(work, 'outside')
    await mkdir(dir)
    await writeFile(path.join(dir, 'a.txt'), 'original\n')
    // The user's own links and names: `docs` points out of the folder; `.fpeer` is a plain file.
    await symlink(outside, path.join(dir, 'docs'))
    await writeFile(path.join(dir, '.fpeer'), 'a file of the user that happens to have this name\n')
    target = await Peer.create(TARGET, {FPEER_SYNC_INTERVAL_MS: '3600000', FPEER_RESCAN_INTERVAL_MS: '3600000'})
    middle = await Peer.create(MIDDLE)
    assert.equal((await target.run(['share', dir, '--name', 'share', '--allow', await middle.id()])).code, 0)
    await target.serve()
    const r = await middle.run(['request', target.control, 'share', '--into', path.join(work, 'middle'), '--bind', MIDDLE, '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    mIdentity = await loadIdentity(middle.home)
    files = http.createServer((req, res) => {
      const body = served.get(decodeURIComponent((req.url ?? '').split('/').slice(2).join('/')))
      if (body === undefined) return res.writeHead(404).end()
      res.writeHead(200, {'content-length': Buffer.byteLength(body)}).end(body)
    })
    await new Promise<void>((r) => files.listen(0, MIDDLE, r))
    filesPort = (files.address() as net.AddressInfo).port
  })
  after(async () => {
    await target.destroy()
    await middle.destroy()
    files.closeAllConnections()
    await new Promise((r) => files.close(r))
    await rm(work, {recursive: true, force: true})
  })

  const version = (p: string, text: string | undefined): FileVersion => {
    lamport++
    const content = text === undefined ? {deleted: true, sha256: '', size: 0} : {deleted: false, sha256: sha(text), size: Buffer.byteLength(text)}
    return signVersion('share', {path: p, ...content, mtimeMs: Date.now(), lamport, vv: {[origin.id.compact]: lamport}}, origin)
  }
  const push = (versions: FileVersion[]) => {
    const m: Message = {
      type: 'FilesToGet',
      folder: 'share',
      port: filesPort,
      protocol: 'HTTP',
      files: versions.map(versionToEntry),
      meta: {nonce: `n-${Math.random()}`, update: '1', ts: String(Date.now()), to: PeerId.parse(target.ready!.id).compact, dst: target.control},
    }
    return sendUpdate({host: TARGET, port: target.ready!.control}, MIDDLE, formatMessage(signMessage(m, mIdentity)), mIdentity)
  }
  /** The attacked `serve` still answers on its control port. */
  const assertServing = async () => {
    served.set('alive.txt', `alive ${lamport}\n`)
    const reply = await push([version('alive.txt', served.get('alive.txt'))])
    assert.equal(reply.type, 'FilesUpdated', JSON.stringify(reply))
    assert.equal(await readFile(path.join(dir, 'alive.txt'), 'utf8'), served.get('alive.txt'))
  }

  it('a signed deletion of docs/x (docs a symlink out) deletes nothing outside; the skip is logged; serve lives', async () => {
    const before = await snapshot(outside)
    const reply = await push([version('docs/x', undefined)])
    assert.equal(reply.type, 'FilesUpdated', JSON.stringify(reply))
    // The local catch-up did not read the outside file into a version of its own.
    const outsideSha = sha(await readFile(path.join(outside, 'x')))
    assert.ok(!reply.files.some((f) => f.sha256 === outsideSha), 'the outside file was read as part of the folder')
    assert.deepEqual(await snapshot(outside), before)
    // The log line and the reply travel on different pipes: wait for the line.
    await waitFor('the skipped deletion in the log', () => /E_PATH_UNSAFE/.test(target.serveStderr), 10_000, 50)
    await assertServing()
  })

  it('a signed new file docs/victim.txt is refused with E_PATH_UNSAFE and written nowhere', async () => {
    const before = await snapshot(outside)
    served.set('docs/victim.txt', 'overwritten by a peer\n')
    const reply = await push([version('docs/victim.txt', served.get('docs/victim.txt'))])
    assert.deepEqual({type: reply.type, code: reply.type === 'PeerError' ? reply.code : undefined}, {type: 'PeerError', code: 'E_PATH_UNSAFE'})
    assert.deepEqual(await snapshot(outside), before)
    await assertServing()
  })

  it('fpeer own names in an update are refused with E_PATH_UNSAFE, in any spelling', async () => {
    const before = await snapshot(outside)
    const inside = await snapshot(dir)
    for (const bad of ['.fpeer', '.FPEER/x', '.fpeer\u200d', 'sub/.fpeer-part-x']) {
      served.set(bad, 'evil\n')
      const reply = await push([version(bad, 'evil\n')])
      assert.deepEqual({type: reply.type, code: reply.type === 'PeerError' ? reply.code : undefined}, {type: 'PeerError', code: 'E_PATH_UNSAFE'}, bad)
    }
    assert.deepEqual(await snapshot(dir), inside)
    assert.deepEqual(await snapshot(outside), before)
    await assertServing()
  })

  it('a real .fpeer file in the share does not break updates that carry content', async () => {
    const before = await snapshot(outside)
    const text = 'updated while .fpeer is a file\n'
    served.set('a.txt', text)
    const reply = await push([version('a.txt', text)])
    assert.equal(reply.type, 'FilesUpdated', JSON.stringify(reply))
    assert.equal(await readFile(path.join(dir, 'a.txt'), 'utf8'), text)
    // No staging or part file is left behind in the folder.
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.toLowerCase().startsWith('.fpeer-')),
      [],
    )
    assert.equal(await readFile(path.join(dir, '.fpeer'), 'utf8'), 'a file of the user that happens to have this name\n')
    assert.deepEqual(await snapshot(outside), before)
    await assertServing()
  })

  it('fpeer own names in a share are never offered', async () => {
    await mkdir(path.join(dir, '.Fpeer'))
    await writeFile(path.join(dir, '.Fpeer', 'x'), 'hidden\n')
    await writeFile(path.join(dir, '.fpeer\u200d'), 'hidden\n')
    await writeFile(path.join(dir, 'visible.txt'), 'shown\n')
    const before = await snapshot(outside)
    const joiner = await Peer.create('127.0.21.7')
    try {
      assert.equal((await target.run(['allow', 'share', await joiner.id()])).code, 0)
      const into = path.join(work, 'joiner')
      const r = await joiner.run(['request', target.control, 'share', '--into', into, '--bind', joiner.address, '--json'])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      const got = (await readdir(into)).sort()
      assert.ok(got.includes('visible.txt'), got.join(','))
      assert.deepEqual(
        got.filter((n) =>
          n
            .normalize('NFKC')
            .toLowerCase()
            .replace(/\p{Default_Ignorable_Code_Point}/gu, '')
            .startsWith('.fpeer'),
        ),
        [],
      )
    } finally {
      await joiner.destroy()
    }
    assert.deepEqual(await snapshot(outside), before)
    await assertServing()
  })
})
