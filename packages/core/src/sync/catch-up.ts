// Catching up with peers: at start (our changes out, then a state exchange with every peer) and periodically after.
import type {Startable} from '../lifecycle.js'
import {Tasks} from '../lifecycle.js'

export interface CatchUpOptions {
  /** The folders shared now. */
  folders: () => string[]
  /** Rescans a folder and pushes what changed while this peer was down; never throws. */
  rescan: (folder: string) => Promise<unknown>
  /** Exchanges state with every peer of the folders; `stopping` ends it between peers; never throws. */
  exchange: (folders: string[], stopping: () => boolean, quiet: boolean) => Promise<void>
  /** Every this many ms; 0: only at start. */
  intervalMs: number
  /** How long a round under way may go on after the stop began; it is cancelled through the signal first. */
  graceMs: number
}

/**
 * The start-up round (ours go out, then a state exchange with every peer, even with the
 * periodic catch-up off, takes theirs and hands over what we owe) and the periodic round.
 * A round is cancelled through the signal: it ends between peers, and the exchanges under
 * way are cut by the same signal in the session code.
 */
export class CatchUp implements Startable {
  readonly #options: CatchUpOptions
  readonly #rounds: Tasks
  #timer: NodeJS.Timeout | undefined
  #signal: AbortSignal | undefined
  #stopped = false
  readonly #onAbort = () => this.#halt()

  constructor(options: CatchUpOptions) {
    this.#options = options
    this.#rounds = new Tasks({graceMs: options.graceMs})
  }

  /** Timers running now (0 or 1): for tests that check a stop leaves none. */
  get timers(): number {
    return this.#timer ? 1 : 0
  }

  /** Rounds under way. */
  get running(): number {
    return this.#rounds.size
  }

  async start(signal: AbortSignal): Promise<void> {
    if (this.#stopped || signal.aborted || this.#signal) return
    this.#signal = signal
    await this.#rounds.start(signal)
    if (this.#stopped || signal.aborted) return
    signal.addEventListener('abort', this.#onAbort, {once: true})
    const o = this.#options
    const stopping = () => signal.aborted || this.#stopped
    if (o.intervalMs > 0) {
      this.#timer = setInterval(() => void this.#rounds.track(o.exchange(o.folders(), stopping, true)), o.intervalMs)
      this.#timer.unref()
    }
    void this.#rounds.track(
      (async () => {
        for (const f of o.folders()) if (!stopping()) await o.rescan(f)
        if (!stopping()) await o.exchange(o.folders(), stopping, false)
      })(),
    )
  }

  async stop(): Promise<void> {
    this.#signal?.removeEventListener('abort', this.#onAbort)
    this.#halt()
    await this.#rounds.stop()
  }

  #halt(): void {
    this.#stopped = true
    clearInterval(this.#timer)
    this.#timer = undefined
  }
}
