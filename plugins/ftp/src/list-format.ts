// Pure formatters for what the FTP server sends about files: LIST/MLSx lines, MDTM times, PASV/EPSV replies.
import type {FileStat} from '@fpeer/core/plugin'

export type ListEntry = FileStat & {name: string}

/** The MLST facts this server knows, in the order it sends them. */
export const MLST_FACTS = ['type', 'size', 'modify'] as const
export type MlstFact = (typeof MLST_FACTS)[number]

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const SIX_MONTHS_MS = 182 * 24 * 3600 * 1000

const pad = (n: number, width = 2) => String(n).padStart(width, '0')

/**
 * A name can travel in a listing only if it has no CR or LF: listings are line based,
 * and a line break inside a name would forge another entry.
 */
export function isListableName(name: string): boolean {
  return !/[\r\n]/.test(name)
}

/** RFC 3659 time-val (`YYYYMMDDHHMMSS`, UTC), used by MDTM and the `modify` fact. */
export function formatTimeVal(mtimeMs: number): string {
  const d = new Date(Number.isFinite(mtimeMs) && mtimeMs >= 0 ? mtimeMs : 0)
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}`
}

/**
 * One `ls -l` style line, the format every client's LIST parser understands. Times are
 * UTC; like `ls`, entries older than six months (or in the future) show the year.
 */
export function formatListLine(e: ListEntry, nowMs: number): string {
  const d = new Date(Number.isFinite(e.mtimeMs) && e.mtimeMs >= 0 ? e.mtimeMs : 0)
  const recent = e.mtimeMs <= nowMs && nowMs - e.mtimeMs < SIX_MONTHS_MS
  const when = `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${recent ? `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}` : String(d.getUTCFullYear()).padStart(5, ' ')}`
  const mode = e.type === 'directory' ? 'drwxr-xr-x' : '-r--r--r--'
  return `${mode} 1 fpeer fpeer ${String(e.size).padStart(12, ' ')} ${when} ${e.name}`
}

/**
 * One MLSx entry: `fact=value;...; name`. The single space before the name is the only
 * separator, so names with spaces, semicolons or `=` are carried exactly.
 */
export function formatMlsxLine(e: FileStat, name: string, facts: ReadonlySet<MlstFact>): string {
  const parts: string[] = []
  if (facts.has('type')) parts.push(`type=${e.type === 'directory' ? 'dir' : 'file'}`)
  if (facts.has('size') && e.type === 'file') parts.push(`size=${e.size}`)
  if (facts.has('modify')) parts.push(`modify=${formatTimeVal(e.mtimeMs)}`)
  return `${parts.map((p) => `${p};`).join('')} ${name}`
}

/** The FEAT line for MLST: every known fact, `*` marking the ones currently selected. */
export function formatMlstFeature(facts: ReadonlySet<MlstFact>): string {
  return `MLST ${MLST_FACTS.map((f) => `${f}${facts.has(f) ? '*' : ''};`).join('')}`
}

/** Parses `OPTS MLST fact;fact;`: the known facts asked for, unknown ones ignored (RFC 3659 7.9). */
export function parseMlstOpts(arg: string): Set<MlstFact> {
  const wanted = new Set(
    arg
      .toLowerCase()
      .split(';')
      .map((s) => s.trim()),
  )
  return new Set(MLST_FACTS.filter((f) => wanted.has(f)))
}

/** 227 text for an IPv4 address and port, or undefined when the address is not IPv4 (use EPSV). */
export function formatPasv(host: string, port: number): string | undefined {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(host)) return undefined
  return `Entering Passive Mode (${host.split('.').join(',')},${port >> 8},${port & 255})`
}

/** 229 text: RFC 2428 gives only the port, the client reuses the control connection's address. */
export function formatEpsv(port: number): string {
  return `Entering Extended Passive Mode (|||${port}|)`
}
