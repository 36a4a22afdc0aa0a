// Overlapping the two transfers (docs/protocol.md 4.9): the requester announces files as they land, the host checks them back meanwhile.
import {FpeerError} from '../errors.js'
import type {FetchResult} from '../transfer/fetch.js'
import type {TransferClient} from '../transport.js'
import {type FileEntry, type FilesUpdated, extWith, withExt} from '../wire/types.js'

/** The attributes of a line announcing a file still being fetched (4.10), shared by lines that have none of their own. */
const GROWING = Object.freeze({grow: '1'})

/** A file the host checks back: its own path, hash and size (never the requester's claim). */
export interface CheckFile {
  path: string
  sha256: string
  size: number
}

/**
 * The requester's side: collects the files that landed (each already hash-checked and
 * renamed into place) and sends them in progress messages: the first `firstMs` after the
 * first file landed, so the host starts checking soon, then at most one per `everyMs`, at
 * most `maxFiles` lines each. Each message costs a signature on each side (milliseconds in
 * pure-JS ed25519), and each batch a round of the host's fetch-back: few, large ones.
 * Sending is best effort: a failed send stops announcing, and the final FilesUpdated,
 * which lists every file, is what the host must have in any case.
 */
export class LandedAnnouncer {
  #pending: FileEntry[] = []
  #timer: NodeJS.Timeout | undefined
  #sending: Promise<void> = Promise.resolve()
  #stopped = false
  #failed = false
  readonly #send: (files: FileEntry[]) => Promise<void>
  readonly #firstMs: number
  readonly #everyMs: number
  readonly #maxFiles: number
  #flushed = false
  /** Files announced while still being fetched (4.10): not announced again once they land. */
  readonly #growing = new Set<string>()

  constructor(send: (files: FileEntry[]) => Promise<void>, options: {firstMs?: number; everyMs?: number; maxFiles?: number} = {}) {
    this.#send = send
    this.#firstMs = options.firstMs ?? 50
    this.#everyMs = options.everyMs ?? 250
    this.#maxFiles = options.maxFiles ?? 2048
  }

  /** A file of the FilesToGet is now in place, with the host's content. */
  landed(entry: FileEntry): void {
    if (this.#stopped || this.#growing.has(entry.path)) return
    this.#pending.push(entry)
    if (this.#pending.length >= this.#maxFiles) this.#flush()
    else this.#timer ??= setTimeout(() => this.#flush(), this.#flushed ? this.#everyMs : this.#firstMs)
  }

  /**
   * A large file of the FilesToGet is being fetched and its part is served as it grows
   * (4.10): announced at once, alone, with `grow=1`, so the host reads it back while it comes.
   */
  growing(entry: FileEntry): void {
    if (this.#stopped || this.#growing.has(entry.path)) return
    this.#growing.add(entry.path)
    this.#queue([withExt(entry, entry.ext ? extWith(entry.ext, 'grow', '1') : GROWING)])
  }

  #flush(): void {
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
    if (this.#pending.length === 0 || this.#stopped) return
    const files = this.#pending
    this.#pending = []
    this.#flushed = true
    this.#queue(files)
  }

  #queue(files: FileEntry[]): void {
    // One after the other, so the host reads them in the order they were made.
    this.#sending = this.#sending
      .then(() => (this.#failed ? undefined : this.#send(files)))
      .catch(() => {
        this.#failed = true
        this.#stopped = true
      })
  }

  /** Stops announcing (what is still pending goes in the final FilesUpdated) and waits for the sends already begun. */
  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer) clearTimeout(this.#timer)
    this.#timer = undefined
    this.#pending = []
    await this.#sending
  }
}

/**
 * The host's side: one connection to the requester's server, fed with files as progress
 * messages announce them and closed by the final FilesUpdated. Every file is checked
 * against the host's own hash and size, exactly as the fetch-back after FilesUpdated does.
 */
export class FetchBack {
  #queue: CheckFile[] = []
  #wake: (() => void) | undefined
  #ended = false
  readonly #abort = new AbortController()
  readonly #result = {files: 0, bytes: 0}
  readonly #run: Promise<{files: number; bytes: number}>
  readonly #connect: <T>(work: (client: TransferClient) => Promise<T>) => Promise<T>
  readonly #verify: (client: TransferClient, files: CheckFile[], signal: AbortSignal) => Promise<FetchResult>
  /** Files still being fetched by the requester (4.10), each checked on a connection of its own, at most `#maxLanes` at once. */
  readonly #growing: CheckFile[] = []
  readonly #lanes = new Set<Promise<void>>()
  readonly #maxLanes: number
  #failure: ((err: unknown) => void) | undefined
  /** Rejects with the first failure and never resolves: raced against the next control message. */
  readonly failed: Promise<never>

  /**
   * `connect` opens a client for a whole check and closes it after; `verify` checks one
   * batch of files with it (fetchFiles in verify mode), stopping on `signal`. Files still
   * being fetched are checked `lanes` at a time (default 4), each with its own client.
   */
  constructor(
    connect: <T>(work: (client: TransferClient) => Promise<T>) => Promise<T>,
    verify: (client: TransferClient, files: CheckFile[], signal: AbortSignal) => Promise<FetchResult>,
    options: {lanes?: number} = {},
  ) {
    this.#connect = connect
    this.#verify = verify
    this.#maxLanes = options.lanes ?? 4
    this.failed = new Promise<never>((_, reject) => (this.#failure = reject))
    this.#run = connect(async (client) => {
      for (;;) {
        if (this.#queue.length === 0) {
          if (this.#ended) return this.#result
          await new Promise<void>((resolve) => (this.#wake = resolve))
          continue
        }
        // All that is queued in one call, so the transport batches and runs it side by side.
        const files = this.#queue
        this.#queue = []
        this.#count(await verify(client, files, this.#abort.signal))
      }
    })
    this.#run.catch((err: unknown) => this.#fail(err))
    // Whoever races `failed` sees the failure; nobody else has to.
    this.failed.catch(() => {})
  }

  #count(r: FetchResult): void {
    this.#result.files += r.files
    this.#result.bytes += r.bytes
  }

  #fail(err: unknown): void {
    this.#failure?.(err)
    this.#failure = undefined
  }

  add(files: CheckFile[]): void {
    if (this.#ended) throw new FpeerError('E_INTERNAL', 'files added to a finished fetch-back')
    // Not push(...files): the final FilesUpdated of a 1,000,000-file folder may add most of them, past the engine's argument limit.
    for (const f of files) this.#queue.push(f)
    this.#wakeUp()
  }

  /** Files the requester still fetches (4.10): each is read back as it grows, beside the other checks. */
  follow(files: CheckFile[]): void {
    if (this.#ended) throw new FpeerError('E_INTERNAL', 'files added to a finished fetch-back')
    for (const f of files) this.#growing.push(f)
    this.#startLanes()
  }

  #startLanes(): void {
    while (this.#lanes.size < this.#maxLanes && !this.#abort.signal.aborted) {
      const file = this.#growing.shift()
      if (!file) return
      const lane: Promise<void> = this.#connect((client) => this.#verify(client, [file], this.#abort.signal))
        .then((r) => this.#count(r))
        .catch((err: unknown) => {
          this.#fail(err)
          throw err
        })
        .finally(() => {
          this.#lanes.delete(lane)
          this.#startLanes()
        })
      lane.catch(() => {})
      this.#lanes.add(lane)
    }
  }

  #wakeUp(): void {
    const w = this.#wake
    this.#wake = undefined
    w?.()
  }

  /** No more files: resolves once every file added was checked, or throws the first failure. */
  async finish(): Promise<{files: number; bytes: number}> {
    this.#ended = true
    this.#wakeUp()
    // The first failure of any check, as soon as it comes; else every check's end.
    await Promise.race([this.failed, this.#all()])
    return this.#result
  }

  /** Resolves once the queue's loop and every lane (including lanes started while waiting) are over. */
  async #all(): Promise<void> {
    await this.#run
    // A lane that ends starts the next before it settles, so the set is never empty early.
    while (this.#lanes.size > 0) await Promise.all([...this.#lanes])
  }

  /** Stops a check that will not be finished (the handshake failed) and waits until its connections are closed. */
  async cancel(): Promise<void> {
    this.#ended = true
    this.#queue = []
    this.#growing.length = 0
    this.#abort.abort(new FpeerError('E_INTERRUPTED', 'the handshake ended'))
    this.#wakeUp()
    await this.#run.catch(() => {})
    while (this.#lanes.size > 0) await Promise.allSettled([...this.#lanes])
  }
}

/** Is this FilesUpdated a progress message (`part=1`, 4.9) rather than the final one? */
export function isProgress(fu: FilesUpdated): boolean {
  return fu.meta.part === '1'
}

/**
 * The files a progress message announces, as the host will check them: each MUST be a file
 * of the FilesToGet not announced yet (`unannounced`, the host's own lines) and is taken out
 * of it, so a second mention is refused; a hash or size on the line MUST be the host's. The
 * host's own entries are returned (no copy per file): what is left in `unannounced` is what
 * the final FilesUpdated leaves to check.
 */
export function progressFiles(fu: FilesUpdated, unannounced: Map<string, FileEntry>): CheckFile[] {
  const out: CheckFile[] = []
  for (const f of fu.files) {
    const ours = unannounced.get(f.path)
    if (!ours)
      throw new FpeerError(
        'E_MSG_BAD_FIELD',
        `a progress FilesUpdated names ${JSON.stringify(f.path)}, which is not a file of the FilesToGet or was named before`,
      )
    if ((f.sha256 !== undefined && f.sha256 !== ours.sha256) || (f.size !== undefined && f.size !== ours.size))
      throw new FpeerError('E_MSG_BAD_FIELD', `a progress FilesUpdated gives ${JSON.stringify(f.path)} other content than the FilesToGet`)
    if (!isCheckable(ours)) throw new FpeerError('E_INTERNAL', `the host's own line for ${JSON.stringify(f.path)} has no hash or size`)
    unannounced.delete(f.path)
    out.push(ours)
  }
  return out
}

/**
 * The files a progress message announces as still being fetched (`grow=1`, 4.10), or
 * undefined when it names none. Only a handshake that agreed on `follow=1` may carry them,
 * and `grow` takes no other value.
 */
export function growingFiles(fu: FilesUpdated, agreed: boolean): Set<string> | undefined {
  let out: Set<string> | undefined
  for (const f of fu.files) {
    const grow = f.ext?.grow
    if (grow === undefined) continue
    if (grow !== '1')
      throw new FpeerError('E_MSG_BAD_FIELD', `a progress FilesUpdated gives ${JSON.stringify(f.path)} grow=${JSON.stringify(grow)}; only grow=1 is defined`)
    if (!agreed)
      throw new FpeerError(
        'E_MSG_BAD_FIELD',
        `a progress FilesUpdated names ${JSON.stringify(f.path)} as still being fetched (grow=1) in a handshake that did not agree on follow=1`,
      )
    ;(out ??= new Set()).add(f.path)
  }
  return out
}

/** A host's own line carries its hash and size: it is a CheckFile as it is. */
export function isCheckable(f: FileEntry): f is FileEntry & CheckFile {
  return f.sha256 !== undefined && f.size !== undefined
}

/** The port, protocol and grant of two FilesUpdated of one handshake agree (the fetch-back uses one connection). */
export function sameEndpoint(a: {protocol: string; port: number; grant: string | undefined}, b: FilesUpdated): boolean {
  return a.protocol === b.protocol && a.port === b.port && a.grant === b.meta.grant
}
