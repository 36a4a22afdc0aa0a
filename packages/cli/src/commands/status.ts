// `fpeer status`: this peer's ID and shared folders.
import {type FolderSummary, folderSummaries, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'
import {formatBytes} from '../util.js'

export default class Status extends BaseCommand<typeof Status> {
  static override summary = "Show this peer's ID and the folders it shares."
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --json | jq ".folders[].name"']

  // Reads only: a peer without a key pair yet shows `id: null` (`fpeer id` creates one).
  async run(): Promise<{id: string | null; home: string; folders: FolderSummary[]}> {
    const identity = await this.home.readIdentity()
    const folders = await folderSummaries(this.home)
    if (identity) this.out(`peer ${identity.id.toString()}`)
    else this.note('no key pair yet: `fpeer id` (or share, request, serve) creates one')
    for (const f of folders)
      this.out(tty`${f.name}\t${f.path}\t${f.files} files\t${formatBytes(f.bytes)}\t${f.peers} peer(s)\t${f.open ? 'open' : 'allow-list'}`)
    if (folders.length === 0) this.note('no shared folders yet: `fpeer share <dir>` or `fpeer request <host> <folder>`')
    return {id: identity?.id.toString() ?? null, home: this.home.dir, folders}
  }
}
