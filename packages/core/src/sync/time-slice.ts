// Long loops over a peer's input give the event loop back every few milliseconds, so one big message cannot stall a server's other connections.

/** How long a loop may hold the event loop before it yields (as scans do). */
export const SLICE_MS = 10

/**
 * Call `tick()` once per iteration of a long loop: it resolves at once while the current
 * slice lasts, and after a setImmediate (letting sockets, timers and other peers' messages
 * run) once SLICE_MS have passed.
 */
export class TimeSlice {
  #start = performance.now()

  async tick(): Promise<void> {
    if (performance.now() - this.#start < SLICE_MS) return
    await new Promise((resolve) => setImmediate(resolve))
    this.#start = performance.now()
  }
}
