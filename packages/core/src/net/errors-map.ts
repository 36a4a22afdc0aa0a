// The one mapping of network failures to codes and the one decision whether a failure is worth retrying (rclone's fserrors).
import {type ErrorCode, FpeerError, fromSystemError, isFpeerError} from '../errors.js'

/**
 * What a transport adds to the mapping: its library's own error codes (undici's
 * `UND_ERR_*`, …) by the contract code they mean. Core knows only Node's system codes.
 */
export type ExtraCodes = Readonly<Record<string, ErrorCode>>

/** Where in an exchange a failure happened: it decides what an ambiguous failure means. */
export type NetPhase = 'connect' | 'start' | 'transfer'

export interface MapNetworkOptions {
  /** `transfer`: bytes were flowing, so any failure is a lost connection (retryable, resumable). `connect`: any failure is E_CONNECT. */
  phase?: NetPhase
  extra?: ExtraCodes
  /** The hint of an E_CONNECT that carries none. */
  connectHint?: string
}

/** The error's code, or its cause's (undici and fetch wrap the socket's error). */
export function errorCodeOf(err: unknown): string | undefined {
  const e = err as {code?: unknown; cause?: {code?: unknown}} | undefined
  if (typeof e?.code === 'string') return e.code
  return typeof e?.cause?.code === 'string' ? e.cause.code : undefined
}

/** Whether `err` is the rejection of an AbortSignal (ours or a library's wrapping of it). */
export function isAbortError(err: unknown): boolean {
  const e = err as {name?: unknown; code?: unknown} | undefined
  return e?.name === 'AbortError' || e?.code === 'ABORT_ERR'
}

/** Node's own codes that are not errno names but mean the network. */
const NODE_CODES: ExtraCodes = {ERR_STREAM_PREMATURE_CLOSE: 'E_CONNECTION_LOST', ERR_SOCKET_CONNECTION_TIMEOUT: 'E_TIMEOUT'}

/**
 * Maps what a transport's client met on the network to the contract's codes (transport.ts):
 * E_CONNECT, E_CONNECTION_LOST, E_TIMEOUT, E_NOT_FOUND, E_ACCESS, else E_TRANSFER. Never
 * E_IO or E_INTERNAL: a peer's failure is neither the local disk's nor a bug here. An abort
 * is E_TRANSFER (the caller knows it aborted, and does not retry).
 */
export function mapNetworkError(err: unknown, context: string, options: MapNetworkOptions = {}): FpeerError {
  if (isFpeerError(err)) return err
  const msg = `${context}: ${(err as Error | undefined)?.message ?? String(err)}`
  if (isAbortError(err)) return new FpeerError('E_TRANSFER', `${context}: aborted`, {cause: err})
  const code = errorCodeOf(err)
  const named = code === undefined ? undefined : (options.extra?.[code] ?? NODE_CODES[code])
  let mapped: FpeerError | undefined
  if (named !== undefined) mapped = new FpeerError(named, msg, {cause: err})
  else if (code !== undefined && /^E[A-Z_]+$/.test(code)) {
    // The errno may be on a wrapping error's cause (undici's "fetch failed"); the whole error stays the cause.
    const carrier = (err as {code?: unknown}).code === code ? err : (err as {cause?: unknown}).cause
    const sys = fromSystemError(carrier, context)
    // E_IO, E_DISK_FULL, E_LOCKED… name the local disk: from a socket they mean nothing more than a failed transfer.
    if (sys.kind !== 'io' && sys.kind !== 'internal')
      mapped = new FpeerError(sys.code, msg, {cause: err, ...(sys.hint ? {hint: sys.hint} : {}), ...(sys.details ? {details: sys.details} : {})})
  }
  switch (options.phase) {
    case 'connect':
      if (mapped?.code === 'E_CONNECT' || mapped?.code === 'E_TIMEOUT') return mapped
      return new FpeerError('E_CONNECT', msg, {cause: err, ...(options.connectHint ? {hint: options.connectHint} : {})})
    case 'transfer':
      // Once bytes flow, any failure means the stream ended short: retryable, and resumable.
      return mapped?.code === 'E_TIMEOUT' ? mapped : new FpeerError('E_CONNECTION_LOST', msg, {cause: err})
    default:
      return mapped ?? new FpeerError('E_TRANSFER', msg, {cause: err})
  }
}

/** The codes a new attempt may mend: the network's, never a verdict on the content or a refusal. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set(['E_CONNECTION_LOST', 'E_TIMEOUT', 'E_TRANSFER', 'E_CONNECT'])

/** Whether another attempt may succeed where this one failed (rclone's ShouldRetry). */
export function isRetryable(err: unknown): boolean {
  return isFpeerError(err) && RETRYABLE.has(err.code)
}

/**
 * Whether a transport said it cannot do what was asked (a peer's server without batching):
 * E_UNSUPPORTED, or the older E_TRANSFER with `details.unsupported` of plugins built before it.
 */
export function isUnsupported(err: unknown): boolean {
  if (!isFpeerError(err)) return false
  return err.code === 'E_UNSUPPORTED' || (err.code === 'E_TRANSFER' && (err.details as {unsupported?: unknown} | undefined)?.unsupported === true)
}
