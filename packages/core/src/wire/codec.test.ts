// Table-driven codec tests: the expected wire text is written out literally, never produced by the encoder.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FpeerError} from '../errors.js'
import {Identity, generateKeyPair} from '../identity.js'
import {FrameDecoder} from './frame.js'
import {formatMessage, parseMessage, parseMessages} from './codec.js'
import {isPlain, signMessage, verifyMessage} from './signing.js'
import type {Message} from './types.js'

const parses: Array<{name: string; wire: string; msg: Message}> = [
  {
    name: 'seed BePeerRequest',
    wire: 'BePeerRequest\n00-MainDocuments\n\n',
    msg: {type: 'BePeerRequest', folder: '00-MainDocuments', meta: {}},
  },
  {
    name: 'seed FilesToGet',
    wire: 'FilesToGet\n00-MainDocuments\n8080\nHTTP\nFile1\nFileN\n\n',
    msg: {type: 'FilesToGet', folder: '00-MainDocuments', meta: {}, port: 8080, protocol: 'HTTP', files: [{path: 'File1'}, {path: 'FileN'}]},
  },
  {
    name: 'seed FilesUpdated',
    wire: 'FilesUpdated\n00-MainDocuments\n8080\nHTTP\nFile1\n\n',
    msg: {type: 'FilesUpdated', folder: '00-MainDocuments', meta: {}, port: 8080, protocol: 'HTTP', files: [{path: 'File1'}]},
  },
  {
    name: 'seed TrustedPeerConfirm',
    wire: 'TrustedPeerConfirm\n00-MainDocuments\n8080\nHTTP\nFile1\n\n',
    msg: {type: 'TrustedPeerConfirm', folder: '00-MainDocuments', meta: {}, port: 8080, protocol: 'HTTP', files: [{path: 'File1'}]},
  },
  {
    name: 'a progress FilesUpdated (part=1, protocol 4.9): the seed layout, one more Line-1 attribute',
    wire: 'FilesUpdated\tgrant=g\tnonce=n2\tpart=1\tre=n1\nf\n41234\nHTTP\na.txt\tsize=6\n\n',
    msg: {
      type: 'FilesUpdated',
      folder: 'f',
      meta: {grant: 'g', nonce: 'n2', part: '1', re: 'n1'},
      port: 41234,
      protocol: 'HTTP',
      files: [{path: 'a.txt', size: 6}],
    },
  },
  {
    name: 'FilesToGet with no files',
    wire: 'FilesToGet\nempty\n7735\nHTTP\n\n',
    msg: {type: 'FilesToGet', folder: 'empty', meta: {}, port: 7735, protocol: 'HTTP', files: []},
  },
  {
    name: 'fpeer attributes on line 1 and file lines',
    wire: 'FilesToGet\tfpeer=1\tnonce=abc\nf\n7735\nHTTP\na b/c.txt\tmtime=1700000000000\tsha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\tsize=0\n\n',
    msg: {
      type: 'FilesToGet',
      folder: 'f',
      meta: {fpeer: '1', nonce: 'abc'},
      port: 7735,
      protocol: 'HTTP',
      files: [{path: 'a b/c.txt', size: 0, sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', mtimeMs: 1700000000000}],
    },
  },
  {
    name: 'names with %, #, unicode are literal',
    wire: 'FilesToGet\nf\n1\nHTTP\n100%.txt\n#tag\nçé 文件\n\n',
    msg: {type: 'FilesToGet', folder: 'f', meta: {}, port: 1, protocol: 'HTTP', files: [{path: '100%.txt'}, {path: '#tag'}, {path: 'çé 文件'}]},
  },
  {
    name: 'a name with a line break is percent-encoded and marked',
    wire: 'FilesToGet\nf\n1\nHTTP\nline%0Abreak%25\tenc=pct\n\n',
    msg: {type: 'FilesToGet', folder: 'f', meta: {}, port: 1, protocol: 'HTTP', files: [{path: 'line\nbreak%'}]},
  },
  {
    name: "a file line's other attributes sort among its own, their values percent-encoded",
    wire: 'FilesUpdated\nf\n1\nHTTP\nline%0Ab\tenc=pct\tgot=1\tmtime=5\tsha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\tsize=0\tv=x\tzz=a%25b%09\nplain\ta=1\tsize=3\n\n',
    msg: {
      type: 'FilesUpdated',
      folder: 'f',
      meta: {},
      port: 1,
      protocol: 'HTTP',
      files: [
        {
          path: 'line\nb',
          size: 0,
          sha256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
          mtimeMs: 5,
          ext: {got: '1', v: 'x', zz: 'a%b\t'},
        },
        {path: 'plain', size: 3, ext: {a: '1'}},
      ],
    },
  },
  {
    name: 'PeerError',
    wire: 'PeerError\nf\nE_NOT_ALLOWED\npeer may not join\n\n',
    msg: {type: 'PeerError', folder: 'f', meta: {}, code: 'E_NOT_ALLOWED', text: 'peer may not join'},
  },
  {
    name: 'protocol is case-insensitive, canonical upper case',
    wire: 'FilesUpdated\nf\n21\nftp\n\n',
    msg: {type: 'FilesUpdated', folder: 'f', meta: {}, port: 21, protocol: 'FTP', files: []},
  },
]

describe('codec: parse', () => {
  for (const c of parses) {
    it(c.name, () => assert.deepEqual(parseMessage(c.wire), c.msg))
  }
  it('accepts CRLF line breaks', () => {
    assert.deepEqual(parseMessage('FilesToGet\r\n00-MainDocuments\r\n8080\r\nHTTP\r\nFile1\r\nFileN\r\n\r\n'), parses[1]!.msg)
  })
  it("accepts the seed's spelling FileToGet", () => {
    assert.equal(parseMessage('FileToGet\nf\n1\nHTTP\na\n\n').type, 'FilesToGet')
  })
  it('keeps a file line of 32 attributes, the most a line may carry', () => {
    const msg = parseMessage(`FilesToGet\nf\n80\nHTTP\na\tsize=1${Array.from({length: 31}, (_, i) => `\tk${i}=1`).join('')}\n\n`)
    assert.equal(msg.type === 'FilesToGet' && Object.keys(msg.files[0]!.ext ?? {}).length, 31)
  })
  it('reads several messages back to back', () => {
    const msgs = parseMessages('BePeerRequest\na\n\nBePeerRequest\nb\n\n')
    assert.deepEqual(
      msgs.map((m) => m.folder),
      ['a', 'b'],
    )
  })
})

describe('codec: format', () => {
  for (const c of parses.filter((p) => !p.wire.includes('\r') && !p.wire.includes('\nftp\n'))) {
    it(c.name, () => assert.equal(formatMessage(c.msg), c.wire))
  }
})

const errors: Array<{name: string; wire: string; code: string}> = [
  {name: 'garbage', wire: 'hello there\n\n', code: 'E_MSG_UNKNOWN_TYPE'},
  {name: 'no terminating empty line', wire: 'BePeerRequest\nf\n', code: 'E_MSG_TRUNCATED'},
  {name: 'empty input', wire: '', code: 'E_MSG_EMPTY'},
  {name: 'missing folder', wire: 'BePeerRequest\n\n', code: 'E_MSG_TRUNCATED'},
  {name: 'folder with a slash', wire: 'BePeerRequest\na/b\n\n', code: 'E_MSG_BAD_FIELD'},
  {name: 'folder ..', wire: 'BePeerRequest\n..\n\n', code: 'E_MSG_BAD_FIELD'},
  {name: 'extra line in BePeerRequest', wire: 'BePeerRequest\nf\nx\n\n', code: 'E_MSG_BAD_FIELD'},
  {name: 'bad port', wire: 'FilesToGet\nf\n99999\nHTTP\n\n', code: 'E_MSG_BAD_FIELD'},
  {name: 'non-numeric port', wire: 'FilesToGet\nf\nhttp\nHTTP\n\n', code: 'E_MSG_BAD_FIELD'},
  {name: 'missing protocol', wire: 'FilesToGet\nf\n80\n\n', code: 'E_MSG_TRUNCATED'},
  {name: 'bad protocol', wire: 'FilesToGet\nf\n80\nH T\n\n', code: 'E_MSG_BAD_FIELD'},
  {name: 'bad sha256', wire: 'FilesToGet\nf\n80\nHTTP\na\tsha256=xyz\n\n', code: 'E_MSG_BAD_FIELD'},
  {name: 'unknown name encoding', wire: 'FilesToGet\nf\n80\nHTTP\na\tenc=b64\n\n', code: 'E_MSG_BAD_FIELD'},
  {name: 'bad percent escape', wire: 'FilesToGet\nf\n80\nHTTP\na%zz\tenc=pct\n\n', code: 'E_MSG_BAD_ENCODING'},
  {name: 'attribute on the folder line', wire: 'BePeerRequest\nf\tx=1\n\n', code: 'E_MSG_BAD_FIELD'},
  {name: 'duplicate attribute', wire: 'BePeerRequest\tid=a\tid=b\nf\n\n', code: 'E_MSG_BAD_FIELD'},
  {name: 'over-long line', wire: `BePeerRequest\n${'a'.repeat(9000)}\n\n`, code: 'E_MSG_LINE_TOO_LONG'},
  // 33 attributes (k0=1 … k32=1) on one file line: one past MAX_LINE_ATTRS.
  {
    name: 'too many attributes on a line',
    wire: `FilesToGet\nf\n80\nHTTP\na${Array.from({length: 33}, (_, i) => `\tk${i}=1`).join('')}\n\n`,
    code: 'E_MSG_BAD_FIELD',
  },
]

describe('codec: errors carry stable codes', () => {
  for (const c of errors) {
    it(c.name, () =>
      assert.throws(
        () => parseMessage(c.wire),
        (err: unknown) => err instanceof FpeerError && err.code === c.code,
      ),
    )
  }
  it('invalid UTF-8 is refused by the frame decoder', () => {
    assert.throws(
      () => new FrameDecoder().push(Buffer.from([0x42, 0xff, 0xfe, 0x0a])),
      (e: unknown) => e instanceof FpeerError && e.code === 'E_MSG_BAD_ENCODING',
    )
  })
})

describe('frame decoder', () => {
  it('reassembles messages split at every byte', () => {
    const wire = Buffer.from('FilesToGet\r\nf\r\n80\r\nHTTP\r\nçé\r\n\r\nBePeerRequest\nf\n\n')
    const dec = new FrameDecoder()
    const got: string[][] = []
    for (const b of wire) got.push(...dec.push(Buffer.from([b])))
    assert.deepEqual(got, [
      ['FilesToGet', 'f', '80', 'HTTP', 'çé'],
      ['BePeerRequest', 'f'],
    ])
  })
  it('drops a BOM before Line 1 only, also when every byte comes alone', () => {
    const wire = Buffer.from('\n\ufeffBePeerRequest\r\n\ufeffx\n\n')
    const dec = new FrameDecoder()
    const got: string[][] = []
    for (const b of wire) got.push(...dec.push(Buffer.from([b])))
    assert.deepEqual(got, [['BePeerRequest', '\ufeffx']])
  })
  it('refuses a message with more file lines than maxFiles as the lines arrive, before any is decoded', () => {
    const dec = new FrameDecoder()
    dec.maxFiles = 2
    assert.deepEqual(dec.push(Buffer.from('FilesToGet\nf\n80\nHTTP\na\nb\n\n')), [['FilesToGet', 'f', '80', 'HTTP', 'a', 'b']])
    // The third file line is refused although the message never ends.
    assert.throws(
      () => dec.push(Buffer.from('FilesToGet\nf\n80\nHTTP\na\nb\nc\n')),
      (e: unknown) => e instanceof FpeerError && e.code === 'E_MSG_TOO_MANY_FILES',
    )
  })
  it('stops an endless line at the limit without buffering it all', () => {
    const dec = new FrameDecoder()
    assert.throws(
      () => {
        for (let i = 0; i < 100; i++) dec.push(Buffer.alloc(1024, 0x61))
      },
      (e: unknown) => e instanceof FpeerError && e.code === 'E_MSG_LINE_TOO_LONG',
    )
  })
})

describe('signatures', () => {
  const alice = new Identity(generateKeyPair())
  const mallory = new Identity(generateKeyPair())
  const msg: Message = {
    type: 'TrustedPeerConfirm',
    folder: 'f',
    meta: {nonce: 'n1', re: 'n0'},
    port: 80,
    protocol: 'HTTP',
    files: [{path: 'a', size: 1, sha256: 'ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb'}],
  }

  it('a signed message keeps the seed layout and verifies after a round trip', () => {
    const wire = formatMessage(signMessage(msg, alice))
    const lines = wire.split('\n')
    assert.match(lines[0]!, /^TrustedPeerConfirm\t/)
    assert.deepEqual(lines.slice(1, 4), ['f', '80', 'HTTP'])
    assert.match(lines[4]!, /^a\t/)
    assert.deepEqual(lines.slice(5), ['', ''])
    assert.ok(verifyMessage(parseMessage(wire)).equals(alice.id))
    assert.equal(isPlain(parseMessage(wire)), false)
  })
  it('a changed file hash breaks the signature', () => {
    const wire = formatMessage(signMessage(msg, alice)).replace('sha256=ca', 'sha256=cb')
    assert.throws(
      () => verifyMessage(parseMessage(wire)),
      (e: unknown) => e instanceof FpeerError && e.code === 'E_BAD_SIGNATURE',
    )
  })
  it('a signature by another key under the claimed id is refused', () => {
    const forged = signMessage(msg, mallory)
    const wire = formatMessage({...forged, meta: {...forged.meta, id: alice.id.compact}})
    assert.throws(
      () => verifyMessage(parseMessage(wire)),
      (e: unknown) => e instanceof FpeerError && e.code === 'E_BAD_SIGNATURE',
    )
  })
  it('the expected sender is enforced', () => {
    assert.throws(
      () => verifyMessage(signMessage(msg, mallory), alice.id),
      (e: unknown) => e instanceof FpeerError && e.code === 'E_PEER_ID_MISMATCH',
    )
  })
  it('an unsigned message is refused', () => {
    assert.throws(
      () => verifyMessage(msg),
      (e: unknown) => e instanceof FpeerError && e.code === 'E_UNSIGNED',
    )
  })
})
