// The error taxonomy: every failure fpeer reports carries a stable code; tests assert codes, not text.

/**
 * What kind of failure this is, which decides the process exit code:
 * usage (the user must fix the call), refused (a peer said no), network,
 * verify (content or signature did not check out), plugin (no transport for a protocol),
 * protocol (a peer spoke the wire protocol wrongly), io (local disk), internal (a bug),
 * pending (nothing failed: the user has to act, then resume; sysexits' EX_TEMPFAIL),
 * interrupted (the user stopped it, Ctrl-C: 128 + SIGINT, as shells report it).
 */
export type ErrorKind = 'usage' | 'refused' | 'network' | 'verify' | 'plugin' | 'protocol' | 'io' | 'internal' | 'pending' | 'interrupted'

/** Exit codes, documented in docs/scripting.md. */
export const EXIT_CODES: Readonly<Record<ErrorKind, number>> = {
  usage: 2,
  refused: 3,
  network: 4,
  verify: 5,
  plugin: 6,
  protocol: 7,
  io: 8,
  internal: 70,
  pending: 75,
  interrupted: 130,
}

/** Stable error codes with their kind. Add new ones at the end of their group; never rename one. */
export const ERROR_CODES = {
  // usage
  E_USAGE: 'usage',
  E_NO_SUCH_FOLDER: 'usage',
  E_NOT_A_DIRECTORY: 'usage',
  E_BAD_PEER_ID: 'usage',
  E_BAD_ADDRESS: 'usage',
  E_STATE: 'usage',
  E_UNKNOWN_PLUGIN: 'usage',
  // wire protocol
  E_MSG_EMPTY: 'protocol',
  E_MSG_UNKNOWN_TYPE: 'protocol',
  E_MSG_TOO_LONG: 'protocol',
  E_MSG_LINE_TOO_LONG: 'protocol',
  E_MSG_TOO_MANY_FILES: 'protocol',
  E_MSG_TRUNCATED: 'protocol',
  E_MSG_BAD_FIELD: 'protocol',
  E_MSG_BAD_ENCODING: 'protocol',
  E_MSG_UNEXPECTED: 'protocol',
  E_MSG_TIMEOUT: 'protocol',
  E_MSG_FOLDER_MISMATCH: 'protocol',
  // refusals
  E_REFUSED: 'refused',
  E_NOT_ALLOWED: 'refused',
  E_UNKNOWN_FOLDER: 'refused',
  E_NO_COMMON_PROTOCOL: 'refused',
  E_PEER_ERROR: 'refused',
  E_BUSY: 'refused',
  E_DELEGATED: 'refused',
  // verification
  E_PATH_UNSAFE: 'verify',
  E_HASH_MISMATCH: 'verify',
  E_SIZE_MISMATCH: 'verify',
  E_BAD_SIGNATURE: 'verify',
  E_UNSIGNED: 'verify',
  E_PEER_ID_MISMATCH: 'verify',
  E_NONCE_MISMATCH: 'verify',
  E_HOST_KEY_MISMATCH: 'verify',
  // a signed request meant for another peer, outside its time window, or seen before
  E_WRONG_DESTINATION: 'verify',
  E_STALE_MESSAGE: 'verify',
  E_REPLAY: 'verify',
  // network
  E_CONNECT: 'network',
  E_CONNECTION_LOST: 'network',
  E_TIMEOUT: 'network',
  E_TRANSFER: 'network',
  E_NOT_FOUND: 'network',
  E_ACCESS: 'refused',
  // plugins
  E_NO_TRANSPORT: 'plugin',
  E_PLUGIN: 'plugin',
  E_PLUGIN_NOT_FOUND: 'plugin',
  E_UNSUPPORTED: 'plugin',
  // local disk
  E_IO: 'io',
  E_DISK_FULL: 'io',
  E_LOCKED: 'io',
  E_STATE_CORRUPT: 'io',
  // a local path fpeer may not read or write (permissions, read-only file system): not a peer's refusal
  E_LOCAL_ACCESS: 'io',
  // bugs
  E_INTERNAL: 'internal',
  // waiting on the user (MANUAL: files to place, then `fpeer request --resume`)
  E_PENDING: 'pending',
  // stopped by the user (SIGINT); what was done is kept and resumable
  E_INTERRUPTED: 'interrupted',
} as const satisfies Record<string, ErrorKind>

export type ErrorCode = keyof typeof ERROR_CODES

/** Marks FpeerErrors across copies of @fpeer/core (an installed plugin shares the CLI's; one linked from elsewhere may not). */
const BRAND = Symbol.for('fpeer.FpeerError')

/** An error with a stable code, a kind and optionally a hint saying what to do next. */
export class FpeerError extends Error {
  /**
   * `instanceof` checks the brand, not the prototype: `fpeer plugins:install` links the CLI's
   * own core for the plugin, but a plugin linked from another checkout loads its own copy of
   * this module, and its errors must keep their codes.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true
  }

  readonly code: ErrorCode
  readonly kind: ErrorKind
  readonly hint?: string
  readonly details?: Record<string, unknown>

  constructor(code: ErrorCode, message: string, options: {hint?: string; cause?: unknown; details?: Record<string, unknown>} = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = 'FpeerError'
    Object.defineProperty(this, BRAND, {value: true})
    this.code = code
    this.kind = ERROR_CODES[code]
    if (options.hint !== undefined) this.hint = options.hint
    if (options.details !== undefined) this.details = options.details
  }

  get exitCode(): number {
    return EXIT_CODES[this.kind]
  }

  toJSON(): Record<string, unknown> {
    return {code: this.code, kind: this.kind, message: this.message, ...(this.hint ? {hint: this.hint} : {}), ...(this.details ? {details: this.details} : {})}
  }
}

export function isFpeerError(err: unknown, code?: ErrorCode): err is FpeerError {
  return err instanceof FpeerError && (code === undefined || err.code === code)
}

/** A full disk, whatever call met it. */
const DISK_FULL = new Set(['ENOSPC', 'EDQUOT'])
/** Refusals that are the local disk's only when a file-system call met them (a transport may raise them for the peer's side). */
const LOCAL_REFUSALS = new Set(['EROFS', 'EIO', 'EFBIG', 'EACCES', 'EPERM'])
const FS_WRITE_CALLS = new Set([
  'open',
  'write',
  'writev',
  'rename',
  'mkdir',
  'link',
  'unlink',
  'futime',
  'fsync',
  'close',
  'ftruncate',
  'truncate',
  'copyfile',
  'utime',
  'rmdir',
  'chmod',
  'fchmod',
  'symlink',
])

/** Whether `err` is a local disk's refusal that no retry mends (full, read-only, failing, not ours), or its E_DISK_FULL/E_IO. */
export function isLocalWriteError(err: unknown): boolean {
  if (err instanceof FpeerError) return err.code === 'E_DISK_FULL' || err.code === 'E_IO'
  const e = err as NodeJS.ErrnoException | undefined
  return DISK_FULL.has(e?.code ?? '') || (LOCAL_REFUSALS.has(e?.code ?? '') && FS_WRITE_CALLS.has(e?.syscall ?? ''))
}

/**
 * Maps a Node system error (ENOSPC, ECONNREFUSED…) to a FpeerError, keeping the cause.
 * With `path` the failure is a local file operation on it: EACCES/EPERM/EROFS there are the
 * local disk's (E_IO, exit 8), not a peer's refusal, and the path goes into `details.path`.
 */
export function fromSystemError(err: unknown, context: string, local?: {path: string}): FpeerError {
  if (err instanceof FpeerError) return err
  const e = err as NodeJS.ErrnoException
  const sys = e?.code
  const msg = `${context}: ${e?.message ?? String(err)}`
  const details = local ? {details: {path: local.path, errno: sys ?? ''}} : {}
  switch (sys) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new FpeerError('E_DISK_FULL', local ? `${msg} (${local.path})` : msg, {
        cause: err,
        ...details,
        hint: 'free some disk space and run the command again; nothing partial was kept',
      })
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
      return new FpeerError('E_CONNECT', msg, {cause: err, hint: 'is the peer running `fpeer serve` at that address?'})
    case 'ECONNRESET':
    case 'EPIPE':
      return new FpeerError('E_CONNECTION_LOST', msg, {cause: err})
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
    case 'EAI_NONAME':
      // A name that does not resolve is a network failure, not the local disk's.
      return new FpeerError('E_CONNECT', msg, {
        cause: err,
        details: {hostname: (e as {hostname?: string}).hostname},
        hint: 'cannot resolve that host name: check its spelling, or give an IP address',
      })
    case 'ETIMEDOUT':
      return new FpeerError('E_TIMEOUT', msg, {cause: err})
    case 'ENOENT':
      return new FpeerError('E_NOT_FOUND', msg, {cause: err})
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      // On a local path it is this user's or this disk's problem, never a peer's refusal: the same code as fromLocalError.
      if (local)
        return new FpeerError('E_LOCAL_ACCESS', `${msg} (${local.path})`, {
          cause: err,
          ...details,
          hint: 'check the permissions of that path and that its file system is writable',
        })
      if (sys === 'EROFS') break
      return new FpeerError('E_ACCESS', msg, {cause: err})
    case 'ELOCKED':
      return new FpeerError('E_LOCKED', msg, {cause: err})
  }
  return new FpeerError(sys && /^E[A-Z]+$/.test(sys) ? 'E_IO' : 'E_INTERNAL', local ? `${msg} (${local.path})` : msg, {cause: err, ...details})
}

/**
 * Maps a failure on a LOCAL path (a directory to share or fill, the home) to a code that
 * says so, with the path in `details.path`: never E_ACCESS (a peer's refusal) nor E_INTERNAL.
 */
export function fromLocalError(err: unknown, file: string, doing: string): FpeerError {
  if (err instanceof FpeerError) return err
  const e = err as NodeJS.ErrnoException
  const msg = `cannot ${doing} ${file}: ${e?.code ?? ''}${e?.code ? ' ' : ''}${(e?.message ?? String(err)).replace(/^E[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')}`
  const details = {path: file}
  switch (e?.code) {
    case 'ENOENT':
      return new FpeerError('E_NOT_A_DIRECTORY', msg, {cause: err, details, hint: 'check the path: it, or a directory above it, does not exist'})
    case 'ENOTDIR':
    case 'EEXIST':
      return new FpeerError('E_NOT_A_DIRECTORY', msg, {cause: err, details, hint: 'that path (or a part of it) is a file, not a directory: name a directory'})
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new FpeerError('E_LOCAL_ACCESS', msg, {
        cause: err,
        details,
        hint: 'this user may not write or read there: fix its permissions, or pick another path',
      })
    case 'ENOSPC':
    case 'EDQUOT':
      return new FpeerError('E_DISK_FULL', msg, {cause: err, details, hint: 'free some disk space and run the command again'})
    default:
      return new FpeerError('E_IO', msg, {cause: err, details})
  }
}
