// Updating other peers: changes flow through chains, stars and meshes of real `fpeer serve` processes, once each.
import assert from 'node:assert/strict'
import {mkdir, readFile, rename, rm, unlink, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Peer, exists, tempDir, treeHashes, waitFor} from './harness.js'

interface Stats {
  messagesIn: number
  messagesOut: number
  filesFetched: number
  bytesFetched: number
  filesVerified: number
}

const ENV = {FPEER_SYNC_INTERVAL_MS: '3600000', FPEER_RESCAN_INTERVAL_MS: '3600000', FPEER_LOG_LEVEL: 'info'}

/** A set of peers on their own loopback addresses, each with its own home, folder and `fpeer serve`. */
class Network {
  readonly peers: Peer[] = []
  readonly dirs: string[] = []
  edges: Array<[number, number]> = []
  work = ''

  static async create(prefix: string, n: number): Promise<Network> {
    const net = new Network()
    net.work = await tempDir()
    for (let i = 0; i < n; i++) {
      net.peers.push(await Peer.create(`${prefix}.${i + 1}`, ENV))
      net.dirs.push(path.join(net.work, `peer${i}`))
    }
    return net
  }

  /** Peer 0 shares `docs`; then each edge [host, joiner] runs a real `fpeer request` (hosts allow their joiners). */
  async build(edges: Array<[number, number]>, files: Record<string, string>): Promise<void> {
    this.edges = edges
    await mkdir(this.dirs[0]!, {recursive: true})
    for (const [rel, content] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(this.dirs[0]!, rel)), {recursive: true})
      await writeFile(path.join(this.dirs[0]!, rel), content)
    }
    assert.equal((await this.peers[0]!.run(['share', this.dirs[0]!, '--name', 'docs'])).code, 0)
    await Promise.all(this.peers.map((p) => p.serve([], {}, {ports: 'default'})))
    for (const [h, j] of edges) {
      const host = this.peers[h]!
      const joiner = this.peers[j]!
      // The ID serve printed when it started: no `fpeer id` process per edge.
      assert.equal((await host.run(['allow', 'docs', joiner.ready!.id])).code, 0)
      const r = await joiner.run(['request', `${host.address}:7734`, 'docs', '--into', this.dirs[j]!, '--bind', joiner.address, '--json'])
      assert.equal(r.code, 0, `peer${j} joining from peer${h}: ${r.stdout} ${r.stderr}`)
    }
    await this.settle()
  }

  async stats(i: number): Promise<Stats> {
    try {
      return JSON.parse(await readFile(path.join(this.peers[i]!.home, 'stats.json'), 'utf8'))
    } catch {
      return {messagesIn: 0, messagesOut: 0, filesFetched: 0, bytesFetched: 0, filesVerified: 0}
    }
  }

  async allStats(): Promise<Stats[]> {
    return Promise.all(this.peers.map((_, i) => this.stats(i)))
  }

  /** Waits until no counter moves for a while: the update has stopped spreading. */
  async settle(): Promise<Stats[]> {
    let last = JSON.stringify(await this.allStats())
    for (let i = 0; i < 60; i++) {
      await new Promise((r) => setTimeout(r, 1500))
      const now = JSON.stringify(await this.allStats())
      if (now === last) return JSON.parse(now)
      last = now
    }
    throw new Error('the network did not settle')
  }

  async content(i: number, rel: string): Promise<string | undefined> {
    return readFile(path.join(this.dirs[i]!, rel), 'utf8').catch(() => undefined)
  }

  async waitAll(what: string, check: (i: number) => Promise<boolean>, only?: number[]): Promise<void> {
    await waitFor(what, async () => (await Promise.all((only ?? this.peers.map((_, i) => i)).map(check))).every(Boolean), 60_000)
  }

  async destroy(): Promise<void> {
    await Promise.all(this.peers.map((p) => p.destroy()))
    await rm(this.work, {recursive: true, force: true})
  }
}

/** Changes one file at `at` and checks that every peer fetched it exactly once and messages stayed bounded. */
async function changeReachesAllOnce(net: Network, at: number, rel: string, content: string): Promise<void> {
  const before = await net.allStats()
  await writeFile(path.join(net.dirs[at]!, rel), content)
  await net.waitAll(`${rel} to reach every peer`, async (i) => (await net.content(i, rel)) === content)
  const after = await net.settle()
  for (let i = 0; i < net.peers.length; i++) {
    const fetched = after[i]!.filesFetched - before[i]!.filesFetched
    assert.equal(fetched, i === at ? 0 : 1, `peer${i} fetched the change ${fetched} times`)
    assert.equal(after[i]!.bytesFetched - before[i]!.bytesFetched, i === at ? 0 : Buffer.byteLength(content), `peer${i} bytes`)
  }
  // Each peer passes an update on once, to each of its peers: at most one exchange (3 messages) per edge direction.
  const messages = after.reduce((n, s, i) => n + s.messagesIn - before[i]!.messagesIn, 0)
  assert.ok(messages >= 3 * (net.peers.length - 1), `too few messages: ${messages}`)
  assert.ok(messages <= 3 * 2 * net.edges.length, `message storm: ${messages} messages over ${net.edges.length} edges`)
}

async function sameEverywhere(net: Network): Promise<void> {
  const first = await treeHashes(net.dirs[0]!)
  for (let i = 1; i < net.peers.length; i++) assert.deepEqual(await treeHashes(net.dirs[i]!), first, `peer${i} differs from peer0`)
}

describe('updates along a chain of 5', () => {
  let net: Network
  before(async () => {
    net = await Network.create('127.0.11', 5)
    await net.build(
      [
        [0, 1],
        [1, 2],
        [2, 3],
        [3, 4],
      ],
      {'notes/a.txt': 'one\n', 'b.txt': 'bee\n', 'old name.txt': 'rename me\n'},
    )
  })
  after(() => net.destroy())

  it('one file changed at one end reaches all, each peer fetching it once', async () => {
    await changeReachesAllOnce(net, 0, 'notes/a.txt', 'two\n')
  })

  it('a change at the other end travels back the same way', async () => {
    await changeReachesAllOnce(net, 4, 'b.txt', 'bee from the far end\n')
    await sameEverywhere(net)
  })

  it('a deletion and a rename propagate; the rename moves no content over the network', async () => {
    const before = await net.allStats()
    await unlink(path.join(net.dirs[2]!, 'b.txt'))
    await rename(path.join(net.dirs[2]!, 'old name.txt'), path.join(net.dirs[2]!, 'new name.txt'))
    await net.waitAll(
      'the deletion and the rename',
      async (i) =>
        !(await exists(path.join(net.dirs[i]!, 'b.txt'))) &&
        (await net.content(i, 'new name.txt')) === 'rename me\n' &&
        !(await exists(path.join(net.dirs[i]!, 'old name.txt'))),
    )
    const after = await net.settle()
    for (let i = 0; i < 5; i++) assert.equal(after[i]!.filesFetched - before[i]!.filesFetched, 0, `peer${i} fetched content for a rename`)
    await sameEverywhere(net)
  })

  it('a peer stopped during an update catches up after restart', async () => {
    await net.peers[4]!.stop()
    await writeFile(path.join(net.dirs[0]!, 'while-away.txt'), 'you missed this\n')
    await net.waitAll('the update to reach the running peers', async (i) => (await net.content(i, 'while-away.txt')) === 'you missed this\n', [0, 1, 2, 3])
    assert.equal(await net.content(4, 'while-away.txt'), undefined)
    await net.peers[4]!.serve([], {}, {ports: 'default'})
    await net.waitAll('the restarted peer to catch up', async (i) => (await net.content(i, 'while-away.txt')) === 'you missed this\n', [4])
    await net.settle()
    await sameEverywhere(net)
  })
})

describe('updates in a star of 6', () => {
  let net: Network
  before(async () => {
    net = await Network.create('127.0.12', 6)
    await net.build(
      [
        [0, 1],
        [0, 2],
        [0, 3],
        [0, 4],
        [0, 5],
      ],
      {'plan.txt': 'v1\n'},
    )
  })
  after(() => net.destroy())

  it('a change at the centre reaches every leaf once', async () => {
    await changeReachesAllOnce(net, 0, 'plan.txt', 'v2 from the centre\n')
  })

  it('a change at a leaf reaches the centre and every other leaf once', async () => {
    await changeReachesAllOnce(net, 3, 'plan.txt', 'v3 from leaf 3\n')
    await sameEverywhere(net)
  })
})

describe('updates in a full mesh of 5', () => {
  let net: Network
  before(async () => {
    net = await Network.create('127.0.13', 5)
    const edges: Array<[number, number]> = []
    for (let j = 1; j < 5; j++) for (let h = 0; h < j; h++) edges.push([h, j])
    await net.build(edges, {'shared.txt': 'start\n', 'other.txt': 'other\n'})
  })
  after(() => net.destroy())

  it('one change reaches all; nobody fetches it twice; no storm', async () => {
    await changeReachesAllOnce(net, 2, 'shared.txt', 'changed in the mesh\n')
  })

  it('concurrent edits on two peers converge: same winner everywhere, the other kept as a conflict copy', async () => {
    await Promise.all([
      writeFile(path.join(net.dirs[1]!, 'other.txt'), 'edit at peer 1\n'),
      writeFile(path.join(net.dirs[3]!, 'other.txt'), 'edit at peer 3\n'),
    ])
    await net.waitAll('a conflict copy everywhere', async (i) => (await treeHashes(net.dirs[i]!)).size === 3)
    await net.settle()
    await sameEverywhere(net)
    const winner = await net.content(0, 'other.txt')
    assert.ok(winner === 'edit at peer 1\n' || winner === 'edit at peer 3\n', `winner: ${winner}`)
    const conflicts = (await net.peers[0]!.json(['conflicts', 'docs'])).conflicts
    assert.equal(conflicts.length, 1)
    assert.equal(conflicts[0].of, 'other.txt')
    const loser = await net.content(0, conflicts[0].path)
    assert.deepEqual([winner, loser].sort(), ['edit at peer 1\n', 'edit at peer 3\n'])
    for (let i = 1; i < 5; i++) assert.equal((await net.peers[i]!.json(['conflicts', 'docs'])).conflicts.length, 1)
  })
})

describe('a push to a peer that is down is retried', () => {
  let net: Network
  before(async () => {
    net = await Network.create('127.0.17', 2)
    // No periodic catch-up at the second peer (its exchange at start may take the change too; the sender's retry is what this checks).
    net.peers[1]!.env.FPEER_SYNC_INTERVAL_MS = '0'
    await net.build([[0, 1]], {'note.txt': 'before\n'})
  })
  after(() => net.destroy())

  it('the change made while it was down arrives once it is back, without a restart of the sender', async () => {
    await net.peers[1]!.stop()
    await writeFile(path.join(net.dirs[0]!, 'note.txt'), 'while you were down\n')
    await waitFor('the push to fail', () => net.peers[0]!.serveStderr.includes('push failed'), 20_000)
    await net.peers[1]!.serve([], {}, {ports: 'default'})
    await net.waitAll('the retried push', async (i) => (await net.content(i, 'note.txt')) === 'while you were down\n', [1])
    // The receiver has the file before the sender hears its FilesUpdated: wait for the sender's word.
    await waitFor('the sender to log the delivery', () => /retried push delivered/.test(net.peers[0]!.serveStderr), 20_000)
  })
})

describe('fpeer push', () => {
  let net: Network
  before(async () => {
    net = await Network.create('127.0.18', 2)
    await net.build([[0, 1]], {'doc.txt': 'v1\n'})
    // The first peer's daemon no longer watches: only `fpeer push` can send its change.
    await net.peers[0]!.stop()
    await net.peers[0]!.serve(['--no-sync'], {}, {ports: 'default'})
  })
  after(() => net.destroy())

  it('rescans and pushes a change by hand; the peer fetches it from the pushing process', async () => {
    await writeFile(path.join(net.dirs[0]!, 'doc.txt'), 'v2 pushed by hand\n')
    const r = await net.peers[0]!.run(['push', 'docs', '--bind', net.peers[0]!.address, '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.deepEqual(JSON.parse(r.stdout), {folder: 'docs', versions: 1, peers: 1, failed: 0})
    await net.waitAll('the pushed change', async (i) => (await net.content(i, 'doc.txt')) === 'v2 pushed by hand\n', [1])
    const again = await net.peers[0]!.run(['push', 'docs', '--bind', net.peers[0]!.address, '--json'])
    assert.deepEqual(JSON.parse(again.stdout), {folder: 'docs', versions: 0, peers: 0, failed: 0})
  })
})
