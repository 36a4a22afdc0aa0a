// In-process tests of the update flow (pushUpdate / receiveUpdate, protocol §10.2): two peers over loopback control sockets and the in-memory transport.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {Readable} from 'node:stream'
import {after, before, describe, it} from 'node:test'
import {formatDestination} from '../access/replay-guard.js'
import {FpeerError, isFpeerError} from '../errors.js'
import {randomNonce} from '../identity.js'
import {MessageChannel, connectChannel} from '../net/channel.js'
import {TransportRegistry} from '../registry.js'
import {type HandshakeTimeouts, defaultTimeouts} from '../session/context.js'
import {refusedBy} from '../session/handshake.js'
import type {PeerRecord} from '../store/peerfile.js'
import {createMemoryTransport} from '../testing/memory-transport.js'
import {fileTree as tree, until} from '../testing/checks.js'
import {type ServeOverride, type SyncPeer, makeSyncPeer, peerRecord} from '../testing/sync-peer.js'
import {type Transport, silentLogger} from '../transport.js'
import {MAX_UPDATE_VERSIONS} from '../wire/limits.js'
import {signMessage} from '../wire/signing.js'
import type {FileEntry, FilesToGet, FilesUpdated} from '../wire/types.js'
import {pushUpdate, receiveUpdate} from './update.js'
import {type FileVersion, signVersion, versionToEntry} from './version.js'

const FOLDER = 'docs'
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex')
/** Generous: a split push of 10,001 versions took over 20 s at load 50 on 2 cores; only the stall cases below are short. */
const TIMEOUTS = defaultTimeouts({reply: 120_000, transfer: 300_000, stall: 120_000, io: 120_000, message: 120_000})
/** Small enough that a stall test ends soon, large enough that timers late on a busy machine do not fire it. */
const SHORT_STALL = 1500

/** One peer in this process (testing/sync-peer.ts), and what this suite watches it do. */
interface Side extends SyncPeer {
  /** IDs (printed) it counts as confirmed peers. */
  peers: Set<string>
  forwarded: FileVersion[][]
  /** Codes of the update sessions that failed here, as logged. */
  failures: string[]
  warnings: Array<{msg: string; fields: Record<string, unknown>}>
  /** The number of versions in each update this side was sent. */
  updates: number[]
  /** Keep-alives (empty lines) this side's control connections sent. */
  keepAlives: number
  /** Replaces what the transfer server sends for a path (undefined: the file on disk). */
  serve: ServeOverride
}

describe('updates in process (sync/update.ts)', () => {
  let work: string
  // No batching: every chunk is a `bytes` event, so a slow transfer's progress is seen chunk by chunk.
  const base = createMemoryTransport({batch: false})
  // A transport that declares names it cannot carry (as FTP cannot carry CR or LF).
  const transport: Transport = {...base, canName: (p) => !p.startsWith('unsendable')}
  const registry = new TransportRegistry()
  registry.add(transport, 'memory')
  let sender: Side
  let receiver: Side
  let n = 0

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-update-'))
  })
  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  async function side(address: string, timeouts: HandshakeTimeouts = TIMEOUTS): Promise<Side> {
    // Filled in by makeSyncPeer below; the callbacks only run once it is.
    const s = {peers: new Set(), forwarded: [], failures: [], warnings: [], updates: [], keepAlives: 0, serve: () => undefined} as unknown as Side
    const peer = await makeSyncPeer({
      root: path.join(work, `side-${++n}`),
      address,
      transport,
      registry,
      timeouts,
      folder: FOLDER,
      isPeer: (id) => s.peers.has(id),
      log: {
        ...silentLogger,
        warn: (msg, fields = {}) => {
          s.warnings.push({msg, fields})
          if (msg === 'handshake failed') s.failures.push(String(fields.code))
        },
      },
      forward: (_f, versions) => void s.forwarded.push(versions),
      serve: (p, who) => s.serve(p, who),
      onUpdate: (msg) => s.updates.push(msg.files.length),
      tap: (direction, text) => void (direction === 'sent' && text === '\n' && s.keepAlives++),
    })
    return Object.assign(s, peer)
  }

  /** A sender on 127.0.0.2 and a receiver on 127.0.0.3 that count each other as peers. */
  async function pair(timeouts: {sender?: HandshakeTimeouts; receiver?: HandshakeTimeouts} = {}): Promise<void> {
    sender = await side('127.0.0.2', timeouts.sender)
    receiver = await side('127.0.0.3', timeouts.receiver)
    sender.peers.add(receiver.identity.id.toString())
    receiver.peers.add(sender.identity.id.toString())
  }

  async function unpair(): Promise<void> {
    await sender?.close()
    await receiver?.close()
  }

  const record = (to: Side): PeerRecord => peerRecord(to, transport.protocol, new Date().toISOString())

  const push = (versions: FileVersion[]) => pushUpdate(sender.ctx, FOLDER, record(receiver), versions)

  /** Writes files into the sender's folder and returns the versions its rescan made. */
  async function change(files: Record<string, string | null>): Promise<FileVersion[]> {
    for (const [p, c] of Object.entries(files)) {
      const full = path.join(sender.dir, p)
      if (c === null) await rm(full)
      else {
        await mkdir(path.dirname(full), {recursive: true})
        await writeFile(full, c)
      }
    }
    return (await sender.sync.rescan()).versions
  }

  /** What the receiver holds: its files and their recorded versions, to prove an attack changed nothing. */
  async function receiverState(): Promise<string> {
    const records = [...(await receiver.sync.records()).values()].map((r) => [r.path, r.sha256, r.version?.lamport, r.version?.deleted])
    return JSON.stringify({files: await tree(receiver.dir), records})
  }

  /** Sessions at the receiver end: awaited before its files are looked at. */
  const settled = () => until(() => receiver.sessions.size === 0, 'the receiver finished its sessions')

  it('new, changed and deleted versions land on the receiver, are checked back and confirmed', async () => {
    await pair()
    try {
      const first = await change({'a.txt': 'one\n', 'dir/b.txt': 'b'.repeat(70_000)})
      assert.deepEqual(await push(first), {got: 2, verified: 2})
      await settled()
      assert.deepEqual(receiver.failures, [])
      assert.equal(await readFile(path.join(receiver.dir, 'a.txt'), 'utf8'), 'one\n')
      assert.equal(await readFile(path.join(receiver.dir, 'dir/b.txt'), 'utf8'), 'b'.repeat(70_000))
      const second = await change({'a.txt': 'two\n', 'dir/b.txt': null})
      assert.deepEqual(await push(second), {got: 1, verified: 1})
      await settled()
      assert.deepEqual(receiver.failures, [])
      assert.deepEqual(await tree(receiver.dir), ['a.txt'])
      assert.equal(await readFile(path.join(receiver.dir, 'a.txt'), 'utf8'), 'two\n')
      const records = await receiver.sync.records()
      assert.equal(records.get('a.txt')?.version?.sig, second.find((v) => v.path === 'a.txt')?.sig)
      assert.equal(records.get('dir/b.txt')?.version?.deleted, true)
      // What was new is passed on to the receiver's other peers (seed update step 4).
      assert.deepEqual(
        receiver.forwarded.map((vs) => vs.map((v) => `${v.path}@${v.lamport}`).sort()),
        [first, second].map((vs) => vs.map((v) => `${v.path}@${v.lamport}`).sort()),
      )
      // The grants of both exchanges ended with them.
      assert.equal(sender.grants.size, 0)
      assert.equal(receiver.grants.size, 0)
    } finally {
      await unpair()
    }
  })

  it('an offer of nothing new is answered from the records, without waiting for the folder’s applies', async () => {
    await pair()
    try {
      const first = await change({'held.txt': 'held\n'})
      assert.deepEqual(await push(first), {got: 1, verified: 1})
      await settled()
      // The receiver's apply queue is held (an apply under way, here one that never ends until released).
      let release: (() => void) | undefined
      const holding = receiver.home.serial(`apply\0${FOLDER}`, () => new Promise<void>((r) => (release = r)))
      await until(() => release !== undefined, 'the apply queue to be held')
      // The same version again (another neighbour's forward of it): answered at once, nothing taken, nothing passed on.
      // A generous bound on the failure path only: without the fast answer the push waits for the release below, for ever.
      let timer: NodeJS.Timeout | undefined
      const waited = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the offer waited for the folder’s apply queue')), 60_000)))
      try {
        assert.deepEqual(await Promise.race([push(first), waited]), {got: 0, verified: 0})
      } finally {
        clearTimeout(timer)
      }
      assert.equal(receiver.forwarded.length, 1)
      release!()
      await holding
      await settled()
      assert.deepEqual(receiver.failures, [])
    } finally {
      await unpair()
    }
  })

  it('a receiver that does not count the sender as a peer refuses with a signed E_NOT_ALLOWED, and takes nothing', async () => {
    await pair()
    try {
      receiver.peers.clear()
      const before = await receiverState()
      const err = await push(await change({'a.txt': 'one\n'})).then(
        () => assert.fail('the push was taken'),
        (e: unknown) => e,
      )
      assert.ok(isFpeerError(err, 'E_NOT_ALLOWED'), String(err))
      // Signed by the receiver for this sender: the one refusal that may end the trust (10.6).
      assert.equal(refusedBy(err), receiver.identity.id.toString())
      await settled()
      assert.deepEqual(receiver.failures, ['E_NOT_ALLOWED'])
      assert.equal(await receiverState(), before)
    } finally {
      await unpair()
    }
  })

  /** A FilesToGet update as a sender would sign it to the receiver, for messages pushUpdate would not send. */
  function updateMessage(channel: MessageChannel, files: FileEntry[], grant: string, meta: Record<string, string> = {}): FilesToGet {
    return signMessage(
      {
        type: 'FilesToGet',
        folder: FOLDER,
        port: sender.ctx.servedPort(transport.protocol)!,
        protocol: transport.protocol,
        files,
        meta: {
          nonce: randomNonce(),
          update: '1',
          ts: String(Date.now()),
          to: receiver.identity.id.compact,
          dst: formatDestination(channel.remoteAddress, channel.remotePort),
          grant,
          ...meta,
        },
      },
      sender.identity,
    )
  }

  const connect = () => connectChannel(receiver.address, receiver.controlPort, {timeoutMs: 120_000, localAddress: sender.address})

  it(`an update of more than ${MAX_UPDATE_VERSIONS} versions is refused with E_MSG_TOO_MANY_FILES; the receiver still takes the next`, async () => {
    await pair()
    try {
      const before = await receiverState()
      const channel = await connect()
      try {
        const files = Array.from({length: MAX_UPDATE_VERSIONS + 1}, (_, i) => ({path: `f${i}`, size: 1, sha256: sha(String(i))}))
        await channel.send(updateMessage(channel, files, 'x'))
        const reply = await channel.next(120_000)
        assert.equal(reply.type, 'PeerError')
        assert.equal(reply.type === 'PeerError' && reply.code, 'E_MSG_TOO_MANY_FILES')
      } finally {
        await channel.close()
      }
      await settled()
      assert.deepEqual(receiver.failures, ['E_MSG_TOO_MANY_FILES'])
      assert.equal(await receiverState(), before)
      // Alive and serving: an update within the cap lands.
      assert.deepEqual(await push(await change({'a.txt': 'one\n'})), {got: 1, verified: 1})
    } finally {
      await unpair()
    }
  })

  it(`a push of more than ${MAX_UPDATE_VERSIONS} versions goes as several updates, each within the cap`, async () => {
    await pair()
    try {
      // Deletions of paths the receiver never had: nothing to fetch, so the cost is the versions alone.
      const versions = Array.from({length: MAX_UPDATE_VERSIONS + 1}, (_, i) =>
        signVersion(
          FOLDER,
          {path: `gone/${i}`, deleted: true, sha256: '', size: 0, mtimeMs: 1_700_000_000_000, lamport: i + 1, vv: {[sender.identity.id.compact]: i + 1}},
          sender.identity,
        ),
      )
      assert.deepEqual(await push(versions), {got: 0, verified: 0})
      await settled()
      assert.deepEqual(receiver.failures, [])
      assert.deepEqual(receiver.updates, [MAX_UPDATE_VERSIONS, 1])
      const records = await receiver.sync.records()
      assert.equal([...records.values()].filter((r) => r.version?.deleted).length, MAX_UPDATE_VERSIONS + 1)
    } finally {
      await unpair()
    }
  })

  it('a version whose signed fields were altered on the way is refused (E_BAD_SIGNATURE) and nothing of the update lands', async () => {
    await pair()
    try {
      const before = await receiverState()
      const versions = await change({'a.txt': 'one\n', 'b.txt': 'bee\n'})
      // A peer on the way swaps b.txt's content for its own, keeping the origin's signature.
      await writeFile(path.join(sender.dir, 'b.txt'), 'BAD\n')
      const altered = versions.map((v) => (v.path === 'b.txt' ? {...v, sha256: sha('BAD\n')} : v))
      const err = await push(altered).then(
        () => assert.fail('the push was taken'),
        (e: unknown) => e,
      )
      assert.ok(isFpeerError(err, 'E_PEER_ERROR'), String(err))
      assert.equal((err as {details?: Record<string, unknown>}).details?.peerCode, 'E_BAD_SIGNATURE')
      await settled()
      assert.deepEqual(receiver.failures, ['E_BAD_SIGNATURE'])
      assert.equal(await receiverState(), before)
      assert.deepEqual(receiver.forwarded, [])
    } finally {
      await unpair()
    }
  })

  it('passes what it took on at once, while the sender still checks its copy: a slow check holds no forward', async () => {
    await pair()
    try {
      const versions = await change({'a.txt': 'one\n'})
      // The sender's read of the receiver's copy (its check) is held until the receiver has
      // passed the version on; a receiver that forwarded only after the confirmation never would.
      let release = () => {}
      const held = new Promise<void>((resolve) => (release = resolve))
      receiver.serve = (p) => (p === 'a.txt' ? held.then(() => ({stream: Readable.from([Buffer.from('one\n')]), size: 4, mtimeMs: 0})) : undefined)
      const pushing = push(versions)
      try {
        await until(() => receiver.forwarded.length === 1, 'the receiver to pass the version on while the sender checks its copy')
      } finally {
        release()
      }
      assert.deepEqual(await pushing, {got: 1, verified: 1})
      await settled()
      assert.deepEqual(receiver.failures, [])
      assert.deepEqual(
        receiver.forwarded.map((vs) => vs.map((v) => v.path)),
        [['a.txt']],
      )
    } finally {
      await unpair()
    }
  })

  it('content that does not match its version’s sha256 is refused (E_HASH_MISMATCH) and lands nothing', async () => {
    await pair()
    try {
      const before = await receiverState()
      const versions = await change({'a.txt': 'good'})
      // Same size, other bytes: only the hash can tell.
      await writeFile(path.join(sender.dir, 'a.txt'), 'evil')
      const err = await push(versions).then(
        () => assert.fail('the push was taken'),
        (e: unknown) => e,
      )
      assert.equal((err as {details?: Record<string, unknown>}).details?.peerCode, 'E_HASH_MISMATCH', String(err))
      await settled()
      assert.deepEqual(receiver.failures, ['E_HASH_MISMATCH'])
      assert.equal(await receiverState(), before)
      assert.deepEqual(receiver.forwarded, [])
    } finally {
      await unpair()
    }
  })

  it('names the transport cannot carry are skipped with a warning (E_UNSUPPORTED); the rest of the update lands', async () => {
    await pair()
    try {
      const versions = await change({'ok.txt': 'ok\n', 'unsendable.txt': 'no\n'})
      assert.deepEqual(await push(versions), {got: 1, verified: 1})
      await settled()
      assert.deepEqual(receiver.failures, [])
      assert.deepEqual(await tree(receiver.dir), ['ok.txt'])
      assert.equal((await receiver.sync.records()).has('unsendable.txt'), false)
      assert.deepEqual(
        receiver.warnings.filter((w) => w.fields.code === 'E_UNSUPPORTED').map((w) => w.fields.path),
        ['unsendable.txt'],
      )
    } finally {
      await unpair()
    }
  })

  /** A stream of `content` that holds back its last byte until `release()` holds, a byte at a time meanwhile (bounded). */
  function trickle(content: Buffer, release: () => boolean, live: boolean): Readable {
    return Readable.from(
      (async function* () {
        let i = 0
        // Bounded: 1,500 rounds of 20 ms; the test's own conditions end it long before.
        for (let round = 0; round < 1500 && !release(); round++) {
          if (live && i < content.length - 1) yield content.subarray(i, ++i)
          await new Promise((r) => setTimeout(r, 20))
        }
        yield content.subarray(i)
      })(),
      {objectMode: false},
    )
  }

  it('a receiver whose fetch is slow but moving keeps the sender waiting with keep-alives, past the stall timeout', async () => {
    await pair({sender: defaultTimeouts({...TIMEOUTS, stall: SHORT_STALL})})
    try {
      const content = Buffer.alloc(4096, 'k')
      const versions = await change({'slow.bin': content.toString()})
      // The sender's file trickles out until the receiver has sent keep-alives over three stall timeouts.
      sender.serve = (p) =>
        p === 'slow.bin' ? Promise.resolve({stream: trickle(content, () => receiver.keepAlives >= 12, true), size: content.length, mtimeMs: 0}) : undefined
      assert.deepEqual(await push(versions), {got: 1, verified: 1})
      assert.ok(receiver.keepAlives >= 12)
      await settled()
      assert.deepEqual(receiver.failures, [])
      assert.deepEqual(await readFile(path.join(receiver.dir, 'slow.bin')), content)
    } finally {
      await unpair()
    }
  })

  it('a receiver that waits its turn behind the folder’s other applies keeps the sender waiting with keep-alives, past the stall timeout', async () => {
    await pair({sender: defaultTimeouts({...TIMEOUTS, stall: SHORT_STALL})})
    let release = () => {}
    try {
      const [held] = await change({'held.txt': 'held\n'})
      const versions = await change({'queued.txt': 'queued\n'})
      // The receiver's folder is busy: an apply holds its queue (its fetch waits on the gate).
      const gate = new Promise<void>((r) => (release = r))
      const busy = receiver.sync.apply([held!], async () => {
        await gate
        throw new FpeerError('E_INTERRUPTED', 'let go by the test')
      })
      busy.catch(() => {})
      let done = false
      const pushed = push(versions).finally(() => void (done = true))
      pushed.catch(() => {})
      // Keep-alives over three of the sender's stall timeouts while the update waits; without them it gives up after one (E_TIMEOUT).
      await until(() => receiver.keepAlives >= 12 || done, 'the receiver sent keep-alives over three stall timeouts')
      release()
      assert.deepEqual(await pushed, {got: 1, verified: 1})
      await assert.rejects(busy, (e) => isFpeerError(e, 'E_INTERRUPTED'))
      await settled()
      assert.deepEqual(receiver.failures, [])
      assert.equal(await readFile(path.join(receiver.dir, 'queued.txt'), 'utf8'), 'queued\n')
    } finally {
      release()
      await unpair()
    }
  })

  it('a receiver whose fetch stalls sends no keep-alive, and the sender gives up after its stall timeout (E_TIMEOUT)', async () => {
    await pair({sender: defaultTimeouts({...TIMEOUTS, stall: SHORT_STALL})})
    let gaveUp = false
    try {
      const content = Buffer.alloc(4096, 's')
      const versions = await change({'stuck.bin': content.toString()})
      sender.serve = (p) => (p === 'stuck.bin' ? Promise.resolve({stream: trickle(content, () => gaveUp, false), size: content.length, mtimeMs: 0}) : undefined)
      await assert.rejects(push(versions), (e) => isFpeerError(e, 'E_TIMEOUT'))
      gaveUp = true
      await settled()
      // The sender revoked its grant when it gave up: nothing of it is left open.
      assert.equal(sender.grants.size, 0)
    } finally {
      gaveUp = true
      await unpair()
    }
  })

  it('a sender that stops after FilesUpdated is cut by the receiver’s stall timeout; what was taken is passed on', async () => {
    await pair({receiver: defaultTimeouts({...TIMEOUTS, stall: SHORT_STALL})})
    try {
      const versions = await change({'a.txt': 'one\n'})
      const grant = sender.grants.issue(FOLDER, receiver.identity.id)
      const channel = await connect()
      try {
        // ka=: it promises keep-alives, then sends none and no TrustedPeerConfirm.
        await channel.send(updateMessage(channel, versions.map(versionToEntry), grant.token, {ka: String(SHORT_STALL)}))
        const fu = (await channel.next(120_000)) as FilesUpdated
        assert.equal(fu.type, 'FilesUpdated')
        await until(() => receiver.failures.length > 0, 'the receiver gave up')
        assert.deepEqual(receiver.failures, ['E_TIMEOUT'])
      } finally {
        grant.revoke()
        await channel.close()
      }
      await settled()
      assert.equal(await readFile(path.join(receiver.dir, 'a.txt'), 'utf8'), 'one\n')
      assert.deepEqual(
        receiver.forwarded.map((vs) => vs.map((v) => v.path)),
        [['a.txt']],
      )
    } finally {
      await unpair()
    }
  })
})
