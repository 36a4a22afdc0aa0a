// The MANUAL hand-over: show what to get and where from, then wait for the files or stop, resumable.
import path from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {FpeerError, type HandOverIO, type ManualFile, type ManualListing, type ManualRequest, type PlacedState} from '@fpeer/core/plugin'
import {fileUrl} from './url.js'

/** How often `--wait` looks at the files; core rehashes only files whose size, mtime or inode changed. */
export const POLL_MS = 500

/** The files still to place, each with its target and (when the host offers one) its URL. */
export function listing(req: ManualRequest, state: PlacedState): ManualListing {
  const todo = new Map<string, ManualFile['state']>([...state.missing.map((p) => [p, 'missing'] as const), ...state.wrong.map((p) => [p, 'wrong'] as const)])
  const files: ManualFile[] = []
  for (const f of req.files) {
    const st = todo.get(f.path)
    if (!st) continue
    const url = fileUrl(req.via, req.host, req.port, req.folder, f.path, req.grant)
    files.push({path: f.path, size: f.size ?? 0, sha256: f.sha256 ?? '', target: path.join(req.into, ...f.path.split('/')), ...(url ? {url} : {}), state: st})
  }
  return {folder: req.folder, host: req.host, hostId: req.hostId, into: req.into, ...(req.via ? {via: req.via} : {}), files}
}

function pending(req: ManualRequest, state: PlacedState): FpeerError {
  const n = state.missing.length + state.wrong.length
  return new FpeerError('E_PENDING', `${n} file(s) of ${req.folder} still to place in ${req.into}`, {
    details: {missing: state.missing, wrong: state.wrong},
    hint: `place them, then run \`fpeer request --resume ${req.folder}\``,
  })
}

/**
 * `Transport.handOver` for MANUAL. Nothing to do when every file is in place (a resumed
 * request). Otherwise shows the listing, then either stops with E_PENDING (`waitMs` 0) or
 * polls until nothing is missing or wrong. When the wait runs out with every file present
 * but some wrong, it returns so that core names them (E_HASH_MISMATCH); with files still
 * missing, or when `signal` aborts, it is E_PENDING.
 */
export async function handOver(req: ManualRequest, io: HandOverIO, pollMs = POLL_MS): Promise<void> {
  let state = await io.check()
  if (state.missing.length === 0 && (state.wrong.length === 0 || io.waitMs <= 0)) return
  io.show(listing(req, state))
  if (io.waitMs <= 0) throw pending(req, state)
  const deadline = Date.now() + io.waitMs
  for (;;) {
    const left = deadline - Date.now()
    if (left > 0 && !io.signal?.aborted) await sleep(Math.min(pollMs, left), undefined, io.signal ? {signal: io.signal} : {}).catch(() => {})
    state = await io.check()
    if (state.missing.length === 0 && state.wrong.length === 0) return
    if (io.signal?.aborted || Date.now() >= deadline) {
      if (state.missing.length === 0 && !io.signal?.aborted) return
      throw pending(req, state)
    }
  }
}
