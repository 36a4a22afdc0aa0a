// One decoder: edge inputs, written out literally, give the same messages or the same error code on a control connection's path and `fpeer message parse`'s.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FpeerError, isFpeerError} from '../errors.js'
import {parseLines, parseMessages} from './codec.js'
import {FrameDecoder, messageLines} from './frame.js'
import type {FilesToGet, Message} from './types.js'

/** What an input gives: its messages, or the code of the error that stops it; `same` only asks both paths to agree. */
type Outcome = Message[] | string
const same = Symbol('same')

const A8192 = 'a'.repeat(8192)
const bytes = (...parts: Array<string | number[]>) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))))
const req = (folder: string, meta: Record<string, string> = {}): Message => ({type: 'BePeerRequest', folder, meta})
const get = (...paths: string[]): Message => ({type: 'FilesToGet', folder: 'f', meta: {}, port: 1, protocol: 'HTTP', files: paths.map((path) => ({path}))})

const table: Array<{name: string; input: Buffer; want: Outcome | typeof same}> = [
  {name: 'plain', input: bytes('BePeerRequest\nf\n\n'), want: [req('f')]},
  {name: 'empty input', input: bytes(''), want: []},
  {name: 'only empty lines', input: bytes('\n\r\n\n'), want: []},
  {name: 'leading empty lines (LF, CRLF)', input: bytes('\n\r\n\nBePeerRequest\nf\n\n'), want: [req('f')]},
  // BOM: one U+FEFF before Line 1 is dropped; anywhere else it is text.
  {name: 'BOM before Line 1', input: bytes([0xef, 0xbb, 0xbf], 'BePeerRequest\nf\n\n'), want: [req('f')]},
  {name: 'BOM after leading empty lines', input: bytes('\n\r\n', [0xef, 0xbb, 0xbf], 'BePeerRequest\nf\n\n'), want: [req('f')]},
  {name: 'BOM before Line 1 with CRLF and attributes', input: bytes('\ufeffBePeerRequest\tfpeer=1\r\nf\r\n\r\n'), want: [req('f', {fpeer: '1'})]},
  {name: 'BOM before each of two messages', input: bytes('\ufeffBePeerRequest\na\n\n\ufeffBePeerRequest\nb\n\n'), want: [req('a'), req('b')]},
  {name: 'two BOMs', input: bytes('\ufeff\ufeffBePeerRequest\nf\n\n'), want: 'E_MSG_UNKNOWN_TYPE'},
  {name: 'a BOM alone on a line', input: bytes('\ufeff\nBePeerRequest\nf\n\n'), want: 'E_MSG_UNKNOWN_TYPE'},
  {name: 'BOM in a folder name is kept', input: bytes('BePeerRequest\n\ufefff\n\n'), want: [req('\ufefff')]},
  {name: 'BOM before a file name is kept', input: bytes('FilesToGet\nf\n1\nHTTP\n\ufeffa.txt\n\n'), want: [get('\ufeffa.txt')]},
  {name: 'percent-encoded BOM is kept', input: bytes('FilesToGet\nf\n1\nHTTP\n%EF%BB%BFa.txt\tenc=pct\n\n'), want: [get('\ufeffa.txt')]},
  // Line breaks.
  {name: 'CRLF', input: bytes('BePeerRequest\r\nf\r\n\r\n'), want: [req('f')]},
  {name: 'LF and CRLF mixed', input: bytes('BePeerRequest\r\nf\n\r\n'), want: [req('f')]},
  {name: 'lone CR inside a line', input: bytes('BePeerRequest\nf\rg\n\n'), want: 'E_MSG_BAD_FIELD'},
  {name: 'lone CRs as line breaks', input: bytes('BePeerRequest\rf\r\r'), want: 'E_MSG_TRUNCATED'},
  {name: 'CR CR LF drops one CR', input: bytes('BePeerRequest\r\r\nf\n\n'), want: 'E_MSG_UNKNOWN_TYPE'},
  {name: 'no terminating empty line', input: bytes('BePeerRequest\nf\n'), want: 'E_MSG_TRUNCATED'},
  {name: 'bytes after the last message', input: bytes('BePeerRequest\nf\n\nBe'), want: 'E_MSG_TRUNCATED'},
  // NUL and other controls.
  {name: 'NUL in the type', input: bytes('BePeer\0Request\nf\n\n'), want: 'E_MSG_UNKNOWN_TYPE'},
  {name: 'NUL in a folder name', input: bytes('BePeerRequest\nf\0\n\n'), want: 'E_MSG_BAD_FIELD'},
  {name: 'NUL in a file name', input: bytes('FilesToGet\nf\n1\nHTTP\na\0b\n\n'), want: same},
  {name: 'percent-encoded NUL in a file name', input: bytes('FilesToGet\nf\n1\nHTTP\na%00b\tenc=pct\n\n'), want: same},
  {name: 'ESC in an attribute value', input: bytes('BePeerRequest\tnote=\x1b[2J\nf\n\n'), want: same},
  {name: 'C1 and bidi characters in a file name', input: bytes('FilesToGet\nf\n1\nHTTP\n\u009b2J\u202egnp.exe\n\n'), want: same},
  // Invalid UTF-8.
  {name: 'invalid byte', input: bytes([0x42, 0xff, 0x0a, 0x0a]), want: 'E_MSG_BAD_ENCODING'},
  {name: 'overlong encoding of /', input: bytes('FilesToGet\nf\n1\nHTTP\na', [0xc0, 0xaf], 'b\n\n'), want: 'E_MSG_BAD_ENCODING'},
  {name: 'encoded surrogate', input: bytes('BePeerRequest\nf', [0xed, 0xa0, 0x80], '\n\n'), want: 'E_MSG_BAD_ENCODING'},
  {name: 'character cut by the line break', input: bytes('BePeerRequest\nf', [0xe2, 0x82], '\n\n'), want: 'E_MSG_BAD_ENCODING'},
  {name: 'percent escape that is not UTF-8', input: bytes('FilesToGet\nf\n1\nHTTP\na%FF\tenc=pct\n\n'), want: 'E_MSG_BAD_ENCODING'},
  // Line length: the limit counts the line without its break.
  {
    name: 'line of exactly the limit',
    input: bytes(`PeerError\n*\nE_X\n${A8192}\n\n`),
    want: [{type: 'PeerError', folder: '*', meta: {}, code: 'E_X', text: A8192}],
  },
  {
    name: 'line of exactly the limit, CRLF',
    input: bytes(`PeerError\r\n*\r\nE_X\r\n${A8192}\r\n\r\n`),
    want: [{type: 'PeerError', folder: '*', meta: {}, code: 'E_X', text: A8192}],
  },
  {name: 'line one byte over the limit', input: bytes(`PeerError\n*\nE_X\n${A8192}a\n\n`), want: 'E_MSG_LINE_TOO_LONG'},
  {name: 'over-long line without a break', input: bytes(`PeerError\n*\nE_X\n${A8192}aa`), want: 'E_MSG_LINE_TOO_LONG'},
  // TAB attributes.
  {name: 'attributes', input: bytes('BePeerRequest\tfpeer=1\tnonce=abc\nf\n\n'), want: [req('f', {fpeer: '1', nonce: 'abc'})]},
  {name: 'attribute without a value', input: bytes('BePeerRequest\tx\nf\n\n'), want: [req('f', {x: ''})]},
  {name: 'trailing TAB', input: bytes('BePeerRequest\t\nf\n\n'), want: 'E_MSG_BAD_FIELD'},
  {name: 'TAB on the folder line', input: bytes('BePeerRequest\nf\tx=1\n\n'), want: 'E_MSG_BAD_FIELD'},
  {name: 'bad attribute name', input: bytes('BePeerRequest\tX=1\nf\n\n'), want: 'E_MSG_BAD_FIELD'},
]

/** A control connection's path: bytes arrive in chunks, each finished message is parsed at once, then the input ends. */
function streamPath(input: Buffer, chunk: number): Outcome {
  const decoder = new FrameDecoder()
  const out: Message[] = []
  try {
    for (let i = 0; i < input.length; i += chunk) for (const lines of decoder.push(input.subarray(i, i + chunk))) out.push(parseLines(lines))
    decoder.end()
    return out
  } catch (err) {
    if (!(err instanceof FpeerError)) throw err
    return err.code
  }
}

/** `fpeer message parse`'s path: the whole input at once. */
function wholePath(input: Buffer | string): Outcome {
  try {
    return parseMessages(input)
  } catch (err) {
    if (!(err instanceof FpeerError)) throw err
    return err.code
  }
}

describe('one decoder: a connection and `message parse` accept the same bytes', () => {
  for (const c of table) {
    it(c.name, () => {
      const whole = wholePath(c.input)
      if (c.want !== same) assert.deepEqual(whole, c.want)
      assert.deepEqual(streamPath(c.input, c.input.length || 1), whole, 'in one chunk')
      assert.deepEqual(streamPath(c.input, 1), whole, 'byte by byte')
      assert.deepEqual(streamPath(c.input, 7), whole, 'in chunks of 7')
      // A text given as a string is its UTF-8 bytes (only when the bytes are UTF-8, else the string would differ).
      const text = c.input.toString('utf8')
      if (Buffer.from(text, 'utf8').equals(c.input)) assert.deepEqual(wholePath(text), whole, 'as a string')
    })
  }
})

describe('a file list is parsed as its lines are read', () => {
  it('a bad file line stops the parse before any later line is decoded', () => {
    const total = 10_000
    let pulled = 0
    function* lines(): Generator<string> {
      yield 'FilesToGet'
      yield 'big'
      yield '1'
      yield 'HTTP'
      for (let i = 0; i < total; i++) {
        pulled++
        yield i === 5 ? `f${i}\tsha256=nothex` : `f${i}\tsize=1`
      }
    }
    assert.throws(
      () => parseLines(lines()),
      (e: unknown) => isFpeerError(e, 'E_MSG_BAD_FIELD'),
    )
    assert.equal(pulled, 6)
  })

  it('messageLines decodes the bytes of a framed message one line at a time', () => {
    const decoder = new FrameDecoder()
    const [parts] = decoder.pushRaw(Buffer.from('\ufeffFilesToGet\r\nbig\n1\nHTTP\na\tsize=1\nb\tsize=2\n\n'))
    const it = messageLines(parts!)
    assert.equal(it.next().value, 'FilesToGet')
    assert.deepEqual([...it], ['big', '1', 'HTTP', 'a\tsize=1', 'b\tsize=2'])
    const msg = parseLines(messageLines(parts!)) as FilesToGet
    assert.deepEqual(
      msg.files.map((f) => [f.path, f.size]),
      [
        ['a', 1],
        ['b', 2],
      ],
    )
  })
})
