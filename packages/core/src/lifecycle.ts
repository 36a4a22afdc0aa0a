// The one lifecycle of a peer's long-lived parts: started in order under one AbortSignal, stopped in reverse.

/**
 * A long-lived part of a running peer (the control server, a folder runner, stats, …).
 * Aborting the signal a part was started with begins its shutdown at once: timers cleared,
 * watchers and listening sockets closed, work in flight cancelled. `stop()` does the same
 * and resolves once the part holds no timer, socket or watcher. Both are safe to call
 * before `start`, and `stop()` twice.
 */
export interface Startable {
  /** Starts the part; throws (typed) when it cannot, after undoing what it began. */
  start(signal: AbortSignal): Promise<void>
  /** Ends the part and cancels its work; resolves when nothing of it is left running. */
  stop(): Promise<void>
}

/**
 * Parts sharing one lifecycle, in the style of js-libp2p's components: `start()` starts
 * them in order (a part may use the ones before it), `stop()` aborts the one signal and
 * then stops them in reverse, so a part is stopped before the parts it depends on.
 */
export class Lifecycle {
  readonly #parts: Startable[]
  readonly #abort = new AbortController()
  readonly #started: Startable[] = []
  #stopped: Promise<void> | undefined

  constructor(parts: Startable[]) {
    this.#parts = parts
  }

  /** Aborted when stop() begins: every part, and work started on the parts' behalf, ends with it. */
  get signal(): AbortSignal {
    return this.#abort.signal
  }

  /** Starts every part in order, or none: when one fails, what started is stopped (in reverse) and the error thrown. */
  async start(): Promise<void> {
    for (const part of this.#parts) {
      if (this.#abort.signal.aborted) break
      // Counted before it starts: a part that fails half-way is stopped with the others.
      this.#started.push(part)
      try {
        await part.start(this.#abort.signal)
      } catch (err) {
        await this.stop()
        throw err
      }
    }
  }

  /** Aborts the signal and stops the started parts in reverse; a second call waits for the first. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#abort.abort()
      for (const part of [...this.#started].reverse()) await part.stop().catch(() => {})
    })()
    return this.#stopped
  }
}

/**
 * Work a part started and does not await (a push, a rescan): tracked so that stop() can let
 * it end. Its grace begins when the signal aborts; what ignores the signal past the grace is
 * left behind rather than holding the stop.
 */
export class Tasks implements Startable {
  readonly #running = new Set<Promise<unknown>>()
  readonly #graceMs: number
  #graceEnds: number | undefined

  constructor(options: {graceMs: number}) {
    this.#graceMs = options.graceMs
  }

  get size(): number {
    return this.#running.size
  }

  track<T>(p: Promise<T>): Promise<T> {
    this.#running.add(p)
    void p.finally(() => this.#running.delete(p)).catch(() => {})
    return p
  }

  async start(signal: AbortSignal): Promise<void> {
    signal.addEventListener('abort', () => this.#beginGrace(), {once: true})
  }

  async stop(): Promise<void> {
    const ends = this.#beginGrace()
    while (this.#running.size > 0 && Date.now() < ends) {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([Promise.allSettled([...this.#running]), new Promise((r) => (timer = setTimeout(r, Math.min(ends - Date.now(), 50))))])
      clearTimeout(timer)
    }
  }

  #beginGrace(): number {
    this.#graceEnds ??= Date.now() + this.#graceMs
    return this.#graceEnds
  }
}
