// The frame layer: lines, the empty line that ends a message, and fpeer's TAB-separated attributes.
import {isUtf8} from 'node:buffer'
import {FpeerError} from '../errors.js'
import {MAX_FILES, MAX_LINE_ATTRS, MAX_LINE_BYTES, MAX_MESSAGE_BYTES} from './limits.js'

/**
 * One line of a message: the seed's value, then any fpeer attributes. On the wire:
 * `value *( TAB key "=" attr-value )`. A seed-form line has no TAB, so it is all value.
 */
export interface Line {
  value: string
  attrs: Record<string, string>
}

const ATTR_KEY = /^[a-z][a-z0-9-]{0,31}$/

/** Whether `key` may name an attribute. */
export function isAttrKey(key: string): boolean {
  return ATTR_KEY.test(key)
}

/** Characters that never appear raw in an attribute value or an encoded name. */
// eslint-disable-next-line no-control-regex
const NEEDS_PCT = /[%\u0000-\u001f\u007f]/g

// eslint-disable-next-line no-control-regex
const HAS_PCT = /[%\u0000-\u001f\u007f]/

export function pctEncode(text: string): string {
  // Most values need nothing: a test is far cheaper than a replace with a callback (three per file line of a 10,000-file message).
  if (!HAS_PCT.test(text)) return text
  return text.replace(NEEDS_PCT, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0'))
}

export function pctDecode(text: string): string {
  if (!text.includes('%')) return text
  if (/%(?![0-9A-Fa-f]{2})/.test(text)) throw new FpeerError('E_MSG_BAD_ENCODING', `bad percent-escape in ${JSON.stringify(text.slice(0, 80))}`)
  // Escapes stand for bytes, so a name that is not valid UTF-8 once decoded is refused.
  const parts: Buffer[] = []
  let last = 0
  for (const m of text.matchAll(/%([0-9A-Fa-f]{2})/g)) {
    parts.push(Buffer.from(text.slice(last, m.index), 'utf8'), Buffer.from([parseInt(m[1]!, 16)]))
    last = m.index! + 3
  }
  parts.push(Buffer.from(text.slice(last), 'utf8'))
  return decodeUtf8(Buffer.concat(parts))
}

// ignoreBOM: a U+FEFF is text like any other here; the one BOM rule lives in FrameDecoder.
const strictDecoder = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true})

/** U+FEFF in UTF-8: ignored once, at the start of a message's first line (docs/protocol.md, section 2). */
const BOM = Buffer.from([0xef, 0xbb, 0xbf])

export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return strictDecoder.decode(bytes)
  } catch {
    throw new FpeerError('E_MSG_BAD_ENCODING', 'message is not valid UTF-8')
  }
}

/** Parses one line (already without its line break) into value and attributes. */
export function parseLine(text: string): Line {
  const tab = text.indexOf('\t')
  if (tab < 0) return {value: text, attrs: {}}
  const value = text.slice(0, tab)
  const attrs: Record<string, string> = {}
  const parts = text.slice(tab + 1).split('\t')
  // A property per attribute costs far more than its bytes: 10,000 lines of 1,600 `\tk=1` each
  // (62 MB) parsed into 470 MB of heap. Real lines carry a dozen at most.
  if (parts.length > MAX_LINE_ATTRS) throw new FpeerError('E_MSG_BAD_FIELD', `more than ${MAX_LINE_ATTRS} attributes on one line`)
  for (const part of parts) {
    const eq = part.indexOf('=')
    const key = eq < 0 ? part : part.slice(0, eq)
    if (!ATTR_KEY.test(key)) throw new FpeerError('E_MSG_BAD_FIELD', `bad attribute name ${JSON.stringify(key.slice(0, 40))}`)
    if (key in attrs) throw new FpeerError('E_MSG_BAD_FIELD', `attribute ${key} given twice`)
    attrs[key] = eq < 0 ? '' : pctDecode(part.slice(eq + 1))
  }
  return {value, attrs}
}

/** Formats one line; attributes are written sorted by key so that the text is canonical (it is what gets signed). */
export function formatLine(line: Line): string {
  const keys = Object.keys(line.attrs)
  if (keys.length === 0) return line.value
  if (keys.length > 1) keys.sort()
  let out = line.value
  for (const key of keys) out += formatAttr(key, line.attrs[key]!)
  return out
}

/** One attribute as formatLine writes it after the value (`TAB key=value`); a malformed name is a bug of ours. */
export function formatAttr(key: string, value: string): string {
  if (!ATTR_KEY.test(key)) throw new FpeerError('E_INTERNAL', `bad attribute name ${key}`)
  return `\t${key}=${pctEncode(value)}`
}

function checkLine(line: string, index: number): void {
  checkLineBytes(Buffer.byteLength(line), index)
}

function checkLineBytes(bytes: number, index: number): void {
  if (bytes > MAX_LINE_BYTES) throw new FpeerError('E_MSG_LINE_TOO_LONG', `line ${index + 1} is longer than ${MAX_LINE_BYTES} bytes`)
  if (index >= MAX_FILES + 4) throw new FpeerError('E_MSG_TOO_MANY_FILES', `more than ${MAX_FILES} files in one message`)
}

/**
 * Incremental framing for a byte stream: feed chunks, get whole messages (as line arrays).
 * Enforces the line, file-count and message-size limits as bytes arrive, so a hostile
 * sender cannot make the reader buffer more than one limit's worth. It is the only
 * framing code: a control connection feeds it from the socket, and `splitMessages` (hence
 * `fpeer message parse`) feeds it a whole text, so both accept exactly the same bytes.
 */
export class FrameDecoder {
  /** The line under way, when it spans chunks (subarrays of them). */
  #partial: Buffer[] = []
  #partialBytes = 0
  /**
   * The message under way, as the socket's own chunks (subarrays): its lines are checked as
   * they arrive but decoded only once the message is complete, so a message is held once,
   * with no object per line, and a hostile one that never completes leaves no strings behind.
   */
  #message: Buffer[] = []
  #lines = 0
  #messageBytes = 0
  /**
   * Most file lines (Lines 5..n) the next message may carry here: MAX_FILES by default. A
   * server lowers it for what it can expect (a conversation's first message, a reply to
   * its own file list), so a bigger message is refused as its bytes arrive, before any
   * line of it is decoded: decoding and parsing a million lines holds the event loop for
   * seconds and costs hundreds of MB.
   */
  maxFiles = MAX_FILES

  /** True while a message has started but not ended. */
  get inMessage(): boolean {
    return this.#lines > 0 || this.#partialBytes > 0
  }

  /** Complete lines of the message under way. */
  get lines(): number {
    return this.#lines
  }

  /** Feeds bytes; returns every message completed by them. Throws FpeerError on a limit or bad UTF-8. */
  push(chunk: Buffer): string[][] {
    return this.pushRaw(chunk).map((parts) => [...messageLines(parts)])
  }

  /**
   * push() without decoding: each completed message as its bytes (the socket's chunks, up to
   * and including the empty line), for messageLines() to decode when it is read. A reader
   * that parses each line as it is decoded never holds the message as strings beside its bytes.
   */
  pushRaw(chunk: Buffer): Buffer[][] {
    const done: Buffer[][] = []
    let start = 0
    /** Where, in this chunk, the bytes of the message under way begin. */
    let from = 0
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start)
      const end = nl < 0 ? chunk.length : nl
      const piece = chunk.subarray(start, end)
      this.#partialBytes += piece.length
      this.#messageBytes += piece.length + (nl < 0 ? 0 : 1)
      if (this.#partialBytes > MAX_LINE_BYTES + 1) throw new FpeerError('E_MSG_LINE_TOO_LONG', `line ${this.#lines + 1} is longer than ${MAX_LINE_BYTES} bytes`)
      if (this.#messageBytes > MAX_MESSAGE_BYTES) throw new FpeerError('E_MSG_TOO_LONG', `message longer than ${MAX_MESSAGE_BYTES} bytes`)
      if (nl < 0) {
        if (piece.length > 0) this.#partial.push(piece)
        break
      }
      let raw = this.#partial.length === 0 ? piece : Buffer.concat([...this.#partial, piece])
      this.#partial = []
      this.#partialBytes = 0
      if (raw.length > 0 && raw[raw.length - 1] === 0x0d) raw = raw.subarray(0, raw.length - 1)
      // Text tools prepend a BOM to a file; drop one before Line 1 only, so a name keeps its U+FEFF.
      if (this.#lines === 0 && raw.length > BOM.length && raw.subarray(0, BOM.length).equals(BOM)) raw = raw.subarray(BOM.length)
      if (raw.length === 0) {
        if (this.#lines > 0) {
          this.#message.push(chunk.subarray(from, nl + 1))
          done.push(this.#message)
          this.#lines = 0
        }
        // Empty lines between messages are skipped, and not kept.
        this.#message = []
        this.#messageBytes = 0
        from = nl + 1
      } else {
        if (!isUtf8(raw)) throw new FpeerError('E_MSG_BAD_ENCODING', 'message is not valid UTF-8')
        checkLineBytes(raw.length, this.#lines)
        if (this.#lines >= this.maxFiles + 4) throw new FpeerError('E_MSG_TOO_MANY_FILES', `more than ${this.maxFiles} files in one message here`)
        this.#lines++
      }
      start = nl + 1
    }
    if (from < chunk.length) this.#message.push(chunk.subarray(from))
    return done
  }

  /** The input ended: bytes of an unfinished message are E_MSG_TRUNCATED. */
  end(): void {
    if (this.inMessage) {
      throw new FpeerError('E_MSG_TRUNCATED', 'message does not end with an empty line', {hint: "every message ends with an empty line (the seed's [EOL])"})
    }
  }
}

/**
 * Splits a whole input (stdin, a file) into messages, as line arrays, through the same
 * FrameDecoder a control connection uses. A string is taken as its UTF-8 bytes.
 */
export function splitMessages(input: Uint8Array | string): string[][] {
  const decoder = new FrameDecoder()
  const messages = decoder.push(typeof input === 'string' ? Buffer.from(input, 'utf8') : Buffer.from(input.buffer, input.byteOffset, input.byteLength))
  decoder.end()
  return messages
}

/**
 * The lines of a complete message (its bytes up to and including the empty line, as
 * pushRaw() gives them), decoded one line at a time as they are asked for: concatenating the
 * parts first would hold a second copy of the whole message, and decoding them all first
 * would hold every line's string (100,000 of them for a large folder's FilesToGet) beside
 * the entries they become.
 */
export function* messageLines(parts: readonly Buffer[]): Generator<string> {
  let first = true
  // Pieces of a line that spans parts; only such a line is ever copied.
  let pending: Buffer[] = []
  for (const part of parts) {
    let start = 0
    for (;;) {
      const nl = part.indexOf(0x0a, start)
      if (nl < 0) {
        if (start < part.length) pending.push(part.subarray(start))
        break
      }
      let raw = part.subarray(start, nl)
      if (pending.length > 0) {
        raw = Buffer.concat([...pending, raw])
        pending = []
      }
      start = nl + 1
      let end = raw.length
      if (end > 0 && raw[end - 1] === 0x0d) end--
      // Skipped empty lines before the message are not in the parts, and the last, empty line adds nothing.
      if (end === 0) continue
      // The same BOM rule as push(): one U+FEFF before Line 1 is dropped, any other is kept.
      const from = first && end > BOM.length && raw.subarray(0, BOM.length).equals(BOM) ? BOM.length : 0
      first = false
      yield decodeUtf8(raw.subarray(from, end))
    }
  }
}
