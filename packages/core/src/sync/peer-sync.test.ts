// In-process tests of PeerSync (pushChanges, pushVersions, forward, pullFrom): peers over loopback control sockets and the in-memory transport.
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FpeerError, isFpeerError} from '../errors.js'
import {recordToEntry} from '../node.js'
import {TransportRegistry} from '../registry.js'
import {defaultTimeouts} from '../session/context.js'
import {type PeerRecord, isLive} from '../store/peerfile.js'
import {createMemoryTransport} from '../testing/memory-transport.js'
import {fileTree as tree, until} from '../testing/checks.js'
import {type SyncPeer, makeSyncPeer, peerRecord} from '../testing/sync-peer.js'
import {silentLogger} from '../transport.js'
import type {StateExchange} from './exchange.js'
import {JoinedPulls, PeerSync} from './peer-sync.js'

const FOLDER = 'docs'
const TIMEOUTS = defaultTimeouts({reply: 20_000, transfer: 60_000, stall: 20_000, io: 20_000, message: 20_000})
/** Small enough that a stall test ends soon, large enough that timers late on a busy machine do not fire it. */
const SHORT_STALL = 1500

/** One peer in this process (testing/sync-peer.ts) with its PeerSync, and what this suite watches it do. */
interface Peer extends SyncPeer {
  /** The peers it lists (and counts as confirmed). */
  peers: PeerRecord[]
  /** Catch-up requests (BePeerRequest) its control server was sent. */
  requests: number
  /** Updates (FilesToGet update=1) its control server was sent. */
  updates: number
  /** Refusals PeerSync reported: peer IDs. */
  refused: string[]
  /** Background work (forwards), to await before a test looks. */
  tracked: Set<Promise<unknown>>
  peerSync: PeerSync
}

describe('PeerSync in process (sync/peer-sync.ts)', () => {
  let work: string
  const transport = createMemoryTransport({batch: false})
  const registry = new TransportRegistry()
  registry.add(transport, 'memory')
  let n = 0
  const all: Peer[] = []

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-peersync-'))
  })
  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  const record = (p: Peer): PeerRecord => peerRecord(p, transport.protocol)

  async function peer(address: string, own: TransportRegistry = registry, timeouts = TIMEOUTS): Promise<Peer> {
    // Filled in by makeSyncPeer below; the callbacks only run once it is.
    const p = {peers: [], requests: 0, updates: 0, refused: [], tracked: new Set()} as unknown as Peer
    const isPeer = (id: string) => p.peers.some((r) => r.id === id)
    const forwardTargets = (_f: string, exclude: readonly string[]) => p.peers.map((r) => r.id).filter((id) => !exclude.includes(id))
    const {close, ...made} = await makeSyncPeer({
      root: path.join(work, `peer-${++n}`),
      address,
      transport,
      registry: own,
      timeouts,
      folder: FOLDER,
      isPeer,
      forward: (f, versions, exclude) => p.peerSync.forward(f, versions, exclude),
      forwardTargets,
      heldBy: (f, sender, versions) => p.peerSync.heldBy(f, sender, versions),
      mayJoin: async (_f, sender) => sender !== undefined && isPeer(sender.toString()),
      fileList: async () => {
        p.requests++
        const {records} = await p.sync.rescan()
        return [...records.values()].filter((r) => isLive(r) || r.version).map(recordToEntry)
      },
      onUpdate: () => void p.updates++,
    })
    Object.assign(p, made, {
      close: async () => {
        p.peerSync.stop()
        await Promise.allSettled([...p.tracked])
        await close()
      },
    })
    const {identity, home, sync, ctx, tracked} = p
    p.peerSync = new PeerSync({
      home,
      identity,
      registry,
      log: silentLogger,
      timeouts,
      concurrency: 2,
      daemon: false,
      localAddress: () => address,
      controlPort: () => p.controlPort,
      sync: (f) => (f === FOLDER ? sync : undefined),
      peers: () => p.peers,
      forwardTargets,
      syncContext: () => ctx,
      count: () => {},
      track: (work) => {
        tracked.add(work)
        void work.then(
          () => tracked.delete(work),
          () => tracked.delete(work),
        )
        return work
      },
      // Not a daemon: no state exchange is run; a lost peer is only noted.
      exchange: {lost: () => {}, regained: () => false} as unknown as StateExchange,
      stopping: () => false,
      refused: async (_f, id) => {
        p.refused.push(id)
        p.peers = p.peers.filter((r) => r.id !== id)
        return true
      },
    })
    p.peerSync.start()
    all.push(p)
    return p
  }

  /** Peers that list each other, every one with every other. */
  async function mesh(count: number): Promise<Peer[]> {
    const ps: Peer[] = []
    for (let i = 0; i < count; i++) ps.push(await peer(`127.0.0.${i + 2}`))
    for (const a of ps) a.peers = ps.filter((b) => b !== a).map(record)
    return ps
  }

  /** Waits for every peer's background work and sessions, then stops them all. */
  async function quiet(ps: Peer[]): Promise<void> {
    await until(() => ps.every((p) => p.tracked.size === 0 && p.sessions.size === 0), 'the peers went quiet')
  }

  async function closeAll(): Promise<void> {
    for (const p of all.splice(0)) await p.close()
  }

  it('pushChanges rescans and pushes each new version to every peer, where it lands', async () => {
    try {
      const [a, b, c] = await mesh(3)
      await writeFile(path.join(a!.dir, 'a.txt'), 'one\n')
      assert.deepEqual(await a!.peerSync.pushChanges(FOLDER), {versions: 1, peers: 2, failed: 0})
      await quiet([a!, b!, c!])
      for (const p of [b!, c!]) assert.equal(await readFile(path.join(p.dir, 'a.txt'), 'utf8'), 'one\n')
      // Nothing changed since: nothing to push.
      assert.deepEqual(await a!.peerSync.pushChanges(FOLDER), {versions: 0, peers: 0, failed: 0})
    } finally {
      await closeAll()
    }
  })

  it('pushVersions leaves out `exclude` and keeps to `only`', async () => {
    try {
      const [a, b, c] = await mesh(3)
      // Only a's own view: b and c do not forward (they list nobody but a), so each receives only what a sends it.
      b!.peers = [record(a!)]
      c!.peers = [record(a!)]
      await writeFile(path.join(a!.dir, 'x.txt'), 'x\n')
      const {versions} = await a!.sync.rescan()
      assert.deepEqual(await a!.peerSync.pushVersions(FOLDER, versions, [b!.identity.id.toString()]), {peers: 1, failed: 0})
      await quiet([a!, b!, c!])
      assert.deepEqual(await tree(b!.dir), [])
      assert.deepEqual(await tree(c!.dir), ['x.txt'])
      await writeFile(path.join(a!.dir, 'y.txt'), 'y\n')
      const more = (await a!.sync.rescan()).versions
      assert.deepEqual(await a!.peerSync.pushVersions(FOLDER, more, [], [b!.identity.id.toString()]), {peers: 1, failed: 0})
      await quiet([a!, b!, c!])
      assert.deepEqual(await tree(b!.dir), ['y.txt'])
      assert.deepEqual(await tree(c!.dir), ['x.txt'])
    } finally {
      await closeAll()
    }
  })

  it('a version received is forwarded once to the receiver’s other peers, not back to its sender (seed update step 4)', async () => {
    try {
      // A line: a knows b, b knows a and c, c knows b. What a pushes reaches c only through b.
      const [a, b, c] = await mesh(3)
      a!.peers = [record(b!)]
      c!.peers = [record(b!)]
      await writeFile(path.join(a!.dir, 'f.txt'), 'far\n')
      assert.deepEqual(await a!.peerSync.pushChanges(FOLDER), {versions: 1, peers: 1, failed: 0})
      await quiet([a!, b!, c!])
      assert.equal(await readFile(path.join(c!.dir, 'f.txt'), 'utf8'), 'far\n')
      // c took it from b, once, and has nobody else to pass it to; a was not sent it back.
      assert.deepEqual([a!.updates, b!.updates, c!.updates], [0, 1, 1])
    } finally {
      await closeAll()
    }
  })

  it('a version a peer offered us is not offered back to it; a newer one of the same path is', async () => {
    try {
      const [a, b] = await mesh(2)
      // b alone knows a (a does not forward): what a receives stays with a.
      a!.peers = [record(b!)]
      await writeFile(path.join(b!.dir, 'h.txt'), 'held\n')
      const {versions} = await b!.sync.rescan()
      assert.deepEqual(await b!.peerSync.pushVersions(FOLDER, versions, []), {peers: 1, failed: 0})
      await quiet([a!, b!])
      assert.equal(a!.updates, 1)
      // a passes the version on to everyone (b among them): b offered it, so nothing goes to b.
      assert.deepEqual(await a!.peerSync.pushVersions(FOLDER, versions, []), {peers: 1, failed: 0})
      await quiet([a!, b!])
      assert.equal(b!.updates, 0)
      // a changes the file: that version is new to b, and goes.
      await writeFile(path.join(a!.dir, 'h.txt'), 'changed at a\n')
      assert.deepEqual(await a!.peerSync.pushChanges(FOLDER), {versions: 1, peers: 1, failed: 0})
      await quiet([a!, b!])
      assert.equal(b!.updates, 1)
      assert.equal(await readFile(path.join(b!.dir, 'h.txt'), 'utf8'), 'changed at a\n')
      // And b, having confirmed it, is not offered it again.
      const again = (await a!.sync.records()).get('h.txt')!.version!
      await a!.peerSync.pushVersions(FOLDER, [again], [])
      await quiet([a!, b!])
      assert.equal(b!.updates, 1)
    } finally {
      await closeAll()
    }
  })

  it('a version our record read has not caught up with (missing, or an older one) is still offered; one our record supersedes is not', async () => {
    for (const lag of ['missing', 'older'] as const) {
      try {
        const [a, b] = await mesh(2)
        b!.peers = [record(a!)]
        await writeFile(path.join(a!.dir, 'r.txt'), 'one\n')
        const [first] = (await a!.sync.rescan()).versions
        await writeFile(path.join(a!.dir, 'r.txt'), 'two\n')
        const [second] = (await a!.sync.rescan()).versions
        // The journal read lags the append that made `second`: it shows nothing, or `first`.
        const real = a!.sync.recordsOf.bind(a!.sync)
        const now = (await a!.sync.records()).get('r.txt')!
        a!.sync.recordsOf = async () => (lag === 'missing' ? new Map() : new Map([['r.txt', {...now, version: first!}]]))
        assert.deepEqual(await a!.peerSync.pushVersions(FOLDER, [second!], []), {peers: 1, failed: 0})
        await quiet([a!, b!])
        a!.sync.recordsOf = real
        assert.equal(b!.updates, 1, lag)
        assert.equal(await readFile(path.join(b!.dir, 'r.txt'), 'utf8'), 'two\n', lag)
        // `first` is superseded by our record (`second`): not offered, and its caller is not failed.
        assert.deepEqual(await a!.peerSync.pushVersions(FOLDER, [first!], [], [b!.identity.id.toString()]), {peers: 1, failed: 0})
        await quiet([a!, b!])
        assert.equal(b!.updates, 1, lag)
      } finally {
        await closeAll()
      }
    }
  })

  it('pulls from a peer asked while one is under way share it: one request, one result, passed on to the other peers', async () => {
    try {
      const [a, b, c] = await mesh(3)
      b!.peers = [record(a!)]
      c!.peers = [record(a!)]
      await writeFile(path.join(b!.dir, 'p.txt'), 'pulled\n')
      await b!.sync.rescan()
      const target = record(b!)
      const [one, two] = await Promise.all([a!.peerSync.pullFrom(FOLDER, target), a!.peerSync.pullFrom(FOLDER, target)])
      assert.equal(b!.requests, 1)
      assert.equal(one, 1)
      assert.equal(two, 1)
      await quiet([a!, b!, c!])
      assert.equal(await readFile(path.join(a!.dir, 'p.txt'), 'utf8'), 'pulled\n')
      // What the pull brought is forwarded to a's other peers, not back to the one it came from.
      assert.equal(await readFile(path.join(c!.dir, 'p.txt'), 'utf8'), 'pulled\n')
      assert.deepEqual([b!.updates, c!.updates], [0, 1])
      // Once done, a later pull is a new one.
      assert.equal(await a!.peerSync.pullFrom(FOLDER, target), 0)
      assert.equal(b!.requests, 2)
    } finally {
      await closeAll()
    }
  })

  it('what a pull applied is passed on even when the pull then fails (the host’s fetch-back lost its connection): nothing owed is left for a later exchange', async () => {
    try {
      // b's fetch-back (its only fetch here) loses its connection: the pull fails after a applied the version.
      const lossy = new TransportRegistry()
      lossy.add(
        {
          ...transport,
          connect: async () => {
            throw new FpeerError('E_CONNECTION_LOST', 'cut by the test')
          },
        },
        'memory',
      )
      const a = await peer('127.0.0.2')
      const b = await peer('127.0.0.3', lossy)
      const c = await peer('127.0.0.4')
      a.peers = [record(b), record(c)]
      b.peers = [record(a)]
      c.peers = [record(a)]
      await writeFile(path.join(b.dir, 'p.txt'), 'pulled\n')
      await b.sync.rescan()
      await assert.rejects(a.peerSync.pullFrom(FOLDER, record(b)), (e) => isFpeerError(e, 'E_PEER_ERROR') || isFpeerError(e, 'E_CONNECTION_LOST'))
      assert.equal(await readFile(path.join(a.dir, 'p.txt'), 'utf8'), 'pulled\n')
      // c lists only a, and no exchange runs (not a daemon): only a's forward can bring it there.
      await quiet([a, b, c])
      assert.equal(await readFile(path.join(c.dir, 'p.txt'), 'utf8'), 'pulled\n')
      assert.deepEqual([b.updates, c.updates], [0, 1])
    } finally {
      await closeAll()
    }
  })

  it('a pull that waits its turn behind the folder’s other applies keeps the host waiting past its stall timeout, and then fetches with a live grant', async () => {
    try {
      const a = await peer('127.0.0.2')
      // The host gives up on a requester that shows no progress for SHORT_STALL (and revokes its grant).
      const b = await peer('127.0.0.3', registry, defaultTimeouts({...TIMEOUTS, stall: SHORT_STALL}))
      a.peers = [record(b)]
      b.peers = [record(a)]
      await writeFile(path.join(b.dir, 'held.txt'), 'held\n')
      await writeFile(path.join(b.dir, 'p.txt'), 'pulled\n')
      const held = (await b.sync.rescan()).records.get('held.txt')!.version!
      // a's folder is busy: an apply holds its queue (its fetch waits on the gate).
      let release = () => {}
      const gate = new Promise<void>((r) => (release = r))
      const busy = a.sync.apply([held], async () => {
        await gate
        throw new FpeerError('E_INTERRUPTED', 'let go by the test')
      })
      busy.catch(() => {})
      const pull = a.peerSync.pullFrom(FOLDER, record(b))
      pull.catch(() => {})
      try {
        await until(() => b.grants.size === 1, 'b answered the pull with a grant')
        // The pull's apply now waits behind the busy one, past three of b's stall timeouts;
        // without keep-alives b gives up after one and revokes the grant the pull fetches with.
        const from = Date.now()
        await until(() => {
          assert.equal(b.grants.size, 1, 'b gave up on the waiting pull')
          return Date.now() - from >= 3 * SHORT_STALL
        }, 'three stall timeouts passed')
      } finally {
        release()
      }
      await assert.rejects(busy, (e) => isFpeerError(e, 'E_INTERRUPTED'))
      assert.equal(await pull, 2)
      assert.equal(await readFile(path.join(a.dir, 'p.txt'), 'utf8'), 'pulled\n')
      assert.equal(await readFile(path.join(a.dir, 'held.txt'), 'utf8'), 'held\n')
      await quiet([a, b])
      assert.equal(b.grants.size, 0)
    } finally {
      await closeAll()
    }
  })

  it('a peer that refuses a push with a signed E_NOT_ALLOWED is reported as refused; the push counts as failed', async () => {
    try {
      const [a, b] = await mesh(2)
      b!.peers = []
      await writeFile(path.join(a!.dir, 'a.txt'), 'one\n')
      assert.deepEqual(await a!.peerSync.pushChanges(FOLDER), {versions: 1, peers: 1, failed: 1})
      assert.deepEqual(a!.refused, [b!.identity.id.toString()])
      await quiet([a!, b!])
      assert.deepEqual(await tree(b!.dir), [])
    } finally {
      await closeAll()
    }
  })

  it('a peer that refuses a pull with a signed E_NOT_ALLOWED is reported as refused', async () => {
    try {
      const [a, b] = await mesh(2)
      b!.peers = []
      await assert.rejects(a!.peerSync.pullFrom(FOLDER, record(b!)), (e) => isFpeerError(e, 'E_NOT_ALLOWED'))
      assert.deepEqual(a!.refused, [b!.identity.id.toString()])
    } finally {
      await closeAll()
    }
  })
})

describe('JoinedPulls', () => {
  it('runs one pull per key for every caller, and hands each the structure the peer answered with, even when the pull then failed', async () => {
    const pulls = new JoinedPulls()
    let release: (() => void) | undefined
    let runs = 0
    const pull = async (seen: (files: Array<{path: string}>) => void) => {
      runs++
      seen([{path: 'theirs.txt'}])
      await new Promise<void>((r) => (release = r))
      throw new FpeerError('E_ACCESS', 'the grant ran out')
    }
    const saw: string[][] = []
    const a = pulls.join('F\0P', pull, (files) => saw.push(files.map((f) => f.path)))
    const b = pulls.join('F\0P', pull, (files) => saw.push(files.map((f) => f.path)))
    assert.equal(runs, 1, 'the second caller joined the pull under way')
    release!()
    for (const p of [a, b]) await assert.rejects(p, (err: unknown) => isFpeerError(err) && err.code === 'E_ACCESS')
    assert.deepEqual(saw, [['theirs.txt'], ['theirs.txt']])
    assert.equal(pulls.size, 0)
  })
})
