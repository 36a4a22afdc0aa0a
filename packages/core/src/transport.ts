// The transfer plugin contract: one interface every transport plugin (HTTP, FTP, SFTP, MANUAL, …) implements.
//
// Core validates and normalises everything (names, paths, who may read what, hashes,
// temp files, concurrency); a plugin only moves bytes. Errors a plugin throws SHOULD be
// FpeerError with the codes named below; anything else is wrapped as E_TRANSFER.
import type {Readable} from 'node:stream'
import type {Identity, PeerId} from './identity.js'
import type {FileEntry} from './wire/types.js'

/** What a transport can and cannot do. The conformance suite skips what is declared unsupported. */
export interface TransportSupports {
  /** It runs a server that other peers fetch from. False for MANUAL. */
  serve: boolean
  /** It fetches from a peer's server by itself. False for MANUAL. */
  fetch: boolean
  /** `get()` honours `offset` (resume after a dropped connection). */
  resume: boolean
  /** The server knows which peer (by key) is connecting, so per-peer access applies (SFTP). */
  peerAuth: boolean
  /** The client verifies the server's identity against the expected peer (SFTP host key). */
  serverAuth: boolean
  /**
   * Its clients have `getMany()` (TransferClient), and core sends small files through it.
   * Core and the conformance suite go by this declaration, never by probing for the method;
   * a client of a transport declaring it without `getMany()` is E_PLUGIN. Read as false when
   * a plugin built before it leaves it out.
   */
  batch: boolean
}

/** Who is asking to read, as far as the transport can tell. */
export interface AccessContext {
  /** The remote IP address of the connection (IPv4-mapped IPv6 addresses are given as IPv4). */
  address: string
  /** The peer's verified identity, when the transport authenticates peers (`supports.peerAuth`). */
  peer?: PeerId
  /**
   * The grant secret the fetcher presented (`grant=` of a signed FilesToGet or FilesUpdated,
   * docs/protocol.md §4.6): HTTP `Authorization: Bearer <secret>` or `?grant=<secret>`, the FTP
   * password. Access to a folder that is not open is decided by it (or by `peer`), never by `address`.
   */
  grant?: string
}

/** An entry of a served folder, as listings show it. */
export interface FileStat {
  type: 'file' | 'directory'
  size: number
  mtimeMs: number
}

/**
 * The read-only view of shared folders that core hands to a transport server. Every
 * method confines `path` to the named folder (by realpath; `..`, absolute paths, NUL and
 * symlinks that leave the folder are refused) and checks that `who` may read it.
 * Paths are `/`-separated and relative to the folder; `''` is the folder itself.
 * Errors: E_UNKNOWN_FOLDER, E_PATH_UNSAFE, E_NOT_FOUND, E_ACCESS (not allowed, or unreadable).
 */
export interface FileSource {
  /** The folder names `who` may see. */
  folders(who: AccessContext): Promise<string[]>
  stat(folder: string, path: string, who: AccessContext): Promise<FileStat>
  /** Lists a directory; names are single segments. */
  list(folder: string, path: string, who: AccessContext): Promise<Array<FileStat & {name: string}>>
  /**
   * Opens a file for reading from `start` (inclusive) to `end` (inclusive). `data`, when
   * present, holds that whole range already read (small files, no descriptor left open): a
   * server may send it and leave `stream` untouched, which saves a stream per file when
   * thousands are sent. A large range's stream from core's LocalFileSource also has a
   * positional reader (`positionalReader`, fs/local-source.ts), which a server may read
   * through into buffers it reuses.
   */
  open(
    folder: string,
    path: string,
    who: AccessContext,
    range?: {start?: number; end?: number},
  ): Promise<{stream: Readable; size: number; mtimeMs: number; data?: Buffer}>
}

/** What core gives a transport server. */
export interface ServeOptions {
  /** Address to listen on, e.g. `127.0.0.1`. */
  host: string
  /** Port to listen on; 0 picks a free one. */
  port: number
  files: FileSource
  /** This peer's identity (the SFTP host key is derived from it). */
  identity: Identity
  /** Decides whether an authenticated peer may connect at all (`supports.peerAuth` transports call it at login). */
  admit?(who: AccessContext): boolean
  log?: Logger
}

/** A running transport server. */
export interface TransportServer {
  readonly host: string
  readonly port: number
  /** Stops listening and ends open connections; resolves when all are closed. */
  close(): Promise<void>
}

/** What core gives a transport client. */
export interface ConnectOptions {
  /** The peer's address: always the address the control connection came from, never one a message names. */
  host: string
  /** The port from Line 3 of the message. */
  port: number
  /** This peer's identity (SFTP logs in with it). */
  identity: Identity
  /** Who the server must be (`supports.serverAuth` transports refuse any other with E_HOST_KEY_MISMATCH). */
  expectedPeer?: PeerId
  /** Most `get()` calls core will have open at once; a transport that needs one connection per transfer pools this many. */
  concurrency: number
  /** Connect and idle timeout, in ms. */
  timeoutMs: number
  /** Local address to connect from (`fpeer request --bind`). */
  localAddress?: string
  /**
   * The grant secret from the message that named this server (`grant=`): a transport MUST
   * present it on every request (HTTP `Authorization: Bearer`, FTP password); transports
   * that log in by key (`supports.peerAuth`) may ignore it.
   */
  grant?: string
  log?: Logger
}

/** A connection (or pool of connections) to one peer's transport server. */
export interface TransferClient {
  /**
   * Opens `folder/path` on the peer for reading from byte `offset` (default 0). Resolves
   * once the transfer has started; the stream yields the bytes from `offset` to the end.
   * May be called up to `concurrency` times at once. Errors: E_NOT_FOUND, E_ACCESS,
   * E_CONNECT, E_CONNECTION_LOST, E_TIMEOUT, E_HOST_KEY_MISMATCH, E_TRANSFER.
   * `size` is the whole file's size as core expects it (a hint, never trusted: core checks
   * every byte): a transport may take a bulk path for a large file. A stream MAY yield
   * chunks of any size; core never assumes one chunk per socket read.
   *
   * `release`, when given, lets a transport reuse the memory its chunks view: core calls it
   * with a chunk the stream yielded once core will never read that chunk again (hashed, and
   * written to disk when it lands). Each chunk is released at most once; a chunk core never
   * releases (a failed transfer, a consumer other than core) is simply left to the GC, so a
   * transport may only reuse memory that every chunk viewing it has been released from.
   */
  get(
    folder: string,
    path: string,
    options?: {offset?: number; signal?: AbortSignal; size?: number},
  ): Promise<{stream: Readable; size?: number; release?(chunk: Buffer): void}>
  /**
   * Required when the transport declares `supports.batch`, and used only then: fetches many
   * small files in one round trip. Core asks only for files whose
   * announced size is at most SMALL_FILE_BYTES and bounds the count and bytes of one call.
   * Yields one result per item, in the order asked: the file's bytes, or its error
   * (E_NOT_FOUND, E_ACCESS; E_SIZE_MISMATCH for a body larger than announced). A failure
   * of the whole exchange is thrown (E_CONNECTION_LOST, E_TIMEOUT, …) and core retries the
   * items not yet yielded. A peer whose server cannot batch makes it throw
   * E_UNSUPPORTED, and core falls back to `get()` (it also takes the older E_TRANSFER
   * with `details.unsupported`).
   */
  getMany?(folder: string, items: Array<{path: string; size: number}>, options?: {signal?: AbortSignal}): AsyncIterable<BatchItem>
  /** Closes every connection; safe to call twice. */
  close(): Promise<void>
}

/**
 * One result of `TransferClient.getMany`. `data` may be a view of a larger buffer the
 * transport received (no copy per file): core hashes and lands or sends it before it asks
 * for the next result but a few, so the buffer it views is let go soon; a consumer that
 * keeps results longer copies them.
 */
export type BatchItem = {path: string; data: Buffer} | {path: string; error: import('./errors.js').FpeerError}

/** What a requester must get by hand (protocol MANUAL), as core hands it to `Transport.handOver`. */
export interface ManualRequest {
  folder: string
  /** The host's address: the control connection's, never one a message names. */
  host: string
  /** Line 3: a port the files may be fetched from by hand; 0 if none. */
  port: number
  /** `via=`: the protocol of that port, e.g. HTTP. */
  via?: string
  /** `grant=`: the secret that lets this requester read the files there (HTTP: `?grant=` or `Authorization: Bearer`). */
  grant?: string
  /** The host's peer ID, verified from its signed FilesToGet. */
  hostId: string
  /** The directory the files must land in (absolute, symlinks resolved). */
  into: string
  /** Every file of the FilesToGet, with its size and SHA-256. */
  files: FileEntry[]
}

/** Which files of a ManualRequest are not in place, by core's check of size and SHA-256. */
export interface PlacedState {
  /** Paths with nothing at their target yet. */
  missing: string[]
  /** Paths whose target holds other bytes (wrong, or still being written). */
  wrong: string[]
}

/** One file to get by hand, as `HandOverIO.show` receives it. */
export interface ManualFile {
  /** The path in the folder, `/`-separated, as the FilesToGet names it. */
  path: string
  size: number
  sha256: string
  /** Where it must land: an absolute path inside `into`. */
  target: string
  /** Where it can be fetched from, when the host offers a port for it (`via=HTTP`). */
  url?: string
  state: 'missing' | 'wrong'
}

/** What a hand-over tells the user or script: the files still to place, and where from. */
export interface ManualListing {
  folder: string
  host: string
  hostId: string
  into: string
  via?: string
  files: ManualFile[]
}

/** What core (and the CLI) give `Transport.handOver`. */
export interface HandOverIO {
  /** Checks every file's target against its size and SHA-256; a transport never hashes by itself. */
  check(): Promise<PlacedState>
  /** Shows what to get; the caller picks the format (one JSON document, or one file per line). */
  show(listing: ManualListing): void
  /** How long to wait for the files, polling `check()`, in ms; 0 does not wait. */
  waitMs: number
  signal?: AbortSignal
}

/** A transport: one wire protocol for moving file bytes, named on Line 4 of a message. */
export interface Transport {
  /** Line 4's protocol name, upper case, e.g. `HTTP`. */
  readonly protocol: string
  /** One line for `fpeer protocols`. */
  readonly description: string
  readonly supports: TransportSupports
  /** Starts serving. Required when `supports.serve`. */
  serve?(options: ServeOptions): Promise<TransportServer>
  /** Connects to a peer. Required when `supports.fetch`. */
  connect?(options: ConnectOptions): Promise<TransferClient>
  /**
   * Optional: loads what `connect` will need (a client library a transport imports on first
   * use), without connecting. A requester calls it while it waits for the host's FilesToGet,
   * for the protocol the host will most likely name, so the loading overlaps that wait
   * instead of following it. Safe to call any number of times; a failure is ignored
   * (`connect` then meets it and reports it).
   */
  prepare?(): Promise<void>
  /**
   * For transports where a person moves the bytes (MANUAL; `supports.fetch` is false):
   * shows what to get and where from, then resolves once nothing is missing (core checks
   * every hash again and reports E_HASH_MISMATCH). Resolves at once, showing nothing, when
   * everything is already in place (a resumed request). Errors: E_PENDING when files are
   * still missing and it does not wait, or the wait ran out (the request can be resumed).
   */
  handOver?(request: ManualRequest, io: HandOverIO): Promise<void>
  /**
   * Optional: whether this transport's requests can carry the file name `path` (default:
   * every name 4.4 allows). A name it cannot carry (FTP: CR or LF) is skipped with an
   * E_UNSUPPORTED warning and left out of the exchange, never a failure of the whole
   * exchange: one such name must not lock a requester out of every other file.
   */
  canName?(path: string): boolean
}

/** The names of `paths` that `transport` declares it cannot carry (Transport.canName). */
export function unnameable(transport: Transport | undefined, paths: Iterable<string>): Set<string> {
  const out = new Set<string>()
  if (!transport?.canName) return out
  for (const p of paths) if (!transport.canName(p)) out.add(p)
  return out
}

/** What a plugin's `fpeer:transport` hook returns. */
export interface TransportHookResult {
  transports: Transport[]
}

/** Minimal structured logger: one line per event on stderr. Never pass secrets. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
}

export const silentLogger: Logger = {debug() {}, info() {}, warn() {}, error() {}}
