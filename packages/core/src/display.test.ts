// Terminal escaping: every character that can drive a terminal comes out as a visible escape; the logger's lines too.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {escapeForTerminal, needsTerminalEscape, tty} from './display.js'
import {createLogger} from './log.js'

/** [name, input, escaped]; the expected text is written out, never produced by the function under test. */
const table: Array<[string, string, string]> = [
  ['plain text is untouched', 'a b/c.txt çé 文件 \\ "q"', 'a b/c.txt çé 文件 \\ "q"'],
  ['OSC title and clear screen', '\x1b]0;pwned\x07\x1b[2J', '\\u001b]0;pwned\\u0007\\u001b[2J'],
  ['TAB, LF, CR', 'a\tb\nc\rd', 'a\\tb\\nc\\rd'],
  ['NUL, BS, DEL', '\0\b\x7f', '\\u0000\\u0008\\u007f'],
  ['C1 controls (CSI, NEL, the ends of the range)', '\u0080\u0085\u009b2J\u009f', '\\u0080\\u0085\\u009b2J\\u009f'],
  ['bidi embeddings and overrides', '\u202a\u202b\u202c\u202d\u202egnp.exe', '\\u202a\\u202b\\u202c\\u202d\\u202egnp.exe'],
  ['bidi isolates', '\u2066\u2067\u2068\u2069', '\\u2066\\u2067\\u2068\\u2069'],
  ['neighbours of the ranges stay', '\u00a0\u2029\u202f\u2065\u206a', '\u00a0\u2029\u202f\u2065\u206a'],
]

describe('escapeForTerminal', () => {
  for (const [name, input, want] of table) {
    it(name, () => {
      assert.equal(escapeForTerminal(input), want)
      assert.equal(needsTerminalEscape(input), input !== want)
    })
  }
  it('keeps only the layout characters it is told to keep', () => {
    assert.equal(escapeForTerminal('a\tb\nc\x1bd\re', {keep: '\t\n'}), 'a\tb\nc\\u001bd\\re')
  })
  it('a JSON text passed through (keeping TAB and LF) is the same document', () => {
    const doc = {name: 'x\x1b[2J\u009b\u202e\x7f\ty', n: [1, 2]}
    const text = JSON.stringify(doc, null, 2)
    assert.deepEqual(JSON.parse(escapeForTerminal(text, {keep: '\t\n'})), doc)
    assert.equal(needsTerminalEscape(escapeForTerminal(text, {keep: '\t\n'}).replace(/[\t\n]/g, '')), false)
  })
})

describe('tty`…`', () => {
  it('escapes every value whole and keeps the literal layout', () => {
    const name = 'evil\n\x1b[2Jname\twith tab'
    assert.equal(tty`${'sha'}  ${3}\t${name}`, 'sha  3\tevil\\n\\u001b[2Jname\\twith tab')
  })
})

describe('the text logger', () => {
  it('escapes the message and every field value, and keeps the JSON form exact', () => {
    const lines: string[] = []
    const log = createLogger({level: 'info', write: (l) => lines.push(l)})
    log.warn('refused \x1b]0;t\x07', {path: 'a\nb\u009b\u202e', plain: 'ok.txt', n: 3})
    assert.equal(lines.length, 1)
    assert.equal(needsTerminalEscape(lines[0]!), false, lines[0])
    assert.match(lines[0]!, / warn {2}refused \\u001b\]0;t\\u0007 path="a\\nb\\u009b\\u202e" plain=ok\.txt n=3$/)
    const json: string[] = []
    createLogger({level: 'info', json: true, write: (l) => json.push(l)}).warn('m\x1b', {path: 'a\u009b'})
    assert.equal(JSON.parse(json[0]!).path, 'a\u009b')
    assert.equal(JSON.parse(json[0]!).msg, 'm\x1b')
  })
})
