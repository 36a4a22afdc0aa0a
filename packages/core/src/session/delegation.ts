// Seed step 8: a busy host hands a BePeerRequest to another confirmed peer, with a signed ticket that peer checks.
import {FpeerError} from '../errors.js'
import {type Identity, PeerId, verifySignature} from '../identity.js'
import type {Message} from '../wire/types.js'

/** How long a delegation ticket is good for. */
export const TICKET_TTL_MS = 5 * 60_000

function ticketBytes(folder: string, requester: string, delegate: string, expires: number): Buffer {
  return Buffer.from(['fpeer-ticket-v1', folder, requester, delegate, String(expires)].join('\n'), 'utf8')
}

/** The host's ticket: "`requester` may join `folder` through `delegate` until `expires`", as PeerError attributes. */
export function issueTicket(host: Identity, folder: string, requester: PeerId, delegate: PeerId, now = Date.now()): Record<string, string> {
  const expires = now + TICKET_TTL_MS
  const sig = Buffer.from(host.sign(ticketBytes(folder, requester.compact, delegate.compact, expires))).toString('base64url')
  return {ticket: sig, 'ticket-by': host.id.compact, 'ticket-exp': String(expires)}
}

/**
 * Checks the ticket a delegated BePeerRequest carries: issued for this folder, this
 * requester and us, not expired, and signed by `issuer` (the caller checks the issuer is
 * a confirmed peer of the folder). Returns the issuer. Throws E_BAD_SIGNATURE or E_NOT_ALLOWED.
 */
export function checkTicket(msg: Message, requester: PeerId, self: PeerId): PeerId {
  const {ticket, 'ticket-by': by, 'ticket-exp': exp} = msg.meta
  const issuer = by ? PeerId.tryParse(by) : undefined
  if (!ticket || !issuer || !exp || !/^\d{1,15}$/.test(exp)) throw new FpeerError('E_MSG_BAD_FIELD', 'incomplete delegation ticket')
  if (Number(exp) < Date.now()) throw new FpeerError('E_NOT_ALLOWED', 'the delegation ticket has expired')
  if (!verifySignature(ticketBytes(msg.folder, requester.compact, self.compact, Number(exp)), Buffer.from(ticket, 'base64url'), issuer.publicKey)) {
    throw new FpeerError('E_BAD_SIGNATURE', 'the delegation ticket is not valid for this peer and requester')
  }
  return issuer
}
