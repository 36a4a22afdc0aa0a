// Read grants: who may fetch a folder's files from this peer's transfer servers, by secret or by key, never by address.
import {createHash, randomBytes} from 'node:crypto'
import type {PeerId} from '../identity.js'
import type {AccessContext} from '../transport.js'

/** A grant: read access to one folder for one conversation, carried as `grant=` in a signed message. */
export interface Grant {
  folder: string
  /** The secret a fetcher presents (HTTP `Authorization: Bearer`, FTP password, `?grant=`). */
  token: string
  /** The peer it was issued to, when known: an SFTP login by that key is let in too. */
  peer: PeerId | undefined
  /** Ends the grant; safe to call twice. */
  revoke(): void
}

function digest(token: string): string {
  return createHash('sha256').update(token).digest('hex')
}

/** A fresh grant secret: 32 random bytes, base64url. */
export function newGrantToken(): string {
  return randomBytes(32).toString('base64url')
}

/**
 * The grants a peer has issued. Lookups are by a digest of the secret, so comparing a
 * presented secret leaks nothing useful through timing.
 */
export class GrantTable {
  readonly #byDigest = new Map<string, {folder: string; peer: PeerId | undefined}>()

  issue(folder: string, peer: PeerId | undefined, token = newGrantToken()): Grant {
    const d = digest(token)
    const entry = {folder, peer}
    this.#byDigest.set(d, entry)
    return {folder, token, peer, revoke: () => void (this.#byDigest.get(d) === entry && this.#byDigest.delete(d))}
  }

  /** Does `who` hold a grant for `folder`: the secret it presented, or its verified key? */
  allows(folder: string, who: AccessContext): boolean {
    if (who.grant) {
      const g = this.#byDigest.get(digest(who.grant))
      if (g && g.folder === folder) return true
    }
    if (who.peer) for (const g of this.#byDigest.values()) if (g.folder === folder && g.peer?.equals(who.peer)) return true
    return false
  }

  get size(): number {
    return this.#byDigest.size
  }
}
