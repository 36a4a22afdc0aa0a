// `fpeer protocols`: the transfer protocols this peer can use, and which plugin provides each.
import {tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'

export default class Protocols extends BaseCommand<typeof Protocols> {
  static override summary = 'List the transfer protocols this peer can use and the plugin that provides each.'
  static override examples = ['<%= config.bin %> protocols', '<%= config.bin %> protocols --json | jq -r ".protocols[].protocol"']

  async run(): Promise<{protocols: Array<{protocol: string; plugin: string; description: string; supports: Record<string, boolean>}>}> {
    const protocols = (await this.registry())
      .list()
      .map(({transport, plugin}) => ({protocol: transport.protocol, plugin, description: transport.description, supports: {...transport.supports}}))
    for (const p of protocols) this.out(tty`${p.protocol}\t${p.plugin}\t${p.description}`)
    return {protocols}
  }
}
