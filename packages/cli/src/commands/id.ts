// `fpeer id`: prints this peer's ID.
import {Flags} from '@oclif/core'
import {FpeerError} from '@fpeer/core/startup'
import {BaseCommand} from '../base.js'

export default class Id extends BaseCommand<typeof Id> {
  static override summary = "Print this peer's ID (its ed25519 public key, created on first use)."
  static override examples = ['<%= config.bin %> id', '<%= config.bin %> id --json | jq -r .id']
  static override flags = {
    new: Flags.boolean({description: 'replace a lost or damaged identity with a new one (every peer must trust the new ID again); needs --yes'}),
    yes: Flags.boolean({description: 'confirm --new'}),
  }

  async run(): Promise<{id: string}> {
    if (this.flags.new && !this.flags.yes)
      throw new FpeerError('E_USAGE', "--new replaces this peer's identity: its peers will no longer know it", {hint: 'add --yes to do it anyway'})
    const identity = await this.home.identity({replace: this.flags.new})
    this.out(identity.id.toString())
    return {id: identity.id.toString()}
  }
}
