// Table tests for the URL layout and the Range parser; expected values are written out, not computed.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {parseRange} from './server.js'
import {encodeSegment, filePath, parseTarget} from './url.js'

describe('filePath', () => {
  const cases: Array<[string, string, string]> = [
    ['share', 'a.txt', '/share/a.txt'],
    ['share', 'with space.txt', '/share/with%20space.txt'],
    ['share', '100%.txt', '/share/100%25.txt'],
    ['share', '%20literal.txt', '/share/%2520literal.txt'],
    ['share', 'what?.txt', '/share/what%3F.txt'],
    ['share', '#hash.txt', '/share/%23hash.txt'],
    ['share', "it's (1)*!.txt", '/share/it%27s%20%281%29%2A%21.txt'],
    ['share', 'say "hi".txt', '/share/say%20%22hi%22.txt'],
    ['share', 'caf\u00e9.txt', '/share/caf%C3%A9.txt'],
    ['share', 'cafe\u0301.txt', '/share/cafe%CC%81.txt'],
    ['my folder', 'sub dir/nested #1/x', '/my%20folder/sub%20dir/nested%20%231/x'],
    ['a/b', 'x', '/a%2Fb/x'],
  ]
  for (const [folder, rel, want] of cases) {
    it(`${folder} + ${JSON.stringify(rel)} → ${want}`, () => assert.equal(filePath(folder, rel), want))
  }
  it('refuses unsafe paths with E_PATH_UNSAFE', () => {
    for (const bad of ['../x', '/etc/passwd', 'a//b', '.', 'a/./b', '']) assert.throws(() => filePath('share', bad), {code: 'E_PATH_UNSAFE'})
  })
  it('encodes a segment with only unreserved characters left', () => assert.equal(encodeSegment("-_.~AZaz09!'()* /"), '-_.~AZaz09%21%27%28%29%2A%20%2F'))
})

describe('parseTarget', () => {
  const cases: Array<[string, ReturnType<typeof parseTarget>]> = [
    ['/', {segments: [], directory: true}],
    ['/share', {segments: ['share'], directory: false}],
    ['/share/', {segments: ['share'], directory: true}],
    ['/share/a%20b/c.txt', {segments: ['share', 'a b', 'c.txt'], directory: false}],
    ['/share/%2520x?query=1', {segments: ['share', '%20x'], directory: false}],
    ['/share/what%3F.txt', {segments: ['share', 'what?.txt'], directory: false}],
    ['/share/../x', {segments: ['share', '..', 'x'], directory: false}],
    ['/share/a%2Fb', undefined],
    ['/share/a%2fb', undefined],
    ['/share/%E0%A4%A', undefined],
    ['http://evil/share/x', undefined],
    ['*', undefined],
  ]
  for (const [target, want] of cases) it(JSON.stringify(target), () => assert.deepEqual(parseTarget(target), want))
})

describe('parseRange', () => {
  const size = 1000
  const cases: Array<[string | undefined, ReturnType<typeof parseRange>]> = [
    [undefined, {kind: 'full'}],
    ['bytes=0-0', {kind: 'partial', start: 0, end: 0}],
    ['bytes=5-9', {kind: 'partial', start: 5, end: 9}],
    ['bytes=500-', {kind: 'partial', start: 500, end: 999}],
    ['bytes=999-', {kind: 'partial', start: 999, end: 999}],
    ['bytes=1000-', {kind: 'unsatisfiable'}],
    ['bytes=1000-2000', {kind: 'unsatisfiable'}],
    ['bytes=990-5000', {kind: 'partial', start: 990, end: 999}],
    ['bytes=-100', {kind: 'partial', start: 900, end: 999}],
    ['bytes=-5000', {kind: 'partial', start: 0, end: 999}],
    ['bytes=-0', {kind: 'unsatisfiable'}],
    ['bytes=9-5', {kind: 'full'}],
    ['bytes=0-1,5-6', {kind: 'full'}],
    ['items=0-5', {kind: 'full'}],
    ['bytes=-', {kind: 'full'}],
    ['Bytes = 1 - 2', {kind: 'partial', start: 1, end: 2}],
  ]
  for (const [header, want] of cases) it(`${JSON.stringify(header)} of ${size} bytes`, () => assert.deepEqual(parseRange(header, size), want))
  it('any range of an empty file is unsatisfiable', () => {
    assert.deepEqual(parseRange('bytes=0-', 0), {kind: 'unsatisfiable'})
    assert.deepEqual(parseRange('bytes=-1', 0), {kind: 'unsatisfiable'})
  })
})
