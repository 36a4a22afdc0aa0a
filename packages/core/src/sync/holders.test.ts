// What peers are known to hold: a forward skips only what the peer itself would skip, notes out of order keep the newest, and the memory is bounded.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {KnownHolders} from './holders.js'
import type {FileVersion} from './version.js'

const A = 'A'.repeat(52)
const B = 'B'.repeat(52)
const v = (path: string, vv: Record<string, number>, over: Partial<FileVersion> = {}): FileVersion => {
  const [origin, lamport] = Object.entries(vv).sort((x, y) => y[1] - x[1])[0]!
  return {path, deleted: false, sha256: String(lamport).repeat(64).slice(0, 64), size: 1, mtimeMs: 1, lamport, origin, vv, sig: '', ...over}
}

describe('KnownHolders', () => {
  it('a peer holding a version, or one that knew of it, is not offered it; a newer or a concurrent one is', () => {
    const h = new KnownHolders()
    h.note('F', 'P', [v('f', {[A]: 2})])
    assert.equal(h.holds('F', 'P', v('f', {[A]: 2})), true, 'the same version')
    assert.equal(h.holds('F', 'P', v('f', {[A]: 1})), true, 'an older one it knew of')
    assert.equal(h.holds('F', 'P', v('f', {[A]: 3})), false, 'a successor')
    // Concurrent with different content: the peer must see it to keep a conflict copy.
    assert.equal(h.holds('F', 'P', v('f', {[B]: 5})), false, 'concurrent')
    assert.equal(h.holds('F', 'Q', v('f', {[A]: 2})), false, 'another peer')
    assert.equal(h.holds('G', 'P', v('f', {[A]: 2})), false, 'another folder')
    assert.equal(h.holds('F', 'P', v('g', {[A]: 2})), false, 'another path')
  })

  it('a note older than what is known does not replace it; a newer one does', () => {
    const h = new KnownHolders()
    h.note('F', 'P', [v('f', {[A]: 3})])
    h.note('F', 'P', [v('f', {[A]: 1})])
    assert.equal(h.holds('F', 'P', v('f', {[A]: 2})), true)
    h.note('F', 'P', [v('f', {[A]: 4})])
    assert.equal(h.holds('F', 'P', v('f', {[A]: 4})), true)
    // A deletion that knew of the file supersedes it.
    h.note('F', 'P', [v('f', {[A]: 5}, {deleted: true})])
    assert.equal(h.holds('F', 'P', v('f', {[A]: 4})), true)
    assert.equal(h.holds('F', 'P', v('f', {[A]: 6})), false)
  })

  it('forgets one peer of one folder when its whole structure was seen', () => {
    const h = new KnownHolders()
    h.note('F', 'P', [v('a', {[A]: 1}), v('b', {[A]: 1})])
    h.note('F', 'Q', [v('a', {[A]: 1})])
    h.note('G', 'P', [v('a', {[A]: 1})])
    h.forget('F', 'P')
    assert.equal(h.holds('F', 'P', v('a', {[A]: 1})), false)
    assert.equal(h.holds('F', 'P', v('b', {[A]: 1})), false)
    assert.equal(h.holds('F', 'Q', v('a', {[A]: 1})), true)
    assert.equal(h.holds('G', 'P', v('a', {[A]: 1})), true)
  })

  it('remembers at most its limit of paths, forgetting the longest unnoted first', () => {
    const h = new KnownHolders(3)
    for (const p of ['a', 'b', 'c']) h.note('F', 'P', [v(p, {[A]: 1})])
    // `a` noted again: now the most recent; `d` pushes out `b`.
    h.note('F', 'Q', [v('a', {[A]: 1})])
    h.note('F', 'P', [v('d', {[A]: 1})])
    assert.equal(h.size, 3)
    assert.equal(h.holds('F', 'P', v('a', {[A]: 1})), true)
    assert.equal(h.holds('F', 'P', v('b', {[A]: 1})), false)
    assert.equal(h.holds('F', 'P', v('c', {[A]: 1})), true)
    assert.equal(h.holds('F', 'P', v('d', {[A]: 1})), true)
  })
})
