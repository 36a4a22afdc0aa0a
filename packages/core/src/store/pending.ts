// Requests waiting on the user (protocol MANUAL) or stopped by them (Ctrl-C): what `fpeer request --resume` needs to go on.
import path from 'node:path'
import {FpeerError} from '../errors.js'
import {LockedDb} from './locked-db.js'

/** One request that stopped with files still to place; enough to send the same request again. */
export interface PendingRequest {
  folder: string
  /** The host's control address and port, as given to `fpeer request`. */
  host: string
  port: number
  /** The host's peer ID as its signed FilesToGet proved it: a resumed request accepts no other (absent when stopped before one came). */
  hostId?: string
  into: string
  /** The protocol to ask for again ('' when the host chose: it chooses again). */
  protocol: string
  /** Why it is pending: files to place by hand (MANUAL, the default), or an interrupted transfer. */
  reason?: 'manual' | 'interrupted'
  bind?: string
  controlPort?: number
  /** Files still missing or wrong when it stopped (for `--json` and humans; the host's list decides). */
  files: string[]
  savedAt: string
}

interface PendingDoc {
  version: 1
  requests: Record<string, PendingRequest>
}

/** `<home>/pending.json`, keyed by folder name: a folder has at most one pending request. */
export class PendingStore {
  readonly #db: LockedDb<PendingDoc>

  constructor(home: string) {
    this.#db = new LockedDb<PendingDoc>(path.join(home, 'pending.json'), () => ({version: 1, requests: {}}), 0o600)
  }

  async list(): Promise<PendingRequest[]> {
    return Object.values((await this.#db.read()).requests).sort((a, b) => (a.folder < b.folder ? -1 : 1))
  }

  async save(request: PendingRequest): Promise<void> {
    await this.#db.update((doc) => {
      doc.requests[request.folder] = request
    })
  }

  async remove(folder: string): Promise<void> {
    if (!(await this.#db.read()).requests[folder]) return
    await this.#db.update((doc) => {
      delete doc.requests[folder]
    })
  }

  /** The pending request of `folder`, or the only one when no folder is named. Errors: E_STATE. */
  async find(folder?: string): Promise<PendingRequest> {
    const all = await this.list()
    const found = folder === undefined ? (all.length === 1 ? all[0] : undefined) : all.find((r) => r.folder === folder)
    if (found) return found
    if (folder !== undefined)
      throw new FpeerError('E_STATE', `no pending request for ${JSON.stringify(folder)}`, {
        hint: all.length ? `pending: ${all.map((r) => r.folder).join(', ')}` : 'start one with `fpeer request HOST FOLDER --protocol manual`',
      })
    throw new FpeerError('E_STATE', all.length ? `${all.length} pending requests; name the folder` : 'no pending request', {
      hint: all.length ? `pending: ${all.map((r) => r.folder).join(', ')}` : 'start one with `fpeer request HOST FOLDER --protocol manual`',
    })
  }
}
