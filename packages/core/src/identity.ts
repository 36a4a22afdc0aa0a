// Peer identity: an ed25519 key pair (tweetnacl), the printable peer ID, and detached signatures.
import {type KeyObject, createPrivateKey, createPublicKey, generateKeyPairSync, sign as cryptoSign, verify as cryptoVerify} from 'node:crypto'
import nacl from 'tweetnacl'
import {FpeerError} from './errors.js'

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'

/**
 * Letters gathered in an array and joined once: a string grown with `+=` is a chain of one
 * V8 cons cell per letter (some 1.3 KB for an ID instead of 70 bytes), and a peer ID is kept
 * by the thousand (the replay guard's keys, maps by peer).
 */
function base32Encode(bytes: Uint8Array): string {
  const out: string[] = []
  let bits = 0
  let value = 0
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5) {
      out.push(B32.charAt((value >>> (bits - 5)) & 31))
      bits -= 5
    }
  }
  if (bits > 0) out.push(B32.charAt((value << (5 - bits)) & 31))
  return out.join('')
}

function base32Decode(text: string): Uint8Array | undefined {
  const out: number[] = []
  let bits = 0
  let value = 0
  for (const ch of text) {
    const i = B32.indexOf(ch)
    if (i < 0) return undefined
    value = ((value << 5) | i) & 0xffff
    bits += 5
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff)
      bits -= 8
    }
  }
  return Uint8Array.from(out)
}

/**
 * A peer's identity, its ed25519 public key. The canonical printed form is the key in
 * RFC 4648 base32 without padding, upper case, in four dash-separated groups of 13
 * (e.g. `ABCDEFGHIJKLM-NOPQRSTUVWXYZ-…`). Parsing is lenient: case, dashes and spaces
 * are ignored, so an ID read aloud or pasted from a wrapped line still parses.
 */
export class PeerId {
  readonly publicKey: Uint8Array
  /** The compact form, made once: it is asked for on every message. */
  #compact: string | undefined

  private constructor(publicKey: Uint8Array) {
    this.publicKey = publicKey
  }

  static fromPublicKey(publicKey: Uint8Array): PeerId {
    if (publicKey.length !== nacl.sign.publicKeyLength) {
      throw new FpeerError('E_BAD_PEER_ID', `a public key has ${nacl.sign.publicKeyLength} bytes, got ${publicKey.length}`)
    }
    return new PeerId(Uint8Array.from(publicKey))
  }

  /** Parses any printed form of a peer ID; throws E_BAD_PEER_ID. */
  static parse(text: string): PeerId {
    const compact = text.replace(/[\s-]/g, '').toUpperCase()
    const bytes = compact.length === 52 ? base32Decode(compact) : undefined
    if (!bytes || bytes.length !== 32 || base32Encode(bytes) !== compact) {
      throw new FpeerError('E_BAD_PEER_ID', `not a peer ID: ${JSON.stringify(text.slice(0, 80))}`, {
        hint: 'a peer ID is 52 base32 letters and digits, as printed by `fpeer id`',
      })
    }
    return new PeerId(bytes)
  }

  static tryParse(text: string): PeerId | undefined {
    try {
      return PeerId.parse(text)
    } catch {
      return undefined
    }
  }

  /** The compact form used on the wire (no dashes). */
  get compact(): string {
    return (this.#compact ??= base32Encode(this.publicKey))
  }

  toString(): string {
    const c = this.compact
    return `${c.slice(0, 13)}-${c.slice(13, 26)}-${c.slice(26, 39)}-${c.slice(39)}`
  }

  toJSON(): string {
    return this.toString()
  }

  equals(other: PeerId | undefined): boolean {
    return other !== undefined && Buffer.compare(Buffer.from(this.publicKey), Buffer.from(other.publicKey)) === 0
  }

  /** Short form for logs. */
  get short(): string {
    return this.compact.slice(0, 7)
  }
}

/** A key pair. The secret key never leaves the key store except to sign. */
export interface KeyPair {
  readonly publicKey: Uint8Array
  readonly secretKey: Uint8Array
}

/**
 * A new key pair, in tweetnacl's form (secret key = 32-byte seed, then the public key).
 * Made by Node's native crypto from the system's CSPRNG: tweetnacl's JavaScript took 15-45 ms
 * (a point multiplication), paid by every first command on a new home. The same seed gives
 * the same pair either way (identity.test.ts compares them with tweetnacl's fromSeed).
 */
export function generateKeyPair(): KeyPair {
  const {privateKey, publicKey} = generateKeyPairSync('ed25519')
  const der = privateKey.export({format: 'der', type: 'pkcs8'})
  const spki = publicKey.export({format: 'der', type: 'spki'})
  const seed = der.subarray(ED25519_PKCS8_PREFIX.length)
  const pub = spki.subarray(ED25519_SPKI_PREFIX.length)
  if (!startsWith(der, ED25519_PKCS8_PREFIX) || !startsWith(spki, ED25519_SPKI_PREFIX) || seed.length !== 32 || pub.length !== nacl.sign.publicKeyLength) {
    throw new FpeerError('E_INTERNAL', 'Node made an ed25519 key in an unexpected form')
  }
  const secretKey = new Uint8Array(64)
  secretKey.set(seed, 0)
  secretKey.set(pub, 32)
  return {publicKey: new Uint8Array(pub), secretKey}
}

function startsWith(b: Buffer, prefix: Buffer): boolean {
  return b.length >= prefix.length && b.subarray(0, prefix.length).equals(prefix)
}

export function keyPairFromSecretKey(secretKey: Uint8Array): KeyPair {
  const kp = nacl.sign.keyPair.fromSecretKey(secretKey)
  return {publicKey: kp.publicKey, secretKey: kp.secretKey}
}

/** Our own identity: the key pair and the ID that names it. */
export class Identity {
  readonly id: PeerId
  readonly #keys: KeyPair
  #signingKey: KeyObject | undefined

  constructor(keys: KeyPair) {
    this.#keys = keys
    this.id = PeerId.fromPublicKey(keys.publicKey)
  }

  get publicKey(): Uint8Array {
    return this.#keys.publicKey
  }

  /** The 32-byte ed25519 seed, for transports that need the raw private key (SSH). */
  get seed(): Uint8Array {
    return this.#keys.secretKey.slice(0, 32)
  }

  /**
   * An ed25519 detached signature, by Node's native crypto: tweetnacl's JavaScript took
   * several milliseconds per signature, a few per request. Ed25519 is deterministic, so the
   * bytes are the ones tweetnacl made (identity.test.ts compares them).
   */
  sign(data: Uint8Array): Uint8Array {
    this.#signingKey ??= createPrivateKey({key: Buffer.concat([ED25519_PKCS8_PREFIX, this.#keys.secretKey.subarray(0, 32)]), format: 'der', type: 'pkcs8'})
    return new Uint8Array(cryptoSign(null, data, this.#signingKey))
  }

  /** Keeps the secret out of logs and JSON. */
  toJSON(): Record<string, string> {
    return {id: this.id.toString()}
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return `Identity(${this.id.toString()})`
  }
}

/** DER prefix of an ed25519 PKCS#8 private key (RFC 8410); the 32-byte seed follows it. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')

/** DER prefix of an ed25519 SubjectPublicKeyInfo (RFC 8410); the raw 32-byte key follows it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

/**
 * Checks an ed25519 detached signature with Node's native crypto: tweetnacl's JavaScript
 * verification took 3-30 ms each, so one signed update of 20,000 versions held the event
 * loop (every connection of `fpeer serve`) for minutes.
 */
export function verifySignature(data: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  if (signature.length !== nacl.sign.signatureLength || publicKey.length !== nacl.sign.publicKeyLength) return false
  try {
    return cryptoVerify(null, data, publicKeyObject(publicKey), signature)
  } catch {
    // Not a point on the curve: no signature can be valid for it.
    return false
  }
}

/**
 * Parsed public keys, by their bytes: a peer's messages and every version it signed are
 * checked with the same few keys, and parsing one (DER, a KeyObject) cost more than the
 * check itself (a serve's profile under churn: 1.8 % of its time in createPublicKey). A key
 * is only ever the bytes it was made from, so the cache cannot answer for another key; it is
 * bounded (oldest dropped) so a stream of made-up keys costs memory for 256 at most.
 */
const KEY_CACHE_SIZE = 256
const publicKeys = new Map<string, KeyObject>()

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('base64')
  let key = publicKeys.get(id)
  if (key) return key
  // Throws for bytes that are not a key: nothing is cached for them.
  key = createPublicKey({key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]), format: 'der', type: 'spki'})
  if (publicKeys.size >= KEY_CACHE_SIZE) {
    const oldest = publicKeys.keys().next()
    if (!oldest.done) publicKeys.delete(oldest.value)
  }
  publicKeys.set(id, key)
  return key
}

export function randomNonce(bytes = 16): string {
  return Buffer.from(nacl.randomBytes(bytes)).toString('base64url')
}
