// writeJson: byte for byte the text of JSON.stringify(value, undefined, 2), written in slices.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {jsonPieces, writeJson} from './json-out.js'

const long = Array.from({length: 300}, (_, i) => ({
  path: `d/f${i}`,
  size: i,
  sha256: 'a'.repeat(64),
  ...(i % 7 ? {} : {version: {lamport: i, origin: 'X'}}),
  gone: undefined,
}))

const cases: Array<[string, unknown]> = [
  ['a files listing', {folder: 'f', files: long}],
  ['an empty listing', {folder: 'f', files: []}],
  ['a short array', {a: [1, 'two', null, undefined, {}]}],
  ['a long array of odd values', Array.from({length: 100}, (_, i) => [i, undefined, () => 1, Symbol('s'), NaN, Infinity, -0, 'q"\n\\', [], {}][i % 10])],
  ['nested long arrays', {outer: [Array.from({length: 70}, (_, i) => i), Array.from({length: 70}, (_, i) => ({i}))]}],
  ['toJSON on the way', {when: new Date(0), err: {toJSON: (k: string) => ({k})}, list: Array.from({length: 80}, () => ({toJSON: (k: string) => `at ${k}`}))}],
  ['a null-prototype object', Object.assign(Object.create(null) as object, {x: 1, y: [2]})],
  ['a class instance', {m: new Map([[1, 2]]), s: new Set([1])}],
  ['a string', 'text'],
  ['null', null],
  ['an object of nothing JSON can say', {u: undefined, f: () => 1}],
]

describe('writeJson', () => {
  for (const [name, value] of cases) {
    it(`${name}: the text JSON.stringify gives`, () => {
      let out = ''
      writeJson(value, (t) => (out += t))
      assert.equal(out, JSON.stringify(value, undefined, 2) + '\n')
    })
  }

  it('a listing of 100,000 files goes out in slices, none of them the whole document', () => {
    const files = Array.from({length: 100_000}, (_, i) => ({path: `d${i % 100}/f${i}`, size: 1024, sha256: 'b'.repeat(64), mtimeMs: 1_700_000_000_000}))
    const doc = {folder: 'big', files}
    let total = 0
    let largest = 0
    let writes = 0
    writeJson(doc, (t) => {
      total += t.length
      largest = Math.max(largest, t.length)
      writes++
    })
    assert.equal(total, JSON.stringify(doc, undefined, 2).length + 1)
    assert.ok(writes > 100, `${writes} writes`)
    assert.ok(largest < 256 * 1024, `largest slice ${largest} characters`)
  })

  it('the pieces of a long array are made one element at a time', () => {
    let made = 0
    const items = Array.from({length: 1000}, (_, i) => ({
      toJSON: () => {
        made++
        return i
      },
    }))
    const it = jsonPieces(items)
    for (let i = 0; i < 10; i++) it.next()
    assert.ok(made < 10, `${made} elements made after 10 pieces`)
  })
})
