// `fpeer forget`: removes a peer from a folder's peerlist.
import {Args} from '@oclif/core'
import {forgetPeer, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'

export default class Forget extends BaseCommand<typeof Forget> {
  static override summary = "Remove a peer from a folder's peerlist: it no longer gets updates from here, and its updates are refused."
  static override description =
    'A running `fpeer serve` acts on it within a second. The peer may join again only if the folder is open or still allows its ID (see `fpeer disallow`).'
  static override examples = ['<%= config.bin %> peers 00-MainDocuments --json | jq -r ".peers[].id" | xargs -r -n 1 <%= config.bin %> forget 00-MainDocuments']
  static override args = {
    folder: Args.string({description: 'shared folder name', required: true}),
    id: Args.string({description: 'peer ID (as `fpeer peers` prints it), or plain:ADDRESS for a seed-form peer', required: true}),
  }

  async run(): Promise<{folder: string; id: string; peers: number}> {
    const r = await forgetPeer({home: this.home, folder: this.args.folder, id: this.args.id})
    this.out(tty`${r.folder}: forgot ${r.id}; ${r.peers} peer(s) left`)
    return r
  }
}
