// `fpeer id`: prints this peer's ID.
import {loadIdentity} from '@fpeer/core'
import {BaseCommand} from '../base.js'

export default class Id extends BaseCommand<typeof Id> {
  static override summary = "Print this peer's ID (its ed25519 public key, created on first use)."
  static override examples = ['<%= config.bin %> id', '<%= config.bin %> id --json | jq -r .id']

  async run(): Promise<{id: string}> {
    const identity = await loadIdentity(this.home)
    this.out(identity.id.toString())
    return {id: identity.id.toString()}
  }
}
