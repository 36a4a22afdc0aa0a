// Attacks by a confirmed peer through what it may legitimately send: names FTP cannot carry, and updates with a huge number of versions.
import assert from 'node:assert/strict'
import {createHash, createPrivateKey, sign as cryptoSign} from 'node:crypto'
import {mkdir, readdir, rm, writeFile, lstat} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {
  FrameDecoder,
  type Identity,
  MAX_UPDATE_VERSIONS,
  type Message,
  formatDestination,
  formatMessage,
  loadIdentity,
  parseLines,
  signMessage,
  signVersion,
  versionToEntry,
} from '@fpeer/core'
import {Peer, linkPlugins, oclifDirs, tempDir, treeHashes} from '../src/harness.js'

const HOST = '127.0.29.1'
const MEMBER = '127.0.29.6'
const FTP_REQUESTER = '127.0.29.2'
const HTTP_REQUESTER = '127.0.29.3'
const BYSTANDER = '127.0.29.4'
const PROBE = '127.0.29.5'
/** Names FTP cannot put in a command: RFC 959 lines end at CRLF. */
const UNSENDABLE = ['new\nline.txt', 'carriage\rreturn.txt']

/** Every entry under `dir` (links not followed) with its type and size: the before/after listing. */
async function listing(dir: string, rel = '', out: Record<string, string> = {}): Promise<Record<string, string>> {
  for (const ent of await readdir(path.join(dir, rel), {withFileTypes: true})) {
    const r = rel ? `${rel}/${ent.name}` : ent.name
    const st = await lstat(path.join(dir, r))
    out[r] = ent.isDirectory() ? 'dir' : `${st.mode & 0o170000} ${st.size}`
    if (ent.isDirectory()) await listing(dir, r, out)
  }
  return out
}

/** Everything in `dir` but the subtrees a test may legitimately change. */
async function outside(dir: string, except: string[]): Promise<Record<string, string>> {
  const all = await listing(dir)
  return Object.fromEntries(Object.entries(all).filter(([k]) => !except.some((e) => k === e || k.startsWith(`${e}/`))))
}

/** One control connection from `from`: sends `wire`, collects messages; `next()` resolves with the next one. */
function converse(to: {host: string; port: number}, from: string) {
  const socket = net.connect({host: to.host, port: to.port, localAddress: from})
  const dec = new FrameDecoder()
  const queue: Message[] = []
  const waiters: Array<(m: Message | undefined) => void> = []
  let closed = false
  socket.on('data', (d) => {
    for (const lines of dec.push(d)) {
      const m = parseLines(lines)
      const w = waiters.shift()
      if (w) w(m)
      else queue.push(m)
    }
  })
  socket.on('error', () => {})
  socket.on('close', () => {
    closed = true
    for (const w of waiters.splice(0)) w(undefined)
  })
  return {
    socket,
    send: (wire: string) => new Promise<void>((resolve, reject) => socket.write(wire, (err) => (err ? reject(err) : resolve()))),
    /** The next message, or undefined once the host closed; bounded so a silent host fails the test rather than hang it. */
    next: (ms = 120_000) =>
      new Promise<Message | undefined>((resolve, reject) => {
        if (queue.length) return resolve(queue.shift())
        if (closed) return resolve(undefined)
        const t = setTimeout(() => reject(new Error(`no message within ${ms} ms`)), ms)
        waiters.push((m) => {
          clearTimeout(t)
          resolve(m)
        })
      }),
    close: () =>
      new Promise<void>((resolve) => {
        if (closed) return resolve()
        socket.once('close', () => resolve())
        socket.destroy()
      }),
  }
}

/**
 * The member's key, signing with Node's native ed25519 (the same deterministic signatures
 * as fpeer's): ten thousand versions signed in JavaScript would take minutes here.
 */
function fastSigner(me: Identity): Identity {
  const key = createPrivateKey({
    key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(me.seed)]),
    format: 'der',
    type: 'pkcs8',
  })
  return {id: me.id, publicKey: me.publicKey, sign: (data: Uint8Array) => cryptoSign(null, data, key)} as unknown as Identity
}

describe('a confirmed peer cannot lock others out with what it may send', () => {
  let work: string
  let share: string
  let other: string
  let host: Peer
  let member: Peer
  let me: Identity
  let control: {host: string; port: number}
  /** The oclif dirs with the FTP plugin linked, for every peer of this file. */
  let env: NodeJS.ProcessEnv
  let lamport = 1_000_000

  /** A signed update from the member: FilesToGet update=1, bound to the host and to now. */
  const update = (versions: Array<{path: string; deleted: boolean; sha256?: string; size?: number}>, protocol: string, port: number, signer = me): string => {
    const files = versions.map((v) => {
      lamport++
      return versionToEntry(
        signVersion(
          'mixed',
          {path: v.path, deleted: v.deleted, sha256: v.sha256 ?? '', size: v.size ?? 0, mtimeMs: 1_700_000_000_000, lamport, vv: {[me.id.compact]: lamport}},
          signer,
        ),
      )
    })
    const meta = {
      update: '1',
      nonce: `u${lamport}-${Math.random().toString(36).slice(2)}`,
      ts: String(Date.now()),
      dst: formatDestination(control.host, control.port),
    }
    return formatMessage(signMessage({type: 'FilesToGet', folder: 'mixed', port, protocol, files, meta}, me))
  }

  /** The member's TrustedPeerConfirm for the host's FilesUpdated, so the exchange ends as it should. */
  const confirm = (fu: Message): string => {
    assert.equal(fu.type, 'FilesUpdated')
    if (fu.type !== 'FilesUpdated') throw new Error('unreachable')
    return formatMessage(
      signMessage(
        {
          type: 'TrustedPeerConfirm',
          folder: fu.folder,
          port: fu.port,
          protocol: fu.protocol,
          files: fu.files,
          meta: {nonce: `c${Date.now()}`, re: fu.meta.nonce ?? ''},
        },
        me,
      ),
    )
  }

  before(async () => {
    work = await tempDir('fpeer-sec-updates-')
    share = path.join(work, 'share')
    other = path.join(work, 'other')
    await mkdir(path.join(share, 'sub'), {recursive: true})
    await mkdir(other)
    await writeFile(path.join(share, 'ok.txt'), 'ok\n')
    await writeFile(path.join(share, 'sub/fine.txt'), 'fine\n')
    await writeFile(path.join(share, 'gone.txt'), 'to be deleted by an update\n')
    await writeFile(path.join(other, 'b.txt'), 'another folder\n')
    env = {...oclifDirs(path.join(work, 'oclif')), FPEER_SYNC_INTERVAL_MS: '0'}
    await linkPlugins(env, ['ftp'])
    host = await Peer.create(HOST, env)
    member = await Peer.create(MEMBER, env)
    assert.equal((await host.run(['share', share, '--name', 'mixed', '--open'])).code, 0)
    assert.equal((await host.run(['share', other, '--name', 'other', '--open'])).code, 0)
    const ready = await host.serve()
    control = {host: HOST, port: ready.control}
    // The member joins over HTTP before any hostile name is in the folder: it is confirmed, and may push updates.
    const join = await member.run(['request', host.control, 'mixed', '--into', path.join(work, 'member-copy'), '--bind', MEMBER, '--json'])
    assert.equal(join.code, 0, join.stdout + join.stderr)
    me = await loadIdentity(member.home)
    // Names with CR and LF land in the shared folder (as a confirmed peer's update over HTTP can land them).
    for (const name of UNSENDABLE) await writeFile(path.join(share, name), `${JSON.stringify(name)}\n`)
  })

  after(async () => {
    await host?.destroy()
    await member?.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('a name with CR or LF in the folder does not lock an FTP requester out: it is skipped (E_UNSUPPORTED), every other file arrives', async () => {
    const before = await outside(work, ['ftp-copy', 'http-copy', 'member-copy'])
    const into = path.join(work, 'ftp-copy')
    const ftp = new Peer(path.join(work, 'ftp-home'), FTP_REQUESTER, env)
    // A dry run says so too: those names are planned as unsupported, not as fetched.
    const dry = await ftp.run(['request', host.control, 'mixed', '--into', into, '--bind', FTP_REQUESTER, '--protocol', 'ftp', '--dry-run', '--json'])
    assert.equal(dry.code, 0, dry.stdout + dry.stderr)
    const plan = (JSON.parse(dry.stdout) as {plan: Array<{path: string; action: string}>}).plan
    assert.deepEqual(
      plan
        .filter((p) => p.action === 'unsupported')
        .map((p) => p.path)
        .sort(),
      [...UNSENDABLE].sort(),
    )
    assert.ok(
      plan.some((p) => p.path === 'ok.txt' && p.action === 'fetch'),
      dry.stdout,
    )
    const r = await ftp.run(['request', host.control, 'mixed', '--into', into, '--bind', FTP_REQUESTER, '--protocol', 'ftp', '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.state, 'confirmed')
    assert.equal(doc.protocol, 'FTP')
    assert.deepEqual([...doc.unsupported].sort(), [...UNSENDABLE].sort())
    // The warning names the code, one per name.
    const warned = r.stderr.split('\n').filter((l) => /\bcode=E_UNSUPPORTED\b/.test(l))
    assert.equal(warned.length, UNSENDABLE.length, r.stderr)
    const want = await treeHashes(share)
    for (const name of UNSENDABLE) want.delete(name)
    assert.deepEqual(await treeHashes(into), want)
    // The host lives, and over HTTP the same folder arrives whole, those names included.
    assert.equal(host.serveProcess?.exitCode, null)
    const http = new Peer(path.join(work, 'http-home'), HTTP_REQUESTER, env)
    const h = await http.run([
      'request',
      host.control,
      'mixed',
      '--into',
      path.join(work, 'http-copy'),
      '--bind',
      HTTP_REQUESTER,
      '--protocol',
      'http',
      '--json',
    ])
    assert.equal(h.code, 0, h.stdout + h.stderr)
    assert.deepEqual(JSON.parse(h.stdout).unsupported, [])
    assert.deepEqual(await treeHashes(path.join(work, 'http-copy')), await treeHashes(share))
    assert.deepEqual(
      await outside(work, ['ftp-copy', 'http-copy', 'member-copy', 'ftp-home', 'http-home']),
      Object.fromEntries(Object.entries(before).filter(([k]) => !k.startsWith('ftp-home') && !k.startsWith('http-home'))),
    )
  })

  it('an update over FTP naming a file with LF is taken without that file (E_UNSUPPORTED), not refused whole', async () => {
    const sha = createHash('sha256').update('x').digest('hex')
    // Port 1 is closed: had the host tried to fetch anything, the update would fail with E_CONNECT.
    const c = converse(control, MEMBER)
    try {
      await c.send(
        update(
          [
            {path: 'evil\nupdate.txt', deleted: false, sha256: sha, size: 1},
            {path: 'gone.txt', deleted: true},
          ],
          'FTP',
          1,
        ),
      )
      const fu = await c.next()
      assert.equal(fu?.type, 'FilesUpdated', JSON.stringify(fu))
      if (fu?.type !== 'FilesUpdated') return
      const evil = fu.files.find((f) => f.path === 'evil\nupdate.txt')
      assert.ok(evil, 'the FilesUpdated answers every entry')
      assert.notEqual(evil.ext?.got, '1')
      await c.send(confirm(fu))
      assert.equal(await c.next(), undefined, 'the host ends the exchange after the confirmation')
    } finally {
      await c.close()
    }
    const names = await readdir(share)
    assert.ok(!names.includes('gone.txt'), 'the rest of the update was applied')
    assert.ok(!names.includes('evil\nupdate.txt'))
    assert.match(host.serveStderr, /update entry not taken.*code=E_UNSUPPORTED/)
    assert.equal(host.serveProcess?.exitCode, null)
  })

  it(`an update of more than ${MAX_UPDATE_VERSIONS} versions is refused with E_MSG_TOO_MANY_FILES; the folder is unchanged`, async () => {
    const before = await listing(share)
    const signer = fastSigner(me)
    const c = converse(control, MEMBER)
    try {
      await c.send(
        update(
          Array.from({length: MAX_UPDATE_VERSIONS + 1}, (_, i) => ({path: `flood/${i}.txt`, deleted: true})),
          'HTTP',
          1,
          signer,
        ),
      )
      const reply = await c.next()
      assert.equal(reply?.type === 'PeerError' && reply.code, 'E_MSG_TOO_MANY_FILES', JSON.stringify(reply))
    } finally {
      await c.close()
    }
    assert.deepEqual(await listing(share), before)
    assert.equal(host.serveProcess?.exitCode, null)
  })

  it("a stranger's first message with more file lines than an update may carry is refused with E_MSG_TOO_MANY_FILES as it arrives, not after it is decoded", async () => {
    const c = converse(control, PROBE)
    try {
      // Never ended: the refusal comes while the message is still under way (else only the 30 s message deadline would end it).
      await c.send(`FilesToGet\nmixed\n1\nHTTP\n${'x.txt\tsize=1\n'.repeat(MAX_UPDATE_VERSIONS + 1)}`)
      const reply = await c.next(25_000)
      assert.equal(reply?.type === 'PeerError' && reply.code, 'E_MSG_TOO_MANY_FILES', JSON.stringify(reply))
    } finally {
      await c.close()
    }
    // A reply may list no more files than the message it answers (a seed-form request of an open folder: one file).
    const r = converse(control, PROBE)
    try {
      await r.send('BePeerRequest\nother\n\n')
      const ftg = await r.next()
      assert.equal(ftg?.type === 'FilesToGet' && ftg.files.length, 1, JSON.stringify(ftg))
      await r.send(`FilesUpdated\nother\n1\nHTTP\n${'b.txt\n'.repeat(50)}`)
      const reply = await r.next(25_000)
      assert.equal(reply?.type === 'PeerError' && reply.code, 'E_MSG_TOO_MANY_FILES', JSON.stringify(reply))
    } finally {
      await r.close()
    }
    assert.equal(host.serveProcess?.exitCode, null)
  })

  it(`while a maximal update (${MAX_UPDATE_VERSIONS} versions) is verified and applied, serve answers other peers: a request for another folder completes`, async () => {
    const signer = fastSigner(me)
    const c = converse(control, MEMBER)
    try {
      // Deletions of files that are not there: no fetch, all the per-version work (signature, lookups, records) stays.
      await c.send(
        update(
          Array.from({length: MAX_UPDATE_VERSIONS}, (_, i) => ({path: `flood/${i % 100}/${i}.txt`, deleted: true})),
          'HTTP',
          1,
          signer,
        ),
      )
      // Meanwhile: a probe on the control port is answered, and a whole request of another folder goes through.
      const probe = converse(control, PROBE)
      try {
        await probe.send('BePeerRequest\nno-such-folder\n\n')
        const answer = await probe.next()
        assert.equal(answer?.type === 'PeerError' && answer.code, 'E_UNKNOWN_FOLDER', JSON.stringify(answer))
      } finally {
        await probe.close()
      }
      const bystander = new Peer(path.join(work, 'bystander-home'), BYSTANDER, env)
      const r = await bystander.run(['request', host.control, 'other', '--into', path.join(work, 'bystander-copy'), '--bind', BYSTANDER, '--json'])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.equal(JSON.parse(r.stdout).state, 'confirmed')
      assert.deepEqual(await treeHashes(path.join(work, 'bystander-copy')), await treeHashes(other))
      // The update itself is accepted whole.
      const fu = await c.next()
      assert.equal(fu?.type, 'FilesUpdated', JSON.stringify(fu).slice(0, 500))
      if (fu?.type === 'FilesUpdated') assert.equal(fu.files.length, MAX_UPDATE_VERSIONS)
    } finally {
      await c.close()
    }
    assert.equal(host.serveProcess?.exitCode, null)
    assert.doesNotMatch(host.serveStderr, /E_INTERNAL/)
  })
})
