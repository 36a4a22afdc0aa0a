// Maps what basic-ftp throws (FTP replies, socket errors, its own messages) to fpeer's stable error codes.
import {FpeerError, mapNetworkError} from '@fpeer/core/plugin'

/** Where in a get() the failure happened: it decides what an ambiguous error means. */
export type FtpPhase = 'connect' | 'start' | 'transfer'

/** basic-ftp's FTPError: an error reply, with the numeric reply code. */
function replyCode(err: unknown): number | undefined {
  const code = (err as {code?: unknown})?.code
  return typeof code === 'number' ? code : undefined
}

/** basic-ftp reports timeouts with these texts (and no errno code). */
const TIMEOUT_TEXT = /\bTimeout\b|timed out/i
/** basic-ftp's texts for a peer that went away. */
const LOST_TEXT = /closed connection unexpectedly|sent FIN packet|closed due to transmission error|User closed client/i

export function mapFtpError(err: unknown, context: string, phase: FtpPhase): FpeerError {
  if (err instanceof FpeerError) return err
  const message = `${context}: ${(err as Error)?.message ?? String(err)}`
  const reply = replyCode(err)
  if (reply !== undefined) {
    if (reply === 530 || reply === 532) return new FpeerError('E_ACCESS', message, {cause: err})
    if (phase === 'connect') return new FpeerError('E_CONNECT', message, {cause: err, hint: 'the peer answered but refused the FTP session'})
    // 550 is "file unavailable": vsftpd and others use it for missing and unreadable files alike.
    if (reply === 550 || reply === 553 || reply === 450) {
      return new FpeerError(/permission|denied|access/i.test(message) ? 'E_ACCESS' : 'E_NOT_FOUND', message, {cause: err})
    }
    // 451 is RFC 959's "action aborted: local error"; fpeer's server and vsftpd send it only
    // after 150, for a file whose read failed mid-way. Whether it is read before or after the
    // first data byte is a race between two sockets, so it is a lost transfer either way, like 426.
    if (reply === 421 || reply === 425 || reply === 426 || reply === 451) return new FpeerError('E_CONNECTION_LOST', message, {cause: err})
    return new FpeerError(phase === 'transfer' ? 'E_CONNECTION_LOST' : 'E_TRANSFER', message, {cause: err})
  }
  // basic-ftp reports timeouts and a peer that went away by text alone; the rest is core's one mapping.
  if (TIMEOUT_TEXT.test(message)) return new FpeerError('E_TIMEOUT', message, {cause: err})
  if (phase !== 'connect' && LOST_TEXT.test(message)) return new FpeerError('E_CONNECTION_LOST', message, {cause: err})
  return mapNetworkError(err, context, {phase, connectHint: 'is the peer running `fpeer serve` with FTP at that address?'})
}
