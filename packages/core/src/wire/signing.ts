// fpeer's message authentication: who sent a message (id), freshness (nonce, re) and the detached signature.
import {createHash} from 'node:crypto'
import {FpeerError} from '../errors.js'
import {type Identity, PeerId, verifySignature} from '../identity.js'
import {formatBodyChunks, formatHead} from './codec.js'
import type {Message} from './types.js'

/** The version of fpeer's additions that this code writes (`fpeer=` on Line 1). */
export const FPEER_WIRE_VERSION = 1
const CONTEXT = 'fpeer-sig-v1\n'

/** True when the message carries none of fpeer's additions (the seed's plain form). */
export function isPlain(msg: Message): boolean {
  return Object.keys(msg.meta).length === 0 && !('files' in msg && msg.files.some((f) => f.sha256 !== undefined || f.size !== undefined))
}

/** A signed file list of at least this many files keeps the bytes it was signed over, for send() to write. */
const KEEP_BODY_FROM = 1000

/**
 * Where a message signMessage made keeps the text after Line 1, as the bytes that were
 * signed, until it is sent (takeSignedBody): a 100,000-file list is formatted once, not
 * again to send. A non-enumerable property of that message object alone: a copy (a spread)
 * does not carry it, and what it was made from is kept beside it, so a message changed since
 * (it should not be) is formatted afresh.
 */
const SIGNED_BODY = Symbol('fpeer.signedBody')

interface SignedBody {
  folder: string
  files: unknown
  count: number
  port: number
  protocol: string
  chunks: Buffer[]
}

/** The digest a signature covers, of Line 1 without `sig=` and the rest of the text (`body`, formatted here when not given). */
function digestOf(msg: Message, body?: Iterable<Buffer>): Buffer {
  const {sig: _sig, ...meta} = msg.meta
  const unsigned = {...msg, meta} as Message
  const hash = createHash('sha512')
  hash.update(`${formatHead(unsigned)}\n`, 'utf8')
  for (const chunk of body ?? formatBodyChunks(unsigned, false)) hash.update(chunk)
  return Buffer.from(CONTEXT + hash.digest('hex'), 'utf8')
}

/**
 * The bytes a signature covers: a context string, then the SHA-512 digest (hex) of the
 * canonical wire text without `sig=`. Signing the digest rather than the text keeps a
 * 100,000-file FilesToGet from being hashed again in tweetnacl's pure-JavaScript SHA-512
 * at every signature and check; SHA-512 here is Node's native one, fed 64 KiB at a time.
 */
export function signedBytes(msg: Message): Buffer {
  return digestOf(msg)
}

/** Adds `fpeer`, `id` and `sig` to Line 1 and returns the signed message. */
export function signMessage<M extends Message>(msg: M, identity: Identity): M {
  const meta: Record<string, string> = {...msg.meta, fpeer: String(FPEER_WIRE_VERSION), id: identity.id.compact}
  delete meta.sig
  const unsigned = {...msg, meta} as M
  // Only Line 1 differs between the signed text and the sent one: the rest is formatted once, for both.
  const body = 'files' in unsigned && unsigned.files.length >= KEEP_BODY_FROM ? [...formatBodyChunks(unsigned, true)] : undefined
  const sig = Buffer.from(identity.sign(digestOf(unsigned, body))).toString('base64url')
  const signed = {...unsigned, meta: {...meta, sig}}
  if (body && 'files' in signed) {
    const kept: SignedBody = {
      folder: signed.folder,
      files: signed.files,
      count: signed.files.length,
      port: signed.port,
      protocol: signed.protocol,
      chunks: body,
    }
    Object.defineProperty(signed, SIGNED_BODY, {value: kept, enumerable: false, configurable: true, writable: false})
  }
  return signed
}

/**
 * The bytes after Line 1 that `msg` was signed over, when signMessage kept them and the
 * message still has the lines they were made from; given once (they are dropped here).
 */
export function takeSignedBody(msg: Message): Buffer[] | undefined {
  const kept = (msg as {[SIGNED_BODY]?: SignedBody})[SIGNED_BODY]
  if (!kept) return undefined
  delete (msg as {[SIGNED_BODY]?: SignedBody})[SIGNED_BODY]
  const same =
    'files' in msg &&
    kept.folder === msg.folder &&
    kept.files === msg.files &&
    kept.count === msg.files.length &&
    kept.port === msg.port &&
    kept.protocol === msg.protocol
  return same ? kept.chunks : undefined
}

/** The sender's ID as the message claims it (`id=`), unverified. */
export function claimedSender(msg: Message): PeerId | undefined {
  const id = msg.meta.id
  if (id === undefined) return undefined
  const parsed = PeerId.tryParse(id)
  if (!parsed) throw new FpeerError('E_MSG_BAD_FIELD', 'bad id= attribute')
  return parsed
}

/**
 * Verifies the signature against `expected` (or, when absent, the message's own `id=`),
 * and returns the verified sender. Throws E_UNSIGNED, E_PEER_ID_MISMATCH or E_BAD_SIGNATURE.
 */
export function verifyMessage(msg: Message, expected?: PeerId): PeerId {
  const claimed = claimedSender(msg)
  const sig = msg.meta.sig
  if (!claimed || !sig) throw new FpeerError('E_UNSIGNED', `${msg.type} is not signed`, {hint: 'the peer must run fpeer (or speak fpeer/1) for this step'})
  if (expected && !expected.equals(claimed)) {
    throw new FpeerError('E_PEER_ID_MISMATCH', `${msg.type} comes from ${claimed.toString()}, expected ${expected.toString()}`)
  }
  const ok = verifySignature(signedBytes(msg), Buffer.from(sig, 'base64url'), claimed.publicKey)
  if (!ok) throw new FpeerError('E_BAD_SIGNATURE', `${msg.type} from ${claimed.short} has a bad signature`)
  return claimed
}
