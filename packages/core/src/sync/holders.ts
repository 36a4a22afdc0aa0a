// What each peer is known to hold, from its own offers and our confirmed pushes: a forward does not offer a peer a version it would skip.
import {type FileVersion, decide} from './version.js'

/** Paths remembered at most (over every folder); the oldest noted is forgotten first. */
export const HOLDERS_LIMIT = 50_000

/**
 * The version of each path each peer was last known to hold. An update floods: a peer with
 * several neighbours is offered each change by most of them, and each offer is a signed
 * handshake of four messages even when it carries nothing new (a hub of 8 neighbours spent
 * most of its time under churn on such offers). A peer that offered us a version, or
 * confirmed our push of it, holds it or something newer; what it would skip (the receiver's
 * own decision, `decide`) is not pushed to it again.
 *
 * Only ever makes pushes fewer, never wrong: a forgotten or stale note means one redundant
 * offer, as without it. A note is taken from a peer's signed offer (its versions checked) or
 * its confirmation, so a peer can only keep versions from itself. Bounded: HOLDERS_LIMIT paths.
 */
export class KnownHolders {
  readonly #limit: number
  /** `folder\0path` → peer ID → the version it holds. */
  readonly #byPath = new Map<string, Map<string, FileVersion>>()

  constructor(limit = HOLDERS_LIMIT) {
    this.#limit = Math.max(1, limit)
  }

  /** `peer` holds `versions` (it offered them, or confirmed them). */
  note(folder: string, peer: string, versions: readonly FileVersion[]): void {
    for (const v of versions) {
      const key = `${folder}\0${v.path}`
      let peers = this.#byPath.get(key)
      if (peers) this.#byPath.delete(key)
      else {
        peers = new Map()
        if (this.#byPath.size >= this.#limit) {
          const oldest = this.#byPath.keys().next()
          if (!oldest.done) this.#byPath.delete(oldest.value)
        }
      }
      // Most recent first out of the map's order: re-inserted, so the oldest noted go first.
      this.#byPath.set(key, peers)
      const held = peers.get(peer)
      // A note older than what is known (notes can arrive out of order) does not replace it.
      if (!held || decide(held, v).action !== 'skip') peers.set(peer, v)
    }
  }

  /** Whether `peer` is known to hold `v` or a version it would keep over `v` (it would skip `v`). */
  holds(folder: string, peer: string, v: FileVersion): boolean {
    const held = this.#byPath.get(`${folder}\0${v.path}`)?.get(peer)
    return held !== undefined && decide(held, v).action === 'skip'
  }

  /**
   * Forgets what `peer` was known to hold in `folder`: its whole structure was just seen (a
   * catch-up), and what it lacks there is the truth, whatever it offered before (a peer
   * restored from a backup holds less than it once did).
   */
  forget(folder: string, peer: string): void {
    const prefix = `${folder}\0`
    for (const [key, peers] of this.#byPath) if (key.startsWith(prefix)) peers.delete(peer)
  }

  /** Paths remembered (tests, diagnostics). */
  get size(): number {
    return this.#byPath.size
  }
}
