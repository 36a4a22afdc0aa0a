// A peer killed with -9 between landing an incoming update and recording it does not, once restarted, take those files for its own edits.
import assert from 'node:assert/strict'
import type {ChildProcess} from 'node:child_process'
import {type FSWatcher, watch} from 'node:fs'
import {mkdir, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Peer, tempDir, treeHashes, waitFor} from './harness.js'

/** The periodic catch-up is off: the exchange at start and the owed forwards carry everything. */
const ENV = {FPEER_SYNC_INTERVAL_MS: '0', FPEER_RESCAN_INTERVAL_MS: '3600000', FPEER_LOG_LEVEL: 'info'}
/** Files in the one update: enough that landing them all takes long enough to kill the peer in between. */
const FILES = 1500
/** Rounds tried until a kill falls between the first landed file and the record (each round is a new update). */
const ROUNDS = 4

/** The origins of the versions a peer's journal holds. */
async function origins(home: string): Promise<Set<string>> {
  const text = await readFile(path.join(home, 'folders', 'docs', 'files.jsonl'), 'utf8')
  const out = new Set<string>()
  for (const line of text.split('\n')) {
    try {
      const o = (JSON.parse(line) as {v?: {o: string}}).v?.o
      if (o) out.add(o)
    } catch {
      // a torn last line after the kill: nothing to read in it
    }
  }
  return out
}

async function conflictCopies(dir: string): Promise<string[]> {
  return [...(await treeHashes(dir)).keys()].filter((k) => k.includes('.sync-conflict-'))
}

/** Kills `child` with -9 as soon as `dir` sees a change to one of `names` (a rename into place). */
function killOnLanding(child: ChildProcess | undefined, dir: string, names: Set<string>): {watcher: FSWatcher; killed: () => Promise<void>} {
  assert.ok(child, 'serve is running')
  const watcher = watch(dir, (_event, name) => {
    if (name && names.has(name.toString())) child.kill('SIGKILL')
  })
  // Bounded: an update that never lands fails the test instead of hanging it.
  const killed = () => waitFor('the update to land on B, and B to be killed', () => child.exitCode !== null || child.signalCode !== null, 60_000, 10)
  return {watcher, killed}
}

describe('a peer killed with -9 while it lands an incoming update', () => {
  let work: string
  let a: Peer
  let b: Peer
  let dirA: string
  let dirB: string

  before(async () => {
    work = await tempDir()
    a = await Peer.create('127.0.134.1', ENV)
    b = await Peer.create('127.0.134.2', ENV)
    dirA = path.join(work, 'a')
    dirB = path.join(work, 'b')
    await mkdir(path.join(dirA, 'batch'), {recursive: true})
    await writeFile(path.join(dirA, 'batch', 'start.txt'), 'start\n')
    assert.equal((await a.run(['share', dirA, '--name', 'docs'])).code, 0)
    await Promise.all([a, b].map((p) => p.serve([], {}, {ports: 'default'})))
    assert.equal((await a.run(['allow', 'docs', await b.id()])).code, 0)
    const r = await b.run(['request', `${a.address}:7734`, 'docs', '--into', dirB, '--bind', b.address, '--json'])
    assert.equal(r.code, 0, `${r.stdout} ${r.stderr}`)
  })
  after(async () => {
    await Promise.all([a, b].map((p) => p.destroy()))
    await rm(work, {recursive: true, force: true})
  })

  it('the restarted peer records the landed files as the sender’s versions: no version of its own, no conflict copy', async (t) => {
    let hit = 0
    for (let round = 0; round < ROUNDS && hit === 0; round++) {
      const names = new Set(Array.from({length: FILES}, (_, i) => `r${round}-${i}.txt`))
      const {watcher, killed} = killOnLanding(b.serveProcess, path.join(dirB, 'batch'), names)
      try {
        for (const n of names) await writeFile(path.join(dirA, 'batch', n), `${n} from A\n`)
        await killed()
      } finally {
        watcher.close()
      }
      // The intent is on disk from before the first rename until the update is recorded.
      const intent = await readFile(path.join(b.home, 'folders', 'docs', 'intent.json'), 'utf8').catch(() => undefined)
      if (intent !== undefined) hit++
      t.diagnostic(`round ${round}: killed ${intent === undefined ? 'outside' : 'inside'} the window between landing and recording`)
      await b.serve([], {}, {ports: 'default'})
      await waitFor(
        'B to hold A’s tree',
        async () => JSON.stringify([...(await treeHashes(dirA))].sort()) === JSON.stringify([...(await treeHashes(dirB))].sort()),
        60_000,
        100,
      )
    }
    assert.ok(hit > 0, `no kill in ${ROUNDS} rounds fell between landing and recording`)
    // The owner's next edit of a file B took in the killed update is a plain successor at B.
    const edited = (await readdir(path.join(dirB, 'batch'))).find((n) => n !== 'start.txt') ?? 'start.txt'
    await writeFile(path.join(dirA, 'batch', edited), 'edited again by A\n')
    await waitFor(
      'A’s next edit to reach B',
      async () => (await readFile(path.join(dirB, 'batch', edited), 'utf8').catch(() => '')) === 'edited again by A\n',
      60_000,
      100,
    )
    // B's rescan at start has run (it serves again): nothing it holds is its own version.
    const bOrigins = await origins(b.home)
    const aNow = await origins(a.home)
    assert.deepEqual(
      [...bOrigins].filter((o) => !aNow.has(o)),
      [],
      'B holds versions of its own',
    )
    assert.equal(aNow.size, 1, 'A holds versions of another origin than its own')
    assert.deepEqual([await conflictCopies(dirA), await conflictCopies(dirB)], [[], []])
    assert.equal(b.serveProcess?.exitCode, null, 'B is serving')
    assert.equal((await b.run(['status', '--json'])).code, 0)
  })

  it('a damaged journal is rebuilt without claiming the sender’s file: its version is adopted at the exchange, nothing fetched', async () => {
    await writeFile(path.join(dirA, 'lost.txt'), 'written by A\n')
    await waitFor('lost.txt to reach B', async () => (await readFile(path.join(dirB, 'lost.txt'), 'utf8').catch(() => '')) === 'written by A\n', 60_000, 50)
    await b.stop()
    // Every record of lost.txt garbled: the rebuilt journal does not know the file.
    const journal = path.join(b.home, 'folders', 'docs', 'files.jsonl')
    const lines = (await readFile(journal, 'utf8')).split('\n')
    await writeFile(journal, lines.map((l) => (l.includes('"p":"lost.txt"') ? `${l.slice(0, 12)}#garbled` : l)).join('\n'))
    await b.serve([], {}, {ports: 'default'})
    const pid = b.serveProcess?.pid
    await waitFor('B to record lost.txt as A’s version', async () => (await originOf(b.home, 'lost.txt')) !== undefined, 60_000, 100)
    assert.match(b.serveStderr, /journal was damaged/)
    assert.equal(await originOf(b.home, 'lost.txt'), await originOf(a.home, 'lost.txt'))
    const aNow = await origins(a.home)
    assert.deepEqual(
      [...(await origins(b.home))].filter((o) => !aNow.has(o)),
      [],
      'B holds versions of its own',
    )
    assert.deepEqual([await conflictCopies(dirA), await conflictCopies(dirB)], [[], []])
    const stats = JSON.parse(await readFile(path.join(b.home, 'stats.json'), 'utf8').catch(() => '{}')) as {pid?: number; filesFetched?: number}
    if (stats.pid === pid) assert.equal(stats.filesFetched, 0, 'the content on disk is adopted, not fetched again')
    assert.equal(b.serveProcess?.exitCode, null, 'B is serving')
  })
})

/** The origin of the version a peer's journal last recorded for `rel`, if any. */
async function originOf(home: string, rel: string): Promise<string | undefined> {
  let o: string | undefined
  for (const line of (await readFile(path.join(home, 'folders', 'docs', 'files.jsonl'), 'utf8')).split('\n')) {
    try {
      const rec = JSON.parse(line) as {p: string; d?: 1; v?: {o: string}}
      if (rec.p === rel) o = rec.d ? undefined : rec.v?.o
    } catch {
      // a garbled line: what the test made
    }
  }
  return o
}
