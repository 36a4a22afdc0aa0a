// A hostile host, scripted with core's codec: hostile names, wrong content, forged or replayed confirmations.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdir, readdir, rm, symlink, writeFile} from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FrameDecoder, Identity, type Message, formatMessage, generateKeyPair, parseLines, signMessage} from '@fpeer/core'
import {Peer, exists, tempDir} from './harness.js'

const sha = (s: string) => createHash('sha256').update(s).digest('hex')

interface Script {
  /** Files the host lists (path → content it claims, by hash). */
  list: Array<{path: string; claimed: string}>
  /** What its HTTP server actually sends for a path. */
  serve: Record<string, string>
  /** How to spoil the TrustedPeerConfirm. */
  confirm?: 'forged' | 'replayed' | 'good'
}

/** A fake host: answers one BePeerRequest with a scripted FilesToGet, serves scripted bytes, and confirms as scripted. */
async function hostileHost(identity: Identity, script: Script) {
  const web = http.createServer((req, res) => {
    const rel = decodeURIComponent((req.url ?? '').split('/').slice(2).join('/'))
    const body = script.serve[rel]
    if (body === undefined) return res.writeHead(404).end()
    res.writeHead(200, {'content-length': Buffer.byteLength(body)}).end(body)
  })
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r))
  const webPort = (web.address() as net.AddressInfo).port
  const control = net.createServer((socket) => {
    const dec = new FrameDecoder()
    const send = (m: Message) => socket.write(formatMessage(m))
    let bprNonce = ''
    socket.on('data', (d) => {
      for (const lines of dec.push(d)) {
        const msg = parseLines(lines)
        if (msg.type === 'BePeerRequest') {
          bprNonce = msg.meta.nonce!
          send(
            signMessage(
              {
                type: 'FilesToGet',
                folder: msg.folder,
                port: webPort,
                protocol: 'HTTP',
                meta: {nonce: 'host-nonce', re: bprNonce},
                files: script.list.map((f) => ({path: f.path, size: Buffer.byteLength(f.claimed), sha256: sha(f.claimed)})),
              },
              identity,
            ),
          )
        } else if (msg.type === 'FilesUpdated') {
          const base = {type: 'TrustedPeerConfirm' as const, folder: msg.folder, port: webPort, protocol: 'HTTP', files: msg.files}
          if (script.confirm === 'forged') {
            const forged = signMessage({...base, meta: {nonce: 'n2', re: msg.meta.nonce!}}, new Identity(generateKeyPair()))
            send({...forged, meta: {...forged.meta, id: identity.id.compact}})
          } else if (script.confirm === 'replayed') {
            send(signMessage({...base, meta: {nonce: 'n2', re: 'an-old-nonce'}}, identity))
          } else {
            send(signMessage({...base, meta: {nonce: 'n2', re: msg.meta.nonce!}}, identity))
          }
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

describe('a hostile host cannot make the requester write outside the folder or keep bad content', () => {
  let work: string
  let requester: Peer
  const hostIdentity = new Identity(generateKeyPair())

  before(async () => {
    work = await tempDir()
    requester = await Peer.create('127.0.0.2')
  })
  after(async () => {
    await requester.destroy()
    await rm(work, {recursive: true, force: true})
  })

  async function request(name: string, script: Script, prepare?: (into: string) => Promise<void>) {
    const into = path.join(work, name, 'into')
    await mkdir(into, {recursive: true})
    await prepare?.(into)
    const host = await hostileHost(hostIdentity, script)
    try {
      const r = await requester.run(['request', `127.0.0.1:${host.port}`, 'docs', '--into', into, '--bind', '127.0.0.2', '--json'])
      return {r, into, body: JSON.parse(r.stdout)}
    } finally {
      await host.close()
    }
  }

  const assertNotConfirmed = async () => {
    const status = await requester.json(['status'])
    assert.deepEqual(status.folders, [])
  }

  for (const [name, bad] of [
    ['dotdot', '../escape.txt'],
    ['absolute', '/tmp/fpeer-hostile-absolute.txt'],
    ['inner-dotdot', 'a/../../escape.txt'],
  ] as const) {
    it(`a FilesToGet naming ${bad} is refused with E_PATH_UNSAFE and nothing is written`, async () => {
      const {r, into, body} = await request(name, {
        list: [
          {path: 'ok.txt', claimed: 'ok'},
          {path: bad, claimed: 'evil'},
        ],
        serve: {'ok.txt': 'ok', [bad]: 'evil'},
      })
      assert.equal(r.code, 5, r.stdout + r.stderr)
      assert.equal(body.error.code, 'E_PATH_UNSAFE')
      assert.deepEqual(await readdir(into), [])
      assert.equal(await exists(path.join(work, name, 'escape.txt')), false)
      assert.equal(await exists('/tmp/fpeer-hostile-absolute.txt'), false)
      await assertNotConfirmed()
    })
  }

  it('a path through a symlink is refused and the outside target is untouched', async () => {
    const outside = path.join(work, 'outside')
    await mkdir(outside, {recursive: true})
    const {r, body} = await request('symlink', {list: [{path: 'link/planted.txt', claimed: 'evil'}], serve: {'link/planted.txt': 'evil'}}, async (into) => {
      await symlink(outside, path.join(into, 'link'))
    })
    assert.equal(r.code, 5, r.stdout + r.stderr)
    assert.equal(body.error.code, 'E_PATH_UNSAFE')
    assert.deepEqual(await readdir(outside), [])
    await assertNotConfirmed()
  })

  it('wrong content is refused with E_HASH_MISMATCH and not kept, not even as a part file', async () => {
    const {r, into, body} = await request('content', {list: [{path: 'a.txt', claimed: 'good!'}], serve: {'a.txt': 'evil!'}})
    assert.equal(r.code, 5, r.stdout + r.stderr)
    assert.equal(body.error.code, 'E_HASH_MISMATCH')
    assert.deepEqual(await readdir(into), [])
    await assertNotConfirmed()
  })

  it('more bytes than announced are refused with E_SIZE_MISMATCH', async () => {
    const {r, into, body} = await request('size', {list: [{path: 'a.txt', claimed: 'good'}], serve: {'a.txt': 'good and then some'}})
    assert.equal(r.code, 5, r.stdout + r.stderr)
    assert.equal(body.error.code, 'E_SIZE_MISMATCH')
    assert.deepEqual(await readdir(into), [])
  })

  it('a forged TrustedPeerConfirm signature is refused: the requester is not confirmed', async () => {
    const {r, body} = await request('forged', {list: [{path: 'a.txt', claimed: 'good'}], serve: {'a.txt': 'good'}, confirm: 'forged'})
    assert.equal(r.code, 5, r.stdout + r.stderr)
    assert.equal(body.error.code, 'E_BAD_SIGNATURE')
    await assertNotConfirmed()
  })

  it('a replayed TrustedPeerConfirm (answering another nonce) is refused', async () => {
    const {r, body} = await request('replayed', {list: [{path: 'a.txt', claimed: 'good'}], serve: {'a.txt': 'good'}, confirm: 'replayed'})
    assert.equal(r.code, 5, r.stdout + r.stderr)
    assert.equal(body.error.code, 'E_NONCE_MISMATCH')
    await assertNotConfirmed()
  })

  it('a well-behaved scripted host confirms (the harness itself is sound)', async () => {
    const {r, into} = await request('good', {list: [{path: 'a.txt', claimed: 'good'}], serve: {'a.txt': 'good'}, confirm: 'good'})
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.deepEqual(await readdir(into), ['a.txt'])
  })
})
