// The message codec: text or framed lines to domain messages and back. Pure: no sockets, no disk.
import {FpeerError} from '../errors.js'
import {BePeerRequestFromWire, BePeerRequestToWire} from './be-peer-request.js'
import {checkFolderName} from './fields.js'
import {FilesToGetFromWire, FilesToGetToWire} from './files-to-get.js'
import {type Origins, fileFromText, fileLineText} from './file-list.js'
import {FilesUpdatedFromWire, FilesUpdatedToWire} from './files-updated.js'
import {type Line, formatLine, parseLine, splitMessages} from './frame.js'
import {PeerErrorFromWire, PeerErrorToWire} from './peer-error.js'
import {TrustedPeerConfirmFromWire, TrustedPeerConfirmToWire} from './trusted-peer-confirm.js'
import type {Message, MessageType} from './types.js'

const FROM_WIRE: Record<MessageType, (lines: Line[], folder: string) => Message> = {
  BePeerRequest: BePeerRequestFromWire,
  FilesToGet: FilesToGetFromWire,
  FilesUpdated: FilesUpdatedFromWire,
  TrustedPeerConfirm: TrustedPeerConfirmFromWire,
  PeerError: PeerErrorFromWire,
}

/** Type names accepted on Line 1; `FileToGet` is how the seed's update section spells FilesToGet. */
const TYPE_ALIASES: Record<string, MessageType> = {FileToGet: 'FilesToGet'}

export function messageTypeOf(word: string): MessageType | undefined {
  if (Object.hasOwn(FROM_WIRE, word)) return word as MessageType
  return TYPE_ALIASES[word]
}

/**
 * Parses the lines of one message (without the terminating empty line). They may come one
 * at a time (messageLines): a file list's file lines (from Line 5) become entries as they
 * are read, so a 100,000-file message is never held as strings, nor as Line objects, beside
 * its entries.
 */
export function parseLines(input: Iterable<string>): Message {
  const rest = input[Symbol.iterator]()
  const raw: string[] = []
  for (let r; raw.length < 4 && !(r = rest.next()).done; ) raw.push(r.value)
  if (raw.length === 0) throw new FpeerError('E_MSG_EMPTY', 'empty message')
  const firstType = messageTypeOf(raw[0]!.slice(0, raw[0]!.indexOf('\t') >>> 0))
  const listed = firstType !== undefined && firstType !== 'BePeerRequest' && firstType !== 'PeerError'
  // Other messages are short: all their lines, parsed as before.
  if (!listed) for (let r; !(r = rest.next()).done; ) raw.push(r.value)
  const lines = raw.map(parseLine)
  const type = messageTypeOf(lines[0]!.value)
  if (!type) {
    throw new FpeerError('E_MSG_UNKNOWN_TYPE', `unknown message type ${JSON.stringify(lines[0]!.value.slice(0, 60))}`, {
      hint: 'Line 1 is one of BePeerRequest, FilesToGet, FilesUpdated, TrustedPeerConfirm',
    })
  }
  if (lines.length < 2) throw new FpeerError('E_MSG_TRUNCATED', `${type} has no folder name on line 2`)
  for (let i = 1; i < Math.min(lines.length, 4); i++) {
    if (Object.keys(lines[i]!.attrs).length > 0) throw new FpeerError('E_MSG_BAD_FIELD', `line ${i + 1} cannot carry attributes`)
  }
  const folder = lines[1]!.value === '*' && type === 'PeerError' ? '*' : checkFolderName(lines[1]!.value)
  const msg = FROM_WIRE[type](lines, folder)
  if (listed && 'files' in msg) {
    // The message's own table of origins: its entries share one string per peer (file-list.ts).
    const origins: Origins = new Map()
    for (let r; !(r = rest.next()).done; ) msg.files.push(fileFromText(r.value, origins))
  }
  return msg
}

/** Parses a whole input holding exactly one message (the empty line that ends it included). */
export function parseMessage(input: Uint8Array | string): Message {
  const messages = parseMessages(input)
  if (messages.length === 0) throw new FpeerError('E_MSG_EMPTY', 'no message')
  if (messages.length > 1) throw new FpeerError('E_MSG_UNEXPECTED', `one message expected, got ${messages.length}`)
  return messages[0]!
}

/**
 * Parses every message of a whole input (several messages back to back), with the framing a
 * control connection uses (FrameDecoder), so `fpeer message parse` and `fpeer serve` accept
 * exactly the same bytes. An input without any message gives an empty array.
 */
export function parseMessages(input: Uint8Array | string): Message[] {
  return splitMessages(input).map(parseLines)
}

export function messageToLines(msg: Message): Line[] {
  switch (msg.type) {
    case 'BePeerRequest':
      return BePeerRequestToWire(msg)
    case 'FilesToGet':
      return FilesToGetToWire(msg)
    case 'FilesUpdated':
      return FilesUpdatedToWire(msg)
    case 'TrustedPeerConfirm':
      return TrustedPeerConfirmToWire(msg)
    case 'PeerError':
      return PeerErrorToWire(msg)
  }
}

/**
 * The text of each line after Line 1, without its LF: a file list's header lines, then one
 * line per file made as it is needed, so a 100,000-file message never holds 100,000 Line objects.
 */
function* bodyTexts(msg: Message): Generator<string> {
  const header = msg.type === 'BePeerRequest' || msg.type === 'PeerError' ? messageToLines(msg) : messageToLines({...msg, files: []})
  for (let i = 1; i < header.length; i++) yield formatLine(header[i]!)
  if ('files' in msg) for (const f of msg.files) yield fileLineText(f)
}

/** Line 1 of a message in its canonical form, without its LF: the only line the signature (`sig=`) changes. */
export function formatHead(msg: Message): string {
  if (msg.folder !== '*' || msg.type !== 'PeerError') checkFolderName(msg.folder)
  return formatLine(messageToLines(msg.type === 'BePeerRequest' || msg.type === 'PeerError' ? msg : {...msg, files: []})[0]!)
}

/** Formats a message in its canonical wire form, LF line breaks, ending with the empty line. */
export function formatMessage(msg: Message): string {
  const out: string[] = [formatHead(msg)]
  for (const text of bodyTexts(msg)) out.push(text)
  return out.join('\n') + '\n\n'
}

/** Bytes per chunk of formatBodyChunks. */
const CHUNK_BYTES = 64 * 1024

/**
 * The text of formatMessage after Line 1 and its LF (every other line with its LF, then the
 * final LF) as UTF-8, in chunks of about 64 KiB, each line written into the chunk as soon as
 * it is made: a large list's lines die young, and its text is never one string. With `keep`
 * each chunk is a buffer of its own, the caller's to hold (to send after signing); without,
 * one buffer is refilled, so a chunk is valid only until the next is asked for (a digest).
 */
export function* formatBodyChunks(msg: Message, keep: boolean): Generator<Buffer> {
  if (msg.folder !== '*' || msg.type !== 'PeerError') checkFolderName(msg.folder)
  let buf = Buffer.allocUnsafeSlow(CHUNK_BYTES)
  let at = 0
  const texts = bodyTexts(msg)
  for (let r = texts.next(); ; r = texts.next()) {
    const text = r.done ? '' : r.value
    // At most 3 bytes per UTF-16 unit, and the LF.
    const most = text.length * 3 + 1
    if (at + most > buf.length && at > 0) {
      yield buf.subarray(0, at)
      if (keep) buf = Buffer.allocUnsafeSlow(CHUNK_BYTES)
      at = 0
    }
    if (most > buf.length) yield Buffer.from(`${text}\n`, 'utf8')
    else {
      at += buf.write(text, at, 'utf8')
      buf[at++] = 0x0a
    }
    if (r.done) break
  }
  if (at > 0) yield buf.subarray(0, at)
}
