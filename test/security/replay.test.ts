// Attacks on authentication: a relayed, replayed or stale signed request, and reading a private folder by address alone.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {mkdir, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FrameDecoder, type Identity, type Message, formatDestination, formatMessage, loadIdentity, parseLines, signMessage} from '@fpeer/core'
import {Peer, linkPlugins, oclifDirs, tempDir, treeHashes} from '../src/harness.js'

const FOLDER = 'vault'
const HOST = '127.0.16.1'
const LEGIT = '127.0.16.2'
const THIEF = '127.0.16.7'
const RELAY = '127.0.16.9'
const SECRETS: Record<string, string> = {'one.txt': 'secret one\n', 'two/two.txt': 'secret two\n', 'three.bin': 'secret three\n'}

/** Sends `wire` from `from` to `to`; resolves with the first reply and the socket (left open, so a handshake can stay in progress). */
function exchange(to: {host: string; port: number}, from: string, wire: string): Promise<{reply: Message; socket: net.Socket}> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({host: to.host, port: to.port, localAddress: from})
    const dec = new FrameDecoder()
    const t = setTimeout(() => {
      socket.destroy()
      reject(new Error('no reply within 20 s'))
    }, 20_000)
    socket.on('data', (d) => {
      const done = dec.push(d)
      if (done.length === 0) return
      clearTimeout(t)
      resolve({reply: parseLines(done[0]!), socket})
    })
    socket.on('error', (err) => {
      clearTimeout(t)
      reject(err)
    })
    socket.on('connect', () => socket.write(wire))
  })
}

async function closed(socket: net.Socket): Promise<void> {
  if (socket.destroyed) return
  await new Promise<void>((r) => {
    socket.once('close', () => r())
    socket.destroy()
  })
}

/** Runs curl (bounded); resolves with its exit code and what it wrote. */
function curl(args: string[]): Promise<{code: number | null; stdout: string}> {
  return new Promise((resolve) => {
    const child = spawn('curl', ['-sS', '--max-time', '20', ...args], {stdio: ['ignore', 'pipe', 'ignore']})
    let stdout = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.once('close', (code) => resolve({code, stdout}))
  })
}

/**
 * A hostile host: it takes a requester's BePeerRequest and relays the bytes to the real
 * host from its own address; it records what the real host answered.
 */
async function relay(target: {host: string; port: number}) {
  const answers: Message[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((inbound) => {
    sockets.add(inbound)
    inbound.on('close', () => sockets.delete(inbound))
    inbound.on('error', () => {})
    const dec = new FrameDecoder()
    const chunks: Buffer[] = []
    inbound.on('data', async (d: Buffer) => {
      chunks.push(d)
      if (dec.push(d).length === 0) return
      const {reply, socket} = await exchange(target, RELAY, Buffer.concat(chunks).toString('utf8')).catch(() => ({reply: undefined, socket: undefined}))
      if (reply) answers.push(reply)
      if (socket) await closed(socket)
      inbound.end(reply ? formatMessage(reply) : '')
    })
  })
  await new Promise<void>((r) => server.listen(0, RELAY, r))
  return {
    port: (server.address() as net.AddressInfo).port,
    answers,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise((r) => server.close(r))
    },
  }
}

describe('a signed request cannot be relayed or replayed, and a private folder is read by secret, not by address', () => {
  let work: string
  let host: Peer
  let legit: Peer
  let legitIdentity: Identity
  let hostId: string
  let control: {host: string; port: number}
  let ports: Record<string, number>

  /** A BePeerRequest signed by the allowed peer, as the real requester would send it to the host. */
  const request = (meta: Record<string, string | undefined> = {}): string => {
    const m: Message = {type: 'BePeerRequest', folder: FOLDER, meta: {}}
    const all = {
      nonce: `n${Math.random().toString(36).slice(2)}`,
      ts: String(Date.now()),
      dst: formatDestination(control.host, control.port),
      protocols: 'HTTP,FTP',
      ...meta,
    }
    for (const [k, v] of Object.entries(all)) if (v !== undefined) m.meta[k] = v
    return formatMessage(signMessage(m, legitIdentity))
  }

  before(async () => {
    work = await tempDir()
    const vault = path.join(work, FOLDER)
    for (const [rel, body] of Object.entries(SECRETS)) {
      await mkdir(path.dirname(path.join(vault, rel)), {recursive: true})
      await writeFile(path.join(vault, rel), body)
    }
    const env = oclifDirs(path.join(work, 'oclif'))
    await linkPlugins(env, ['ftp'])
    host = await Peer.create(HOST, env)
    legit = await Peer.create(LEGIT)
    legitIdentity = await loadIdentity(legit.home)
    assert.equal((await host.run(['share', vault, '--name', FOLDER, '--allow', legitIdentity.id.toString()])).code, 0)
    const ready = await host.serve()
    hostId = ready.id
    control = {host: HOST, port: ready.control}
    ports = ready.ports
    assert.ok(ports.FTP && ports.HTTP)
  })

  after(async () => {
    await host.destroy()
    await legit.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it("a hostile host that relays a requester's signed request to the real host gets E_WRONG_DESTINATION, not the files", async () => {
    const r = await relay(control)
    try {
      // Once trusting whoever answers, once naming the real host's ID: the request is bound to the relay's address either way.
      for (const extra of [[], ['--peer-id', hostId]]) {
        const into = path.join(work, `relayed-${extra.length}`)
        const res = await legit.run(['request', `${RELAY}:${r.port}`, FOLDER, '--into', into, '--bind', LEGIT, '--json', ...extra])
        assert.notEqual(res.code, 0, res.stdout)
        const last = r.answers.at(-1)
        assert.equal(last?.type, 'PeerError')
        assert.equal(last?.type === 'PeerError' && last.code, 'E_WRONG_DESTINATION')
        assert.deepEqual([...(await treeHashes(into).catch(() => new Map())).keys()], [])
      }
      assert.ok(
        r.answers.every((m) => m.type !== 'FilesToGet'),
        'the real host never sent the relay a FilesToGet',
      )
    } finally {
      await r.close()
    }
  })

  it('a request meant for another peer ID is refused with E_WRONG_DESTINATION', async () => {
    const {reply, socket} = await exchange(control, LEGIT, request({to: legitIdentity.id.compact}))
    await closed(socket)
    assert.equal(reply.type === 'PeerError' && reply.code, 'E_WRONG_DESTINATION')
  })

  it('a replayed request from another address is refused with E_REPLAY; stale or undated ones with E_STALE_MESSAGE', async () => {
    const wire = request()
    const first = await exchange(control, LEGIT, wire)
    try {
      assert.equal(first.reply.type, 'FilesToGet')
      const again = await exchange(control, THIEF, wire)
      await closed(again.socket)
      assert.equal(again.reply.type === 'PeerError' && again.reply.code, 'E_REPLAY')
    } finally {
      await closed(first.socket)
    }
    for (const ts of [String(Date.now() - 3_600_000), String(Date.now() + 3_600_000), undefined]) {
      const {reply, socket} = await exchange(control, THIEF, request({ts}))
      await closed(socket)
      assert.equal(reply.type === 'PeerError' && reply.code, 'E_STALE_MESSAGE', `ts=${ts}`)
    }
  })

  it("while a handshake runs, its requester's address alone reads nothing over HTTP or FTP; the secret in its FilesToGet does", async () => {
    const {reply, socket} = await exchange(control, LEGIT, request())
    try {
      assert.equal(reply.type, 'FilesToGet')
      const grant = reply.meta.grant
      assert.match(grant ?? '', /^[A-Za-z0-9_-]{43}$/)
      for (const rel of Object.keys(SECRETS)) {
        const url = `http://${HOST}:${ports.HTTP}/${FOLDER}/${rel}`
        const bare = await curl(['--interface', LEGIT, '-o', '/dev/null', '-w', '%{http_code}', url])
        assert.equal(bare.stdout, '403', `${rel} over HTTP without the secret`)
        const other = await curl(['--interface', THIEF, '-H', `Authorization: Bearer ${'A'.repeat(43)}`, '-o', '/dev/null', '-w', '%{http_code}', url])
        assert.equal(other.stdout, '403', `${rel} over HTTP with a made-up secret`)
        const ftp = await curl(['--interface', LEGIT, `ftp://${HOST}:${ports.FTP}/${FOLDER}/${rel}`])
        assert.notEqual(ftp.code, 0, `${rel} over anonymous FTP`)
        assert.equal(ftp.stdout, '')
        // The secret works from any address: access follows the key's grant, not the IP.
        assert.equal((await curl(['--interface', THIEF, '-H', `Authorization: Bearer ${grant}`, url])).stdout, SECRETS[rel])
        assert.equal((await curl(['--interface', THIEF, '-u', `fpeer:${grant}`, `ftp://${HOST}:${ports.FTP}/${FOLDER}/${rel}`])).stdout, SECRETS[rel])
      }
    } finally {
      await closed(socket)
    }
  })

  it('after all that, the host lives and the allowed peer becomes a peer; the grant ends with the handshake', async () => {
    const into = path.join(work, 'legit')
    const res = await legit.run(['request', host.control, FOLDER, '--into', into, '--bind', LEGIT, '--json'])
    assert.equal(res.code, 0, res.stdout + res.stderr)
    assert.equal((await treeHashes(into)).size, Object.keys(SECRETS).length)
    // A confirmed peer reads by a fresh grant too, never by its address.
    const bare = await curl(['--interface', LEGIT, '-o', '/dev/null', '-w', '%{http_code}', `http://${HOST}:${ports.HTTP}/${FOLDER}/one.txt`])
    assert.equal(bare.stdout, '403')
  })
})
