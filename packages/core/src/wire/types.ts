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
