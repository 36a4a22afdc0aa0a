// `fpeer allow`: lets a peer join a shared folder.
import {Args} from '@oclif/core'
import {type FolderConfig, allowPeer, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'

export default class Allow extends BaseCommand<typeof Allow> {
  static override summary = 'Allow a peer (by ID) to join a shared folder.'
  static override examples = [
    '<%= config.bin %> allow 00-MainDocuments "$PEER_ID"',
    '<%= config.bin %> allow 00-MainDocuments "$PEER_ID" --json | jq ".allow | length"',
  ]
  static override args = {
    folder: Args.string({description: 'shared folder name', required: true}),
    id: Args.string({description: 'peer ID, as printed by `fpeer id`', required: true}),
  }

  async run(): Promise<FolderConfig> {
    const f = await allowPeer({home: this.home, folder: this.args.folder, id: this.args.id})
    this.out(tty`${f.name}: ${f.allow.length} allowed peer(s)`)
    return f
  }
}
