// Prompt hand-over after a restart: a peer killed with -9 mid-update, or down during a change, converges with its peers by itself (catch-up off).
import assert from 'node:assert/strict'
import type {ChildProcess} from 'node:child_process'
import {mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Peer, tempDir, waitFor} from './harness.js'

interface Stats {
  pid?: number
  filesFetched: number
  bytesFetched: number
  messagesIn: number
}

/** The periodic catch-up is off: only the exchange at start and the owed forwards can bring a change. */
const ENV = {FPEER_SYNC_INTERVAL_MS: '0', FPEER_RESCAN_INTERVAL_MS: '3600000', FPEER_LOG_LEVEL: 'info'}
/** Kill-and-restart rounds of the first test (FPEER_RESTART_RUNS=5 to measure). */
const RUNS = Math.max(1, Math.min(20, Number(process.env.FPEER_RESTART_RUNS ?? 1)))

/** A chain of peers on their own loopback addresses: peer i joined peer i-1's folder `docs`. */
class Chain {
  readonly peers: Peer[] = []
  readonly dirs: string[] = []
  work = ''

  static async create(prefix: string, n: number): Promise<Chain> {
    const c = new Chain()
    c.work = await tempDir()
    for (let i = 0; i < n; i++) {
      c.peers.push(await Peer.create(`${prefix}.${i + 1}`, ENV))
      c.dirs.push(path.join(c.work, `peer${i}`))
    }
    await mkdir(c.dirs[0]!, {recursive: true})
    await writeFile(path.join(c.dirs[0]!, 'note.txt'), 'start\n')
    assert.equal((await c.peers[0]!.run(['share', c.dirs[0]!, '--name', 'docs'])).code, 0)
    await Promise.all(c.peers.map((p) => p.serve([], {}, {ports: 'default'})))
    for (let j = 1; j < n; j++) {
      const host = c.peers[j - 1]!
      const joiner = c.peers[j]!
      assert.equal((await host.run(['allow', 'docs', await joiner.id()])).code, 0)
      const r = await joiner.run(['request', `${host.address}:7734`, 'docs', '--into', c.dirs[j]!, '--bind', joiner.address, '--json'])
      assert.equal(r.code, 0, `peer${j} joining from peer${j - 1}: ${r.stdout} ${r.stderr}`)
    }
    await c.settle()
    return c
  }

  /** The counters in stats.json; serve rewrites it in place, so a read caught mid-write is read again. */
  async stats(i: number): Promise<Stats> {
    let s: Stats | undefined
    await waitFor(
      `peer${i}'s stats.json to be whole`,
      async () => {
        const text = await readFile(path.join(this.peers[i]!.home, 'stats.json'), 'utf8').catch(() => '{"filesFetched":0,"bytesFetched":0,"messagesIn":0}')
        s = JSON.parse(text) as Stats
        return true
      },
      10_000,
      10,
    )
    return s!
  }

  /** The counters of the serve process now running (a restarted one writes its own, from 0). */
  async statsOfRunning(i: number): Promise<Stats> {
    const pid = this.peers[i]!.serveProcess!.pid
    let s: Stats | undefined
    await waitFor(`peer${i}'s restarted serve to write its counters`, async () => (s = await this.stats(i)).pid === pid, 30_000)
    return s!
  }

  /** Waits until no counter moves for 1.5 s: nothing is spreading any more. */
  async settle(): Promise<void> {
    const all = async () => JSON.stringify(await Promise.all(this.peers.map((_, i) => this.stats(i))))
    let last = await all()
    for (let i = 0; i < 60; i++) {
      await new Promise((r) => setTimeout(r, 1500))
      const now = await all()
      if (now === last) return
      last = now
    }
    throw new Error('the chain did not settle')
  }

  content(i: number): Promise<string | undefined> {
    return readFile(path.join(this.dirs[i]!, 'note.txt'), 'utf8').catch(() => undefined)
  }

  async destroy(): Promise<void> {
    await Promise.all(this.peers.map((p) => p.destroy()))
    await rm(this.work, {recursive: true, force: true})
  }
}

/** kill -9, and the exit awaited (the harness's stop would wait for an exit already past). */
async function killHard(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGKILL')
  await exited
}

/** The serve process is still there and answers: its control port takes a connection. */
async function alive(p: Peer): Promise<boolean> {
  return p.serveProcess?.exitCode === null && (await p.run(['status', '--json'])).code === 0
}

describe('a middle peer killed with -9 the moment it took a change, and restarted', () => {
  let chain: Chain
  before(async () => {
    chain = await Chain.create('127.0.133', 3)
  })
  after(() => chain.destroy())

  it('the peer behind it gets the change; every peer fetched it once', async (t) => {
    const [a, b] = chain.peers
    for (let run = 0; run < RUNS; run++) {
      const content = `change ${run} ${'x'.repeat(run * 100)}\n`
      const before = [await chain.stats(0), await chain.stats(2)]
      await writeFile(path.join(chain.dirs[0]!, 'note.txt'), content)
      // Polled tightly: the kill must land while B still owes the forward, not after it.
      await waitFor('the change to land on B', async () => (await chain.content(1)) === content, 30_000, 2)
      await killHard(b!.serveProcess!)
      const cHadIt = (await chain.content(2)) === content
      await b!.serve([], {}, {ports: 'default'})
      const restarted = Date.now()
      await waitFor('the change to reach C', async () => (await chain.content(2)) === content, 60_000, 50)
      const took = Date.now() - restarted
      await chain.settle()
      const [aNow, cNow] = [await chain.stats(0), await chain.stats(2)]
      assert.equal(cNow.filesFetched - before[1]!.filesFetched, 1, 'C fetched the change once')
      assert.equal(aNow.filesFetched - before[0]!.filesFetched, 0, 'A fetched nothing')
      // B fetched it before it was killed (it was on its disk); the restarted B fetches nothing.
      assert.equal((await chain.statsOfRunning(1)).filesFetched, 0, 'the restarted B fetched the change again')
      assert.ok(await alive(a!), 'A is still serving')
      assert.ok(await alive(b!), 'B is serving again')
      t.diagnostic(`run ${run}: restart -> C holds the change in ${took} ms (C had it already at the kill: ${cHadIt})`)
    }
  })

  it('B down while A changes: the restarted B takes the change by its own exchange and passes it on, once each', async (t) => {
    const [a, b] = chain.peers
    await b!.stop()
    const before = [await chain.stats(0), await chain.stats(2)]
    const content = 'changed while B was down\n'
    const mark = a!.serveStderr.length
    await writeFile(path.join(chain.dirs[0]!, 'note.txt'), content)
    // This change's failed push, not an earlier one: then A has recorded the change as its version.
    await waitFor("A's push to B to fail", () => /local change[^\n]*\n(.*\n)*.*push failed/.test(a!.serveStderr.slice(mark)), 30_000)
    // A restarted drops its in-memory retry of that push: only B's exchange at start can bring the change now.
    await a!.stop()
    await a!.serve([], {}, {ports: 'default'})
    await waitFor("A's own exchange to find B away", () => a!.serveStderr.includes('state exchange: peer not reached'), 30_000)
    // Its owed forwards damaged meanwhile (a garbled line before the last): set aside at start, they stop nothing.
    await writeFile(path.join(b!.home, 'folders', 'docs', 'owed.jsonl'), '{"o":"X garbled\n{"c":"X","p":"note.txt"}\n')
    await b!.serve([], {}, {ports: 'default'})
    const restarted = Date.now()
    await waitFor('the change to reach B and C', async () => (await chain.content(1)) === content && (await chain.content(2)) === content, 60_000, 50)
    assert.match(b!.serveStderr, /owed forwards were damaged/)
    t.diagnostic(`restart -> B and C hold the change in ${Date.now() - restarted} ms`)
    await chain.settle()
    assert.match(b!.serveStderr, /state exchanged folder=docs peer=\S+ pulled=1/, `B pulled the change itself; A's log:\n${a!.serveStderr}`)
    assert.equal((await chain.statsOfRunning(1)).filesFetched, 1, 'B fetched the change once')
    assert.equal((await chain.stats(2)).filesFetched - before[1]!.filesFetched, 1, 'C fetched the change once')
    assert.equal((await chain.statsOfRunning(0)).filesFetched, 0, 'A fetched nothing')
  })
})
