// Lines 3..n of FilesToGet, FilesUpdated and TrustedPeerConfirm: port, protocol and file lines.
import {FpeerError} from '../errors.js'
import {type Line, formatAttr, formatLine, pctDecode, pctEncode} from './frame.js'
import {parseDecimal, parsePort, parseProtocol} from './fields.js'
import type {FileEntry, FileListMessage} from './types.js'

// eslint-disable-next-line no-control-regex
const UNSAFE_IN_NAME = /[\u0000-\u001f\u007f]/
const SHA256_HEX = /^[0-9a-f]{64}$/

/** Reads a file line. A name is literal unless the line carries `enc=pct`. */
export function fileFromLine(line: Line): FileEntry {
  const {enc, size, sha256, mtime, ...ext} = line.attrs
  let path = line.value
  if (enc !== undefined) {
    if (enc !== 'pct') throw new FpeerError('E_MSG_BAD_FIELD', `unknown name encoding ${JSON.stringify(enc)}`)
    path = pctDecode(path)
  }
  if (path === '') throw new FpeerError('E_MSG_BAD_FIELD', 'empty file name')
  const entry: FileEntry = {path}
  if (size !== undefined) entry.size = parseDecimal(size, 'size')
  if (sha256 !== undefined) {
    if (!SHA256_HEX.test(sha256)) throw new FpeerError('E_MSG_BAD_FIELD', `bad sha256 for ${JSON.stringify(path.slice(0, 80))}`)
    entry.sha256 = sha256
  }
  if (mtime !== undefined) entry.mtimeMs = parseDecimal(mtime, 'mtime')
  if (Object.keys(ext).length > 0) entry.ext = ext
  return entry
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

/** The attributes fileToLine sets itself, sorted: a line without `ext` carries these alone, in this order. */
const OWN_KEYS = new Set(['enc', 'mtime', 'sha256', 'size'])

/**
 * formatLine(fileToLine(file)) without the Line object: the same text, made directly. A
 * 10,000-file message is formatted to be signed, sent, and checked, and the object per line
 * (its attributes copied, then sorted) was most of that time. A line whose `ext` names one
 * of fileToLine's own attributes takes the general route, so the two cannot disagree.
 */
export function formatFileLine(file: FileEntry): string {
  const ext = file.ext
  let extKeys: string[] | undefined
  if (ext) {
    extKeys = Object.keys(ext)
    if (extKeys.some((k) => OWN_KEYS.has(k))) return formatLine(fileToLine(file))
  }
  let value = file.path
  let enc = false
  if (UNSAFE_IN_NAME.test(value)) {
    value = pctEncode(value)
    enc = true
  }
  const size = file.size === undefined ? undefined : String(file.size)
  const mtime = file.mtimeMs === undefined ? undefined : String(Math.trunc(file.mtimeMs))
  const sha256 = file.sha256
  if (!extKeys || extKeys.length === 0) {
    let out = value
    if (enc) out += '\tenc=pct'
    if (mtime !== undefined) out += `\tmtime=${mtime}`
    if (sha256 !== undefined) out += `\tsha256=${pctEncode(sha256)}`
    if (size !== undefined) out += `\tsize=${size}`
    return out
  }
  if (enc) extKeys.push('enc')
  if (mtime !== undefined) extKeys.push('mtime')
  if (sha256 !== undefined) extKeys.push('sha256')
  if (size !== undefined) extKeys.push('size')
  extKeys.sort()
  let out = value
  for (const k of extKeys) {
    const v = k === 'enc' ? 'pct' : k === 'mtime' ? mtime : k === 'sha256' ? sha256 : k === 'size' ? size : ext![k]
    out += formatAttr(k, v!)
  }
  return out
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
