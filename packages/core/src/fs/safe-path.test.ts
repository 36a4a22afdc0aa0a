// Path rules from the wire: reserved names in every spelling, the depth limit, and the older rules, table-driven.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {MAX_PATH_DEPTH, checkRelativePath, foldName, isReservedName} from './safe-path.js'

const refused = (rel: string) =>
  assert.throws(
    () => checkRelativePath(rel),
    (err) => isFpeerError(err, 'E_PATH_UNSAFE'),
    JSON.stringify(rel),
  )

describe('reserved names', () => {
  const reserved: Array<[string, string]> = [
    ['.fpeer', 'the bookkeeping name'],
    ['.Fpeer', 'another case'],
    ['.FPEER', 'upper case'],
    ['.fpeer\u200d', 'a zero-width joiner after it'],
    ['.fp\u200beer', 'a zero-width space inside'],
    ['\ufeff.fpeer', 'a BOM before it'],
    ['.fpe\u00ader', 'a soft hyphen inside'],
    ['.fpeer\u2060', 'a word joiner after it'],
    ['.fpeer\ufe0f', 'a variation selector after it'],
    ['\uff0e\uff46\uff50\uff45\uff45\uff52', 'full-width letters'],
    ['.fpeer-part-0123abcd', 'a part file'],
    ['.FPEER-PART-x', 'a part file in upper case'],
    ['.fpeer-staging-1', 'a staging folder'],
    ['.fpeer-', 'the bare prefix'],
    ['.\u212apeer', 'not a match: the Kelvin sign folds to k'],
  ]
  for (const [name, why] of reserved) {
    const expected = !why.startsWith('not a match')
    it(`${JSON.stringify(name)} (${why}) is ${expected ? '' : 'not '}reserved`, () => {
      assert.equal(isReservedName(name), expected)
      if (expected) {
        refused(name)
        refused(`docs/${name}/x.txt`)
        refused(`docs/${name}`)
      }
    })
  }

  for (const name of ['.fpeerrc', 'fpeer', '.fpee', 'a.fpeer', '.fpeer.txt', '.fpeers', 'x.fpeer-part-1', 'notes.sync-conflict-ABCDEFG-0123abcd.txt']) {
    it(`${JSON.stringify(name)} is an ordinary name`, () => {
      assert.equal(isReservedName(name), false)
      assert.deepEqual(checkRelativePath(`d/${name}`), ['d', name])
    })
  }

  it('folds invisible code points, compatibility forms and case', () => {
    assert.equal(foldName('.F\u200dP\uff25er'), '.fpeer')
    assert.equal(foldName('A\u00adB'), 'ab')
  })
})

describe('checkRelativePath', () => {
  it(`accepts ${MAX_PATH_DEPTH} levels and refuses ${MAX_PATH_DEPTH + 1}`, () => {
    assert.equal(checkRelativePath(Array(MAX_PATH_DEPTH).fill('d').join('/')).length, 64)
    refused(
      Array(MAX_PATH_DEPTH + 1)
        .fill('d')
        .join('/'),
    )
    refused(Array(1000).fill('d').join('/') + '/deep.txt')
  })

  const bad = ['', '/etc/passwd', '../x', 'a/../../x', 'a//b', './a', 'a/.', 'a\0b', 'x'.repeat(256), `${'abc/'.repeat(1100)}x`]
  for (const rel of bad) it(`refuses ${JSON.stringify(rel.slice(0, 30))}`, () => refused(rel))

  const good: Array<[string, string[]]> = [
    ['a.txt', ['a.txt']],
    ['with space/100% #1.txt', ['with space', '100% #1.txt']],
    ['unicode/çé 文件 ✓.md', ['unicode', 'çé 文件 ✓.md']],
    ['..a/b..', ['..a', 'b..']],
    ['line\nfeed', ['line\nfeed']],
  ]
  for (const [rel, segs] of good) it(`accepts ${JSON.stringify(rel)}`, () => assert.deepEqual(checkRelativePath(rel), segs))
})
