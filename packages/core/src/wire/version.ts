// A file version as it travels: the statement, signed by the peer where a change began, that says what a path now holds; its wire form and signature.
//
// Below store/ and session/ (which keep and name versions); how versions are decided between is sync/version.ts.
import {FpeerError} from '../errors.js'
import {type Identity, PeerId, verifySignature} from '../identity.js'
import type {FileEntry} from './types.js'

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
    const [, origin, lamport] = m ?? []
    if (origin === undefined || lamport === undefined) throw new FpeerError('E_MSG_BAD_FIELD', `bad version vector entry ${JSON.stringify(part.slice(0, 80))}`)
    vv[origin] = Number(lamport)
  }
  return vv
}

/** The bytes the origin signs: the folder and every field of the version but `sig`. */
export function versionBytes(folder: string, v: Omit<FileVersion, 'sig'>): Buffer {
  return Buffer.from(
    [
      CONTEXT + folder,
      v.path,
      v.deleted ? 'deleted' : 'file',
      v.sha256,
      String(v.size),
      String(Math.trunc(v.mtimeMs)),
      String(v.lamport),
      v.origin,
      formatVector(v.vv),
    ].join('\n'),
    'utf8',
  )
}

export function signVersion(folder: string, v: Omit<FileVersion, 'sig' | 'origin'>, identity: Identity): FileVersion {
  // Literals, not spreads (see withExt): a share of 100,000 files signs as many versions.
  const unsigned = {
    path: v.path,
    deleted: v.deleted,
    sha256: v.sha256,
    size: v.size,
    mtimeMs: v.mtimeMs,
    lamport: v.lamport,
    vv: v.vv,
    origin: identity.id.compact,
  }
  const sig = Buffer.from(identity.sign(versionBytes(folder, unsigned))).toString('base64url')
  return {path: v.path, deleted: v.deleted, sha256: v.sha256, size: v.size, mtimeMs: v.mtimeMs, lamport: v.lamport, vv: v.vv, origin: unsigned.origin, sig}
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
  const ver = String(v.lamport)
  const vv = formatVector(v.vv)
  if (v.deleted) return {path: v.path, mtimeMs: v.mtimeMs, ext: {ver, origin: v.origin, vv, osig: v.sig, del: '1'}}
  return {path: v.path, size: v.size, sha256: v.sha256, mtimeMs: v.mtimeMs, ext: {ver, origin: v.origin, vv, osig: v.sig}}
}

/** Reads a version from a file line, or undefined when the line carries none (a plain file list). */
export function entryToVersion(e: FileEntry): FileVersion | undefined {
  const x = e.ext
  if (!x?.ver || !x.origin || x.osig === undefined) return undefined
  const deleted = x.del === '1'
  if (!/^\d{1,15}$/.test(x.ver) || !/^[A-Z2-7]{52}$/.test(x.origin)) throw new FpeerError('E_MSG_BAD_FIELD', `bad version of ${JSON.stringify(e.path)}`)
  const {sha256, size} = e
  if (!deleted && (sha256 === undefined || size === undefined))
    throw new FpeerError('E_MSG_BAD_FIELD', `version of ${JSON.stringify(e.path)} lacks sha256 or size`)
  return {
    path: e.path,
    deleted,
    sha256: deleted ? '' : (sha256 ?? ''),
    size: deleted ? 0 : (size ?? 0),
    mtimeMs: e.mtimeMs ?? 0,
    lamport: Number(x.ver),
    origin: x.origin,
    vv: parseVector(x.vv ?? ''),
    sig: x.osig,
  }
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
