// Unit tests of a folder's peerfile: the peerlist, the file journal (versions, tombstones, torn and damaged lines, compaction) and the state lock.
import assert from 'node:assert/strict'
import {appendFile, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {type FileRecord, Peerfile, isLive, withVersion} from './peerfile.js'

const rec = (p: string, extra: Partial<FileRecord> = {}): FileRecord => ({path: p, size: 3, mtimeMs: 1_700_000_000_000, sha256: 'a'.repeat(64), ...extra})
const version = (p: string, deleted = false) => ({
  path: p,
  deleted,
  sha256: 'b'.repeat(64),
  size: 4,
  mtimeMs: 1_700_000_000_001,
  lamport: 7,
  origin: 'peer-x',
  vv: {'peer-x': 7},
  sig: 'c'.repeat(86),
})

describe('Peerfile', () => {
  let home: string
  let n = 0
  const fresh = () => new Peerfile(home, `F${++n}`)

  before(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'fpeer-peerfile-'))
  })
  after(async () => {
    await rm(home, {recursive: true, force: true})
  })

  it('keeps confirmed peers in the order they were confirmed, and removes them', async () => {
    const pf = fresh()
    assert.deepEqual(await pf.peers(), [])
    await pf.addPeer({id: 'B', address: '127.0.0.3', protocols: ['HTTP'], role: 'member', confirmedAt: '2026-01-02T00:00:00Z'})
    await pf.addPeer({id: 'A', address: '127.0.0.2', controlPort: 7654, protocols: ['HTTP', 'SFTP'], role: 'host', confirmedAt: '2026-01-01T00:00:00Z'})
    assert.deepEqual(
      (await pf.peers()).map((p) => p.id),
      ['A', 'B'],
    )
    assert.equal(await pf.removePeer('A'), true)
    assert.equal(await pf.removePeer('A'), false)
    assert.deepEqual(
      (await new Peerfile(home, pf.folder).peers()).map((p) => p.id),
      ['B'],
    )
  })

  it('records files with their versions and tombstones, as a fresh reader sees them', async () => {
    const pf = fresh()
    assert.equal(await pf.initialized(), false)
    const all = new Map<string, FileRecord>()
    const put = async (r: FileRecord) => {
      all.set(r.path, r)
      await pf.put([r], all)
    }
    await put(rec('a.txt'))
    await put(rec('run.sh', {mode: 0o755, ino: 42}))
    await put(rec('b.txt', {version: version('b.txt')}))
    await put(rec('gone.txt', {version: version('gone.txt', true)}))
    assert.equal(await pf.initialized(), true)
    const read = await new Peerfile(home, pf.folder).files()
    assert.deepEqual([...read.keys()].sort(), ['a.txt', 'b.txt', 'gone.txt', 'run.sh'])
    assert.deepEqual(read.get('b.txt')?.version, version('b.txt'))
    assert.equal(read.get('run.sh')?.mode, 0o755)
    assert.equal(read.get('run.sh')?.ino, 42)
    assert.equal(isLive(read.get('gone.txt') ?? rec('missing')), false)
    assert.equal(isLive(read.get('b.txt') ?? rec('missing', {version: version('missing', true)})), true)
    all.delete('a.txt')
    await pf.drop(['a.txt'], all)
    assert.equal((await new Peerfile(home, pf.folder).files()).has('a.txt'), false)
  })

  it('recordsOf gives the records of the paths asked for, as files() reads them, whether remembered or read afresh; changing a files() map changes neither', async () => {
    const pf = fresh()
    const all = new Map<string, FileRecord>()
    for (const r of [rec('a.txt'), rec('b.txt', {version: version('b.txt')}), rec('c.txt')]) all.set(r.path, r)
    await pf.put([...all.values()], all)
    for (const reader of [pf, new Peerfile(home, pf.folder)]) {
      const some = await reader.recordsOf(['b.txt', 'c.txt', 'none.txt'])
      assert.deepEqual([...some.keys()], ['b.txt', 'c.txt'])
      assert.deepEqual(some.get('b.txt')?.version, version('b.txt'))
      const copy = await reader.files()
      copy.delete('b.txt')
      assert.equal((await reader.recordsOf(['b.txt'])).size, 1)
      assert.equal((await reader.files()).has('b.txt'), true)
    }
    // Written since: read again, not the remembered structure.
    all.delete('c.txt')
    await pf.drop(['c.txt'], all)
    assert.deepEqual([...(await new Peerfile(home, pf.folder).recordsOf(['a.txt', 'c.txt'])).keys()], ['a.txt'])
  })

  it('a torn last line (a crash mid-append) is skipped and marks the journal damaged; the next append starts a new line; compaction drops it', async () => {
    const pf = fresh()
    const all = new Map([['a.txt', rec('a.txt')]])
    await pf.put([rec('a.txt')], all)
    const journal = path.join(pf.dir, 'files.jsonl')
    await appendFile(journal, '{"p":"half')
    const reader = new Peerfile(home, pf.folder)
    const read = await reader.files()
    assert.deepEqual([...read.keys()], ['a.txt'])
    assert.equal(reader.damaged, true)
    read.set('b.txt', rec('b.txt'))
    await reader.put([rec('b.txt')], read)
    assert.deepEqual([...(await new Peerfile(home, pf.folder).files()).keys()].sort(), ['a.txt', 'b.txt'])
    await reader.compact(read)
    assert.equal(reader.damaged, false)
    const text = await readFile(journal, 'utf8')
    assert.equal(text.includes('half'), false)
    assert.equal(text.trim().split('\n').length, 2)
  })

  it('a journal that is not JSON at all reads as empty and damaged, never as an error', async () => {
    const pf = fresh()
    await pf.touch()
    await writeFile(path.join(pf.dir, 'files.jsonl'), 'garbage\n\u0000\u0001\n')
    const reader = new Peerfile(home, pf.folder)
    assert.equal((await reader.files()).size, 0)
    assert.equal(reader.damaged, true)
  })

  it('locked() runs one holder at a time', async () => {
    const pf = fresh()
    const order: string[] = []
    let release!: () => void
    const gate = new Promise<void>((r) => (release = r))
    let entered!: () => void
    const inFirst = new Promise<void>((r) => (entered = r))
    const first = pf.locked(async () => {
      order.push('first in')
      entered()
      await gate
      order.push('first out')
    })
    // The first holder is in before the second asks.
    await Promise.race([inFirst, first])
    const second = new Peerfile(home, pf.folder).locked(async () => {
      order.push('second')
    })
    release()
    await Promise.all([first, second])
    assert.deepEqual(order, ['first in', 'first out', 'second'])
  })
})

describe('withVersion', () => {
  it('is the scanned record with the version, carrying only the fields it has', () => {
    const v = {path: 'a', deleted: false, sha256: 'b'.repeat(64), size: 1, mtimeMs: 2, lamport: 3, origin: 'o', vv: {o: 3}, sig: 's'}
    assert.deepEqual(withVersion({path: 'a', size: 1, mtimeMs: 2, sha256: v.sha256, ino: 7, mode: 0o755}, v), {
      path: 'a',
      size: 1,
      mtimeMs: 2,
      sha256: v.sha256,
      ino: 7,
      mode: 0o755,
      version: v,
    })
    const bare = withVersion({path: 'a', size: 1, mtimeMs: 2, sha256: v.sha256}, undefined)
    assert.deepEqual(Object.keys(bare), ['path', 'size', 'mtimeMs', 'sha256'])
  })
})
