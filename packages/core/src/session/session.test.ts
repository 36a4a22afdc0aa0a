// In-process tests of the "Becoming a Peer" handshake: host and requester in one process, over a loopback control socket and the in-memory transport.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {GrantTable} from '../access/grants.js'
import {ReplayGuard} from '../access/replay-guard.js'
import {FpeerError, isFpeerError} from '../errors.js'
import {LocalFileSource} from '../fs/local-source.js'
import {Identity, type PeerId, generateKeyPair} from '../identity.js'
import {MessageChannel} from '../net/channel.js'
import {TransportRegistry} from '../registry.js'
import type {PeerRecord} from '../store/peerfile.js'
import {createMemoryTransport} from '../testing/memory-transport.js'
import {silentLogger, type TransportServer} from '../transport.js'
import type {FileEntry} from '../wire/types.js'
import {defaultTimeouts, type HostContext} from './context.js'
import {refusedBy} from './handshake.js'
import {serveConnection} from './host.js'
import {requestFolder, type RequestOptions} from './requester.js'

const FOLDER = 'share'
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex')
const TIMEOUTS = defaultTimeouts({reply: 20_000, transfer: 60_000, stall: 20_000, io: 20_000, message: 20_000})
const FILES: Record<string, string> = {'a.txt': 'hello\n', 'dir/b.txt': 'b'.repeat(5000), 'dir/deeper/c.bin': 'c'.repeat(300_000)}

async function tree(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true, recursive: true})) if (!e.isDirectory()) out.push(path.relative(dir, path.join(e.parentPath, e.name)))
  return out.sort()
}

/** A host in this process: a control server on 127.0.0.1 running serveConnection, and a memory transport server for its folder. */
interface Host {
  identity: Identity
  port: number
  confirmed: PeerRecord[]
  /** What the host's list says, before it is sent: a test may spoil it. */
  list: (entries: FileEntry[]) => FileEntry[]
  mayJoin: (sender: PeerId | undefined) => boolean
  /** Which senders the host counts as confirmed peers. */
  isPeer: (id: PeerId) => boolean
  /** The peer a busy host hands requests to (seed step 8); undefined: not busy. */
  delegate: HostContext['delegateFor']
  /** Every control connection's serveConnection, to await before the host stops. */
  sessions: Set<Promise<void>>
  close(): Promise<void>
}

describe('the handshake in process (host.ts and requester.ts)', () => {
  let work: string
  let hostDir: string
  const transport = createMemoryTransport()
  const registry = new TransportRegistry()
  registry.add(transport, 'memory')
  let host: Host
  let n = 0

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-session-'))
    hostDir = path.join(work, 'host')
    for (const [p, c] of Object.entries(FILES)) {
      await mkdir(path.dirname(path.join(hostDir, p)), {recursive: true})
      await writeFile(path.join(hostDir, p), c)
    }
    host = await startHost()
  })
  after(async () => {
    await host?.close()
    await rm(work, {recursive: true, force: true})
  })

  async function startHost(): Promise<Host> {
    const identity = new Identity(generateKeyPair())
    const grants = new GrantTable()
    const source = new LocalFileSource({root: (f) => (f === FOLDER ? hostDir : undefined), mayRead: (f, who) => grants.allows(f, who)}, () => [FOLDER])
    const served: TransportServer = await transport.serve({host: '127.0.0.1', port: 0, files: source, identity})
    const sessions = new Set<Promise<void>>()
    const h: Host = {identity, port: 0, confirmed: [], list: (e) => e, mayJoin: () => true, isPeer: () => false, delegate: () => undefined, sessions, close: async () => {}}
    const ctx: HostContext = {
      identity,
      registry,
      log: silentLogger,
      timeouts: TIMEOUTS,
      concurrency: 2,
      folder: async (name) => (name === FOLDER ? {open: false} : undefined),
      mayJoin: async (_folder, sender) => h.mayJoin(sender),
      fileList: async () => h.list(Object.entries(FILES).map(([p, c]) => ({path: p, size: Buffer.byteLength(c), sha256: sha(c), mtimeMs: 1_700_000_000_000}))),
      isPeer: (_folder, id) => h.isPeer(id),
      delegateFor: (folder, requester) => h.delegate?.(folder, requester),
      servedPort: (protocol) => (protocol === transport.protocol ? served.port : undefined),
      grant: (folder, peer) => grants.issue(folder, peer),
      replay: new ReplayGuard(),
      confirmPeer: async (_folder, record) => {
        h.confirmed.push(record)
      },
    }
    const control = net.createServer((socket) => {
      const s = serveConnection(new MessageChannel(socket), ctx)
      sessions.add(s)
      void s.finally(() => sessions.delete(s))
    })
    await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve))
    h.port = (control.address() as net.AddressInfo).port
    h.close = async () => {
      await new Promise((r) => control.close(r))
      await Promise.allSettled([...sessions])
      await served.close()
    }
    return h
  }

  const request = (over: Partial<RequestOptions> = {}): Promise<Awaited<ReturnType<typeof requestFolder>>> =>
    requestFolder({
      host: '127.0.0.1',
      port: host.port,
      folder: FOLDER,
      into: path.join(work, `into-${++n}`),
      bind: '127.0.0.2',
      identity: new Identity(generateKeyPair()),
      registry,
      concurrency: 2,
      timeouts: TIMEOUTS,
      log: silentLogger,
      ...over,
    })

  const reset = () => {
    host.list = (e) => e
    host.mayJoin = () => true
    host.isPeer = () => false
    host.delegate = () => undefined
  }

  it('lands the folder, the host checks the copy back and confirms the requester', async () => {
    reset()
    const me = new Identity(generateKeyPair())
    const before = host.confirmed.length
    const r = await request({identity: me, expectedHost: host.identity.id})
    assert.equal(r.protocol, 'MEMORY')
    assert.equal(r.host.id, host.identity.id.toString())
    assert.equal(r.transfer.fetched, 3)
    assert.deepEqual(await tree(r.into), Object.keys(FILES).sort())
    for (const [p, c] of Object.entries(FILES)) assert.equal(await readFile(path.join(r.into, p), 'utf8'), c)
    assert.equal(host.confirmed.length, before + 1)
    assert.equal(host.confirmed.at(-1)?.id, me.id.toString())
    assert.equal(host.confirmed.at(-1)?.address, '127.0.0.2')
  })

  it('an unknown folder is refused with E_UNKNOWN_FOLDER, the peer’s code, and nothing is created', async () => {
    reset()
    const into = path.join(work, 'never')
    await assert.rejects(request({folder: 'nope', into}), (e: unknown) => isFpeerError(e, 'E_UNKNOWN_FOLDER') && (e.details as {peerCode: string}).peerCode === 'E_UNKNOWN_FOLDER')
    await assert.rejects(readdir(into), {code: 'ENOENT'})
  })

  it('a requester the folder does not allow is E_NOT_ALLOWED', async () => {
    reset()
    host.mayJoin = () => false
    const before = host.confirmed.length
    await assert.rejects(request(), {code: 'E_NOT_ALLOWED'})
    assert.equal(host.confirmed.length, before)
  })

  it('a refusal of a signed request is signed for its sender: with the host expected, it carries refusedBy (10.6)', async () => {
    reset()
    host.mayJoin = () => false
    const me = new Identity(generateKeyPair())
    await assert.rejects(request({identity: me, expectedHost: host.identity.id}), (e: unknown) => isFpeerError(e, 'E_NOT_ALLOWED') && refusedBy(e) === host.identity.id.toString())
    // Without knowing the host's ID, a refusal cannot be told from anybody's: it ends no trust.
    await assert.rejects(request({identity: me}), (e: unknown) => isFpeerError(e, 'E_NOT_ALLOWED') && refusedBy(e) === undefined)
  })

  it('a busy host hands a newcomer to another peer, but answers a confirmed peer catching up itself (10.5, 10.6)', async () => {
    reset()
    const other = new Identity(generateKeyPair())
    host.delegate = () => ({id: other.id, address: '127.0.0.9', controlPort: 9})
    const newcomer = new Identity(generateKeyPair())
    await assert.rejects(request({identity: newcomer, expectedHost: host.identity.id, followDelegation: false}), (e: unknown) => isFpeerError(e, 'E_PEER_ERROR') && (e.details as {peerCode: string}).peerCode === 'E_DELEGATED')
    const member = new Identity(generateKeyPair())
    host.isPeer = (id) => id.equals(member.id)
    const before = host.confirmed.length
    const r = await request({identity: member, expectedHost: host.identity.id, followDelegation: false})
    assert.equal(r.host.id, host.identity.id.toString())
    assert.equal(host.confirmed.length, before + 1)
    assert.equal(host.confirmed.at(-1)?.id, member.id.toString())
  })

  it('a host whose list does not match its content is E_HASH_MISMATCH, nothing of that file lands and nobody is confirmed', async () => {
    reset()
    host.list = (entries) => entries.map((e) => (e.path === 'a.txt' ? {...e, sha256: sha('something else\n')} : e))
    const before = host.confirmed.length
    const into = path.join(work, 'spoiled')
    await assert.rejects(request({into}), {code: 'E_HASH_MISMATCH'})
    assert.equal((await tree(into).catch((): string[] => [])).includes('a.txt'), false)
    assert.equal(host.confirmed.length, before)
  })

  it('a host of another identity than expected is refused (E_PEER_ID_MISMATCH) before any byte moves', async () => {
    reset()
    const into = path.join(work, 'other-host')
    await assert.rejects(request({into, expectedHost: new Identity(generateKeyPair()).id}), {code: 'E_PEER_ID_MISMATCH'})
    assert.deepEqual(await tree(into).catch((): string[] => []), [])
  })

  it('a host that drops the control connection is E_CONNECTION_LOST', async () => {
    const dropper = net.createServer((s) => s.destroy())
    await new Promise<void>((resolve) => dropper.listen(0, '127.0.0.1', resolve))
    try {
      await assert.rejects(request({port: (dropper.address() as net.AddressInfo).port}), {code: 'E_CONNECTION_LOST'})
    } finally {
      await new Promise((r) => dropper.close(r))
    }
  })

  it('an abort stops the request with the signal’s reason, and the host is still serving', async () => {
    reset()
    const ac = new AbortController()
    await assert.rejects(
      request({
        signal: ac.signal,
        onEvent: (ev) => {
          if (ev.event === 'files-to-get') ac.abort(new FpeerError('E_INTERRUPTED', 'stopped by the test'))
        },
      }),
      {code: 'E_INTERRUPTED'},
    )
    // The host took the loss of that connection in its stride.
    const again = await request()
    assert.equal(again.transfer.fetched, 3)
  })
})
