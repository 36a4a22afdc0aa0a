// The file-line fast paths (parse without a Line object, format without one, a signed list formatted once) against literal wire text.
import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import v8 from 'node:v8'
import {describe, it} from 'node:test'
import {FpeerError} from '../errors.js'
import {Identity, generateKeyPair} from '../identity.js'
import {formatMessage, parseMessage} from './codec.js'
import {fileFromLine, fileFromText, fileLineText} from './file-list.js'
import {parseLine} from './frame.js'
import {signMessage, takeSignedBody, verifyMessage} from './signing.js'
import {type FileEntry, type FilesToGet, extWith, withExt} from './types.js'

const SHA = 'a'.repeat(64)

/** Entries and the one canonical line each is written as. */
const lines: Array<{entry: FileEntry; line: string}> = [
  {entry: {path: 'File1'}, line: 'File1'},
  {entry: {path: 'd/f.txt', size: 12, sha256: SHA, mtimeMs: 1700000000123}, line: `d/f.txt\tmtime=1700000000123\tsha256=${SHA}\tsize=12`},
  // Names of 13 characters and more are copied out of their line (ownString): kept exactly, non-ASCII included.
  {entry: {path: 'ç/日本語のファイル名-long.txt', size: 5, sha256: SHA, mtimeMs: 1}, line: `ç/日本語のファイル名-long.txt\tmtime=1\tsha256=${SHA}\tsize=5`},
  {entry: {path: 'a-longer-name/with.slash', sha256: SHA}, line: `a-longer-name/with.slash\tsha256=${SHA}`},
  {entry: {path: 'a\tb', size: 0}, line: 'a%09b\tenc=pct\tsize=0'},
  {entry: {path: 'x', size: 3, sha256: SHA, ext: {got: '1'}}, line: `x\tgot=1\tsha256=${SHA}\tsize=3`},
  {entry: {path: 'empty', ext: {type: 'dir'}}, line: 'empty\ttype=dir'},
  {entry: {path: 'n\nl', size: 1, ext: {aa: '1', zz: 'p%q'}}, line: 'n%0Al\taa=1\tenc=pct\tsize=1\tzz=p%25q'},
]

/** Lines the parse refuses, each with its code. */
const refused: Array<{line: string; code: string}> = [
  {line: 'f\tsize=1\tsize=2', code: 'E_MSG_BAD_FIELD'},
  {line: 'f\tBad=1', code: 'E_MSG_BAD_FIELD'},
  {line: 'f\tsha256=xyz', code: 'E_MSG_BAD_FIELD'},
  {line: 'f\tsize=-1', code: 'E_MSG_BAD_FIELD'},
  {line: 'f\tenc=b64', code: 'E_MSG_BAD_FIELD'},
  {line: 'f\tk=1\tk=2', code: 'E_MSG_BAD_FIELD'},
  {line: 'f\tconstructor=1', code: 'E_MSG_BAD_FIELD'},
  {line: '\tsize=1', code: 'E_MSG_BAD_FIELD'},
  {line: 'f\tk=%zz', code: 'E_MSG_BAD_ENCODING'},
  {line: `f${Array.from({length: 33}, (_, i) => `\tk${i}=1`).join('')}`, code: 'E_MSG_BAD_FIELD'},
]

/** The value of every string node in a heap snapshot of this process (one entry per node, so a copy counts twice). */
async function heapStrings(): Promise<string[]> {
  const chunks: Buffer[] = []
  for await (const c of v8.getHeapSnapshot()) chunks.push(c as Buffer)
  const snap = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
    snapshot: {meta: {node_fields: string[]; node_types: [string[]]}}
    nodes: number[]
    strings: string[]
  }
  const fields = snap.snapshot.meta.node_fields
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const types = snap.snapshot.meta.node_types[0]
  const stringTypes = new Set(['string', 'concatenated string', 'sliced string'].map((t) => types.indexOf(t)))
  const out: string[] = []
  for (let i = 0; i < snap.nodes.length; i += fields.length) if (stringTypes.has(snap.nodes[i + typeAt]!)) out.push(snap.strings[snap.nodes[i + nameAt]!]!)
  return out
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    return err instanceof FpeerError ? err.code : 'not an FpeerError'
  }
  return undefined
}

describe('file lines', () => {
  it('fileLineText writes each entry as its literal line', () => {
    for (const {entry, line} of lines) assert.equal(fileLineText(entry), line, entry.path)
  })

  it('fileFromText reads each literal line as its entry, as fileFromLine(parseLine()) does', () => {
    for (const {entry, line} of lines) {
      assert.deepEqual(fileFromText(line), entry, line)
      assert.deepEqual(fileFromText(line), fileFromLine(parseLine(line)), line)
    }
  })

  it('a mark alone on a line (got=1, ign=1) is one shared, frozen object; anything else is the line’s own', () => {
    const a = fileFromText(`a\tgot=1\tmtime=1\tsha256=${SHA}\tsize=1`)
    const b = fileFromText('b\tgot=1')
    assert.deepEqual(a.ext, {got: '1'})
    assert.equal(a.ext, b.ext)
    assert.ok(Object.isFrozen(a.ext))
    assert.equal(fileFromText('c\tign=1').ext, fileFromLine(parseLine('d\tign=1')).ext)
    const own = [fileFromText('e\tgot=2'), fileFromText('f\tgot=1\tign=1'), fileFromText('g\tzz=1')]
    assert.deepEqual(
      own.map((f) => [f.ext, Object.isFrozen(f.ext)]),
      [
        [{got: '2'}, false],
        [{got: '1', ign: '1'}, false],
        [{zz: '1'}, false],
      ],
    )
  })

  it('long attribute values come out exactly (quotes, backslashes, controls, non-ASCII)', () => {
    const origin = 'A'.repeat(52)
    const entries: FileEntry[] = [
      {path: 'versioned.txt', size: 2, sha256: SHA, mtimeMs: 5, ext: {origin, osig: 'ab'.repeat(64), ver: '7', vv: `${origin}:7`}},
      {path: 'odd', ext: {za: 'a "quoted" \\ value over 13', zb: 'tab\there, ctrl \u0001, “non-ASCII” ü'}},
    ]
    for (const entry of entries) {
      const line = fileLineText(entry)
      assert.deepEqual(fileFromText(line), entry, line)
      assert.deepEqual(fileFromLine(parseLine(line)), entry, line)
    }
    // Through a whole message too, where a value cut from the text would hold all of it.
    const msg = parseMessage(formatMessage({type: 'FilesToGet', folder: 'f', port: 1, protocol: 'HTTP', files: entries, meta: {}})) as FilesToGet
    assert.deepEqual(msg.files, entries)
  })

  it('entries parsed from a message hold neither its text nor a line of it, and share one string per origin', async () => {
    // Everything is made at run time, so no script source in the heap holds these strings.
    const base32 = () => Array.from(randomBytes(52), (b) => 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'[b & 31]).join('')
    const origin = base32()
    const control = base32()
    const marker = `m-${randomBytes(8).toString('hex')}`
    const osigs = Array.from({length: 30}, () => randomBytes(64).toString('hex'))
    const parse = () =>
      (
        parseMessage(
          Buffer.from(
            formatMessage({
              type: 'FilesToGet',
              folder: 'f',
              port: 1,
              protocol: 'HTTP',
              files: osigs.map((osig, i) => ({
                path: `${marker}/${i}`,
                size: 1,
                sha256: SHA,
                mtimeMs: 1,
                ext: {origin, osig, ver: String(i + 1), vv: `${origin}:${i + 1}`},
              })),
              meta: {},
            }),
          ),
        ) as FilesToGet
      ).files
    const files = parse()
    // A heap snapshot collects garbage first: what it shows is what is kept. How many string
    // nodes a string of this test's makes is the engine's affair (one on Node 20, one or two on
    // 26): `control`, made as `origin` is and never parsed, is the measure. Thirty entries
    // with copies of their own would make thirty more; sharing, one, and here a few at most.
    const strings = await heapStrings()
    const holdsALine = strings.filter((s) => s.includes(marker) && osigs.some((o) => s.includes(o)))
    assert.deepEqual(
      holdsALine.map((s) => s.slice(0, 80)),
      [],
      'no string holds a file line, or the message, beside the entries',
    )
    const count = (x: string) => strings.filter((s) => s === x).length
    const more = count(origin) - count(control)
    assert.ok(more >= 1 && more <= 3, `the 30 entries share their origin: ${more} more strings of it than of the control`)
    assert.equal(files.length, 30)
    for (const f of files) assert.equal(f.ext?.origin, origin)
  })

  it('fileFromText refuses what parseLine and fileFromLine refuse, with the same code', () => {
    for (const {line, code} of refused) {
      assert.equal(
        codeOf(() => fileFromText(line)),
        code,
        line,
      )
      assert.equal(
        codeOf(() => fileFromLine(parseLine(line))),
        code,
        line,
      )
    }
  })
})

describe('a signed file list is formatted once', () => {
  const identity = new Identity(generateKeyPair())
  const files: FileEntry[] = Array.from({length: 1500}, (_, i) => ({path: `d/f${String(i).padStart(4, '0')}`, size: i, sha256: SHA, mtimeMs: 1000 + i}))
  const ftg: FilesToGet = {type: 'FilesToGet', folder: 'docs', port: 8080, protocol: 'HTTP', files, meta: {nonce: 'n1'}}

  it('keeps the bytes it signed, which are the text after Line 1, and gives them once', () => {
    const signed = signMessage(ftg, identity)
    const body = takeSignedBody(signed)
    assert.ok(body)
    const text = formatMessage(signed)
    const head = text.slice(0, text.indexOf('\n') + 1)
    assert.equal(head + Buffer.concat(body).toString('utf8'), text)
    assert.ok(text.endsWith(`d/f1499\tmtime=2499\tsha256=${SHA}\tsize=1499\n\n`))
    assert.equal(takeSignedBody(signed), undefined)
    assert.deepEqual(verifyMessage(parseMessage(text)).compact, identity.id.compact)
  })

  it('gives nothing for a message whose list changed since it was signed', () => {
    const signed = signMessage(ftg, identity)
    signed.files = signed.files.slice(1)
    assert.equal(takeSignedBody(signed), undefined)
  })
})

describe('entries rebuilt with other attributes', () => {
  it('withExt keeps the given fields and only those, and writes the line the spread it replaces would', () => {
    for (const {entry} of lines) {
      const e = withExt(entry, {got: '1'})
      assert.deepEqual(e, {...entry, ext: {got: '1'}})
      assert.deepEqual(Object.keys(e), [...Object.keys(entry).filter((k) => k !== 'ext'), 'ext'])
      assert.equal(fileLineText(e), fileLineText({...entry, ext: {got: '1'}}))
      assert.match(fileLineText(e), /\tgot=1(\t|$)/)
    }
  })

  it('extWith adds or replaces one attribute in a new object, leaving the old one as it was', () => {
    const ext = Object.freeze({ver: '3', origin: 'o'})
    assert.deepEqual(extWith(ext, 'got', '1'), {ver: '3', origin: 'o', got: '1'})
    assert.deepEqual(extWith(ext, 'ver', '4'), {origin: 'o', ver: '4'})
    assert.deepEqual(extWith(undefined, 'mode', '755'), {mode: '755'})
    assert.deepEqual(ext, {ver: '3', origin: 'o'})
  })
})
