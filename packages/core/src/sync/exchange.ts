// The state exchange a peer runs with each peer of each folder when it starts (or a lost peer returns): pull what it missed, offer what they lack.
import {type RetryPolicy, backoffMs} from '../net/retry.js'
import {isFpeerError} from '../errors.js'
import type {PeerRecord} from '../store/peerfile.js'
import type {FileRecord} from '../store/peerfile.js'
import type {Logger} from '../transport.js'
import type {FileEntry} from '../wire/types.js'
import type {FolderSync} from './folder.js'
import type {OwedForwards} from './owed.js'
import {type FileVersion, decide, entryToVersion} from './version.js'

/** What the exchange needs from the node that runs it. */
export interface ExchangeDeps {
  log: Logger
  sync(folder: string): FolderSync | undefined
  /** The folder's peers that updates go to (confirmed, with a control port, not seed-form). */
  peers(folder: string): PeerRecord[]
  owed(folder: string): OwedForwards
  /**
   * Catches up from `peer` (a confirmed peer's BePeerRequest, section 10.4); calls `seen` with
   * the structure the peer answered with (its FilesToGet's file lines), before applying it,
   * and not when another peer answered for it (delegation, 10.5).
   */
  pull(folder: string, peer: PeerRecord, seen: (files: FileEntry[]) => void): Promise<number>
  /** Pushes versions to one peer with the update flow (10.2); clears what it confirms from the owed forwards; retries on its own. */
  push(folder: string, peer: PeerRecord, versions: FileVersion[]): Promise<void>
  /**
   * The running node's signal: with it, an exchange whose pull did not reach the peer is tried
   * again on its own (EXCHANGE_RETRY) until the signal aborts; without it (one-shot use), never.
   */
  signal?(): AbortSignal | undefined
  /** Keeps a retried exchange in the owner's work under way. */
  track?<T>(p: Promise<T>): Promise<T>
  /** The retry policy (tests); default EXCHANGE_RETRY. */
  retry?: Readonly<RetryPolicy>
}

/**
 * An exchange whose pull did not reach the peer (it was down, starting, or too busy to answer
 * in time) is tried again after 2 s, 4 s, … 30 s, 6 tries: two peers that both restarted, or
 * that time out under load, must not wait for one of them to change a file (or for the
 * periodic catch-up, minutes away) before they agree again.
 */
export const EXCHANGE_RETRY: Readonly<RetryPolicy> = {retries: 6, baseMs: 2000, maxMs: 30_000}

/**
 * The versions we hold that a peer lacks, given its structure: every version of ours the
 * peer would not skip (10.3): a path it has no version of, or one ours supersedes or is
 * concurrent with. Originals (files without a version) are never offered: they are what
 * both sides started from. Pure.
 */
export function lacking(theirs: readonly FileEntry[], ours: ReadonlyMap<string, FileRecord>): FileVersion[] {
  const their = new Map<string, FileVersion | undefined>()
  for (const e of theirs) {
    let v: FileVersion | undefined
    try {
      v = entryToVersion(e)
    } catch {
      v = undefined // a line we cannot read: offer ours, the peer decides
    }
    their.set(e.path, v)
  }
  const out: FileVersion[] = []
  for (const r of ours.values()) {
    const v = r.version
    if (!v) continue
    const t = their.get(r.path)
    // A deletion of a path the peer never had: nothing to tell it.
    if (v.deleted && !their.has(r.path)) continue
    if (!t || decide(t, v).action !== 'skip') out.push(v)
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : 1))
}

/** Failures of a pull that say the peer was not reached (down, starting, too busy), not that it refused. */
const UNREACHED = new Set(['E_CONNECT', 'E_TIMEOUT', 'E_CONNECTION_LOST', 'E_BUSY'])

/**
 * Failures of a pull that reached the peer but did not finish, and will on another try: a file
 * changed there while we fetched it (gone, another size or hash), or its grant ran out (403)
 * while a busy machine fetched slowly. Under churn these are common; left to the periodic
 * catch-up, what the pull missed waited minutes (for ever with it off).
 */
const PULL_AGAIN = new Set([...UNREACHED, 'E_ACCESS', 'E_NOT_FOUND', 'E_SIZE_MISMATCH', 'E_HASH_MISMATCH'])

/** An exchange under way with one peer: whether its pull has answered, and whether a call since wants it run again. */
interface Running {
  pulled: boolean
  again: boolean
  run: Promise<{pulled: number; offered: number}>
}

/** Peers exchanged with at once; a folder with more peers is worked through in turns. */
const PARALLEL = 8

/**
 * Exchanges state with peers in both directions. With one peer: a catch-up pull (its
 * structure comes with it, so there is no separate summary round trip), then ONE push of
 * what it lacks plus what is owed to it. Each change is fetched once per peer: the pull
 * takes only what is newer, and a push offers only what the peer's own structure lacked.
 */
export class StateExchange {
  readonly #deps: ExchangeDeps
  /** Peers a push could not reach, by `folder\0id`: the next successful contact exchanges with them. */
  readonly #lost = new Set<string>()
  /** Exchanges to try again, by `folder\0id`: failed attempts so far and the timer of the next. */
  readonly #retries = new Map<string, {attempt: number; timer: NodeJS.Timeout | undefined}>()
  /** The exchange under way with each peer of each folder, by `folder\0id` (see withPeer). */
  readonly #running = new Map<string, Running>()
  #watching: AbortSignal | undefined

  constructor(deps: ExchangeDeps) {
    this.#deps = deps
  }

  /**
   * With one peer of one folder. Never throws for an unreachable peer: it is logged (at debug
   * level when `quiet`: the periodic round) and left to its own exchange when it starts.
   */
  withPeer(folder: string, peer: PeerRecord, quiet = false): Promise<{pulled: number; offered: number}> {
    // One exchange per peer at a time. Its start, a retry's timer, a push that found it again
    // and its own contact each asked for one: under churn a hub ran two or three at once with
    // the same peer, each pulling its whole structure and pushing the same versions. A call
    // while one runs joins it; if that one's pull has already answered (so it may not have
    // seen what prompted the call), it runs once more when it ends, however many calls came.
    const key = `${folder}\0${peer.id}`
    const running = this.#running.get(key)
    if (running) {
      if (running.pulled) running.again = true
      return running.run
    }
    const entry: Running = {pulled: false, again: false, run: Promise.resolve({pulled: 0, offered: 0})}
    entry.run = (async () => {
      try {
        let result = await this.#exchange(folder, peer, quiet, entry)
        while (entry.again) {
          entry.again = false
          entry.pulled = false
          const more = await this.#exchange(folder, peer, quiet, entry)
          result = {pulled: result.pulled + more.pulled, offered: result.offered + more.offered}
        }
        return result
      } finally {
        this.#running.delete(key)
      }
    })()
    this.#running.set(key, entry)
    return entry.run
  }

  async #exchange(folder: string, peer: PeerRecord, quiet: boolean, entry: Running): Promise<{pulled: number; offered: number}> {
    const sync = this.#deps.sync(folder)
    if (!sync) return {pulled: 0, offered: 0}
    let theirs: FileEntry[] | undefined
    let pulled = 0
    try {
      pulled = await this.#deps.pull(folder, peer, (files) => {
        theirs = files
        entry.pulled = true
      })
      this.#settled(folder, peer.id)
    } catch (err) {
      const code = isFpeerError(err) ? err.code : 'E_INTERNAL'
      const what = UNREACHED.has(code) ? 'state exchange: peer not reached' : 'state exchange: the pull did not finish'
      this.#deps.log[quiet ? 'debug' : 'info'](what, {folder, peer: peer.id.slice(0, 7), code, reason: (err as Error).message})
      // Without its structure only what is owed goes to it below, not our own versions it may
      // lack: exchanged with again as soon as it is heard from (its push, its request, our push).
      // A pull that failed after the peer answered still offers what its structure lacks.
      if (UNREACHED.has(code)) this.lost(folder, peer.id)
      if (PULL_AGAIN.has(code)) this.#retryLater(folder, peer.id)
    } finally {
      entry.pulled = true
    }
    const records = await sync.records()
    const owed = this.#deps.owed(folder)
    const due = await owed.due(peer.id, records)
    // Owed entries are versions we hold, so `lacking` has each that the peer still lacks; the
    // rest the peer's signed structure shows it holds: as good as its confirmation.
    const batch = theirs ? lacking(theirs, records) : due
    if (theirs) {
      const offered = new Set(batch.map((v) => v.path))
      await owed.paid(
        peer.id,
        due.filter((v) => !offered.has(v.path)),
      )
    }
    if (batch.length > 0) await this.#deps.push(folder, peer, batch)
    if (pulled || batch.length) this.#deps.log.info('state exchanged', {folder, peer: peer.id.slice(0, 7), pulled, offered: batch.length, owed: due.length})
    return {pulled, offered: batch.length}
  }

  /** With every peer of every folder, `PARALLEL` at a time; `stopping` ends it between peers. */
  async all(folders: readonly string[], stopping: () => boolean, quiet = false): Promise<void> {
    const jobs: Array<[string, PeerRecord]> = []
    for (const f of folders) {
      const peers = this.#deps.peers(f)
      const owed = this.#deps.owed(f)
      try {
        const aside = await owed.recover()
        if (aside) this.#deps.log.warn('owed forwards were damaged: set aside; the state exchange finds what they held', {folder: f, path: owed.file, aside})
        await owed.keepOnly(peers.map((p) => p.id))
      } catch (err) {
        this.#deps.log.warn('cannot tidy owed forwards', {folder: f, code: isFpeerError(err) ? err.code : 'E_INTERNAL', reason: (err as Error).message})
      }
      for (const p of peers) jobs.push([f, p])
    }
    let next = 0
    const worker = async () => {
      for (let job = jobs[next]; job !== undefined && !stopping(); job = jobs[next]) {
        next++
        const [f, p] = job
        await this.withPeer(f, p, quiet).catch((err: Error) =>
          this.#deps.log.warn('state exchange failed', {
            folder: f,
            peer: p.id.slice(0, 7),
            code: isFpeerError(err) ? err.code : 'E_INTERNAL',
            reason: err.message,
          }),
        )
      }
    }
    await Promise.all(Array.from({length: Math.min(PARALLEL, jobs.length)}, worker))
  }

  /** A push to the peer failed for want of a connection: it is exchanged with once it answers again. */
  lost(folder: string, peerId: string): void {
    this.#lost.add(`${folder}\0${peerId}`)
  }

  /** The peer answered (a push went through): true once after it was lost, when the caller should exchange with it. */
  regained(folder: string, peerId: string): boolean {
    const was = this.#lost.delete(`${folder}\0${peerId}`)
    // The caller's exchange replaces a retry still waiting.
    if (was) this.#settled(folder, peerId)
    return was
  }

  /** Exchanges waiting to be tried again (tests, diagnostics). */
  get retrying(): number {
    return [...this.#retries.values()].filter((r) => r.timer).length
  }

  /** The pull reached the peer (or the caller exchanges anyway): no retry is due. */
  #settled(folder: string, peerId: string): void {
    const key = `${folder}\0${peerId}`
    clearTimeout(this.#retries.get(key)?.timer)
    this.#retries.delete(key)
  }

  /** Tries the exchange with an unreached peer again after the backoff, while the node runs. */
  #retryLater(folder: string, peerId: string): void {
    const signal = this.#deps.signal?.()
    if (!signal || signal.aborted) return
    if (this.#watching !== signal) {
      this.#watching = signal
      // One listener for every retry of this run: they all end with it.
      signal.addEventListener(
        'abort',
        () => {
          for (const r of this.#retries.values()) clearTimeout(r.timer)
          this.#retries.clear()
        },
        {once: true},
      )
    }
    const key = `${folder}\0${peerId}`
    const entry = this.#retries.get(key) ?? {attempt: 0, timer: undefined}
    if (entry.timer) return
    const policy = this.#deps.retry ?? EXCHANGE_RETRY
    if (entry.attempt >= policy.retries) {
      // Past that, its own exchange when it starts, its next contact or the periodic catch-up.
      this.#retries.delete(key)
      return
    }
    entry.timer = setTimeout(
      () => {
        entry.timer = undefined
        entry.attempt++
        const peer = this.#deps.peers(folder).find((p) => p.id === peerId)
        if (!peer || signal.aborted) {
          this.#retries.delete(key)
          return
        }
        const run = this.withPeer(folder, peer, true).catch((err: Error) =>
          this.#deps.log.warn('state exchange failed', {
            folder,
            peer: peerId.slice(0, 7),
            code: isFpeerError(err) ? err.code : 'E_INTERNAL',
            reason: err.message,
          }),
        )
        void (this.#deps.track ? this.#deps.track(run) : run)
      },
      backoffMs(policy, entry.attempt),
    )
    entry.timer.unref()
    this.#retries.set(key, entry)
  }
}
