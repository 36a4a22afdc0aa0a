// The fpeer home: where identity, configuration and peerfiles live ($FPEER_HOME, else the oclif config dir).
import {chmod, mkdir, stat} from 'node:fs/promises'
import path from 'node:path'
import {FpeerError, fromLocalError} from '../errors.js'
import {Identity, generateKeyPair, keyPairFromSecretKey} from '../identity.js'
import {LockedDb} from './locked-db.js'

interface IdentityDoc {
  version: 1
  algorithm?: 'ed25519'
  /** base64 tweetnacl secret key (seed + public key); mode 0600, never logged. */
  secretKey?: string
  createdAt?: string
}

/** The home's path: `dir` (the CLI passes $FPEER_HOME, else oclif's config dir: core reads no environment). */
export function resolveHome(dir?: string): string {
  if (!dir) throw new FpeerError('E_USAGE', 'no fpeer home: set FPEER_HOME')
  return path.resolve(dir)
}

/**
 * Creates the home with mode 0700 so that nothing in it is readable by others. Only what
 * writes there calls it: a read-only command (`status`, `peers`) leaves a missing home missing.
 */
export async function ensureHome(home: string): Promise<void> {
  try {
    await mkdir(home, {recursive: true, mode: 0o700})
    const st = await stat(home)
    if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), {code: 'ENOTDIR'})
    if ((st.mode & 0o077) !== 0) await chmod(home, 0o700)
  } catch (err) {
    throw withHomeHint(fromLocalError(err, home, 'create the fpeer home'))
  }
}

/** The home's errors point at FPEER_HOME, the one knob the user has. */
export function withHomeHint(e: FpeerError): FpeerError {
  return new FpeerError(e.code, e.message, {cause: e.cause, details: {...e.details, env: 'FPEER_HOME'}, hint: `${e.hint ? e.hint + '; or ' : ''}point FPEER_HOME at a directory this user may write`})
}

/** This peer's identity if it has one, without creating it: for commands that only read. */
export async function readIdentity(home: string): Promise<Identity | undefined> {
  const doc = await new LockedDb<IdentityDoc>(path.join(home, 'identity.json'), () => ({version: 1}), 0o600).read()
  return doc.secretKey ? new Identity(keyPairFromSecretKey(Buffer.from(doc.secretKey, 'base64'))) : undefined
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
