// Domain types of the five messages; the wire form of each lives in its own file.

/** The seed's four message types plus fpeer's error reply. */
export type MessageType = 'BePeerRequest' | 'FilesToGet' | 'FilesUpdated' | 'TrustedPeerConfirm' | 'PeerError'

/** One file line (Lines 5..n): a relative path plus fpeer's optional attributes. */
export interface FileEntry {
  /** Relative path inside the folder, `/`-separated, exactly as the sender wrote it (decoded). */
  path: string
  /** Size in bytes (`size=`). */
  size?: number
  /** Lower-case hex SHA-256 of the content (`sha256=`). */
  sha256?: string
  /** Modification time, ms since the epoch (`mtime=`). */
  mtimeMs?: number
  /** Attributes this version does not know, kept so that signatures still verify. */
  ext?: Record<string, string>
}

/**
 * `f` with another `ext`, as a new entry. Built as a literal, not `{...f, ext}`: Node 20's V8
 * gives each object made by a spread plus a property a hidden class of its own (about 250
 * bytes more per object: 100,000 entries of a list were 25 MB of shapes).
 */
export function withExt(f: FileEntry, ext: Record<string, string>): FileEntry {
  if (f.size !== undefined && f.sha256 !== undefined && f.mtimeMs !== undefined) return {path: f.path, size: f.size, sha256: f.sha256, mtimeMs: f.mtimeMs, ext}
  const e: FileEntry = {path: f.path}
  if (f.size !== undefined) e.size = f.size
  if (f.sha256 !== undefined) e.sha256 = f.sha256
  if (f.mtimeMs !== undefined) e.mtimeMs = f.mtimeMs
  e.ext = ext
  return e
}

/** `ext` with one more attribute, as a new object (built key by key: see withExt). */
export function extWith(ext: Readonly<Record<string, string>> | undefined, key: string, value: string): Record<string, string> {
  const out: Record<string, string> = {}
  if (ext) for (const [k, v] of Object.entries(ext)) if (k !== key) out[k] = v
  out[key] = value
  return out
}

/** A directory line (`type=dir`, §4.1): an empty directory to create, with no content to fetch. */
export function isDirEntry(e: FileEntry): boolean {
  return e.ext?.type === 'dir'
}

interface Base {
  /** Line 2: the shared folder's name. */
  folder: string
  /** Line 1's fpeer attributes (`fpeer`, `id`, `nonce`, `re`, `sig`, …); empty for a seed-form message. */
  meta: Record<string, string>
}

/** Line 1 BePeerRequest, Line 2 folder, then the empty line. */
export interface BePeerRequest extends Base {
  type: 'BePeerRequest'
}

/** The shape shared by FilesToGet, FilesUpdated and TrustedPeerConfirm. */
export interface FileListMessage extends Base {
  type: 'FilesToGet' | 'FilesUpdated' | 'TrustedPeerConfirm'
  /** Line 3: the port the files are served on (0 when the protocol has none, e.g. MANUAL). */
  port: number
  /** Line 4: the transfer protocol, upper case (HTTP, FTP, SFTP, MANUAL, …). */
  protocol: string
  /** Lines 5..n. */
  files: FileEntry[]
}

export interface FilesToGet extends FileListMessage {
  type: 'FilesToGet'
}
export interface FilesUpdated extends FileListMessage {
  type: 'FilesUpdated'
}
export interface TrustedPeerConfirm extends FileListMessage {
  type: 'TrustedPeerConfirm'
}

/** fpeer's error reply: Line 2 folder (or `*`), Line 3 a stable code, Line 4 a human-readable reason. */
export interface PeerError extends Base {
  type: 'PeerError'
  code: string
  text: string
}

export type Message = BePeerRequest | FilesToGet | FilesUpdated | TrustedPeerConfirm | PeerError
