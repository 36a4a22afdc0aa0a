// Attacks on the early fetch-back (protocol 4.9): a requester that announces files early and serves other bytes, or names what it was not offered.
import assert from 'node:assert/strict'
import {mkdir, rm, writeFile} from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {type FileEntry, type Identity, type Message, connectChannel, formatDestination, loadIdentity, randomNonce, signMessage} from '@fpeer/core'
import {Peer, tempDir, treeHashes} from '../src/harness.js'

const FOLDER = 'ledger'
const HOST = '127.0.17.1'
const LEGIT = '127.0.17.2'
const HOSTILE = '127.0.17.6'
const FILES: Record<string, string> = {'one.txt': 'first entry\n', 'two/two.txt': 'second entry\n', 'three.bin': 'third entry\n'.repeat(1000)}

/** The hostile requester's copy server: every file is the right size and the wrong content; it records what the host asked for. */
async function lyingServer(): Promise<{port: number; asked: Array<{method: string; url: string; auth: string}>; close(): Promise<void>}> {
  const asked: Array<{method: string; url: string; auth: string}> = []
  const server = http.createServer((req, res) => {
    asked.push({method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization ?? ''})
    // No batch endpoint: the host falls back to one GET per file, as against any HTTP server.
    if (req.method !== 'GET') {
      res.writeHead(404).end()
      return
    }
    const rel = decodeURIComponent((req.url ?? '').split('?')[0]!.split('/').slice(2).join('/'))
    const body = FILES[rel]
    if (body === undefined) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, {'content-length': Buffer.byteLength(body)}).end('X'.repeat(Buffer.byteLength(body)))
  })
  await new Promise<void>((r) => server.listen(0, HOSTILE, r))
  return {
    port: (server.address() as net.AddressInfo).port,
    asked,
    close: async () => {
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    },
  }
}

describe('a requester abusing early=1 gets a typed refusal, no confirmation, and the host serves on', () => {
  let work: string
  let shared: string
  let host: Peer
  let legit: Peer
  let hostile: Peer
  let hostileIdentity: Identity
  let control: {host: string; port: number}

  /** Runs a hostile handshake: BePeerRequest with early=1, then `progress(ftg)` as the only FilesUpdated; returns the FilesToGet and the host's answer. */
  async function attack(
    progress: (ftg: Extract<Message, {type: 'FilesToGet'}>) => Message,
  ): Promise<{ftg: Extract<Message, {type: 'FilesToGet'}>; answer: Message}> {
    const channel = await connectChannel(control.host, control.port, {localAddress: HOSTILE, timeoutMs: 20_000})
    try {
      const bpr: Message = {
        type: 'BePeerRequest',
        folder: FOLDER,
        meta: {early: '1', nonce: randomNonce(), ts: String(Date.now()), dst: formatDestination(control.host, control.port), protocols: 'HTTP'},
      }
      await channel.send(signMessage(bpr, hostileIdentity))
      const ftg = await channel.next(20_000)
      assert.equal(ftg.type, 'FilesToGet')
      if (ftg.type !== 'FilesToGet') throw new Error('unreachable')
      await channel.send(signMessage(progress(ftg), hostileIdentity))
      return {ftg, answer: await channel.next(60_000)}
    } finally {
      await channel.close()
    }
  }
  const part = (ftg: {meta: Record<string, string>}, port: number, files: FileEntry[]): Message => ({
    type: 'FilesUpdated',
    folder: FOLDER,
    port,
    protocol: 'HTTP',
    files,
    meta: {part: '1', nonce: randomNonce(), re: ftg.meta.nonce ?? '', grant: 'hostile-grant-'.padEnd(43, 'x')},
  })

  /** The host still answers a real requester with a confirmed copy (the second time, a re-request of the copy it holds). */
  async function stillServes(into: string): Promise<void> {
    const r = await legit.run(['request', `${control.host}:${control.port}`, FOLDER, '--into', into, '--bind', LEGIT, '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.deepEqual(await treeHashes(into), await treeHashes(shared))
  }

  const peerIds = async () => ((await host.json(['peers', FOLDER])).peers as Array<{id: string}>).map((p) => p.id)

  before(async () => {
    work = await tempDir()
    shared = path.join(work, FOLDER)
    for (const [rel, body] of Object.entries(FILES)) {
      await mkdir(path.dirname(path.join(shared, rel)), {recursive: true})
      await writeFile(path.join(shared, rel), body)
    }
    host = await Peer.create(HOST)
    legit = await Peer.create(LEGIT)
    hostile = await Peer.create(HOSTILE)
    hostileIdentity = await loadIdentity(hostile.home)
    const legitId = (await loadIdentity(legit.home)).id.toString()
    assert.equal((await host.run(['share', shared, '--name', FOLDER, '--allow', hostileIdentity.id.toString(), '--allow', legitId])).code, 0)
    const ready = await host.serve()
    control = {host: HOST, port: ready.control}
  })

  after(async () => {
    await host.destroy()
    await legit.destroy()
    await hostile.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('announcing a file early and serving other bytes is E_HASH_MISMATCH before any final FilesUpdated; nothing confirmed, the folder unchanged', async () => {
    const before = await treeHashes(shared)
    const server = await lyingServer()
    try {
      const {ftg, answer} = await attack((f) =>
        part(
          f,
          server.port,
          f.files.filter((e) => e.path === 'one.txt'),
        ),
      )
      assert.equal(ftg.meta.early, '1')
      assert.equal(answer.type === 'PeerError' && answer.code, 'E_HASH_MISMATCH')
      // The host fetched the announced file back with the progress message's grant, and only that file.
      const gets = server.asked.filter((a) => a.method === 'GET')
      assert.deepEqual(
        gets.map((a) => a.url),
        [`/${FOLDER}/one.txt`],
      )
      assert.equal(gets[0]!.auth, `Bearer ${'hostile-grant-'.padEnd(43, 'x')}`)
    } finally {
      await server.close()
    }
    assert.equal((await peerIds()).includes(hostileIdentity.id.toString()), false)
    assert.deepEqual(await treeHashes(shared), before)
    await stillServes(path.join(work, 'copy'))
  })

  it('announcing a file the FilesToGet does not offer, or one twice, is E_MSG_BAD_FIELD and nothing is fetched', async () => {
    const server = await lyingServer()
    try {
      const outside = await attack((f) => part(f, server.port, [{path: 'not/offered.txt', size: 3, sha256: 'a'.repeat(64)}]))
      assert.equal(outside.answer.type === 'PeerError' && outside.answer.code, 'E_MSG_BAD_FIELD')
      const twice = await attack((f) => part(f, server.port, [f.files.find((e) => e.path === 'one.txt')!, f.files.find((e) => e.path === 'one.txt')!]))
      assert.equal(twice.answer.type === 'PeerError' && twice.answer.code, 'E_MSG_BAD_FIELD')
      assert.deepEqual(server.asked, [])
    } finally {
      await server.close()
    }
    assert.equal((await peerIds()).includes(hostileIdentity.id.toString()), false)
    await stillServes(path.join(work, 'copy'))
  })
})
