// A chain of real peers on their own loopback addresses, each joined to the one before: the crash-and-restart tests' fixture.
import assert from 'node:assert/strict'
import type {ChildProcess} from 'node:child_process'
import {mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {Peer, tempDir, waitFor} from './harness.js'

export interface Stats {
  pid?: number
  filesFetched: number
  bytesFetched: number
  messagesIn: number
}

/** The periodic catch-up is off: only the exchange at start and the owed forwards can bring a change. */
export const ENV = {FPEER_SYNC_INTERVAL_MS: '0', FPEER_RESCAN_INTERVAL_MS: '3600000', FPEER_LOG_LEVEL: 'info'}
/** Kill-and-restart rounds of the first test (FPEER_RESTART_RUNS=5 to measure). */
export const RUNS = Math.max(1, Math.min(20, Number(process.env.FPEER_RESTART_RUNS ?? 1)))

/** A chain of peers on their own loopback addresses: peer i joined peer i-1's folder `docs`. */
export class Chain {
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
      // The ID serve printed when it started: no `fpeer id` process per edge.
      assert.equal((await host.run(['allow', 'docs', joiner.ready!.id])).code, 0)
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
export async function killHard(child: ChildProcess): Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGKILL')
  await exited
}

/** The serve process is still there and answers: its control port takes a connection. */
export async function alive(p: Peer): Promise<boolean> {
  return p.serveProcess?.exitCode === null && (await p.run(['status', '--json'])).code === 0
}
