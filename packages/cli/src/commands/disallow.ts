// `fpeer disallow`: takes a peer off a folder's allow list.
import {Args} from '@oclif/core'
import {type FolderConfig, disallowPeer, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'

export default class Disallow extends BaseCommand<typeof Disallow> {
  static override summary = "Revoke a peer's permission (given by `fpeer allow` or --allow) to join a shared folder."
  static override description =
    'A running `fpeer serve` refuses its next request. A peer that has already joined stays in the peerlist (and keeps getting updates) until `fpeer forget` removes it.'
  static override examples = [
    '<%= config.bin %> allow 00-MainDocuments "$PEER_ID" && <%= config.bin %> disallow 00-MainDocuments "$PEER_ID"',
    '<%= config.bin %> allow 00-MainDocuments "$PEER_ID" && <%= config.bin %> disallow 00-MainDocuments "$PEER_ID" --json | jq ".allow | length"',
  ]
  static override args = {
    folder: Args.string({description: 'shared folder name', required: true}),
    id: Args.string({description: 'peer ID, as printed by `fpeer id`', required: true}),
  }

  async run(): Promise<FolderConfig & {stillPeer: boolean}> {
    const f = await disallowPeer({home: this.home, folder: this.args.folder, id: this.args.id})
    this.out(tty`${f.name}: ${f.allow.length} allowed peer(s)`)
    if (f.stillPeer) this.note(tty`note: the peer has already joined ${f.name}; \`fpeer forget ${f.name} ID\` removes it from the peerlist`)
    return f
  }
}
