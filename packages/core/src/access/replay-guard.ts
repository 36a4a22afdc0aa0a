// The replay guard: a conversation-opening signed message is accepted once, within a time window, and only by the peer it was meant for.
import {FpeerError} from '../errors.js'
import type {PeerId} from '../identity.js'
import type {Message} from '../wire/types.js'

/** How far a signed message's `ts=` may be from this peer's clock, either way (docs/protocol.md §4.5). */
export const MESSAGE_WINDOW_MS = 5 * 60_000
/** Nonces remembered at most; past that, new messages are refused (E_BUSY) rather than forgetting one still inside the window. */
export const MAX_REMEMBERED_NONCES = 200_000

/** Formats a transport address as `dst=` carries it: `a.b.c.d:port`, or `[v6]:port`. */
export function formatDestination(address: string, port: number): string {
  const a = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
  return a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`
}

/**
 * Remembers the nonces of signed messages that open a conversation (BePeerRequest, an
 * update's FilesToGet) for twice the window, so a copy replayed inside the window is
 * refused and one replayed later is refused as stale. Memory is bounded: when full of
 * nonces that are all still needed, the guard refuses new messages instead of forgetting.
 */
export class ReplayGuard {
  readonly windowMs: number
  readonly #max: number
  /** key → expiry; insertion order is (nearly) expiry order, so the oldest come first. */
  readonly #seen = new Map<string, number>()

  constructor(options: {windowMs?: number; max?: number} = {}) {
    this.windowMs = options.windowMs ?? MESSAGE_WINDOW_MS
    this.#max = options.max ?? MAX_REMEMBERED_NONCES
  }

  get size(): number {
    return this.#seen.size
  }

  /**
   * Checks a verified message from `sender`: `ts=` within the window (E_STALE_MESSAGE),
   * `nonce=` not seen before (E_REPLAY), and remembers it. Call only after the signature
   * checked out, so nobody fills the cache with other peers' names.
   */
  check(msg: Message, sender: PeerId, now = Date.now()): void {
    const ts = Number(msg.meta.ts)
    const nonce = msg.meta.nonce
    if (!nonce || !/^\d{1,16}$/.test(msg.meta.ts ?? ''))
      throw new FpeerError('E_STALE_MESSAGE', `${msg.type} from ${sender.short} carries no ts= or nonce=`, {
        hint: 'the peer runs an older fpeer; both sides need the same version',
      })
    if (Math.abs(now - ts) > this.windowMs) {
      throw new FpeerError(
        'E_STALE_MESSAGE',
        `${msg.type} from ${sender.short} was sent ${Math.round((now - ts) / 1000)} s from now; at most ${this.windowMs / 1000} s allowed`,
        {
          hint: "check both computers' clocks",
        },
      )
    }
    this.#expire(now)
    // A copy of its own: `nonce` is a slice of the message's text, and a key made of it would keep that whole text for the key's 10 minutes.
    const key = ownCopy(`${sender.compact}:${nonce}`)
    if (this.#seen.has(key)) throw new FpeerError('E_REPLAY', `${msg.type} from ${sender.short} was seen before (replayed)`)
    if (this.#seen.size >= this.#max) throw new FpeerError('E_BUSY', 'too many recent requests; try again in a few minutes')
    this.#seen.set(key, now + 2 * this.windowMs)
  }

  #expire(now: number): void {
    for (const [k, expiry] of this.#seen) {
      if (expiry > now) break
      this.#seen.delete(k)
    }
  }
}

/** `s` in a string of its own (a fresh flat one), tied to no slice of a larger string nor to a chain of concatenations. */
function ownCopy(s: string): string {
  return Buffer.from(s, 'utf8').toString('utf8')
}

/**
 * Checks that a conversation-opening message was meant for this peer: `dst=` (the address
 * and port the sender connected to) MUST be the local end of this connection or one of the
 * addresses this peer is known by from outside (`serve --public-address`, for NAT and port
 * forwards); `to=` (the peer ID the sender expected), when present, MUST be ours. So a peer
 * that receives a signed message cannot relay it to another host and be answered there.
 */
export function checkDestination(msg: Message, self: PeerId, local: {address: string; port: number}, publicAddresses: readonly string[] = []): void {
  const to = msg.meta.to
  if (to !== undefined && to !== self.compact)
    throw new FpeerError('E_WRONG_DESTINATION', `${msg.type} was meant for another peer (${to.slice(0, 7)}), not this one`)
  const dst = msg.meta.dst
  if (dst === undefined)
    throw new FpeerError('E_WRONG_DESTINATION', `${msg.type} is not bound to a destination (no dst=)`, {hint: 'the peer runs an older fpeer'})
  const here = formatDestination(local.address, local.port)
  if (dst !== here && !publicAddresses.includes(dst)) {
    throw new FpeerError('E_WRONG_DESTINATION', `${msg.type} was sent to ${dst}, not to this peer (${here})`, {
      hint: 'a peer reached through NAT or a port forward lists that address with `fpeer serve --public-address HOST:PORT`',
    })
  }
}
