// Trust is mutual (protocol 10.6): a peer that refuses us with a signed E_NOT_ALLOWED is dropped once, not pushed to forever; a busy peer never hands a confirmed peer's catch-up to a peer that does not list it.
import assert from 'node:assert/strict'
import {mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Home, OwedForwards} from '@fpeer/core'
import {Peer, tempDir, waitFor} from './harness.js'

/** A catch-up round every second: a peer that kept asking a refusing one would show it at once. */
const ENV = {FPEER_SYNC_INTERVAL_MS: '1000', FPEER_RESCAN_INTERVAL_MS: '3600000', FPEER_STALL_TIMEOUT_MS: '5000', FPEER_LOG_LEVEL: 'info'}
const REFUSED = 'peer refused us (signed)'

const lines = (text: string, what: string) => text.split('\n').filter((l) => l.includes(what)).length

async function peerIds(p: Peer): Promise<string[]> {
  return (await p.json<{peers: Array<{id: string}>}>(['peers', 'docs'])).peers.map((r) => r.id)
}

/** The serve's counters (stats.json, rewritten once a second; a read caught mid-write counts as none yet). */
async function pulls(p: Peer): Promise<number> {
  const text = await readFile(path.join(p.home, 'stats.json'), 'utf8').catch(() => '{}')
  try {
    const s = JSON.parse(text) as {pid?: number; pulls?: number}
    return s.pid === p.serveProcess?.pid ? (s.pulls ?? 0) : 0
  } catch {
    return 0
  }
}

/** Waits until `p` has run `n` more catch-up pulls than now: rounds in which it could have asked again. */
async function rounds(p: Peer, n: number): Promise<void> {
  const start = await pulls(p)
  await waitFor(`${n} catch-up rounds of ${p.address}`, async () => (await pulls(p)) >= start + n, 60_000)
}

/** Starts `p`'s serve on its documented ports again; the ports of the one just stopped may take a moment to be free (a few tries). */
async function serveAgain(p: Peer): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await p.serve([], {}, {ports: 'default'})
      return
    } catch (err) {
      if (attempt >= 4 || !/EADDRINUSE/.test(String(err))) throw err
      await new Promise((r) => setTimeout(r, 500))
    }
  }
}

const holds = async (dir: string, rel: string, content: string) => (await readFile(path.join(dir, rel), 'utf8').catch(() => undefined)) === content

describe('trust is mutual (10.6)', () => {
  let work: string
  const dirs: Record<'a' | 'b' | 'c', string> = {a: '', b: '', c: ''}
  let a: Peer
  let b: Peer
  let c: Peer

  before(async () => {
    work = await tempDir()
    for (const k of ['a', 'b', 'c'] as const) dirs[k] = path.join(work, k)
    await mkdir(dirs.a)
    await writeFile(path.join(dirs.a, 'start.txt'), 'start\n')
    a = await Peer.create('127.0.118.1', ENV)
    b = await Peer.create('127.0.118.2', ENV)
    c = await Peer.create('127.0.118.3', ENV)
    assert.equal((await a.run(['share', dirs.a, '--name', 'docs', '--allow', await b.id(), '--allow', await c.id()])).code, 0)
    await Promise.all([a, b, c].map((p) => p.serve([], {}, {ports: 'default'})))
    // A triangle: B and C join A, then B joins C (so B's record of C is one C made first: no grace, 10.6).
    for (const [host, joiner, into] of [
      [a, b, dirs.b],
      [a, c, dirs.c],
      [c, b, dirs.b],
    ] as const) {
      if (host === c) assert.equal((await c.run(['allow', 'docs', await b.id()])).code, 0)
      const r = await joiner.run(['request', `${host.address}:7734`, 'docs', '--into', into, '--bind', joiner.address, '--json'])
      assert.equal(r.code, 0, r.stdout + r.stderr)
    }
    assert.deepEqual((await peerIds(b)).sort(), [await a.id(), await c.id()].sort())
  })
  after(async () => {
    for (const p of [a, b, c]) await p?.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('a peer that forgot us refuses once, signed: we drop it and what we owed it, ask it no more, and the rest converge', async () => {
    const bId = await b.id()
    const cId = await c.id()
    // C no longer counts B as a peer, nor lets it join again; B still lists C (the one-sided trust the soak showed).
    // C's serve is stopped meanwhile: a catch-up of B's it admitted just before would record B again.
    await c.stop()
    assert.equal((await c.run(['disallow', 'docs', bId])).code, 0)
    assert.equal((await c.run(['forget', 'docs', bId])).code, 0)
    await serveAgain(c)
    // A change B takes from A is owed to C, and pushed there: C refuses it, signed.
    await writeFile(path.join(dirs.a, 'a1.txt'), 'from A\n')
    await waitFor('B to drop C after its signed refusal', async () => !(await peerIds(b)).includes(cId), 60_000).catch((err: Error) => {
      throw new Error(`${err.message}\nB:\n${b.serveStderr.slice(-3000)}\nC:\n${c.serveStderr.slice(-2000)}`)
    })
    assert.equal(lines(b.serveStderr, REFUSED), 1, b.serveStderr.slice(-3000))
    const owed = await new OwedForwards(new Home(b.home), 'docs').all()
    assert.equal(owed.get(cId)?.length ?? 0, 0, 'nothing is owed to C any more')

    // From now on B neither pushes to C nor pulls from it, whatever changes and however many rounds pass.
    const refusalsAtB = lines(b.serveStderr, 'E_NOT_ALLOWED')
    const refusalsAtC = lines(c.serveStderr, 'E_NOT_ALLOWED')
    await writeFile(path.join(dirs.b, 'b1.txt'), 'from B\n')
    await writeFile(path.join(dirs.a, 'a2.txt'), 'from A again\n')
    await waitFor(
      'C to get both changes through A',
      async () =>
        (await holds(dirs.c, 'b1.txt', 'from B\n')) && (await holds(dirs.c, 'a2.txt', 'from A again\n')) && (await holds(dirs.c, 'a1.txt', 'from A\n')),
      60_000,
    )
    await waitFor(
      'A and B to hold every change',
      async () => (await holds(dirs.a, 'b1.txt', 'from B\n')) && (await holds(dirs.b, 'a2.txt', 'from A again\n')),
      60_000,
    )
    await rounds(b, 3)
    assert.equal(lines(b.serveStderr, 'E_NOT_ALLOWED'), refusalsAtB, `B was refused again:\n${b.serveStderr.slice(-3000)}`)
    assert.equal(lines(c.serveStderr, 'E_NOT_ALLOWED'), refusalsAtC, `C refused B again:\n${c.serveStderr.slice(-3000)}`)
    assert.equal(lines(b.serveStderr, REFUSED), 1)
    assert.deepEqual(await peerIds(b), [await a.id()])
    assert.equal((await new OwedForwards(new Home(b.home), 'docs').all()).get(cId)?.length ?? 0, 0)
    // C was refusing, not broken: still running and serving its other peer.
    assert.equal(c.serveProcess?.exitCode, null)
    assert.deepEqual((await peerIds(c)).sort(), [await a.id()])
  })
})

describe('a busy peer and its confirmed peers (10.5, 10.6)', () => {
  let work: string
  let hub: Peer
  const spokes: Peer[] = []
  const dirs: string[] = []

  before(async () => {
    work = await tempDir()
    hub = await Peer.create('127.0.118.11', ENV)
    for (let i = 0; i < 2; i++) {
      spokes.push(await Peer.create(`127.0.118.${12 + i}`, ENV))
      dirs.push(path.join(work, `spoke${i}`))
    }
    const hubDir = path.join(work, 'hub')
    await mkdir(hubDir)
    await writeFile(path.join(hubDir, 'start.txt'), 'start\n')
    assert.equal(
      (await hub.run(['share', hubDir, '--name', 'docs', ...(await Promise.all(spokes.map(async (s) => ['--allow', await s.id()]))).flat()])).code,
      0,
    )
    await Promise.all([hub, ...spokes].map((p) => p.serve([], {}, {ports: 'default'})))
    for (let i = 0; i < spokes.length; i++) {
      const r = await spokes[i]!.run(['request', `${hub.address}:7734`, 'docs', '--into', dirs[i]!, '--bind', spokes[i]!.address, '--json'])
      assert.equal(r.code, 0, r.stdout + r.stderr)
    }
    // The hub is now always busy: past zero handshakes at once it would hand requests to a spoke.
    await hub.stop()
    await hub.serve(['--max-handshakes', '0'], {}, {ports: 'default'})
  })
  after(async () => {
    for (const p of [hub, ...spokes]) await p?.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('answers their catch-ups itself: no spoke is handed to the other, so none confirms a peer that does not list it', async () => {
    // A spoke may have refused the hub once while it joined (it records the hub last): not counted.
    const refusals = spokes.map((s) => lines(s.serveStderr, 'E_NOT_ALLOWED'))
    await Promise.all(spokes.map((s) => rounds(s, 3)))
    await writeFile(path.join(dirs[0]!, 'from0.txt'), 'spoke 0\n')
    await waitFor('the other spoke to get the change through the busy hub', () => holds(dirs[1]!, 'from0.txt', 'spoke 0\n'), 60_000)
    assert.equal(lines(hub.serveStderr, 'delegated request'), 0, hub.serveStderr.slice(-3000))
    for (let i = 0; i < spokes.length; i++) {
      assert.deepEqual(await peerIds(spokes[i]!), [await hub.id()], `spoke${i} lists the hub only`)
      assert.equal(lines(spokes[i]!.serveStderr, 'E_NOT_ALLOWED'), refusals[i], spokes[i]!.serveStderr.slice(-3000))
    }
  })
})
