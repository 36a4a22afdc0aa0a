// Table-driven tests of `fpeer message` build/parse: the expected wire text is written out literally.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {Identity, generateKeyPair, isFpeerError} from '@fpeer/core'
import {buildWire, messageFromJson, parseWire} from './message.js'

const SHA = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'

const CASES: Array<{name: string; json: unknown; wire: string}> = [
  {name: 'seed-form BePeerRequest', json: {type: 'BePeerRequest', folder: '00-MainDocuments', meta: {}}, wire: 'BePeerRequest\n00-MainDocuments\n\n'},
  {
    name: 'FilesToGet with attributes, sorted on the wire',
    json: {
      type: 'FilesToGet',
      folder: 'F',
      meta: {re: 'b', nonce: 'a'},
      port: 7735,
      protocol: 'HTTP',
      files: [{path: 'x y.txt', size: 3, sha256: SHA, mtimeMs: 5}, {path: '100% #1'}],
    },
    wire: `FilesToGet\tnonce=a\tre=b\nF\n7735\nHTTP\nx y.txt\tmtime=5\tsha256=${SHA}\tsize=3\n100% #1\n\n`,
  },
  {
    name: 'a name with a line break is percent-encoded',
    json: {type: 'FilesUpdated', folder: 'F', meta: {}, port: 1, protocol: 'SFTP', files: [{path: 'a\nb'}]},
    wire: 'FilesUpdated\nF\n1\nSFTP\na%0Ab\tenc=pct\n\n',
  },
  {name: 'PeerError about no folder', json: {type: 'PeerError', folder: '*', meta: {}, code: 'E_BUSY', text: 'later'}, wire: 'PeerError\n*\nE_BUSY\nlater\n\n'},
]

describe('fpeer message build and parse', () => {
  for (const c of CASES) {
    it(`${c.name}: build gives the literal wire text, parse gives the JSON back`, () => {
      assert.equal(buildWire({json: c.json}).wire, c.wire)
      assert.deepEqual(parseWire(c.wire), [c.json])
    })
  }

  it('an array builds messages back to back, and parses back to the same array', () => {
    const docs = CASES.map((c) => c.json)
    const {wire} = buildWire({json: docs})
    assert.equal(wire, CASES.map((c) => c.wire).join(''))
    assert.deepEqual(parseWire(wire), docs)
  })

  it('parse accepts CRLF and the seed spelling FileToGet', () => {
    assert.deepEqual(parseWire('FileToGet\r\nF\r\n0\r\nhttp\r\na\r\n\r\n'), [
      {type: 'FilesToGet', folder: 'F', meta: {}, port: 0, protocol: 'HTTP', files: [{path: 'a'}]},
    ])
  })

  it('flags build one message; --nonce adds a nonce; --sign signs it so --verify passes', () => {
    const identity = new Identity(generateKeyPair())
    const {messages} = buildWire({fields: {type: 'BePeerRequest', folder: 'F', meta: {protocols: 'HTTP'}}, nonce: true, identity})
    const m = messages[0]!
    assert.match(m.meta.nonce ?? '', /^[A-Za-z0-9_-]{22}$/)
    assert.equal(m.meta.id, identity.id.compact)
    const {wire} = buildWire({json: m})
    assert.deepEqual(parseWire(wire, {verify: true}), [m])
    assert.throws(
      () => parseWire(wire.replace('F\n', 'G\n'), {verify: true}),
      (e) => isFpeerError(e, 'E_BAD_SIGNATURE'),
    )
    assert.throws(
      () => parseWire('BePeerRequest\nF\n\n', {verify: true}),
      (e) => isFpeerError(e, 'E_UNSIGNED'),
    )
  })

  it('bad input is refused with stable codes: usage for JSON, E_MSG_* for wire text', () => {
    const usage = (e: unknown) => isFpeerError(e, 'E_USAGE')
    assert.throws(() => messageFromJson({type: 'Nope', folder: 'F'}), usage)
    assert.throws(() => messageFromJson({type: 'FilesToGet', folder: 'F', protocol: 'HTTP', files: [{}]}), usage)
    assert.throws(() => buildWire({json: {type: 'BePeerRequest', folder: 'a/b', meta: {}}}), usage)
    assert.throws(() => buildWire({json: []}), usage)
    assert.throws(
      () => parseWire(''),
      (e) => isFpeerError(e, 'E_MSG_EMPTY'),
    )
    assert.throws(
      () => parseWire('Hello\nF\n\n'),
      (e) => isFpeerError(e, 'E_MSG_UNKNOWN_TYPE'),
    )
    assert.throws(
      () => parseWire('BePeerRequest\nF\n'),
      (e) => isFpeerError(e, 'E_MSG_TRUNCATED'),
    )
  })
})
