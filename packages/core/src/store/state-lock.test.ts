// State locks and damaged state files: a dead holder's lock is taken at once, a damaged document is E_STATE_CORRUPT, a damaged journal claims no new versions.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import {isFpeerError} from '../errors.js'
import {FolderSync} from '../sync/folder.js'
import {Home} from './home.js'
import {LockedDb} from './locked-db.js'
import {lockState} from './state-lock.js'

let dir: string
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'fpeer-state-'))
})
after(async () => {
  await rm(dir, {recursive: true, force: true})
})

/** The pid of a process that has exited (spawnSync waits for it). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'])
  return Number(r.stdout.toString())
}

describe('lockState', () => {
  it('takes over the lock of a dead process without waiting (waitMs 0 would throw E_LOCKED)', async () => {
    const lock = path.join(dir, 'a.lock')
    await mkdir(lock)
    await writeFile(path.join(lock, 'pid'), `${deadPid()} 1\n`)
    assert.equal(await lockState(path.join(dir, 'a'), lock, 'locked', async () => 'ran', 0), 'ran')
    assert.deepEqual(
      (await readdir(dir)).filter((n) => n.startsWith('a.lock')),
      [],
      'the lock and the stale one are gone',
    )
  })

  it('waits for a live holder and then gives E_LOCKED', async () => {
    const lock = path.join(dir, 'b.lock')
    await mkdir(lock)
    await writeFile(path.join(lock, 'pid'), `${process.pid}\n`)
    await assert.rejects(
      lockState(path.join(dir, 'b'), lock, 'locked', async () => 'ran', 0),
      (err) => isFpeerError(err, 'E_LOCKED'),
    )
    assert.equal(await readFile(path.join(lock, 'pid'), 'utf8'), `${process.pid}\n`, 'a live holder keeps its lock')
    await rm(lock, {recursive: true})
  })
})

describe('LockedDb', () => {
  for (const [what, text] of [
    ['truncated', '{"version": 1, "fold'],
    ['garbled', '\u0000\u0001garbage'],
    ['not an object', '[1,2]'],
  ] as const) {
    it(`reads a ${what} document as E_STATE_CORRUPT naming the file, and does not rewrite it`, async () => {
      const file = path.join(dir, `doc-${what.replaceAll(' ', '-')}.json`)
      await writeFile(file, text)
      const db = new LockedDb<{version: number}>(file, () => ({version: 1}))
      for (const op of [() => db.read(), () => db.update(() => {})]) {
        await assert.rejects(op(), (err) => isFpeerError(err, 'E_STATE_CORRUPT') && (err.details as {path: string}).path === file && err.hint !== undefined)
      }
      assert.equal(await readFile(file, 'utf8'), text)
    })
  }

  it('writes atomically, keeps the previous document as .bak and leaves no temporary file', async () => {
    const sub = path.join(dir, 'atomic')
    const db = new LockedDb<{n: number}>(path.join(sub, 'doc.json'), () => ({n: 0}))
    await db.update((d) => void (d.n = 1))
    await db.update((d) => void (d.n = 2))
    assert.deepEqual(await db.read(), {n: 2})
    assert.deepEqual(JSON.parse(await readFile(path.join(sub, 'doc.json.bak'), 'utf8')), {n: 1})
    assert.deepEqual((await readdir(sub)).sort(), ['doc.json', 'doc.json.bak'])
  })
})

describe('a damaged journal', () => {
  it("is rebuilt without claiming the files it lost as this peer's new versions", async () => {
    const home = path.join(dir, 'home')
    const root = path.join(dir, 'folder')
    await mkdir(root, {recursive: true})
    await writeFile(path.join(root, 'a.txt'), 'a')
    const sync = new FolderSync(new Home(home), {name: 'F', path: root, open: false, allow: [], createdAt: ''}, new Identity(generateKeyPair()))
    assert.equal((await sync.rescan()).versions.length, 0, 'the first scan records the original content')
    await writeFile(path.join(root, 'b.txt'), 'b')
    assert.deepEqual(
      (await sync.rescan()).versions.map((v) => v.path),
      ['b.txt'],
      'a change is a version',
    )
    const journal = path.join(home, 'folders', 'F', 'files.jsonl')
    const lines = (await readFile(journal, 'utf8')).split('\n')
    await writeFile(journal, lines.map((l) => (l.includes('"a.txt"') ? '{"p":"a.t\u0000garbage' : l)).join('\n'))
    assert.deepEqual((await sync.rescan()).versions, [], 'a.txt, lost from the journal, is taken as found')
    const records = await sync.records()
    assert.equal(records.get('a.txt')?.version, undefined)
    assert.equal(records.get('b.txt')?.version?.path, 'b.txt', 'what the journal still knew keeps its version')
    assert.ok(!(await readFile(journal, 'utf8')).includes('garbage'), 'the rebuilt journal dropped the damaged line')
    await writeFile(path.join(root, 'c.txt'), 'c')
    assert.deepEqual(
      (await sync.rescan()).versions.map((v) => v.path),
      ['c.txt'],
      'after the rebuild a new file is a version again',
    )
  })
})
