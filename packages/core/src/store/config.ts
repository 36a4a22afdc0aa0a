// The peer's configuration: which folders it shares, and who may join each.
import path from 'node:path'
import {FpeerError} from '../errors.js'
import {PeerId} from '../identity.js'
import {checkFolderName} from '../wire/fields.js'
import {LockedDb} from './locked-db.js'

export interface FolderConfig {
  name: string
  /** Absolute path of the shared directory. */
  path: string
  /** Anyone may become a peer (the seed's behaviour); otherwise only `allow` and confirmed peers. */
  open: boolean
  /** Peer IDs (canonical form) allowed to join. */
  allow: string[]
  createdAt: string
}

interface ConfigDoc {
  version: 1
  folders: Record<string, FolderConfig>
}

export class ConfigStore {
  readonly #db: LockedDb<ConfigDoc>

  constructor(home: string) {
    this.#db = new LockedDb<ConfigDoc>(path.join(home, 'config.json'), () => ({version: 1, folders: {}}), 0o600)
  }

  async folders(): Promise<FolderConfig[]> {
    return Object.values((await this.#db.read()).folders).sort((a, b) => (a.name < b.name ? -1 : 1))
  }

  async folder(name: string): Promise<FolderConfig | undefined> {
    return (await this.#db.read()).folders[name]
  }

  async requireFolder(name: string): Promise<FolderConfig> {
    const f = await this.folder(name)
    if (!f) throw noSuchFolder(name)
    return f
  }

  /** Registers (or updates) a shared folder. A name already used for another directory is an error. */
  async share(input: {name: string; path: string; open?: boolean; allow?: string[]}): Promise<FolderConfig> {
    checkFolderName(input.name)
    const allow = (input.allow ?? []).map((id) => PeerId.parse(id).toString())
    return this.#db.update((doc) => {
      const old = doc.folders[input.name]
      if (old && old.path !== input.path) {
        throw new FpeerError('E_USAGE', `${input.name} is already shared from ${old.path}`, {hint: 'pick another --name'})
      }
      // One directory, one share: two names for it would index, watch and serve it twice and race on its files.
      const twin = Object.values(doc.folders).find((f) => f.name !== input.name && f.path === input.path)
      if (twin)
        throw new FpeerError('E_USAGE', `${input.path} is already shared as ${twin.name}`, {
          hint: `use the name ${twin.name}, or \`fpeer unshare ${twin.name}\` first`,
        })
      const f: FolderConfig = {
        name: input.name,
        path: input.path,
        open: input.open ?? old?.open ?? false,
        allow: [...new Set([...(old?.allow ?? []), ...allow])],
        createdAt: old?.createdAt ?? new Date().toISOString(),
      }
      doc.folders[input.name] = f
      return f
    })
  }

  /** Stops sharing a folder (the files stay); returns what it was. */
  async unshare(name: string): Promise<FolderConfig> {
    return this.#db.update((doc) => {
      const f = doc.folders[name]
      if (!f) throw noSuchFolder(name)
      delete doc.folders[name]
      return f
    })
  }

  /** Takes a peer ID off a folder's allow list; E_NOT_FOUND when it was not on it. */
  async disallow(name: string, id: string): Promise<FolderConfig> {
    const canonical = PeerId.parse(id).toString()
    return this.#db.update((doc) => {
      const f = doc.folders[name]
      if (!f) throw noSuchFolder(name)
      if (!f.allow.includes(canonical))
        throw new FpeerError('E_NOT_FOUND', `${canonical} is not allowed to join ${name}`, {hint: `see \`fpeer status --json\` for the allow list of ${name}`})
      f.allow = f.allow.filter((a) => a !== canonical)
      return f
    })
  }

  async allow(name: string, id: string): Promise<FolderConfig> {
    const canonical = PeerId.parse(id).toString()
    return this.#db.update((doc) => {
      const f = doc.folders[name]
      if (!f) throw noSuchFolder(name)
      if (!f.allow.includes(canonical)) f.allow.push(canonical)
      return f
    })
  }
}

function noSuchFolder(name: string): FpeerError {
  return new FpeerError('E_NO_SUCH_FOLDER', `no shared folder named ${JSON.stringify(name)}`, {hint: 'see `fpeer status` for the folders this peer shares'})
}
