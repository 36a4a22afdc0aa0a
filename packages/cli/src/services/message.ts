// `fpeer message build|parse|send`: wire messages to JSON and back, and one request/reply exchange with a peer.
import {
  ERROR_CODES,
  type ErrorCode,
  FpeerError,
  type Identity,
  type Message,
  type MessageType,
  connectChannel,
  formatMessage,
  isFpeerError,
  messageTypeOf,
  parseMessages,
  randomNonce,
  signMessage,
  verifyMessage,
} from '@fpeer/core'

/** Reads all of stdin as bytes: the wire decoder, not this, decides what UTF-8 (and BOM) it accepts. */
export async function readStdin(stream: NodeJS.ReadableStream = process.stdin): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer))
  return Buffer.concat(chunks)
}

/**
 * Wire text to messages, always an array (a script reads `.[0]` whatever it got).
 * `verify`: every message must carry a valid signature by its `id=`.
 */
export function parseWire(input: Uint8Array | string, options: {verify?: boolean} = {}): Message[] {
  const messages = parseMessages(input)
  if (messages.length === 0)
    throw new FpeerError('E_MSG_EMPTY', 'no message on stdin', {hint: 'pipe wire text in, e.g. `fpeer message build … | fpeer message parse`'})
  if (options.verify) for (const m of messages) verifyMessage(m)
  return messages
}

const FILE_LIST_TYPES = new Set<MessageType>(['FilesToGet', 'FilesUpdated', 'TrustedPeerConfirm'])

function usage(message: string, hint?: string): FpeerError {
  return new FpeerError('E_USAGE', message, hint ? {hint} : {})
}

function stringRecord(value: unknown, what: string): Record<string, string> {
  if (value === undefined) return {}
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw usage(`${what} must be an object of strings`)
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string') throw usage(`${what}.${k} must be a string`)
    out[k] = v
  }
  return out
}

function integer(value: unknown, what: string): number {
  if (typeof value === 'string' && /^\d+$/.test(value)) return Number(value)
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw usage(`${what} must be a non-negative integer`)
  return value
}

/** One message from its JSON form (the shape `fpeer message parse` prints), checked field by field. */
export function messageFromJson(doc: unknown, index = 0): Message {
  const where = `message ${index + 1}`
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw usage(`${where} is not a JSON object`)
  const d = doc as Record<string, unknown>
  const type = typeof d.type === 'string' ? messageTypeOf(d.type) : undefined
  if (!type) throw usage(`${where}: type must be one of BePeerRequest, FilesToGet, FilesUpdated, TrustedPeerConfirm, PeerError`)
  if (typeof d.folder !== 'string') throw usage(`${where}: folder must be a string`)
  const meta = stringRecord(d.meta, `${where}: meta`)
  if (type === 'BePeerRequest') return {type, folder: d.folder, meta}
  if (type === 'PeerError') {
    if (typeof d.code !== 'string') throw usage(`${where}: code must be a string like E_NOT_ALLOWED`)
    return {type, folder: d.folder, meta, code: d.code, text: typeof d.text === 'string' ? d.text : ''}
  }
  if (!FILE_LIST_TYPES.has(type)) throw usage(`${where}: unknown type ${type}`)
  if (typeof d.protocol !== 'string') throw usage(`${where}: protocol must be a string like HTTP`)
  if (d.files !== undefined && !Array.isArray(d.files)) throw usage(`${where}: files must be an array`)
  const files = ((d.files as unknown[] | undefined) ?? []).map((f, i) => {
    const entry = typeof f === 'string' ? {path: f} : f
    if (typeof entry !== 'object' || entry === null || typeof (entry as {path?: unknown}).path !== 'string') throw usage(`${where}: files[${i}] needs a path`)
    const e = entry as Record<string, unknown>
    return {
      path: e.path as string,
      ...(e.size === undefined ? {} : {size: integer(e.size, `files[${i}].size`)}),
      ...(e.sha256 === undefined ? {} : {sha256: String(e.sha256)}),
      ...(e.mtimeMs === undefined ? {} : {mtimeMs: integer(e.mtimeMs, `files[${i}].mtimeMs`)}),
      ...(e.ext === undefined ? {} : {ext: stringRecord(e.ext, `files[${i}].ext`)}),
    }
  })
  return {type: type as 'FilesToGet', folder: d.folder, meta, port: integer(d.port ?? 0, `${where}: port`), protocol: d.protocol, files}
}

export interface BuildOptions {
  /** JSON: one message object or an array of them. */
  json?: unknown
  /** Or one message from flags. */
  fields?: {type: string; folder: string; port?: number; protocol?: string; files?: string[]; code?: string; text?: string; meta?: Record<string, string>}
  /** Add a fresh `nonce=` to messages that have none. */
  nonce?: boolean
  /** Sign each message with this peer's key (adds `fpeer=`, `id=`, `sig=`). */
  identity?: Identity
}

/** Builds the exact wire text; the result is parsed back before it is returned, so it is always valid wire. */
export function buildWire(opts: BuildOptions): {wire: string; messages: Message[]} {
  let docs: unknown[]
  if (opts.fields) {
    const f = opts.fields
    docs = [
      {type: f.type, folder: f.folder, meta: f.meta ?? {}, port: f.port ?? 0, protocol: f.protocol ?? 'HTTP', files: f.files ?? [], code: f.code, text: f.text},
    ]
  } else if (Array.isArray(opts.json)) docs = opts.json
  else docs = [opts.json]
  if (docs.length === 0) throw usage('no message to build', 'give one JSON object (or an array of them) on stdin, or --type and --folder')
  const messages = docs.map((d, i) => {
    let m = messageFromJson(d, i)
    if (opts.nonce && m.meta.nonce === undefined) m = {...m, meta: {...m.meta, nonce: randomNonce()}}
    return opts.identity ? signMessage(m, opts.identity) : m
  })
  let wire = ''
  try {
    for (const m of messages) wire += formatMessage(m)
    return {wire, messages: parseWire(wire)}
  } catch (err) {
    if (isFpeerError(err) && err.kind !== 'usage')
      throw new FpeerError('E_USAGE', `cannot build: ${err.message}`, {hint: err.hint ?? 'see docs/protocol.md for each field', cause: err})
    throw err
  }
}

export interface SendOptions {
  host: string
  port: number
  /** The wire text; it must hold exactly one message, sent in canonical form. */
  text: Uint8Array | string
  bind?: string
  /** Bounds the connection and the wait for the reply, in ms. */
  timeoutMs: number
}

/** Sends one message and returns the peer's reply (one message). */
export async function sendWire(opts: SendOptions): Promise<{sent: Message; reply: Message}> {
  const messages = parseWire(opts.text)
  if (messages.length !== 1) throw usage(`send takes one message, got ${messages.length}`, 'send them one by one')
  const sent = messages[0]!
  const channel = await connectChannel(opts.host, opts.port, {timeoutMs: opts.timeoutMs, ...(opts.bind ? {localAddress: opts.bind} : {})})
  try {
    await channel.send(sent)
    const reply = await channel.next(opts.timeoutMs)
    return {sent, reply}
  } finally {
    await channel.close()
  }
}

/** The process-level error for a PeerError reply (`send --fail`): the peer's code when fpeer knows it. */
export function peerErrorToError(reply: Message): FpeerError | undefined {
  if (reply.type !== 'PeerError') return undefined
  const code = Object.hasOwn(ERROR_CODES, reply.code) ? (reply.code as ErrorCode) : 'E_PEER_ERROR'
  return new FpeerError(code, `the peer replied ${reply.code}: ${reply.text}`, {details: {peerCode: reply.code, reply}})
}
