// Long loops over a peer's input give the event loop back every few milliseconds, so one big message cannot stall a server's other connections.

/** How long a loop may hold the event loop before it yields (as scans do). */
export const SLICE_MS = 10

/**
 * Call `tick()` once per iteration of a long loop: it resolves at once while the current
 * slice lasts, and after a setImmediate (letting sockets, timers and other peers' messages
 * run) once SLICE_MS have passed.
 */
export class TimeSlice {
  readonly #now: () => number
  #start: number

  /** `now` is the clock (a test's own, to decide when a slice ends). */
  constructor(now: () => number = () => performance.now()) {
    this.#now = now
    this.#start = now()
  }

  async tick(): Promise<void> {
    if (this.#now() - this.#start < SLICE_MS) return
    await new Promise((resolve) => setImmediate(resolve))
    this.#start = this.#now()
  }
}
