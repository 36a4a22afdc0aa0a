// The exit codes fpeer documents, from core's taxonomy: one table for `fpeer --help`, docs/commands.md and docs/scripting.md.
import {EXIT_CODES, type ErrorKind} from '@fpeer/core'

// Keyed by string, not ErrorKind, so a kind added to core later still compiles here and shows its name until described.
const MEANING: Record<string, string> = {
  usage: 'bad usage: a missing or malformed argument, an unknown command or folder (fix the call)',
  refused: 'the peer refused: not allowed, unknown folder, no common protocol, access denied',
  network: 'network: cannot connect, connection lost, timed out, transfer failed',
  verify: 'verification failed: a hash, size, signature or peer ID did not check out, or an unsafe path',
  plugin: 'plugin missing: no transfer plugin for the protocol (install one with `fpeer plugins install`)',
  protocol: 'protocol: a peer sent a malformed or unexpected message',
  io: 'local disk: a local path is missing permissions (E_LOCAL_ACCESS), disk full, locked, corrupt state',
  internal: 'a bug in fpeer (run again with --debug and report it)',
  pending: 'pending: nothing failed, the user has to act (place MANUAL files), then resume',
  interrupted: 'interrupted (Ctrl-C): what was fetched is kept; `fpeer request --resume FOLDER` goes on',
}

export interface ExitCodeRow {
  code: number
  kind: string
  meaning: string
}

/** 0 first, then every kind in core's EXIT_CODES by code; a kind added later shows up with its name. */
export function exitCodeTable(): ExitCodeRow[] {
  const rows = (Object.entries(EXIT_CODES) as Array<[ErrorKind, number]>).map(([kind, code]) => ({code, kind, meaning: MEANING[kind] ?? kind}))
  rows.sort((a, b) => a.code - b.code)
  return [{code: 0, kind: 'ok', meaning: 'success'}, ...rows]
}
