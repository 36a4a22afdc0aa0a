// The update model's pure rules: version vectors, the winner order, conflict names, origin signatures.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import {type FileVersion, compareVectors, conflictPath, decide, entryToVersion, isConflictPath, signVersion, verifyVersion, versionToEntry} from './version.js'

const A = 'A'.repeat(52)
const B = 'B'.repeat(52)
const v = (over: Partial<FileVersion>): FileVersion => ({
  path: 'f',
  deleted: false,
  sha256: 'a'.repeat(64),
  size: 1,
  mtimeMs: 1,
  lamport: 1,
  origin: A,
  vv: {[A]: 1},
  sig: '',
  ...over,
})

describe('version vectors', () => {
  const cases: Array<[Record<string, number>, Record<string, number>, string]> = [
    [{}, {}, 'equal'],
    [{[A]: 1}, {[A]: 1}, 'equal'],
    [{[A]: 2}, {[A]: 1}, 'greater'],
    [{[A]: 1}, {[A]: 1, [B]: 1}, 'less'],
    [{[A]: 2}, {[B]: 1}, 'concurrent'],
    [{[A]: 2, [B]: 1}, {[A]: 1, [B]: 2}, 'concurrent'],
  ]
  for (const [a, b, want] of cases)
    it(`${JSON.stringify(a).replaceAll('A'.repeat(52), 'A').replaceAll('B'.repeat(52), 'B')} vs … is ${want}`, () => assert.equal(compareVectors(a, b), want))
})

describe('decide', () => {
  const ours = v({lamport: 3, origin: A, vv: {[A]: 3}, sha256: '1'.repeat(64)})
  const cases: Array<{name: string; local?: FileVersion; incoming: FileVersion; want: string}> = [
    {name: 'nothing here: take', incoming: ours, want: 'take'},
    {name: 'the same version: skip', local: ours, incoming: ours, want: 'skip'},
    {name: 'an older one we knew of: skip', local: ours, incoming: v({lamport: 2, vv: {[A]: 2}}), want: 'skip'},
    {name: 'a successor made knowing ours: take', local: ours, incoming: v({lamport: 4, origin: B, vv: {[A]: 3, [B]: 4}}), want: 'take'},
    {
      name: 'concurrent and newer: take, ours becomes a conflict copy',
      local: ours,
      incoming: v({lamport: 5, origin: B, vv: {[B]: 5}, sha256: '2'.repeat(64)}),
      want: 'take-conflict',
    },
    {
      name: 'concurrent and older: keep ours, theirs becomes a conflict copy',
      local: ours,
      incoming: v({lamport: 2, origin: B, vv: {[B]: 2}, sha256: '2'.repeat(64)}),
      want: 'keep-conflict',
    },
    {
      name: 'concurrent, same content, newer: take quietly',
      local: ours,
      incoming: v({lamport: 5, origin: B, vv: {[B]: 5}, sha256: '1'.repeat(64)}),
      want: 'take',
    },
    {
      name: 'concurrent, same content, older: skip quietly',
      local: ours,
      incoming: v({lamport: 1, origin: B, vv: {[B]: 1}, sha256: '1'.repeat(64)}),
      want: 'skip',
    },
    {
      name: 'equal lamport: the origin breaks the tie',
      local: ours,
      incoming: v({lamport: 3, origin: B, vv: {[B]: 3}, sha256: '2'.repeat(64)}),
      want: 'take-conflict',
    },
  ]
  for (const c of cases) it(c.name, () => assert.equal(decide(c.local, c.incoming).action, c.want))

  it('two peers deciding each other’s concurrent versions pick the same winner', () => {
    const x = v({lamport: 4, origin: A, vv: {[A]: 4}, sha256: '1'.repeat(64)})
    const y = v({lamport: 4, origin: B, vv: {[B]: 4}, sha256: '2'.repeat(64)})
    assert.equal(decide(x, y).action, 'take-conflict')
    assert.equal(decide(y, x).action, 'keep-conflict')
  })
})

describe('conflict copies', () => {
  const cases: Array<[string, string]> = [
    ['report.txt', 'report.sync-conflict-BBBBBBB-cafebabe.txt'],
    ['dir/sub/archive.tar.gz', 'dir/sub/archive.tar.sync-conflict-BBBBBBB-cafebabe.gz'],
    ['Makefile', 'Makefile.sync-conflict-BBBBBBB-cafebabe'],
    ['.hidden', '.hidden.sync-conflict-BBBBBBB-cafebabe'],
  ]
  for (const [path, want] of cases) {
    it(`${path} → ${want}`, () => {
      assert.equal(conflictPath({path, origin: B, sha256: 'cafebabe' + '0'.repeat(56)}), want)
      assert.ok(isConflictPath(want))
    })
  }
  it('ordinary names are not conflict copies', () => assert.equal(isConflictPath('report.sync-conflict.txt'), false))
})

describe('origin signatures', () => {
  const origin = new Identity(generateKeyPair())
  const signed = signVersion(
    'docs',
    {path: 'a b/ç.txt', deleted: false, sha256: 'f'.repeat(64), size: 9, mtimeMs: 1700000000000, lamport: 7, vv: {[origin.id.compact]: 7}},
    origin,
  )

  it('a version survives the wire and verifies', () => {
    const back = entryToVersion(versionToEntry(signed))!
    assert.deepEqual(back, signed)
    verifyVersion('docs', back)
  })
  it('a deletion survives the wire and verifies', () => {
    const del = signVersion(
      'docs',
      {path: 'gone', deleted: true, sha256: '', size: 0, mtimeMs: 1700000000001, lamport: 8, vv: {[origin.id.compact]: 8}},
      origin,
    )
    const back = entryToVersion(versionToEntry(del))!
    assert.deepEqual(back, del)
    verifyVersion('docs', back)
  })
  for (const [name, change] of [
    ['content', {sha256: 'e'.repeat(64)}],
    ['size', {size: 10}],
    ['lamport', {lamport: 70}],
    ['vector', {vv: {}}],
    ['path', {path: 'other'}],
    ['deletion flag', {deleted: true}],
  ] as const) {
    it(`changing the ${name} breaks the origin signature`, () => {
      assert.throws(() => verifyVersion('docs', {...signed, ...change}), /not signed by its origin/)
    })
  }
  it('the signature is bound to the folder', () => assert.throws(() => verifyVersion('other-folder', signed)))
})
