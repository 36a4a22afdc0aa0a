// Owed forwards: recorded before a confirmation, kept across a kill -9, cleared per peer as peers confirm.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {after, before, describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {Identity, generateKeyPair} from '../identity.js'
import {Home} from '../store/home.js'
import type {FileRecord} from '../store/peerfile.js'
import type {ApplyResult} from './folder.js'
import {OwedForwards, applyOwing} from './owed.js'
import {type FileVersion, signVersion} from './version.js'

const origin = new Identity(generateKeyPair())
const me = origin.id.compact
const P1 = 'P1'
const P2 = 'P2'

function version(p: string, lamport: number, vv: Record<string, number> = {[me]: lamport}, sha = 'a'.repeat(64)): FileVersion {
  return signVersion('F', {path: p, deleted: false, sha256: sha, size: 1, mtimeMs: 1, lamport, vv}, origin)
}

function holding(...vs: FileVersion[]): Map<string, FileRecord> {
  return new Map(vs.map((v) => [v.path, {path: v.path, size: v.size, mtimeMs: v.mtimeMs, sha256: v.sha256, version: v}]))
}

function result(applied: FileVersion[], created: FileVersion[] = []): ApplyResult {
  return {applied, created, fetched: [], copied: [], conflicts: [], recovered: []}
}

async function owedPaths(store: OwedForwards): Promise<Record<string, string[]>> {
  return Object.fromEntries([...(await store.all())].map(([peer, vs]) => [peer, vs.map((v) => `${v.path}@${v.lamport}`).sort()]))
}

let home: string
let n = 0
/** A fresh folder's store in the shared temporary home. */
const fresh = () => new OwedForwards(new Home(home), `F${n++}`)

before(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'fpeer-owed-'))
})
after(async () => {
  await rm(home, {recursive: true, force: true})
})

describe('OwedForwards', () => {
  it('keeps what a process recorded when that process is killed with -9 before it passes anything on', async () => {
    const a = version('a.txt', 3)
    const url = pathToFileURL(path.join(path.dirname(new URL(import.meta.url).pathname), 'owed.js')).href
    const homeUrl = pathToFileURL(path.join(path.dirname(new URL(import.meta.url).pathname), '../store/home.js')).href
    const script = `import {OwedForwards} from ${JSON.stringify(url)}
import {Home} from ${JSON.stringify(homeUrl)}
const v = ${JSON.stringify(a)}
await new OwedForwards(new Home(${JSON.stringify(home)}), 'killed').owe(['P1', 'P2'], [v])
process.kill(process.pid, 'SIGKILL')`
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], {encoding: 'utf8'})
    assert.equal(child.signal, 'SIGKILL', child.stderr)
    const reopened = new OwedForwards(new Home(home), 'killed')
    assert.deepEqual(await owedPaths(reopened), {P1: ['a.txt@3'], P2: ['a.txt@3']})
    assert.deepEqual(await reopened.due(P1, holding(a)), [a])
  })

  it('settles to what the apply took: skipped versions are taken back, conflict copies are owed to all', async () => {
    const s = fresh()
    const took = version('took.txt', 2)
    const skipped = version('skipped.txt', 2)
    const copy = version('x.sync-conflict.txt', 3)
    const r = await applyOwing(
      s,
      [P1],
      [P1, P2],
      [took, skipped],
      async () => new Map(),
      async () => result([took], [copy]),
    )
    assert.deepEqual(r.applied, [took])
    assert.deepEqual(await owedPaths(s), {P1: ['took.txt@2', 'x.sync-conflict.txt@3'], P2: ['x.sync-conflict.txt@3']})
  })

  it('a version offered again after it was taken (a retry) stays owed: the apply skips it, but it was owed before', async () => {
    const s = fresh()
    const v = version('a.txt', 5)
    await applyOwing(
      s,
      [P1],
      [P1],
      [v],
      async () => new Map(),
      async () => result([v]),
    )
    // The sender retries (it never saw our confirmation); we hold it now, so the apply skips it.
    await applyOwing(
      s,
      [P1],
      [P1],
      [v],
      async () => holding(v),
      async () => result([]),
    )
    await applyOwing(
      s,
      [P1],
      [P1],
      [v],
      async () => new Map(),
      async () => result([]),
    )
    assert.deepEqual(await owedPaths(s), {P1: ['a.txt@5']})
  })

  it('an apply that fails owes nothing, and puts back the entry it replaced', async () => {
    const s = fresh()
    const old = version('a.txt', 1)
    await s.owe([P1], [old])
    const next = version('a.txt', 2)
    await assert.rejects(
      applyOwing(
        s,
        [P1],
        [P1],
        [next],
        async () => new Map(),
        async () => {
          throw new Error('fetch failed')
        },
      ),
    )
    assert.deepEqual(await owedPaths(s), {P1: ['a.txt@1']})
  })

  it('keeps the newest version per peer and path', async () => {
    const s = fresh()
    await s.owe([P1], [version('a.txt', 2)])
    await s.owe([P1], [version('a.txt', 1)])
    await s.owe([P1], [version('a.txt', 4)])
    assert.deepEqual(await owedPaths(s), {P1: ['a.txt@4']})
  })

  it('clears an entry when that peer confirms it, or confirms a version that supersedes it; other peers still owed', async () => {
    const s = fresh()
    const a1 = version('a.txt', 1)
    const b1 = version('b.txt', 1)
    await s.owe([P1, P2], [a1, b1])
    await s.paid(P1, [a1])
    await s.paid(P1, [version('b.txt', 2)])
    assert.deepEqual(await owedPaths(s), {P2: ['a.txt@1', 'b.txt@1']})
    // An older version confirmed does not clear a newer one owed.
    await s.paid(P2, [version('a.txt', 0, {})])
    assert.deepEqual(await owedPaths(s), {P2: ['a.txt@1', 'b.txt@1']})
  })

  it('confirmations from many peers at once all clear their entries (writes of one process queue up)', async () => {
    const s = fresh()
    const peers = Array.from({length: 8}, (_, i) => `P${i}`)
    const a = version('a.txt', 1)
    await s.owe(peers, [a])
    await Promise.all(peers.map((p) => s.paid(p, [a])))
    assert.deepEqual(await owedPaths(s), {})
  })

  it('due: passes on what is still held, drops entries for versions no longer held', async () => {
    const s = fresh()
    const a = version('a.txt', 1)
    const b = version('b.txt', 1)
    await s.owe([P1], [a, b])
    const due = await s.due(P1, holding(a, version('b.txt', 7)))
    assert.deepEqual(due, [a])
    assert.deepEqual(await owedPaths(s), {P1: ['a.txt@1']})
  })

  it('keepOnly forgets peers no longer in the folder', async () => {
    const s = fresh()
    await s.owe([P1, P2], [version('a.txt', 1)])
    await s.keepOnly([P2])
    assert.deepEqual(await owedPaths(s), {P2: ['a.txt@1']})
  })

  it('appends one line per change instead of rewriting every entry', async () => {
    const s = fresh()
    const many = Array.from({length: 200}, (_, i) => version(`f${i}.txt`, 1))
    await s.owe([P1, P2], many)
    const before = (await readFile(s.file, 'utf8')).length
    await s.owe([P1], [version('one-more.txt', 1)])
    const text = await readFile(s.file, 'utf8')
    assert.equal(text.split('\n').length - 1, 401)
    // The earlier 400 entries are untouched: the file only grew by the new line.
    assert.ok(text.length - before < 1000, `grew by ${text.length - before} bytes`)
  })

  it('compacts when the dead lines outnumber the live entries, atomically, keeping every live entry', async () => {
    const s = fresh()
    const vs = Array.from({length: 100}, (_, i) => version(`f${i}.txt`, 1))
    await s.owe([P1], vs)
    let most = 0
    for (let i = 0; i < 90; i++) {
      await s.paid(P1, [vs[i]!])
      most = Math.max(most, (await readFile(s.file, 'utf8')).split('\n').length - 1)
    }
    const lines = (await readFile(s.file, 'utf8')).split('\n').length - 1
    assert.ok(lines < 100, `${lines} lines for 10 live entries`)
    assert.ok(most <= 2 * 100 + 1, `${most} lines at most`)
    assert.deepEqual((await owedPaths(s)).P1?.length, 10)
    // No temporary file of the compaction is left beside it.
    assert.deepEqual(
      (await readdir(path.dirname(s.file))).filter((f) => f.includes('.tmp')),
      [],
    )
  })

  it('tolerates a torn last line (a crash mid-append) and appends after it on a line of its own', async () => {
    const s = fresh()
    await s.owe([P1], [version('a.txt', 1)])
    await writeFile(s.file, (await readFile(s.file, 'utf8')) + '{"o":"P1","v":{"path":"b.t')
    // Another process's view (this one caches what it wrote).
    const other = new OwedForwards(new Home(home), path.basename(path.dirname(s.file)))
    assert.deepEqual(await owedPaths(other), {P1: ['a.txt@1']})
    await other.owe([P2], [version('c.txt', 1)])
    assert.deepEqual(await owedPaths(other), {P1: ['a.txt@1'], P2: ['c.txt@1']})
  })

  it('a damaged line before the end is E_STATE_CORRUPT naming the file, never silently emptied; recover sets it aside', async () => {
    const s = fresh()
    await s.owe([P1], [version('a.txt', 1)])
    await s.owe([P2], [version('b.txt', 1)])
    const good = await readFile(s.file, 'utf8')
    const damaged = good.replace('"o":"P1"', '"o":P1 garbled')
    await writeFile(s.file, damaged)
    await assert.rejects(s.all(), (err) => isFpeerError(err, 'E_STATE_CORRUPT') && err.details?.path === s.file && err.details?.line === 1)
    await assert.rejects(s.owe([P1], [version('c.txt', 1)]), (err) => isFpeerError(err, 'E_STATE_CORRUPT'))
    assert.equal(await readFile(s.file, 'utf8'), damaged, 'a failed change writes nothing')
    // At serve start it is set aside (kept, not deleted), and a fresh one starts.
    const aside = await s.recover()
    assert.ok(aside?.startsWith(`${s.file}.damaged-`))
    assert.equal(await readFile(aside!, 'utf8'), damaged)
    assert.deepEqual(await owedPaths(s), {})
    assert.equal(await s.recover(), undefined)
  })

  it('reads an older owed.json once, as the journal, and removes it', async () => {
    const s = fresh()
    const legacy = path.join(path.dirname(s.file), 'owed.json')
    const a = version('a.txt', 2)
    await mkdir(path.dirname(s.file), {recursive: true})
    await writeFile(legacy, JSON.stringify({version: 1, folder: 'F', owed: {P1: {'a.txt': a}, P2: {'a.txt': a}}}))
    assert.deepEqual(await owedPaths(s), {P1: ['a.txt@2'], P2: ['a.txt@2']})
    await assert.rejects(readFile(legacy), (err: NodeJS.ErrnoException) => err.code === 'ENOENT')
    await s.paid(P1, [a])
    assert.deepEqual(await owedPaths(new OwedForwards(new Home(home), path.basename(path.dirname(s.file)))), {P2: ['a.txt@2']})
  })

  it('a damaged older owed.json is E_STATE_CORRUPT naming it, and recover sets it aside', async () => {
    const s = fresh()
    const legacy = path.join(path.dirname(s.file), 'owed.json')
    await mkdir(path.dirname(s.file), {recursive: true})
    await writeFile(legacy, '{"version":1,"owed":{"P1":')
    await assert.rejects(s.all(), (err) => isFpeerError(err, 'E_STATE_CORRUPT') && err.details?.path === legacy)
    const aside = await s.recover()
    assert.ok(aside?.startsWith(`${legacy}.damaged-`))
    assert.deepEqual(await owedPaths(s), {})
  })
})
