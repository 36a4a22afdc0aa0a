// Pure pieces of the FTP control channel: splitting lines, parsing commands, resolving paths, formatting replies.

/** Longest command line accepted, in bytes: a 4096-byte path plus the verb, with room to spare. */
export const MAX_LINE_BYTES = 8192

/** Commands that would change the served tree or its metadata. The server is read-only, so all are refused. */
export const WRITE_VERBS: ReadonlySet<string> = new Set([
  'STOR',
  'STOU',
  'APPE',
  'ALLO',
  'DELE',
  'RMD',
  'XRMD',
  'MKD',
  'XMKD',
  'RNFR',
  'RNTO',
  'MFMT',
  'MFCT',
  'MFF',
  'SITE',
])

/** Commands allowed before USER/PASS: the ones clients send while negotiating. */
export const PRE_LOGIN_VERBS: ReadonlySet<string> = new Set(['USER', 'PASS', 'QUIT', 'SYST', 'FEAT', 'OPTS', 'NOOP', 'AUTH', 'HELP'])

export interface SplitLines {
  /** Complete lines, without their CRLF (or bare LF). */
  lines: Buffer[]
  /** Bytes after the last line end, to prepend to the next chunk. */
  rest: Buffer
  /** A line (or the unfinished rest) is longer than allowed: the client cannot be resynchronised. */
  overflow: boolean
}

/**
 * Splits control-channel bytes into lines. Works on bytes, not strings, so a UTF-8
 * sequence split across TCP chunks is decoded only once it is whole.
 */
export function splitLines(buf: Buffer, maxLineBytes = MAX_LINE_BYTES): SplitLines {
  const lines: Buffer[] = []
  let start = 0
  for (let nl = buf.indexOf(0x0a, start); nl !== -1; nl = buf.indexOf(0x0a, start)) {
    const end = nl > start && buf[nl - 1] === 0x0d ? nl - 1 : nl
    if (end - start > maxLineBytes) return {lines, rest: Buffer.alloc(0), overflow: true}
    lines.push(buf.subarray(start, end))
    start = nl + 1
  }
  const rest = buf.subarray(start)
  return {lines, rest, overflow: rest.length > maxLineBytes}
}

export type ParsedCommand = {verb: string; arg: string} | {error: 'encoding' | 'syntax'}

const utf8 = new TextDecoder('utf-8', {fatal: true})

/**
 * Parses one command line. Leading Telnet IAC sequences (clients send IAC IP IAC DM
 * before ABOR) are dropped. The argument is everything after the first space, kept
 * exactly: file names may begin or end with spaces.
 */
export function parseCommand(line: Buffer): ParsedCommand {
  let i = 0
  while (i + 1 < line.length && line[i] === 0xff && line[i + 1]! >= 0xf0) i += 2
  let text: string
  try {
    text = utf8.decode(line.subarray(i))
  } catch {
    return {error: 'encoding'}
  }
  const space = text.indexOf(' ')
  const verb = (space === -1 ? text : text.slice(0, space)).toUpperCase()
  if (!/^[A-Z]{3,4}$/.test(verb)) return {error: 'syntax'}
  return {verb, arg: space === -1 ? '' : text.slice(space + 1)}
}

/**
 * Resolves a client path against the working directory with POSIX semantics, never
 * above `/`: `..` at the root stays at the root. Returns an absolute path without a
 * trailing slash (`/` for the root). Further confinement is the FileSource's job.
 */
export function resolvePath(cwd: string, arg: string): string {
  const joined = arg.startsWith('/') ? arg : `${cwd}/${arg}`
  const out: string[] = []
  for (const seg of joined.split('/')) {
    if (seg === '' || seg === '.') continue
    if (seg === '..') out.pop()
    else out.push(seg)
  }
  return `/${out.join('/')}`
}

/** Splits an absolute FTP path into the shared folder (first segment) and the path inside it. */
export function splitPath(abs: string): {folder?: string; rel: string} {
  const segs = abs.split('/').filter((s) => s !== '')
  if (segs.length === 0) return {rel: ''}
  return {folder: segs[0]!, rel: segs.slice(1).join('/')}
}

/** The last segment of an absolute path, for messages and single-entry listings. */
export function baseName(abs: string): string {
  return abs.slice(abs.lastIndexOf('/') + 1)
}

/** A path inside a 257 reply: RFC 959 doubles embedded quotes. */
export function quotePath(abs: string): string {
  return abs.replace(/"/g, '""')
}

/** Reply text never carries CR or LF: a hostile file name echoed back must not forge a reply line. */
function clean(text: string): string {
  return text.replace(/[\r\n]/g, ' ')
}

/**
 * Formats a reply. One line gives `code text`; several give the RFC 959 multi-line
 * form whose inner lines start with a space, so none can be mistaken for the last.
 */
export function formatReply(code: number, text: string | readonly string[]): string {
  const lines = (typeof text === 'string' ? [text] : [...text]).map(clean)
  if (lines.length <= 1) return `${code} ${lines[0] ?? ''}\r\n`
  const first = lines[0]!
  const last = lines[lines.length - 1]!
  const middle = lines.slice(1, -1).map((l) => (l.startsWith(' ') ? l : ` ${l}`))
  return [`${code}-${first}`, ...middle, `${code} ${last}`].join('\r\n') + '\r\n'
}

/** Strips `ls`-style options (`-a`, `-la`) that clients put before a LIST/NLST path. */
export function stripListOptions(arg: string): string {
  let rest = arg
  for (let m = /^-[a-zA-Z]+(?: +|$)/.exec(rest); m; m = /^-[a-zA-Z]+(?: +|$)/.exec(rest)) rest = rest.slice(m[0].length)
  return rest
}

/** Parses a REST argument: a non-negative decimal byte offset. */
export function parseRestOffset(arg: string): number | undefined {
  if (!/^\d{1,16}$/.test(arg)) return undefined
  const n = Number(arg)
  return Number.isSafeInteger(n) ? n : undefined
}

/** An address as the contract gives it: IPv4-mapped IPv6 shown as IPv4. */
export function plainAddress(address: string | undefined): string {
  if (!address) return ''
  return address.toLowerCase().startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}
