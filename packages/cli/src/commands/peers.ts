// `fpeer peers`: a shared folder's peerlist.
import {Args} from '@oclif/core'
import {type PeerRecord, folderPeers, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'

export default class Peers extends BaseCommand<typeof Peers> {
  static override summary = "List a shared folder's confirmed peers."
  static override examples = ['<%= config.bin %> peers 00-MainDocuments', '<%= config.bin %> peers 00-MainDocuments --json | jq -r ".peers[].id"']
  static override args = {folder: Args.string({description: 'shared folder name', required: true})}

  async run(): Promise<{folder: string; peers: PeerRecord[]}> {
    const peers = await folderPeers(this.home, this.args.folder)
    for (const p of peers)
      this.out(tty`${p.id}\t${p.address}${p.controlPort ? `:${p.controlPort}` : ''}\t${p.role}\t${p.protocols.join(',')}\t${p.confirmedAt}`)
    if (peers.length === 0) this.note(tty`${this.args.folder} has no peers yet`)
    return {folder: this.args.folder, peers}
  }
}
