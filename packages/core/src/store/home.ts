// The fpeer home: where identity, configuration and peerfiles live ($FPEER_HOME, else the oclif config dir).
import {chmod, mkdir, stat} from 'node:fs/promises'
import path from 'node:path'
import {FpeerError} from '../errors.js'
import {Identity, generateKeyPair, keyPairFromSecretKey} from '../identity.js'
import {LockedDb} from './locked-db.js'

interface IdentityDoc {
  version: 1
  algorithm?: 'ed25519'
  /** base64 tweetnacl secret key (seed + public key); mode 0600, never logged. */
  secretKey?: string
  createdAt?: string
}

export function resolveHome(configDir?: string): string {
  const dir = process.env.FPEER_HOME || configDir
  if (!dir) throw new FpeerError('E_USAGE', 'no fpeer home: set FPEER_HOME')
  return path.resolve(dir)
}

/** Creates the home with mode 0700 so that nothing in it is readable by others. */
export async function ensureHome(home: string): Promise<void> {
  await mkdir(home, {recursive: true, mode: 0o700})
  const st = await stat(home)
  if ((st.mode & 0o077) !== 0) await chmod(home, 0o700)
}

/** Loads this peer's identity, creating the key pair on first use. */
export async function loadIdentity(home: string): Promise<Identity> {
  await ensureHome(home)
  const db = new LockedDb<IdentityDoc>(path.join(home, 'identity.json'), () => ({version: 1}), 0o600)
  const current = await db.read()
  if (current.secretKey) return new Identity(keyPairFromSecretKey(Buffer.from(current.secretKey, 'base64')))
  const secret = await db.update((doc) => {
    if (!doc.secretKey) {
      const kp = generateKeyPair()
      doc.algorithm = 'ed25519'
      doc.secretKey = Buffer.from(kp.secretKey).toString('base64')
      doc.createdAt = new Date().toISOString()
    }
    return doc.secretKey
  })
  return new Identity(keyPairFromSecretKey(Buffer.from(secret, 'base64')))
}
