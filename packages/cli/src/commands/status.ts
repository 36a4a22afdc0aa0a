// `fpeer status`: this peer's ID and shared folders.
import {type FolderSummary, folderSummaries, loadIdentity, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'
import {formatBytes} from '../util.js'

export default class Status extends BaseCommand<typeof Status> {
  static override summary = "Show this peer's ID and the folders it shares."
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --json | jq ".folders[].name"']

  async run(): Promise<{id: string; home: string; folders: FolderSummary[]}> {
    const identity = await loadIdentity(this.home)
    const folders = await folderSummaries(this.home)
    this.out(`peer ${identity.id.toString()}`)
    for (const f of folders) this.out(tty`${f.name}\t${f.path}\t${f.files} files\t${formatBytes(f.bytes)}\t${f.peers} peer(s)\t${f.open ? 'open' : 'allow-list'}`)
    if (folders.length === 0) this.note('no shared folders yet: `fpeer share <dir>` or `fpeer request <host> <folder>`')
    return {id: identity.id.toString(), home: this.home, folders}
  }
}
