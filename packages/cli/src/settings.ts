// The environment, read once at the edge: every FPEER_* variable parsed and checked here into settings core receives.
import {CONTROL_BUFFER_BYTES, DEFAULT_FIRST_LINE_TIMEOUT_MS, DEFAULT_TIMEOUTS, FpeerError, type HandshakeTimeouts} from '@fpeer/core/startup'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'

/** What the environment says, typed; core never reads process.env itself. */
export interface Settings {
  /** $FPEER_HOME, when set. */
  home?: string
  /** $FPEER_LOG_LEVEL, when set (else decided by --progress/--json/--debug). */
  logLevel?: LogLevel
  debug: boolean
  timeouts: HandshakeTimeouts
  rescanIntervalMs: number
  syncIntervalMs: number
  idleReclaimMs: number
  /** serve: from accept to the first complete line on a control connection. */
  firstLineTimeoutMs: number
  /** serve: bytes of unparsed messages held across all control connections. */
  controlBufferBytes: number
}

/** One documented variable: `fpeer --help`'s ENVIRONMENT, docs/commands.md and fpeer.1 all print this list. */
export interface EnvVar {
  name: string
  default: string
  meaning: string
}

/** setTimeout's limit: a longer delay would fire at once. */
const MAX_MS = 2 ** 31 - 1

const MS_VARS: ReadonlyArray<{
  name: string
  key: keyof HandshakeTimeouts | 'rescan' | 'sync' | 'firstLine' | 'idle'
  dflt: number
  zero?: boolean
  meaning: string
}> = [
  {
    name: 'FPEER_REPLY_TIMEOUT_MS',
    key: 'reply',
    dflt: DEFAULT_TIMEOUTS.reply,
    meaning:
      'how long to wait for a reply that needs no transfer (a FilesToGet); a peer that accepts the connection and never answers fails with E_TIMEOUT after this',
  },
  {
    name: 'FPEER_STALL_TIMEOUT_MS',
    key: 'stall',
    dflt: DEFAULT_TIMEOUTS.stall,
    meaning:
      'how long a transfer, a push of changes to a peer or the wait for a peer that is transferring may go without progress (bytes that reached this peer while it was too busy to read them count: they are read before a stall is declared); past it the transfer fails with E_TIMEOUT and a push is retried with backoff (request --stall-timeout sets it per request)',
  },
  {
    name: 'FPEER_TRANSFER_TIMEOUT_MS',
    key: 'transfer',
    dflt: DEFAULT_TIMEOUTS.transfer,
    meaning: 'the absolute limit on a reply that needs a whole transfer, for peers that send no keep-alives (seed peers)',
  },
  {name: 'FPEER_IO_TIMEOUT_MS', key: 'io', dflt: DEFAULT_TIMEOUTS.io, meaning: 'connect and idle timeout of a connection'},
  {name: 'FPEER_MESSAGE_TIMEOUT_MS', key: 'message', dflt: DEFAULT_TIMEOUTS.message, meaning: 'a message must be complete this long after its first byte'},
  {
    name: 'FPEER_FIRST_LINE_TIMEOUT_MS',
    key: 'firstLine',
    dflt: DEFAULT_FIRST_LINE_TIMEOUT_MS,
    meaning: "serve: a control connection's first line must arrive this long after it opens (slow and silent senders are dropped)",
  },
  {
    name: 'FPEER_RESCAN_INTERVAL_MS',
    key: 'rescan',
    dflt: 60_000,
    meaning: 'serve: walk every shared folder whole this often (between these, a file-system event rescans only the paths it named)',
  },
  {
    name: 'FPEER_SYNC_INTERVAL_MS',
    key: 'sync',
    dflt: 300_000,
    zero: true,
    meaning: 'serve: exchange state with every peer this often; 0 turns this off (the exchange at start always runs)',
  },
  {
    name: 'FPEER_IDLE_RECLAIM_MS',
    key: 'idle',
    dflt: 5000,
    zero: true,
    meaning: 'serve: once idle this long after work that grew its memory, give that memory back (one full garbage collection, tens of ms); 0 turns this off',
  },
]

const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error']

/** Every variable fpeer reads, with its default and meaning. */
export const ENVIRONMENT: readonly EnvVar[] = [
  {
    name: 'FPEER_HOME',
    default: "oclif's config dir (~/.config/fpeer)",
    meaning: 'where this peer keeps its key pair, shared folders, peerlists and pending requests; give each peer on one machine its own',
  },
  {name: 'FPEER_LOG_LEVEL', default: 'info (warn under --json or --progress=none)', meaning: `lowest level logged on stderr: ${LOG_LEVELS.join(', ')}`},
  {name: 'DEBUG', default: 'unset', meaning: 'any value: as --debug (debug logs, stack traces)'},
  ...MS_VARS.map((v) => ({name: v.name, default: `${v.dflt} (${formatMs(v.dflt)})`, meaning: v.meaning})),
  {
    name: 'FPEER_CONTROL_BUFFER_BYTES',
    default: `${CONTROL_BUFFER_BYTES} (32 MiB)`,
    meaning:
      'serve: bytes of messages received and not yet handled, across all control connections; past it a sender gets E_BUSY (a FilesUpdated answering a FilesToGet that serve sent has a budget of its own, big enough for 1,000,000 files: protocol.md §7)',
  },
  {name: 'FPEER_NPM_REGISTRY', default: "npm's own", meaning: 'registry `fpeer plugins install` installs from'},
  {name: 'FPEER_ALLOW_ANY_PLUGIN', default: 'unset', meaning: '1: let `fpeer plugins install` install a package that is not an fpeer transfer plugin'},
  {name: 'FPEER_CONFIG_DIR, FPEER_DATA_DIR, FPEER_CACHE_DIR', default: "oclif's", meaning: "oclif's directories (installed plugins live in FPEER_DATA_DIR)"},
]

function formatMs(ms: number): string {
  if (ms === 0) return 'off'
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`
  if (ms % 60_000 === 0) return `${ms / 60_000} min`
  return `${ms / 1000} s`
}

/** A byte count from the environment: a whole number of at least 1 MiB, or the default when unset. */
function bytesVar(env: NodeJS.ProcessEnv, name: string, dflt: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return dflt
  const n = /^\d{1,12}$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN
  if (!Number.isSafeInteger(n) || n < 1 << 20) {
    throw new FpeerError('E_USAGE', `${name}=${JSON.stringify(raw)} is not a valid number of bytes`, {
      details: {env: name, value: raw},
      hint: `give a whole number of bytes, at least ${1 << 20}; unset it for the default ${dflt}`,
    })
  }
  return n
}

/** Parses the environment; an invalid value is E_USAGE naming the variable (never silently the default). */
export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const ms: Record<string, number> = {}
  for (const v of MS_VARS) {
    const raw = env[v.name]
    if (raw === undefined || raw === '') {
      ms[v.key] = v.dflt
      continue
    }
    const n = /^\d{1,10}$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN
    if (!Number.isInteger(n) || n > MAX_MS || (n === 0 && !v.zero)) {
      throw new FpeerError('E_USAGE', `${v.name}=${JSON.stringify(raw)} is not a valid number of milliseconds`, {
        details: {env: v.name, value: raw},
        hint: `give a whole number of milliseconds${v.zero ? ' (0: off)' : ', at least 1'}, at most ${MAX_MS}; unset it for the default ${v.dflt}`,
      })
    }
    ms[v.key] = n
  }
  const level = env.FPEER_LOG_LEVEL
  if (level !== undefined && level !== '' && !LOG_LEVELS.includes(level as LogLevel)) {
    throw new FpeerError('E_USAGE', `FPEER_LOG_LEVEL=${JSON.stringify(level)} is not a log level`, {
      details: {env: 'FPEER_LOG_LEVEL', value: level},
      hint: `one of ${LOG_LEVELS.join(', ')}`,
    })
  }
  return {
    ...(env.FPEER_HOME ? {home: env.FPEER_HOME} : {}),
    ...(level ? {logLevel: level as LogLevel} : {}),
    debug: Boolean(env.DEBUG),
    timeouts: {reply: ms.reply!, transfer: ms.transfer!, stall: ms.stall!, io: ms.io!, message: ms.message!},
    rescanIntervalMs: ms.rescan!,
    syncIntervalMs: ms.sync!,
    idleReclaimMs: ms.idle!,
    firstLineTimeoutMs: ms.firstLine!,
    controlBufferBytes: bytesVar(env, 'FPEER_CONTROL_BUFFER_BYTES', CONTROL_BUFFER_BYTES),
  }
}
