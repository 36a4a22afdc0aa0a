// Table tests for the pure control-channel pieces and listing formatters; expected wire text is written out literally.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {formatEpsv, formatListLine, formatMlstFeature, formatMlsxLine, formatPasv, formatTimeVal, isListableName, parseMlstOpts} from './list-format.js'
import {formatReply, parseCommand, parseRestOffset, plainAddress, quotePath, resolvePath, splitLines, splitPath, stripListOptions} from './server-commands.js'

describe('splitLines', () => {
  it('splits on CRLF and bare LF and keeps the unfinished rest', () => {
    const r = splitLines(Buffer.from('USER a\r\nPASS b\nPW'))
    assert.deepEqual(r.lines.map(String), ['USER a', 'PASS b'])
    assert.equal(r.rest.toString(), 'PW')
    assert.equal(r.overflow, false)
  })
  it('keeps a CR inside a line (it is part of the argument)', () => {
    assert.deepEqual(splitLines(Buffer.from('CWD a\rb\r\n')).lines.map(String), ['CWD a\rb'])
  })
  it('flags a line or a rest longer than the limit', () => {
    assert.equal(splitLines(Buffer.from(`${'x'.repeat(11)}\r\n`), 10).overflow, true)
    assert.equal(splitLines(Buffer.from('x'.repeat(11)), 10).overflow, true)
    assert.equal(splitLines(Buffer.from(`${'x'.repeat(10)}\r\n`), 10).overflow, false)
  })
  it('does not cut a UTF-8 sequence split across chunks', () => {
    const bytes = Buffer.from('RETR caf\u00e9\r\n')
    const first = splitLines(bytes.subarray(0, 9))
    assert.equal(first.lines.length, 0)
    const second = splitLines(Buffer.concat([first.rest, bytes.subarray(9)]))
    assert.deepEqual(second.lines.map(String), ['RETR caf\u00e9'])
  })
})

describe('parseCommand', () => {
  const cases: Array<[string | Buffer, unknown]> = [
    ['USER anonymous', {verb: 'USER', arg: 'anonymous'}],
    ['pwd', {verb: 'PWD', arg: ''}],
    ['RETR  two leading spaces.txt', {verb: 'RETR', arg: ' two leading spaces.txt'}],
    ['RETR trailing ', {verb: 'RETR', arg: 'trailing '}],
    ['CWD caf\u00e9', {verb: 'CWD', arg: 'caf\u00e9'}],
    [Buffer.from([0xff, 0xf4, 0xff, 0xf2, 0x41, 0x42, 0x4f, 0x52]), {verb: 'ABOR', arg: ''}],
    [Buffer.from([0x52, 0x45, 0x54, 0x52, 0x20, 0xc3, 0x28]), {error: 'encoding'}],
    ['', {error: 'syntax'}],
    ['RE', {error: 'syntax'}],
    ['RETR1 x', {error: 'syntax'}],
    [' USER x', {error: 'syntax'}],
  ]
  for (const [line, expected] of cases) {
    it(`parses ${JSON.stringify(line.toString())}`, () => assert.deepEqual(parseCommand(Buffer.isBuffer(line) ? line : Buffer.from(line)), expected))
  }
})

describe('resolvePath and splitPath', () => {
  const cases: Array<[string, string, string]> = [
    ['/', 'share', '/share'],
    ['/share', 'a/b.txt', '/share/a/b.txt'],
    ['/share', '/other/x', '/other/x'],
    ['/share/a', '..', '/share'],
    ['/', '..', '/'],
    ['/', '../../../etc/passwd', '/etc/passwd'],
    ['/share', '../../..', '/'],
    ['/share', 'a/../../../x', '/x'],
    ['/share', './a//b/.', '/share/a/b'],
    ['/share', '', '/share'],
    ['/share', ' lead', '/share/ lead'],
    ['/share', '...', '/share/...'],
    ['/share', 'back\\..\\slash', '/share/back\\..\\slash'],
  ]
  for (const [cwd, arg, expected] of cases) {
    it(`${cwd} + ${JSON.stringify(arg)} is ${expected}`, () => assert.equal(resolvePath(cwd, arg), expected))
  }
  it('splits the folder from the path inside it', () => {
    assert.deepEqual(splitPath('/'), {rel: ''})
    assert.deepEqual(splitPath('/share'), {folder: 'share', rel: ''})
    assert.deepEqual(splitPath('/share/a b/c'), {folder: 'share', rel: 'a b/c'})
  })
})

describe('replies', () => {
  it('formats one line', () => assert.equal(formatReply(226, 'Transfer complete'), '226 Transfer complete\r\n'))
  it('formats several lines with indented inner lines', () => {
    assert.equal(formatReply(211, ['Features:', 'UTF8', ' SIZE', 'End']), '211-Features:\r\n UTF8\r\n SIZE\r\n211 End\r\n')
  })
  it('never lets a CR or LF in echoed text forge a reply line', () => {
    assert.equal(formatReply(250, 'Directory changed to /a\r\n226 forged'), '250 Directory changed to /a  226 forged\r\n')
  })
  it('doubles quotes in a 257 path', () => assert.equal(quotePath('/say "hi"'), '/say ""hi""'))
})

describe('argument helpers', () => {
  it('strips ls options but not names that start with a dash', () => {
    assert.equal(stripListOptions('-la'), '')
    assert.equal(stripListOptions('-a -l share'), 'share')
    assert.equal(stripListOptions('-leading-dash.txt'), '-leading-dash.txt')
    assert.equal(stripListOptions('share/-x'), 'share/-x')
  })
  it('parses REST offsets', () => {
    assert.equal(parseRestOffset('0'), 0)
    assert.equal(parseRestOffset('1048583'), 1048583)
    for (const bad of ['', '-1', '1.5', '0x10', ' 1', '99999999999999999']) assert.equal(parseRestOffset(bad), undefined, bad)
  })
  it('shows IPv4-mapped addresses as IPv4', () => {
    assert.equal(plainAddress('::ffff:127.0.0.1'), '127.0.0.1')
    assert.equal(plainAddress('::1'), '::1')
    assert.equal(plainAddress(undefined), '')
  })
})

describe('listing formats', () => {
  const mtime = Date.UTC(2024, 0, 2, 3, 4, 5)
  it('formats MDTM time-vals in UTC', () => assert.equal(formatTimeVal(mtime), '20240102030405'))
  it('formats recent and old LIST lines like ls -l', () => {
    assert.equal(
      formatListLine({name: 'a b.txt', type: 'file', size: 12, mtimeMs: mtime}, mtime + 1000),
      '-r--r--r-- 1 fpeer fpeer           12 Jan  2 03:04 a b.txt',
    )
    assert.equal(
      formatListLine({name: 'd', type: 'directory', size: 0, mtimeMs: mtime}, mtime + 400 * 86_400_000),
      'drwxr-xr-x 1 fpeer fpeer            0 Jan  2  2024 d',
    )
  })
  it('formats MLSx entries, the name after one space', () => {
    const all = new Set(['type', 'size', 'modify'] as const)
    assert.equal(formatMlsxLine({type: 'file', size: 7, mtimeMs: mtime}, 'x; y=z.txt', all), 'type=file;size=7;modify=20240102030405; x; y=z.txt')
    assert.equal(formatMlsxLine({type: 'directory', size: 0, mtimeMs: mtime}, ' d', all), 'type=dir;modify=20240102030405;  d')
    assert.equal(formatMlsxLine({type: 'file', size: 7, mtimeMs: mtime}, 'x', new Set(['size'] as const)), 'size=7; x')
  })
  it('advertises and selects MLST facts', () => {
    assert.equal(formatMlstFeature(new Set(['type', 'size', 'modify'] as const)), 'MLST type*;size*;modify*;')
    assert.deepEqual([...parseMlstOpts('Size;unique;TYPE;')], ['type', 'size'])
    assert.equal(formatMlstFeature(parseMlstOpts('')), 'MLST type;size;modify;')
  })
  it('formats passive replies', () => {
    assert.equal(formatPasv('127.0.0.1', 50_000), 'Entering Passive Mode (127,0,0,1,195,80)')
    assert.equal(formatPasv('::1', 50_000), undefined)
    assert.equal(formatEpsv(50_000), 'Entering Extended Passive Mode (|||50000|)')
  })
  it('refuses names with CR or LF in listings', () => {
    assert.equal(isListableName('a\nb'), false)
    assert.equal(isListableName('a\rb'), false)
    assert.equal(isListableName('a\tb'), true)
  })
})
