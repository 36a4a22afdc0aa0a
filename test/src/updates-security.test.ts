// Hostile updates: a FilesToGet from a non-peer, a replayed one, and ones a peer in the middle altered are refused.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {
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
import {Peer, tempDir} from './harness.js'

const sha = (s: string) => createHash('sha256').update(s).digest('hex')

/** A file server on M's address that serves whatever the test says. */
async function fileServer(host: string, files: Record<string, string>) {
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent((req.url ?? '').split('/').slice(2).join('/'))
    const body = files[rel]
    if (body === undefined) return res.writeHead(404).end()
    res.writeHead(200, {'content-length': Buffer.byteLength(body)}).end(body)
  })
  await new Promise<void>((r) => server.listen(0, host, r))
  return {port: (server.address() as net.AddressInfo).port, close: () => new Promise((r) => server.close(r))}
}

/** Sends one update FilesToGet from `from` and plays the pusher's part; returns the reply's type and code. */
async function sendUpdate(target: {host: string; port: number}, from: string, wire: string, signer?: Identity): Promise<{type: string; code?: string}> {
  return new Promise((resolve, reject) => {
    const s = net.connect({host: target.host, port: target.port, localAddress: from})
    const dec = new FrameDecoder()
    const t = setTimeout(() => reject(new Error('no reply')), 20_000)
    s.on('data', (d) => {
      for (const lines of dec.push(d)) {
        const msg = parseLines(lines)
        if (msg.type === 'FilesUpdated' && signer) {
          s.write(
            formatMessage(
              signMessage(
                {
                  type: 'TrustedPeerConfirm',
                  folder: msg.folder,
                  port: msg.port,
                  protocol: msg.protocol,
                  files: msg.files,
                  meta: {nonce: 'tpc', re: msg.meta.nonce!},
                },
                signer,
              ),
            ),
          )
          clearTimeout(t)
          resolve({type: msg.type})
          setTimeout(() => s.end(), 200)
        } else {
          clearTimeout(t)
          resolve({type: msg.type, ...(msg.type === 'PeerError' ? {code: msg.code} : {})})
          s.end()
        }
      }
    })
    s.on('error', () => {})
    s.on('connect', () => s.write(wire))
  })
}

/** The target's peer ID (compact), which an update names in `to=`. */
let targetId = ''

function update(signer: Identity, port: number, versions: FileVersion[], meta: Record<string, string | undefined> = {}): string {
  const m: Message = {type: 'FilesToGet', folder: 'docs', port, protocol: 'HTTP', files: versions.map(versionToEntry), meta: {}}
  // An attribute given as undefined is left out (a message without it).
  for (const [k, v] of Object.entries({nonce: `n-${Math.random()}`, update: '1', ts: String(Date.now()), to: targetId, dst: '127.0.15.1:7734', ...meta}))
    if (v !== undefined) m.meta[k] = v
  return formatMessage(signMessage(m, signer))
}

describe('hostile updates are refused and change nothing', () => {
  let work: string
  let target: Peer
  let middle: Peer
  let mIdentity: Identity
  let dir: string
  const TARGET = '127.0.15.1'
  const MIDDLE = '127.0.15.2'
  const origin = new Identity(generateKeyPair())
  let lamport = 100

  before(async () => {
    work = await tempDir()
    dir = path.join(work, 'docs')
    await mkdir(dir)
    await writeFile(path.join(dir, 'a.txt'), 'original\n')
    target = await Peer.create(TARGET, {FPEER_SYNC_INTERVAL_MS: '3600000'})
    middle = await Peer.create(MIDDLE)
    await target.run(['share', dir, '--name', 'docs', '--allow', await middle.id()])
    await target.serve([], {}, {ports: 'default'})
    targetId = PeerId.parse(target.ready!.id).compact
    const r = await middle.run(['request', `${TARGET}:7734`, 'docs', '--into', path.join(work, 'middle'), '--bind', MIDDLE, '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    mIdentity = await loadIdentity(middle.home)
  })
  after(async () => {
    await target.destroy()
    await middle.destroy()
    await rm(work, {recursive: true, force: true})
  })

  const content = () => readFile(path.join(dir, 'a.txt'), 'utf8')
  const version = (text: string) =>
    signVersion(
      'docs',
      {
        path: 'a.txt',
        deleted: false,
        sha256: sha(text),
        size: Buffer.byteLength(text),
        mtimeMs: Date.now(),
        lamport: ++lamport,
        vv: {[origin.id.compact]: lamport},
      },
      origin,
    )

  it('a FilesToGet from a peer that is not a confirmed peer of the folder is refused with E_NOT_ALLOWED', async () => {
    const stranger = new Identity(generateKeyPair())
    const srv = await fileServer(MIDDLE, {'a.txt': 'from a stranger\n'})
    try {
      const reply = await sendUpdate({host: TARGET, port: 7734}, MIDDLE, update(stranger, srv.port, [version('from a stranger\n')]))
      assert.deepEqual(reply, {type: 'PeerError', code: 'E_NOT_ALLOWED'})
      assert.equal(await content(), 'original\n')
    } finally {
      await srv.close()
    }
  })

  it('a version whose content a peer in the middle altered is refused with E_BAD_SIGNATURE', async () => {
    const v = version('genuine\n')
    const altered = {...v, sha256: sha('altered\n'), size: 8}
    const srv = await fileServer(MIDDLE, {'a.txt': 'altered\n'})
    try {
      const reply = await sendUpdate({host: TARGET, port: 7734}, MIDDLE, update(mIdentity, srv.port, [altered]), mIdentity)
      assert.deepEqual(reply, {type: 'PeerError', code: 'E_BAD_SIGNATURE'})
      assert.equal(await content(), 'original\n')
    } finally {
      await srv.close()
    }
  })

  it('a genuine version served with other bytes is refused with E_HASH_MISMATCH', async () => {
    const srv = await fileServer(MIDDLE, {'a.txt': 'GENUINE\n'})
    try {
      const reply = await sendUpdate({host: TARGET, port: 7734}, MIDDLE, update(mIdentity, srv.port, [version('genuine\n')]), mIdentity)
      assert.deepEqual(reply, {type: 'PeerError', code: 'E_HASH_MISMATCH'})
      assert.equal(await content(), 'original\n')
    } finally {
      await srv.close()
    }
  })

  it('a genuine update relayed by a confirmed peer is taken; replaying it is refused with E_REPLAY', async () => {
    const srv = await fileServer(MIDDLE, {'a.txt': 'relayed\n'})
    try {
      const wire = update(mIdentity, srv.port, [version('relayed\n')])
      assert.deepEqual(await sendUpdate({host: TARGET, port: 7734}, MIDDLE, wire, mIdentity), {type: 'FilesUpdated'})
      assert.equal(await content(), 'relayed\n')
      assert.deepEqual(await sendUpdate({host: TARGET, port: 7734}, MIDDLE, wire, mIdentity), {type: 'PeerError', code: 'E_REPLAY'})
    } finally {
      await srv.close()
    }
  })

  it('an update stamped long ago, or far ahead, is refused as stale', async () => {
    const srv = await fileServer(MIDDLE, {'a.txt': 'stale\n'})
    try {
      for (const ts of [Date.now() - 3_600_000, Date.now() + 3_600_000]) {
        const reply = await sendUpdate({host: TARGET, port: 7734}, MIDDLE, update(mIdentity, srv.port, [version('stale\n')], {ts: String(ts)}), mIdentity)
        assert.deepEqual(reply, {type: 'PeerError', code: 'E_STALE_MESSAGE'})
      }
      assert.equal(await content(), 'relayed\n')
    } finally {
      await srv.close()
    }
  })

  it('an update meant for another peer, or for no peer in particular, is refused with E_WRONG_DESTINATION', async () => {
    const srv = await fileServer(MIDDLE, {'a.txt': 'elsewhere\n'})
    try {
      const other = new Identity(generateKeyPair()).id.compact
      // Another peer's ID; the target's ID but dialled elsewhere (a relay's address); no binding at all.
      for (const meta of [{to: other}, {dst: '127.0.15.9:7734'}, {to: undefined, dst: undefined}]) {
        const wire = update(mIdentity, srv.port, [version('elsewhere\n')], meta)
        assert.deepEqual(await sendUpdate({host: TARGET, port: 7734}, MIDDLE, wire, mIdentity), {type: 'PeerError', code: 'E_WRONG_DESTINATION'})
      }
      assert.equal(await content(), 'relayed\n')
    } finally {
      await srv.close()
    }
  })

  it('an older version than the one held is acknowledged but changes nothing', async () => {
    const old = signVersion(
      'docs',
      {path: 'a.txt', deleted: false, sha256: sha('older\n'), size: 6, mtimeMs: 1, lamport: 1, vv: {[origin.id.compact]: 1}},
      origin,
    )
    const srv = await fileServer(MIDDLE, {'a.txt': 'older\n'})
    try {
      assert.deepEqual(await sendUpdate({host: TARGET, port: 7734}, MIDDLE, update(mIdentity, srv.port, [old]), mIdentity), {type: 'FilesUpdated'})
      assert.equal(await content(), 'relayed\n')
    } finally {
      await srv.close()
    }
  })
})
