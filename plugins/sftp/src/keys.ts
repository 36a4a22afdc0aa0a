// fpeer identities as SSH keys: the ed25519 public key blob and line, and an openssh-key-v1 private key built from the seed.
//
// An fpeer identity IS an ed25519 key pair, so the SSH host key of a peer's server and the
// key a peer logs in with are the very same key as its peer ID: a client checks the host
// key byte for byte against the expected peer, and a server derives the peer ID from the
// key the client proved it holds. Formats: RFC 8709 (ssh-ed25519 blob and signature) and
// OpenSSH's PROTOCOL.key (openssh-key-v1), which both ssh2 and OpenSSH read.
import {createHash} from 'node:crypto'

export const ED25519 = 'ssh-ed25519'

const PEM_BEGIN = '-----BEGIN OPENSSH PRIVATE KEY-----'
const PEM_END = '-----END OPENSSH PRIVATE KEY-----'
const AUTH_MAGIC = Buffer.from('openssh-key-v1\0', 'latin1')

/** The SSH wire `string`: a uint32 length, then the bytes. */
function sshString(data: Uint8Array | string): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data)
  const len = Buffer.alloc(4)
  len.writeUInt32BE(bytes.length)
  return Buffer.concat([len, bytes])
}

function uint32(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}

function checkPublicKey(publicKey: Uint8Array): void {
  if (publicKey.length !== 32) throw new TypeError(`an ed25519 public key has 32 bytes, got ${publicKey.length}`)
}

/** The SSH public key blob: `string "ssh-ed25519"`, `string key` (51 bytes). */
export function publicKeyBlob(publicKey: Uint8Array): Buffer {
  checkPublicKey(publicKey)
  return Buffer.concat([sshString(ED25519), sshString(publicKey)])
}

/**
 * The 32-byte ed25519 key inside an SSH public key blob, or undefined when the blob is
 * anything else (another algorithm, a wrong length, trailing bytes).
 */
export function parsePublicKeyBlob(blob: Uint8Array): Uint8Array | undefined {
  const b = Buffer.from(blob)
  if (b.length !== 4 + ED25519.length + 4 + 32) return undefined
  if (b.readUInt32BE(0) !== ED25519.length || b.toString('latin1', 4, 4 + ED25519.length) !== ED25519) return undefined
  const at = 4 + ED25519.length
  if (b.readUInt32BE(at) !== 32) return undefined
  return Uint8Array.from(b.subarray(at + 4))
}

/** The one-line OpenSSH public key form, `ssh-ed25519 AAAAC3Nz… comment` (authorized_keys, .pub). */
export function publicKeyLine(publicKey: Uint8Array, comment?: string): string {
  const line = `${ED25519} ${publicKeyBlob(publicKey).toString('base64')}`
  return comment ? `${line} ${comment.replace(/[\r\n]/g, ' ')}` : line
}

/** A known_hosts line for a server at `host:port` whose host key is `publicKey`. */
export function knownHostsLine(host: string, port: number, publicKey: Uint8Array): string {
  const name = port === 22 ? host : `[${host}]:${port}`
  return `${name} ${publicKeyLine(publicKey)}`
}

/**
 * An unencrypted `openssh-key-v1` private key in PEM armour, as `ssh-keygen -t ed25519`
 * writes it. The two check integers are derived from the seed instead of being random, so
 * one identity always gives the same file.
 */
export function privateKeyPem(key: {seed: Uint8Array; publicKey: Uint8Array}, comment = 'fpeer'): string {
  checkPublicKey(key.publicKey)
  if (key.seed.length !== 32) throw new TypeError(`an ed25519 seed has 32 bytes, got ${key.seed.length}`)
  const check = createHash('sha256').update('fpeer openssh-key-v1 checkint').update(key.seed).digest().readUInt32BE(0)
  const secret = Buffer.concat([Buffer.from(key.seed), Buffer.from(key.publicKey)])
  let priv = Buffer.concat([uint32(check), uint32(check), sshString(ED25519), sshString(key.publicKey), sshString(secret), sshString(comment)])
  // Padding to the cipher block size (8 for "none") with the bytes 1, 2, 3, …
  const pad = (8 - (priv.length % 8)) % 8
  priv = Buffer.concat([priv, Buffer.from(Array.from({length: pad}, (_, i) => i + 1))])
  secret.fill(0)
  const body = Buffer.concat([
    AUTH_MAGIC,
    sshString('none'),
    sshString('none'),
    sshString(''),
    uint32(1),
    sshString(publicKeyBlob(key.publicKey)),
    sshString(priv),
  ])
  priv.fill(0)
  const b64 = body.toString('base64')
  const lines = b64.match(/.{1,70}/g) ?? []
  return `${PEM_BEGIN}\n${lines.join('\n')}\n${PEM_END}\n`
}

/** The SHA256 fingerprint OpenSSH prints for a key (`SHA256:…`), for logs. */
export function fingerprint(publicKey: Uint8Array): string {
  return 'SHA256:' + createHash('sha256').update(publicKeyBlob(publicKey)).digest('base64').replace(/=+$/, '')
}
