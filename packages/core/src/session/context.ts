// The seam between the protocol sessions and the application: what a session may ask of its peer node.
import type {FetchEvent} from '../transfer/fetch.js'
import type {Identity, PeerId} from '../identity.js'
import type {FileEntry} from '../wire/types.js'
import type {TransportRegistry} from '../registry.js'
import type {Logger} from '../transport.js'
import type {PeerRecord} from '../store/peerfile.js'
import type {Grant} from '../access/grants.js'
import type {ReplayGuard} from '../access/replay-guard.js'

/** Timeouts of a handshake, in ms. Core reads no environment: the CLI parses FPEER_*_MS into these. */
export interface HandshakeTimeouts {
  /** Waiting for a reply that needs no transfer (FilesToGet after BePeerRequest). */
  reply: number
  /**
   * Waiting for a reply that needs a whole transfer first (FilesUpdated, TrustedPeerConfirm)
   * from a peer that does not announce keep-alives (`ka=1`, a seed peer): an absolute limit.
   */
  transfer: number
  /**
   * The same wait from a peer that announced keep-alives: it fails only after this long
   * without a byte from the peer (no progress), however long the whole transfer takes.
   */
  stall: number
  /** Transport connect/idle timeout. */
  io: number
  /** A message must be complete this long after its first byte. */
  message: number
}

/** The documented defaults (docs/scripting.md, ENVIRONMENT). */
export const DEFAULT_TIMEOUTS: Readonly<HandshakeTimeouts> = {reply: 120_000, transfer: 3_600_000, stall: 60_000, io: 30_000, message: 30_000}

export function defaultTimeouts(overrides: Partial<HandshakeTimeouts> = {}): HandshakeTimeouts {
  return {...DEFAULT_TIMEOUTS, ...overrides}
}

/**
 * The slowest average a peer that sends keep-alives may copy a folder at before the other side
 * stops waiting (16 KiB/s: a poor mobile link): keep-alives stretch a wait with the folder's
 * size, not without end.
 */
export const KEEP_ALIVE_FLOOR_BPS = 16 * 1024

/** The whole wait for a reply that needs a transfer of `files`, from a peer that sends keep-alives. */
export function keepAliveCeiling(timeouts: HandshakeTimeouts, files: ReadonlyArray<{size?: number}>): number {
  return Math.max(timeouts.transfer, (files.reduce((n, f) => n + (f.size ?? 0), 0) / KEEP_ALIVE_FLOOR_BPS) * 1000)
}

/** What the host side of a handshake needs from the node that runs it. */
export interface HostContext {
  identity: Identity
  registry: TransportRegistry
  log: Logger
  timeouts: HandshakeTimeouts
  /** Concurrency for the fetch-back. */
  concurrency: number
  /** Is this folder shared here, and is it open? */
  folder(name: string): Promise<{open: boolean} | undefined>
  /** May this sender (by verified ID; undefined for a seed-form request) join the folder? */
  mayJoin(folder: string, sender: PeerId | undefined): Promise<boolean>
  /**
   * The folder's current file structure (after a fresh, incremental scan), as file lines:
   * live files with size, sha256, mtime and their version attributes, and tombstones (`del=1`).
   */
  fileList(folder: string): Promise<FileEntry[]>
  /** Is this ID already a confirmed peer of the folder? (Then only what it fetched is checked back.) */
  isPeer(folder: string, id: PeerId): boolean
  /**
   * Seed step 8: when this host is busy, a confirmed peer (not `requester`) to hand the
   * request to, with the address and control port to reach it; undefined to answer itself.
   */
  delegateFor?(folder: string, requester: PeerId): {id: PeerId; address: string; controlPort: number} | undefined
  /** Other message handlers (updates), by type, for conversations not started by a BePeerRequest. */
  handlers?: Partial<Record<'FilesToGet', (channel: import('../net/channel.js').MessageChannel, msg: import('../wire/types.js').FilesToGet) => Promise<void>>>
  /** The port this node serves `protocol` on, or undefined when it does not serve it. */
  servedPort(protocol: string): number | undefined
  /** Lets a requester read the folder while its handshake runs: by the returned grant's secret, or (SFTP) by its key. */
  grant(folder: string, peer: PeerId | undefined): Grant
  /** Refuses requests replayed or sent too long ago (§4.5). */
  replay: ReplayGuard
  /** `HOST:PORT`s this peer is reached at from outside besides its sockets' own (`dst=`, §4.5). */
  publicAddresses?: readonly string[]
  /** Adds a confirmed peer to the folder's peerlist (seed step 16). */
  confirmPeer(folder: string, record: PeerRecord): Promise<void>
  onFetchEvent?(ev: FetchEvent): void
  /** Offer to check files back while the requester still fetches (`early=1`, protocol 4.9); default true. */
  early?: boolean
  /**
   * The node's lifetime signal: when it aborts (stop), a handshake under way ends at once,
   * its fetch-back cut, with E_INTERRUPTED (the signal's reason when that is typed).
   */
  readonly signal?: AbortSignal
}
