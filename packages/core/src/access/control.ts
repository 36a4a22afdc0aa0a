// Who may do what with which folder: the shared folders and their peers as last read, read grants, the replay guard, and the re-reading of both.
import type {Home} from '../store/home.js'
import type {PeerId} from '../identity.js'
import type {Startable} from '../lifecycle.js'
import type {FolderAccess} from '../fs/local-source.js'
import type {ConfigStore, FolderConfig} from '../store/config.js'
import {type PeerRecord} from '../store/peerfile.js'
import {type AccessContext, type Logger, silentLogger} from '../transport.js'
import {GrantTable} from './grants.js'
import {ReplayGuard} from './replay-guard.js'

export interface AccessControlOptions {
  home: Home
  config: ConfigStore
  /** Re-read folders and peerlists this often (other fpeer processes change them); none when undefined. */
  refreshMs?: number
  /** Called after every read, with the folders shared now (the node starts and stops folder runners on it). */
  onRefresh?: (folders: FolderConfig[]) => void
  log?: Logger
}

/**
 * The access decisions of a running peer, made on the configuration and peerlists as last
 * read: `fpeer share`, `fpeer allow` and confirmations by other processes are seen within
 * `refreshMs`, and at once by `refresh()`.
 */
export class AccessControl implements Startable, FolderAccess {
  /** Who may read which folder right now (handshakes, updates), by secret or key (§4.6). */
  readonly grants = new GrantTable()
  /** One guard for every conversation-opening message: requests and updates (§4.5). */
  readonly replay = new ReplayGuard()
  readonly #options: AccessControlOptions
  readonly #log: Logger
  #folders = new Map<string, FolderConfig>()
  #peers = new Map<string, PeerRecord[]>()
  #timer: NodeJS.Timeout | undefined
  #signal: AbortSignal | undefined
  #stopped = false
  readonly #onAbort = () => this.#halt()

  constructor(options: AccessControlOptions) {
    this.#options = options
    this.#log = options.log ?? silentLogger
  }

  /** Re-reads folders and peerlists written by other fpeer processes (`fpeer share`, `fpeer allow`). */
  async refresh(): Promise<void> {
    const folders = await this.#options.config.folders()
    const peers = new Map<string, PeerRecord[]>()
    for (const f of folders) peers.set(f.name, await this.#options.home.peerfile(f.name).peers())
    this.#folders = new Map(folders.map((f) => [f.name, f]))
    this.#peers = peers
    this.#options.onRefresh?.(folders)
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.#stopped || signal.aborted) return
    await this.refresh()
    const every = this.#options.refreshMs
    if (every === undefined || signal.aborted) return
    this.#signal = signal
    signal.addEventListener('abort', this.#onAbort, {once: true})
    this.#timer = setInterval(
      () => void this.refresh().catch((err: Error) => this.#log.debug('cannot re-read the configuration', {reason: err.message})),
      every,
    )
    this.#timer.unref()
  }

  async stop(): Promise<void> {
    this.#signal?.removeEventListener('abort', this.#onAbort)
    this.#halt()
  }

  /** Timers running now (0 or 1): for tests that check a stop leaves none. */
  get timers(): number {
    return this.#timer ? 1 : 0
  }

  /** The folders shared now, by name. */
  get folders(): ReadonlyMap<string, FolderConfig> {
    return this.#folders
  }

  /** Each folder's confirmed peers, by folder name. */
  get peersByFolder(): ReadonlyMap<string, PeerRecord[]> {
    return this.#peers
  }

  names(): string[] {
    return [...this.#folders.keys()]
  }

  folder(name: string): FolderConfig | undefined {
    return this.#folders.get(name)
  }

  peers(folder: string): PeerRecord[] {
    return this.#peers.get(folder) ?? []
  }

  root(folder: string): string | undefined {
    return this.#folders.get(folder)?.path
  }

  isPeer(folder: string, id: PeerId): boolean {
    return this.peers(folder).some((p) => p.id === id.toString())
  }

  /** May `who` read the folder's files from a transfer server: open folder, a grant, or a confirmed peer's key; never an address alone. */
  mayRead(folder: string, who: AccessContext): boolean {
    const f = this.#folders.get(folder)
    if (!f) return false
    if (f.open) return true
    if (this.grants.allows(folder, who)) return true
    // A confirmed peer that logs in by key (SFTP) may read; by address alone, nobody may.
    const id = who.peer?.toString()
    return id !== undefined && this.peers(folder).some((p) => p.id === id)
  }

  /** May this authenticated peer connect to a transfer server at all: it may read some folder. */
  admits(who: AccessContext): boolean {
    return this.names().some((f) => this.mayRead(f, who))
  }

  /** May `sender` become a peer of the folder: open folder, allowed, or confirmed already. */
  mayJoin(folder: string, sender: PeerId | undefined): boolean {
    const f = this.#folders.get(folder)
    if (!f) return false
    if (f.open) return true
    if (!sender) return false
    const id = sender.toString()
    return f.allow.includes(id) || this.peers(folder).some((p) => p.id === id)
  }

  /** IDs of the folder's peers that updates go to (confirmed, with a control port, not seed-form), but `exclude`. */
  forwardTargets(folder: string, exclude: readonly string[]): string[] {
    return this.peers(folder)
      .filter((p) => p.controlPort && !p.id.startsWith('plain:') && !exclude.includes(p.id))
      .map((p) => p.id)
  }

  #halt(): void {
    this.#stopped = true
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}
