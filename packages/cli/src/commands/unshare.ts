// `fpeer unshare`: stops sharing a folder; its files stay where they are.
import {Args, Flags} from '@oclif/core'
import {type FolderConfig, tty, unshareFolder} from '@fpeer/core'
import {BaseCommand} from '../base.js'

export default class Unshare extends BaseCommand<typeof Unshare> {
  static override summary = 'Stop sharing a folder; its files are kept.'
  static override description = `A running \`fpeer serve\` stops serving, watching and syncing it within a second. The folder's state (peerlist and file structure) is removed too, unless --keep-state keeps it for sharing the same directory again later.`
  static override examples = ['<%= config.bin %> unshare 00-MainDocuments', '<%= config.bin %> unshare 00-MainDocuments --keep-state --json']
  static override args = {folder: Args.string({description: 'shared folder name', required: true})}
  static override flags = {
    'keep-state': Flags.boolean({description: "keep the folder's peerlist and file structure in the home"}),
  }

  async run(): Promise<FolderConfig & {stateRemoved: boolean}> {
    const f = await unshareFolder({home: this.home, folder: this.args.folder, keepState: this.flags['keep-state']})
    this.out(tty`unshared ${f.name}; its files stay in ${f.path}${f.stateRemoved ? '' : ' (state kept)'}`)
    return f
  }
}
