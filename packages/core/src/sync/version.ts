// Deciding between file versions: how two relate, which wins, and what becomes a conflict copy. Pure; every peer decides alike.
import type {FileVersion} from '../wire/version.js'

// A version's shape, wire form and signature live below (wire/version.ts), where store/ and
// session/ may use them; re-exported so that sync/ and the node have one place to import from.
export {
  type FileVersion,
  conflictPath,
  entryToVersion,
  formatVector,
  isConflictPath,
  parseVector,
  signVersion,
  verifyVersion,
  versionBytes,
  versionToEntry,
} from '../wire/version.js'

/** How two version vectors relate. */
export function compareVectors(a: Record<string, number>, b: Record<string, number>): 'equal' | 'greater' | 'less' | 'concurrent' {
  let greater = false
  let less = false
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[k] ?? 0
    const y = b[k] ?? 0
    if (x > y) greater = true
    if (x < y) less = true
  }
  if (greater && less) return 'concurrent'
  if (greater) return 'greater'
  if (less) return 'less'
  return 'equal'
}

/** The total order every peer uses to pick a winner: lamport, then origin, then content. */
export function newer(a: FileVersion, b: FileVersion): boolean {
  if (a.lamport !== b.lamport) return a.lamport > b.lamport
  if (a.origin !== b.origin) return a.origin > b.origin
  return a.sha256 > b.sha256
}

export type Decision =
  /** We have this version, or a newer one that knew of it: nothing to do, nothing to pass on. */
  | {action: 'skip'}
  /** A successor of what we have: take it. */
  | {action: 'take'}
  /** Concurrent and newer: take it, and keep our version as a conflict copy. */
  | {action: 'take-conflict'}
  /** Concurrent and older: keep ours, and keep the incoming content as a conflict copy. */
  | {action: 'keep-conflict'}

/**
 * Decides what to do with an incoming version given ours (undefined: we have nothing for
 * this path, or only an unversioned original). Pure; every peer decides alike, so every
 * peer ends with the same winner and the same conflict copies.
 */
export function decide(local: FileVersion | undefined, incoming: FileVersion, localSha?: string): Decision {
  if (!local) {
    // No version here: the incoming one supersedes the original content, unless it is that content already.
    if (!incoming.deleted && localSha === incoming.sha256) return {action: 'take'}
    return {action: 'take'}
  }
  if (local.origin === incoming.origin && local.lamport === incoming.lamport) return {action: 'skip'}
  const rel = compareVectors(incoming.vv, local.vv)
  if (rel === 'equal' || rel === 'less') return {action: 'skip'}
  if (rel === 'greater') return {action: 'take'}
  // Concurrent. Same outcome (same content, or both deleted): no conflict, the newer statement wins quietly.
  const same = local.deleted === incoming.deleted && local.sha256 === incoming.sha256
  if (newer(incoming, local)) return same ? {action: 'take'} : {action: 'take-conflict'}
  return same ? {action: 'skip'} : {action: 'keep-conflict'}
}

/** Every signed field the same (the signature too): `b` is the version `a` was checked as, nothing in it to check again. */
export function identical(a: FileVersion, b: FileVersion): boolean {
  return (
    a.sig === b.sig &&
    a.path === b.path &&
    a.origin === b.origin &&
    a.lamport === b.lamport &&
    a.deleted === b.deleted &&
    a.sha256 === b.sha256 &&
    a.size === b.size &&
    a.mtimeMs === b.mtimeMs &&
    compareVectors(a.vv, b.vv) === 'equal'
  )
}
