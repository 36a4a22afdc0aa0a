// Lines 3..n of FilesToGet, FilesUpdated and TrustedPeerConfirm: port, protocol and file lines.
import {FpeerError} from '../errors.js'
import {type Line, formatLine, isAttrKey, pctDecode, pctEncode} from './frame.js'
import {parseDecimal, parsePort, parseProtocol} from './fields.js'
import {MAX_LINE_ATTRS} from './limits.js'
import type {FileEntry, FileListMessage} from './types.js'

// eslint-disable-next-line no-control-regex
const UNSAFE_IN_NAME = /[\u0000-\u001f\u007f]/
const SHA256_HEX = /^[0-9a-f]{64}$/

function twice(key: string): FpeerError {
  return new FpeerError('E_MSG_BAD_FIELD', `attribute ${key} given twice`)
}

/** Reads a file line. A name is literal unless the line carries `enc=pct`. */
export function fileFromLine(line: Line): FileEntry {
  const {enc, size, sha256, mtime, ...ext} = line.attrs
  return toEntry(line.value, enc, size, sha256, mtime, Object.keys(ext).length > 0 ? ext : undefined)
}

/** The checks and decoding both parsers share: a name (percent-decoded under `enc=pct`) and the standard attributes as read. */
function toEntry(
  name: string,
  enc: string | undefined,
  size: string | undefined,
  sha256: string | undefined,
  mtime: string | undefined,
  ext: Record<string, string> | undefined,
  origins?: Origins,
): FileEntry {
  let path = name
  if (enc !== undefined) {
    if (enc !== 'pct') throw new FpeerError('E_MSG_BAD_FIELD', `unknown name encoding ${JSON.stringify(enc)}`)
    path = pctDecode(path)
  }
  if (path === '') throw new FpeerError('E_MSG_BAD_FIELD', 'empty file name')
  if (sha256 !== undefined && !SHA256_HEX.test(sha256)) throw new FpeerError('E_MSG_BAD_FIELD', `bad sha256 for ${JSON.stringify(path.slice(0, 80))}`)
  // The name and hash are copied out of the line they were cut from: a slice would keep the
  // whole line alive beside the entry (about 100 bytes more per file of a received list).
  path = ownString(path)
  // The usual line (all three attributes) in one literal: its fields in the object, not in a second array.
  if (size !== undefined && sha256 !== undefined && mtime !== undefined) {
    const sz = parseDecimal(size, 'size')
    const hex = ownHex(sha256)
    const ms = parseDecimal(mtime, 'mtime')
    return ext === undefined ? {path, size: sz, sha256: hex, mtimeMs: ms} : {path, size: sz, sha256: hex, mtimeMs: ms, ext: ownExt(ext, origins)}
  }
  const entry: FileEntry = {path}
  if (size !== undefined) entry.size = parseDecimal(size, 'size')
  if (sha256 !== undefined) entry.sha256 = ownHex(sha256)
  if (mtime !== undefined) entry.mtimeMs = parseDecimal(mtime, 'mtime')
  if (ext) entry.ext = ownExt(ext, origins)
  return entry
}

/**
 * `ext` as an entry keeps it: the shared object of a lone mark (sharedExt), else `ext` with
 * each value a string of its own, as the name and hash are. A version's `vv` and `osig` cut
 * from the text kept the whole message text alive for as long as any entry or version made
 * from it: a 100,000-file FilesToGet held 75 MiB as entries, 73 MiB as versions alone; now
 * 49 and 42 (bench/list-memory.js), for about 0.1 s more to parse it. An `origin` (one of a
 * folder's few peers) is one string shared by the entries of a message that name it.
 */
function ownExt(ext: Record<string, string>, origins: Origins | undefined): Record<string, string> {
  const shared = sharedExt(ext)
  if (shared !== ext) return shared
  for (const key in ext) ext[key] = key === 'origin' ? sharedOrigin(ext[key]!, origins) : ownValue(ext[key]!)
  return ext
}

// eslint-disable-next-line no-control-regex
const NOT_PLAIN_IN_JSON = /["\\\u0000-\u001f]/

/** ownString for an attribute value; one without quotes, backslashes or controls (a hash, a signature, a vector) in half the time. */
function ownValue(s: string): string {
  if (s.length < 13) return s
  return NOT_PLAIN_IN_JSON.test(s) ? ownString(s) : (JSON.parse(`"${s}"`) as string)
}

/** The origins one message's file lines named, each held once (its parse owns the table). */
export type Origins = Map<string, string>

/** Origins a table holds at most: past them (a hostile list of distinct ones), each is copied alone. */
const ORIGINS_HELD = 1024

function sharedOrigin(s: string, origins: Origins | undefined): string {
  let held = origins?.get(s)
  if (held === undefined) {
    held = ownValue(s)
    if (origins && origins.size < ORIGINS_HELD) origins.set(held, held)
  }
  return held
}

/** The marks a FilesUpdated puts on nearly every line, one frozen object each (nothing writes an entry's `ext`). */
const MARKS: Readonly<Record<string, Readonly<Record<string, string>>>> = Object.freeze({
  got: Object.freeze({got: '1'}),
  ign: Object.freeze({ign: '1'}),
  del: Object.freeze({del: '1'}),
})

/** `ext` itself, or the shared object of the one mark it holds alone: 100,000 `{got: '1'}` were as many objects. */
function sharedExt(ext: Record<string, string>): Record<string, string> {
  let only: string | undefined
  for (const key in ext) {
    if (only !== undefined) return ext
    only = key
  }
  return only !== undefined && ext[only] === '1' && Object.hasOwn(MARKS, only) ? (MARKS[only] as Record<string, string>) : ext
}

/**
 * V8 makes a substring of 13 or more characters a view of its parent string. A copy of
 * its own (exact for any string, lone surrogates included) lets the parent line go.
 */
function ownString(s: string): string {
  return s.length < 13 ? s : (JSON.parse(JSON.stringify(s)) as string)
}

/** ownString for a checked hex hash, which is ASCII: a byte copy is enough. */
function ownHex(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1')
}

/**
 * fileFromLine(parseLine(text)), without the Line, its attribute object and the copy the
 * extension attributes were split into: a 100,000-file list is parsed into its entries
 * alone. Same checks and errors as the two it stands for. `origins`: the message's table of
 * shared origins (ownExt).
 */
export function fileFromText(text: string, origins?: Origins): FileEntry {
  const tab = text.indexOf('\t')
  if (tab < 0) return fileFromLine({value: text, attrs: {}})
  let enc: string | undefined
  let size: string | undefined
  let sha256: string | undefined
  let mtime: string | undefined
  let ext: Record<string, string> | undefined
  let count = 0
  for (let at = tab + 1; ; ) {
    const next = text.indexOf('\t', at)
    const end = next < 0 ? text.length : next
    if (++count > MAX_LINE_ATTRS) throw new FpeerError('E_MSG_BAD_FIELD', `more than ${MAX_LINE_ATTRS} attributes on one line`)
    const eq = text.indexOf('=', at)
    const hasValue = eq >= 0 && eq < end
    const key = text.slice(at, hasValue ? eq : end)
    if (!isAttrKey(key)) throw new FpeerError('E_MSG_BAD_FIELD', `bad attribute name ${JSON.stringify(key.slice(0, 40))}`)
    const value = hasValue ? pctDecode(text.slice(eq + 1, end)) : ''
    if (key === 'sha256') {
      if (sha256 !== undefined) throw twice(key)
      sha256 = value
    } else if (key === 'size') {
      if (size !== undefined) throw twice(key)
      size = value
    } else if (key === 'mtime') {
      if (mtime !== undefined) throw twice(key)
      mtime = value
    } else if (key === 'enc') {
      if (enc !== undefined) throw twice(key)
      enc = value
    } else {
      // `in` as parseLine's own check: a key an object already answers (`constructor`) counts as given.
      ext ??= {}
      if (key in ext) throw twice(key)
      ext[key] = value
    }
    if (next < 0) break
    at = next + 1
  }
  return toEntry(text.slice(0, tab), enc, size, sha256, mtime, ext, origins)
}

/**
 * formatLine(fileToLine(file)): an entry without extension attributes (nearly all of a large
 * list) is written straight, its attributes already in canonical (sorted) order, without a
 * Line or an attribute object per file.
 */
export function fileLineText(file: FileEntry): string {
  let out = UNSAFE_IN_NAME.test(file.path) ? pctEncode(file.path) : file.path
  const ext = file.ext === undefined ? undefined : Object.keys(file.ext)
  if (ext === undefined || ext.length === 0) {
    if (out !== file.path) out += '\tenc=pct'
    if (file.mtimeMs !== undefined) out += `\tmtime=${Math.trunc(file.mtimeMs)}`
    if (file.sha256 !== undefined) out += `\tsha256=${pctEncode(file.sha256)}`
    if (file.size !== undefined) out += `\tsize=${file.size}`
    return out
  }
  // Extension attributes (`got=1`, `type=dir`) sorted in among the four standard ones, which win a clash as in fileToLine.
  const values: Record<string, string> = {}
  for (const key of ext) values[key] = file.ext![key]!
  if (out !== file.path) values.enc = 'pct'
  if (file.size !== undefined) values.size = String(file.size)
  if (file.sha256 !== undefined) values.sha256 = file.sha256
  if (file.mtimeMs !== undefined) values.mtime = String(Math.trunc(file.mtimeMs))
  return formatLine({value: out, attrs: values})
}

/** Writes a file line: the name literally when it has no control characters, else percent-encoded with `enc=pct`. */
export function fileToLine(file: FileEntry): Line {
  const attrs: Record<string, string> = {...file.ext}
  let value = file.path
  if (UNSAFE_IN_NAME.test(value)) {
    value = pctEncode(value)
    attrs.enc = 'pct'
  }
  if (file.size !== undefined) attrs.size = String(file.size)
  if (file.sha256 !== undefined) attrs.sha256 = file.sha256
  if (file.mtimeMs !== undefined) attrs.mtime = String(Math.trunc(file.mtimeMs))
  return {value, attrs}
}

/** Parses Lines 3..n (index 2 onwards) into the file-list fields. */
export function fileListFromLines(lines: Line[], type: FileListMessage['type']): Pick<FileListMessage, 'port' | 'protocol' | 'files'> {
  if (lines.length < 4) throw new FpeerError('E_MSG_TRUNCATED', `${type} needs at least 4 lines (type, folder, port, protocol), got ${lines.length}`)
  return {
    port: parsePort(lines[2]!.value),
    protocol: parseProtocol(lines[3]!.value),
    files: lines.slice(4).map(fileFromLine),
  }
}

export function fileListToLines(msg: FileListMessage): Line[] {
  return [{value: String(msg.port), attrs: {}}, {value: msg.protocol, attrs: {}}, ...msg.files.map(fileToLine)]
}
