// fpeer's message authentication: who sent a message (id), freshness (nonce, re) and the detached signature.
import {createHash} from 'node:crypto'
import {FpeerError} from '../errors.js'
import {type Identity, PeerId, verifySignature} from '../identity.js'
import {formatMessagePieces} from './codec.js'
import type {Message} from './types.js'

/** The version of fpeer's additions that this code writes (`fpeer=` on Line 1). */
export const FPEER_WIRE_VERSION = 1
const CONTEXT = 'fpeer-sig-v1\n'

/** True when the message carries none of fpeer's additions (the seed's plain form). */
export function isPlain(msg: Message): boolean {
  return Object.keys(msg.meta).length === 0 && !('files' in msg && msg.files.some((f) => f.sha256 !== undefined || f.size !== undefined))
}

/**
 * The bytes a signature covers: a context string, then the SHA-512 digest (hex) of the
 * canonical wire text without `sig=`. Signing the digest rather than the text keeps a
 * 100,000-file FilesToGet from being hashed again in tweetnacl's pure-JavaScript SHA-512
 * at every signature and check; SHA-512 here is Node's native one.
 */
export function signedBytes(msg: Message): Buffer {
  const {sig: _sig, ...meta} = msg.meta
  const hash = createHash('sha512')
  // Fed in slices of about 64 KiB: one native call per slice, not per line.
  let slice = ''
  for (const piece of formatMessagePieces({...msg, meta} as Message)) {
    slice += piece
    if (slice.length >= 65_536) {
      hash.update(slice, 'utf8')
      slice = ''
    }
  }
  hash.update(slice, 'utf8')
  const digest = hash.digest('hex')
  return Buffer.from(CONTEXT + digest, 'utf8')
}

/** Adds `fpeer`, `id` and `sig` to Line 1 and returns the signed message. */
export function signMessage<M extends Message>(msg: M, identity: Identity): M {
  const meta: Record<string, string> = {...msg.meta, fpeer: String(FPEER_WIRE_VERSION), id: identity.id.compact}
  delete meta.sig
  const unsigned = {...msg, meta} as M
  const sig = Buffer.from(identity.sign(signedBytes(unsigned))).toString('base64url')
  return {...unsigned, meta: {...meta, sig}}
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
