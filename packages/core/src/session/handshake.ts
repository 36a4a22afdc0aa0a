// Helpers both sides of the handshake share: nonces, reply checks, file-list comparison.
import {FpeerError} from '../errors.js'
import type {PeerId} from '../identity.js'
import {randomNonce} from '../identity.js'
import {MAX_REASON_CHARS} from '../wire/limits.js'
import {verifyMessage} from '../wire/signing.js'
import type {FileEntry, Message, MessageType} from '../wire/types.js'

export {randomNonce}

/** A peer's refusals reported under their own code, with what the user can do. */
const REFUSALS: Readonly<Record<string, string>> = {
  E_UNKNOWN_FOLDER: 'that peer shares no folder of that name: check its spelling and case (`fpeer status` on that peer lists them)',
  E_NOT_ALLOWED: 'that peer does not let this one join: send it your ID (`fpeer id`) so it can run `fpeer allow FOLDER ID`',
}

/** The message a reply answers: who we asked (its ID), our nonce, and who we are. */
export interface Asked {
  peer: PeerId
  nonce: string
  self: PeerId
}

/**
 * Is this PeerError a refusal `asked.peer` signed for us (section 10.6): signed by that peer,
 * answering our nonce (`re=`) and naming us (`to=`)? Only such a refusal may end a trust; an
 * unsigned one may come from anybody on the path.
 */
export function isSignedRefusal(msg: Message, asked: Asked): boolean {
  if (msg.type !== 'PeerError' || msg.code !== 'E_NOT_ALLOWED' || !msg.meta.sig) return false
  try {
    verifyReply(msg, asked.peer, asked.nonce)
  } catch {
    return false
  }
  return msg.meta.to === asked.self.compact
}

/**
 * The peer that refused us with a signed E_NOT_ALLOWED (`details.refusedBy`, set by
 * expectType), as its printed ID; undefined for any other error.
 */
export function refusedBy(err: unknown): string | undefined {
  if (!(err instanceof FpeerError) || err.code !== 'E_NOT_ALLOWED') return undefined
  const by = err.details?.refusedBy
  return typeof by === 'string' ? by : undefined
}

/**
 * How long after confirming a peer that joined us a signed refusal from it does not end the
 * trust: the requester records us only after our TrustedPeerConfirm and after landing what it
 * fetched (seed step 17), so until then it rightly refuses us (10.6).
 */
export const JOIN_GRACE_MS = 120_000

/**
 * Does a signed refusal from the peer of this record end our trust in it (10.6)? Yes, unless
 * it joined us (`member`) less than JOIN_GRACE_MS ago and may not have recorded us yet. A
 * record of a peer we joined (`host`) was made after that peer had recorded us. Pure.
 */
export function refusalEndsTrust(record: {role: string; confirmedAt: string}, now = Date.now()): boolean {
  if (record.role !== 'member') return true
  const at = Date.parse(record.confirmedAt)
  return !Number.isFinite(at) || now - at >= JOIN_GRACE_MS || at > now + JOIN_GRACE_MS
}

/**
 * Throws the peer's PeerError as E_UNKNOWN_FOLDER / E_NOT_ALLOWED / E_PEER_ERROR, or
 * E_MSG_UNEXPECTED for any type but `want`. With `asked`, an E_NOT_ALLOWED the peer signed
 * for us carries `details.refusedBy` (its ID): the peer no longer counts us as a peer.
 */
export function expectType<T extends MessageType>(msg: Message, want: T, folder: string, asked?: Asked): Extract<Message, {type: T}> {
  if (msg.type === 'PeerError') {
    // We named the peer we meant (to=) and the one that answered says it is another: the
    // same failure as a FilesToGet signed by an unexpected key, found one step earlier.
    if (msg.code === 'E_WRONG_DESTINATION')
      throw new FpeerError('E_PEER_ID_MISMATCH', `the peer at that address is not the one asked for: ${msg.code}: ${msg.text.slice(0, MAX_REASON_CHARS)}`, {
        details: {peerCode: msg.code},
        hint: 'check --peer-id (or the address)',
      })
    // The reason is the peer's free text: kept (clipped) for --json, escaped by whatever prints it to a terminal.
    const reason = msg.text.length > MAX_REASON_CHARS ? msg.text.slice(0, MAX_REASON_CHARS) + '…' : msg.text
    // The two refusals a user acts on keep their own code (one code per cause, for scripts);
    // any other code a peer sends stays E_PEER_ERROR, so a peer cannot pick our exit code.
    const own = REFUSALS[msg.code]
    throw new FpeerError(own ? (msg.code as 'E_NOT_ALLOWED') : 'E_PEER_ERROR', `the peer refused: ${msg.code}: ${reason}`, {
      details: {peerCode: msg.code, peerReason: reason, ...(asked && isSignedRefusal(msg, asked) ? {refusedBy: asked.peer.toString()} : {})},
      ...(own ? {hint: own} : {}),
    })
  }
  if (msg.type !== want) throw new FpeerError('E_MSG_UNEXPECTED', `expected ${want}, got ${msg.type}`)
  if (msg.folder !== folder) throw new FpeerError('E_MSG_FOLDER_MISMATCH', `expected folder ${JSON.stringify(folder)}, got ${JSON.stringify(msg.folder)}`)
  return msg as Extract<Message, {type: T}>
}

/** Verifies signature, sender and that the message answers our nonce. */
export function verifyReply(msg: Message, expectedSender: PeerId | undefined, ourNonce: string): PeerId {
  const sender = verifyMessage(msg, expectedSender)
  if (msg.meta.re !== ourNonce) throw new FpeerError('E_NONCE_MISMATCH', `${msg.type} does not answer this handshake (stale or replayed)`)
  return sender
}

/** The two lists name the same files with the same content. */
export function sameFiles(a: FileEntry[], b: FileEntry[]): boolean {
  if (a.length !== b.length) return false
  // A reply lists the files in the order it was given them: line by line first, with no map of 100,000 paths.
  const agrees = (f: FileEntry, g: FileEntry) =>
    f.path === g.path &&
    (f.sha256 === undefined || g.sha256 === undefined || f.sha256 === g.sha256) &&
    (f.size === undefined || g.size === undefined || f.size === g.size)
  if (a.every((g, i) => agrees(b[i] as FileEntry, g))) return true
  const m = new Map(a.map((f) => [f.path, f]))
  for (const f of b) {
    const g = m.get(f.path)
    if (!g) return false
    if (f.sha256 !== undefined && g.sha256 !== undefined && f.sha256 !== g.sha256) return false
    if (f.size !== undefined && g.size !== undefined && f.size !== g.size) return false
  }
  return true
}

export function parseProtocolList(text: string | undefined): string[] {
  if (!text) return []
  return text
    .split(',')
    .map((p) => p.trim().toUpperCase())
    .filter((p) => /^[A-Z][A-Z0-9._+-]{0,31}$/.test(p))
}
