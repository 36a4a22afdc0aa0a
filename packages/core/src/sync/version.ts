// A file version: the statement, signed by the peer where a change began, that says what a path now holds.
import {FpeerError} from '../errors.js'
import {type Identity, PeerId, verifySignature} from '../identity.js'
import type {FileEntry} from '../wire/types.js'

/**
 * One change to one path. `lamport` orders all versions of a folder (ties broken by
 * origin), `vv` (a version vector: origin compact ID → that origin's lamport of its last
 * change to this path) tells a successor from a concurrent edit. `sig` is the origin's
 * signature over the statement, so peers that relay it cannot alter it.
 */
export interface FileVersion {
  path: string
  deleted: boolean
  /** Content hash and size; for a deletion, empty and 0. */
  sha256: string
  size: number
  mtimeMs: number
  lamport: number
  origin: string
  vv: Record<string, number>
  sig: string
}

const CONTEXT = 'fpeer-version-v1\n'

export function formatVector(vv: Record<string, number>): string {
  return Object.keys(vv)
    .sort()
    .map((k) => `${k}:${vv[k]}`)
    .join(',')
}

export function parseVector(text: string): Record<string, number> {
  const vv: Record<string, number> = {}
  if (text === '') return vv
  for (const part of text.split(',')) {
    const m = /^([A-Z2-7]{52}):(\d{1,15})$/.exec(part)
    if (!m) throw new FpeerError('E_MSG_BAD_FIELD', `bad version vector entry ${JSON.stringify(part.slice(0, 80))}`)
    vv[m[1]!] = Number(m[2])
  }
  return vv
}

/** The bytes the origin signs: the folder and every field of the version but `sig`. */
export function versionBytes(folder: string, v: Omit<FileVersion, 'sig'>): Buffer {
  return Buffer.from(
    [CONTEXT + folder, v.path, v.deleted ? 'deleted' : 'file', v.sha256, String(v.size), String(Math.trunc(v.mtimeMs)), String(v.lamport), v.origin, formatVector(v.vv)].join('\n'),
    'utf8',
  )
}

export function signVersion(folder: string, v: Omit<FileVersion, 'sig' | 'origin'>, identity: Identity): FileVersion {
  const unsigned = {...v, origin: identity.id.compact}
  return {...unsigned, sig: Buffer.from(identity.sign(versionBytes(folder, unsigned))).toString('base64url')}
}

/** Verifies the origin's signature; throws E_BAD_SIGNATURE. */
export function verifyVersion(folder: string, v: FileVersion): void {
  const origin = PeerId.tryParse(v.origin)
  const {sig, ...rest} = v
  if (!origin || !verifySignature(versionBytes(folder, rest), Buffer.from(sig, 'base64url'), origin.publicKey)) {
    throw new FpeerError('E_BAD_SIGNATURE', `the version of ${JSON.stringify(v.path)} is not signed by its origin`, {details: {path: v.path}})
  }
}

/** Writes a version as the attributes of a FilesToGet file line. */
export function versionToEntry(v: FileVersion): FileEntry {
  const ext: Record<string, string> = {ver: String(v.lamport), origin: v.origin, vv: formatVector(v.vv), osig: v.sig}
  if (v.deleted) return {path: v.path, mtimeMs: v.mtimeMs, ext: {...ext, del: '1'}}
  return {path: v.path, size: v.size, sha256: v.sha256, mtimeMs: v.mtimeMs, ext}
}

/** Reads a version from a file line, or undefined when the line carries none (a plain file list). */
export function entryToVersion(e: FileEntry): FileVersion | undefined {
  const x = e.ext
  if (!x?.ver || !x.origin || x.osig === undefined) return undefined
  const deleted = x.del === '1'
  if (!/^\d{1,15}$/.test(x.ver) || !/^[A-Z2-7]{52}$/.test(x.origin)) throw new FpeerError('E_MSG_BAD_FIELD', `bad version of ${JSON.stringify(e.path)}`)
  if (!deleted && (e.sha256 === undefined || e.size === undefined)) throw new FpeerError('E_MSG_BAD_FIELD', `version of ${JSON.stringify(e.path)} lacks sha256 or size`)
  return {
    path: e.path,
    deleted,
    sha256: deleted ? '' : e.sha256!,
    size: deleted ? 0 : e.size!,
    mtimeMs: e.mtimeMs ?? 0,
    lamport: Number(x.ver),
    origin: x.origin,
    vv: parseVector(x.vv ?? ''),
    sig: x.osig,
  }
}

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

/**
 * The deterministic name of a conflict copy of `loser`: every peer derives the same one,
 * so conflict copies converge too. `report.txt` → `report.sync-conflict-ABCDEFG-1a2b3c4d.txt`.
 */
export function conflictPath(loser: {path: string; origin: string; sha256: string}): string {
  const slash = loser.path.lastIndexOf('/')
  const dir = slash >= 0 ? loser.path.slice(0, slash + 1) : ''
  const base = loser.path.slice(slash + 1)
  const dot = base.lastIndexOf('.')
  const stem = dot > 0 ? base.slice(0, dot) : base
  const ext = dot > 0 ? base.slice(dot) : ''
  return `${dir}${stem}.sync-conflict-${loser.origin.slice(0, 7)}-${loser.sha256.slice(0, 8)}${ext}`
}

export function isConflictPath(path: string): boolean {
  return /\.sync-conflict-[A-Z2-7]{7}-[0-9a-f]{8}(\.[^/]*)?$/.test(path)
}
