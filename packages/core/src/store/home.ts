// The fpeer home: where identity, configuration and peerfiles live ($FPEER_HOME, else the oclif config dir), and the Home object that owns them.
import {chmod, mkdir, readdir, rename, stat} from 'node:fs/promises'
import path from 'node:path'
import {FpeerError, fromLocalError} from '../errors.js'
import {Identity, generateKeyPair, keyPairFromSecretKey} from '../identity.js'
import {ConfigStore} from './config.js'
import {LockedDb} from './locked-db.js'
import {PendingStore} from './pending.js'
import {Peerfile, folderStateDir} from './peerfile.js'

interface IdentityDoc {
  version: 1
  algorithm?: 'ed25519'
  /** base64 tweetnacl secret key (seed + public key); mode 0600, never logged. */
  secretKey?: string
  createdAt?: string
}

/**
 * One fpeer home as an object, made once per process per home and handed down (commands get
 * it from the CLI's base command, the node from its options): the one owner of the home's
 * stores (config, identity, pending requests, each folder's peerfile: peerlist, journal and
 * state lock) and of the in-process state of its folders (the queues that order changes to
 * one folder's documents). Never module-global: two homes in one process (`fpeer demo`,
 * tests) share nothing. Two instances of the SAME home in one process stay correct, since the
 * lock files order them as they order processes, only slower (they poll a lock instead of
 * queueing) and with a journal cache each.
 */
export class Home {
  readonly dir: string
  /** Which folders are shared, and who may join each (`config.json`). */
  readonly config: ConfigStore
  /** Requests waiting on the user (`pending.json`). */
  readonly pending: PendingStore
  readonly #peerfiles = new Map<string, Peerfile>()
  readonly #queues = new Map<string, Promise<unknown>>()
  readonly #caches = new Map<string, Map<string, unknown>>()

  constructor(dir: string) {
    this.dir = resolveHome(dir)
    this.config = new ConfigStore(this.dir)
    this.pending = new PendingStore(this.dir)
  }

  /** Creates the home (mode 0700) if missing: only what writes there calls it. */
  ensure(): Promise<void> {
    return ensureHome(this.dir)
  }

  /** This peer's identity, created on first use (`loadIdentity`). */
  identity(options: {replace?: boolean} = {}): Promise<Identity> {
    return loadIdentity(this.dir, options)
  }

  /** This peer's identity if it has one, creating nothing (`readIdentity`). */
  readIdentity(): Promise<Identity | undefined> {
    return readIdentity(this.dir)
  }

  /**
   * A folder's peerfile (its peerlist, journal and state lock), one per folder in this home
   * so that every user of it in this process shares one journal cache. A folder need not be
   * shared (yet) to have one.
   */
  peerfile(folder: string): Peerfile {
    let pf = this.#peerfiles.get(folder)
    if (!pf) {
      pf = new Peerfile(this.dir, folder)
      this.#peerfiles.set(folder, pf)
    }
    return pf
  }

  /** A folder's state directory under the home. */
  folderStateDir(folder: string): string {
    return folderStateDir(this.dir, folder)
  }

  /** Drops what this object holds for a folder no longer shared (`fpeer unshare`), its journal cache with it. */
  forget(folder: string): void {
    this.#peerfiles.delete(folder)
  }

  /**
   * The home's in-process cache named `name` (e.g. owed-forward journals as last parsed, by
   * file): shared by every store object of this home, never by two homes.
   */
  cache<T>(name: string): Map<string, T> {
    let c = this.#caches.get(name)
    if (!c) {
      c = new Map<string, unknown>()
      this.#caches.set(name, c)
    }
    return c as Map<string, T>
  }

  /**
   * Runs `fn` once every earlier `serial` call with the same `key` has settled (resolved or
   * failed). Within one process this orders the writers of one document (a folder's
   * structure, its owed forwards) without each polling the document's lock file.
   */
  serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const next = (this.#queues.get(key) ?? Promise.resolve()).then(fn, fn)
    const tail = next.catch(() => {})
    this.#queues.set(key, tail)
    // An idle key leaves no entry behind: a home serves folders by the thousand.
    void tail.then(() => {
      if (this.#queues.get(key) === tail) this.#queues.delete(key)
    })
    return next
  }
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
  return new FpeerError(e.code, e.message, {
    cause: e.cause,
    details: {...e.details, env: 'FPEER_HOME'},
    hint: `${e.hint ? e.hint + '; or ' : ''}point FPEER_HOME at a directory this user may write`,
  })
}

/** This peer's identity if it has one, without creating it: for commands that only read. */
export async function readIdentity(home: string): Promise<Identity | undefined> {
  const file = path.join(home, 'identity.json')
  const doc = await new LockedDb<IdentityDoc>(file, () => ({version: 1}), 0o600, identityRecovery).read()
  if (doc.secretKey) return identityOf(doc.secretKey, file)
  // No identity in a home that shares folders is damage to report, not a fresh home.
  if (await homeInUse(home))
    throw new FpeerError('E_STATE_CORRUPT', `${file} is missing or holds no key, but this home shares folders`, {
      hint: identityRecovery(file),
      details: {path: file},
    })
  return undefined
}

/** The identity's recovery: never "delete it", which would make this peer a stranger to all its peers. */
const identityRecovery = (file: string) =>
  `restore ${path.basename(file)} from a backup of this fpeer home (FPEER_HOME); only to start over as a new peer on purpose (every peer's trust in this one is lost), run \`fpeer id --new --yes\``

/**
 * Loads this peer's identity, creating the key pair on first use. A home that already
 * shares folders but has no identity lost it: that is an error (E_STATE_CORRUPT), never a
 * silent new identity, unless `replace` asks for a new one on purpose.
 */
export async function loadIdentity(home: string, options: {replace?: boolean} = {}): Promise<Identity> {
  await ensureHome(home)
  const file = path.join(home, 'identity.json')
  const db = new LockedDb<IdentityDoc>(file, () => ({version: 1}), 0o600, identityRecovery)
  // The old (maybe damaged) identity is kept aside, never deleted: a backup may still need it.
  if (options.replace) await rename(file, `${file}.replaced-${Date.now()}`).catch(() => {})
  const current = await db.read()
  if (current.secretKey && !options.replace) return identityOf(current.secretKey, db.file)
  if (!options.replace && (await homeInUse(home))) {
    throw new FpeerError('E_STATE_CORRUPT', `${file} is missing or holds no key, but this home shares folders`, {
      hint: identityRecovery(file),
      details: {path: file},
    })
  }
  const secret = await db.update((doc) => {
    if (!doc.secretKey || options.replace) {
      const kp = generateKeyPair()
      doc.algorithm = 'ed25519'
      doc.secretKey = Buffer.from(kp.secretKey).toString('base64')
      doc.createdAt = new Date().toISOString()
    }
    return doc.secretKey
  })
  return identityOf(secret, db.file)
}

function identityOf(secretKey: unknown, file: string): Identity {
  const bytes = typeof secretKey === 'string' ? Buffer.from(secretKey, 'base64') : Buffer.alloc(0)
  if (bytes.length !== 64) throw new FpeerError('E_STATE_CORRUPT', `${file} holds no valid secret key`, {hint: identityRecovery(file), details: {path: file}})
  return new Identity(keyPairFromSecretKey(bytes))
}

/** Whether the home holds folders (configured, or their state): then it had an identity. */
async function homeInUse(home: string): Promise<boolean> {
  const names = await readdir(path.join(home, 'folders')).catch(() => [])
  if (names.length > 0) return true
  const config = await new LockedDb<{folders?: Record<string, unknown>}>(path.join(home, 'config.json'), () => ({})).read()
  return Object.keys(config.folders ?? {}).length > 0
}
