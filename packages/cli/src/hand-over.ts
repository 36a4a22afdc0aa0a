// `fpeer request` with protocol MANUAL: shows the files to get (stdout lines or one JSON document) and keeps a stopped request resumable.
import path from 'node:path'
import {
  FpeerError,
  type ManualListing,
  PeerId,
  type Home,
  type PendingRequest,
  type RequestOptions,
  type TransportRegistry,
  isFpeerError,
  needsTerminalEscape,
  tty,
} from '@fpeer/core'
import {parseHostPort} from './util.js'

/** What `fpeer request` asks for, from its arguments or, with `--resume`, from the pending request. */
export interface RequestTarget {
  host: string
  port: number
  folder: string
  into: string
  protocol?: string
  bind?: string
  expectedHost?: PeerId
  controlPort: number
}

/** The document `fpeer request --json` prints when it stops with files still to place (exit 75). */
export interface PendingDocument {
  state: 'pending'
  folder: string
  host: {address: string; id: string; port: number}
  into: string
  via?: string
  files: Array<{path: string; size: number; sha256: string; url?: string; target: string; state: 'missing' | 'wrong'}>
  resume: string
}

interface TargetFlags {
  resume?: boolean
  into?: string
  bind?: string
  protocol?: string
  'peer-id'?: string
  'control-port': number
}

/**
 * `fpeer request HOST FOLDER`, or `fpeer request --resume [FOLDER]` (the only pending one when
 * none is named). A request for a folder with a pending one from the same host accepts only
 * the host key it saw then, unless `--peer-id` says otherwise.
 */
export async function requestTarget(home: Home, args: {host?: string; folder?: string}, flags: TargetFlags): Promise<RequestTarget> {
  const store = home.pending
  let saved: PendingRequest | undefined
  let host: string
  let port: number
  let folder: string
  if (flags.resume) {
    saved = await store.find(args.folder ?? args.host)
    if (args.folder !== undefined && args.host !== undefined) {
      const hp = parseHostPort(args.host)
      if (hp.host !== saved.host || hp.port !== saved.port)
        throw new FpeerError('E_STATE', `the pending request for ${saved.folder} is to ${saved.host}:${saved.port}, not ${args.host}`)
    }
    ;({host, port, folder} = saved)
  } else {
    if (args.host === undefined || args.folder === undefined) throw new FpeerError('E_USAGE', 'fpeer request needs HOST and FOLDER (or --resume [FOLDER])')
    ;({host, port} = parseHostPort(args.host))
    folder = args.folder
    saved = (await store.list()).find((r) => r.folder === folder && r.host === host && r.port === port)
  }
  const peerId = flags['peer-id'] ?? saved?.hostId
  const bind = flags.bind ?? saved?.bind
  const protocol = flags.protocol ?? (flags.resume ? saved?.protocol : undefined)
  return {
    host,
    port,
    folder,
    into: path.resolve(flags.into ?? saved?.into ?? folder),
    ...(protocol ? {protocol} : {}),
    ...(bind ? {bind} : {}),
    ...(peerId ? {expectedHost: PeerId.parse(peerId)} : {}),
    controlPort: flags['control-port'],
  }
}

/** The MANUAL side of one `fpeer request`: the hand-over callback, its output, and the pending state. */
export class ManualHandOver {
  listing: ManualListing | undefined
  readonly #home: Home
  readonly #target: RequestTarget
  readonly #registry: TransportRegistry
  readonly #json: boolean
  readonly #waitMs: number
  #waiting = false

  /** True while --wait waits for placed files: Ctrl-C then ends the wait (pending), not the request. */
  get waiting(): boolean {
    return this.#waiting
  }

  constructor(options: {home: Home; target: RequestTarget; registry: TransportRegistry; json: boolean; waitMs: number}) {
    this.#home = options.home
    this.#target = options.target
    this.#registry = options.registry
    this.#json = options.json
    this.#waitMs = options.waitMs
  }

  /** For `RequestOptions.manual`: hands the files to the MANUAL plugin (E_NO_TRANSPORT when it is not installed). */
  readonly callback: NonNullable<RequestOptions['manual']> = async (request, check) => {
    const transport = this.#registry.get('MANUAL')
    if (!transport.handOver) throw new FpeerError('E_NO_TRANSPORT', `the ${transport.protocol} plugin has no hand-over`)
    // Ctrl-C while waiting stops the wait; the request is then pending, not lost.
    const abort = new AbortController()
    const onSignal = () => abort.abort()
    if (this.#waitMs > 0) process.once('SIGINT', onSignal)
    this.#waiting = this.#waitMs > 0
    try {
      await transport.handOver(request, {check, show: (listing) => this.#show(listing), waitMs: this.#waitMs, signal: abort.signal})
    } finally {
      this.#waiting = false
      process.removeListener('SIGINT', onSignal)
    }
  }

  #show(listing: ManualListing): void {
    // A NUL cannot be in a file name, and it is the one separator a name cannot fake in the
    // `--json | jq -j … | xargs -0` recipe: refuse rather than hand over a listing it would split.
    const nul = listing.files.find((f) => f.path.includes('\0') || f.target.includes('\0') || f.url?.includes('\0'))
    if (nul) throw new FpeerError('E_PATH_UNSAFE', `the host offered a name with a NUL: ${JSON.stringify(nul.path.slice(0, 120))}`, {details: {path: nul.path}})
    this.listing = listing
    // stdout: one file per line (its URL, else its target), so `| xargs -d '\n'` works. A URL is
    // percent-encoded; a target with a line break or another control character is escaped
    // (`\n`), so no name can add a line or an argument, and it is marked on stderr.
    if (!this.#json) for (const f of listing.files) process.stdout.write(tty`${f.url ?? f.target}` + '\n')
    if (this.#json && this.#waitMs === 0) return
    const lines = [
      tty`MANUAL: ${listing.files.length} file(s) of ${listing.folder} to place in ${listing.into}, from ${listing.host} (host ${listing.hostId}):`,
    ]
    for (const f of listing.files) {
      const marks = [
        f.state === 'wrong' ? '(present, but wrong)' : '',
        needsTerminalEscape(f.path) ? '(control characters in the name, shown escaped: use --json for the exact name)' : '',
      ].filter(Boolean)
      lines.push(
        tty`  ${f.path}\t${f.size} bytes\tsha256 ${f.sha256}` +
          marks.map((m) => `\t${m}`).join('') +
          tty`\n    -> ${f.target}` +
          (f.url ? tty`\n    <- ${f.url}` : ''),
      )
    }
    lines.push(
      this.#waitMs > 0
        ? tty`waiting up to ${Math.round(this.#waitMs / 1000)} s for them (Ctrl-C stops; resume with \`fpeer request --resume ${listing.folder}\`)`
        : tty`then run \`fpeer request --resume ${listing.folder}\``,
    )
    process.stderr.write(lines.join('\n') + '\n')
  }

  /** After a failed request: keeps it resumable when a hand-over happened; the pending document for E_PENDING. */
  async stopped(err: unknown): Promise<PendingDocument | undefined> {
    const listing = this.listing
    if (!listing || !isFpeerError(err) || !['E_PENDING', 'E_HASH_MISMATCH', 'E_SIZE_MISMATCH'].includes(err.code)) return undefined
    const t = this.#target
    await this.#home.pending.save({
      folder: t.folder,
      host: t.host,
      port: t.port,
      hostId: listing.hostId,
      into: listing.into,
      protocol: 'MANUAL',
      ...(t.bind ? {bind: t.bind} : {}),
      controlPort: t.controlPort,
      files: listing.files.map((f) => f.path),
      savedAt: new Date().toISOString(),
    })
    if (err.code !== 'E_PENDING') return undefined
    return {
      state: 'pending',
      folder: listing.folder,
      host: {address: listing.host, id: listing.hostId, port: t.port},
      into: listing.into,
      ...(listing.via ? {via: listing.via} : {}),
      files: listing.files.map((f) => ({path: f.path, size: f.size, sha256: f.sha256, ...(f.url ? {url: f.url} : {}), target: f.target, state: f.state})),
      resume: `fpeer request --resume ${listing.folder}`,
    }
  }

  /** After a confirmed request: nothing is pending for the folder any more. */
  async confirmed(): Promise<void> {
    await this.#home.pending.remove(this.#target.folder)
  }
}
