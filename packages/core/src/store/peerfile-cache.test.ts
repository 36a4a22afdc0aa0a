// The folder journal read a slice at a time: lines across slice boundaries, torn and damaged lines, appends after a torn line, compaction.
import assert from 'node:assert/strict'
import {mkdtemp, readFile, rm, writeFile, mkdir} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {type FileRecord, Peerfile, folderStateDir} from './peerfile.js'

let home: string
before(async () => {
  home = await mkdtemp(path.join(os.tmpdir(), 'fpeer-peerfile-'))
})
after(async () => {
  await rm(home, {recursive: true, force: true})
})

const sha = (i: number) => i.toString(16).padStart(64, '0')
const rec = (i: number, name = `d${i % 7}/f${i}.dat`): FileRecord => ({path: name, size: i, mtimeMs: 1_700_000_000_000 + i, sha256: sha(i), ino: 1000 + i})

describe('Peerfile journal', () => {
  it('reads back 20,000 records written in one put (lines cross the 1 MiB read slices), with a non-ASCII name', async () => {
    const pf = new Peerfile(home, 'big')
    const all = new Map<string, FileRecord>()
    // Long names so the journal spans several read slices, and a multi-byte name at a boundary's risk.
    for (let i = 0; i < 20_000; i++) all.set(`${'x'.repeat(40)}/${i}`, rec(i, `${'x'.repeat(40)}/${i}`))
    all.set('é/ü/日本.txt', rec(7, 'é/ü/日本.txt'))
    await pf.put([...all.values()], all)
    const text = await readFile(path.join(folderStateDir(home, 'big'), 'files.jsonl'), 'utf8')
    assert.ok(Buffer.byteLength(text) > 2 * (1 << 20), 'the journal is larger than two read slices')
    const back = await new Peerfile(home, 'big').files()
    assert.equal(back.size, all.size)
    assert.deepEqual(back.get('é/ü/日本.txt'), all.get('é/ü/日本.txt'))
    assert.deepEqual(back.get(`${'x'.repeat(40)}/19999`), all.get(`${'x'.repeat(40)}/19999`))
  })

  it('skips a torn last line and a damaged one (damaged), and an append after a torn line starts a new line', async () => {
    const dir = folderStateDir(home, 'torn')
    await mkdir(dir, {recursive: true})
    const journal = path.join(dir, 'files.jsonl')
    const good = JSON.stringify({p: 'a', s: 1, m: 2, h: sha(1)})
    await writeFile(journal, `${good}\nnot json\n{"p":"b","s":1,"m`)
    const pf = new Peerfile(home, 'torn')
    const map = await pf.files()
    assert.deepEqual([...map.keys()], ['a'])
    assert.equal(pf.damaged, true)
    const c = rec(3, 'c')
    map.set('c', c)
    await pf.put([c], map)
    const text = await readFile(journal, 'utf8')
    assert.ok(text.endsWith(`{"p":"b","s":1,"m\n${JSON.stringify({p: 'c', s: 3, m: c.mtimeMs, h: c.sha256, i: c.ino})}\n`), text)
    const again = new Peerfile(home, 'torn')
    assert.deepEqual([...(await again.files()).keys()].sort(), ['a', 'c'])
    await again.compact(await again.files())
    const fresh = new Peerfile(home, 'torn')
    assert.deepEqual([...(await fresh.files()).keys()].sort(), ['a', 'c'])
    assert.equal(fresh.damaged, false, 'compaction dropped the bad lines')
  })

  it('a second read of an unchanged journal gives the same records in a fresh map; a write by another instance is seen', async () => {
    const a = new Peerfile(home, 'cached')
    const all = new Map([
      ['x', rec(1, 'x')],
      ['y', rec(2, 'y')],
    ])
    await a.put([...all.values()], all)
    const first = await a.files()
    first.delete('x') // a caller's map is its own
    const second = await a.files()
    assert.deepEqual([...second.keys()].sort(), ['x', 'y'])
    const b = new Peerfile(home, 'cached')
    const z = rec(3, 'z')
    await b.put([z], new Map([...all, ['z', z]]))
    assert.deepEqual([...(await a.files()).keys()].sort(), ['x', 'y', 'z'])
    await b.drop(
      ['y'],
      new Map([
        ['x', all.get('x')!],
        ['z', z],
      ]),
    )
    assert.deepEqual([...(await a.files()).keys()].sort(), ['x', 'z'])
  })

  it('a deletion line removes the path; touch makes an empty journal that counts as recorded', async () => {
    const pf = new Peerfile(home, 'del')
    assert.equal(await pf.initialized(), false)
    await pf.touch()
    assert.equal(await pf.initialized(), true)
    assert.equal((await pf.files()).size, 0)
    const all = new Map([
      ['x', rec(1, 'x')],
      ['y', rec(2, 'y')],
    ])
    await pf.put([...all.values()], all)
    all.delete('x')
    await pf.drop(['x'], all)
    assert.deepEqual([...(await new Peerfile(home, 'del').files()).keys()], ['y'])
  })
})
