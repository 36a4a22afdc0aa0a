// `fpeer plugins`: the transfer plugins this peer has, built in, installed or linked, and the protocols each provides (replaces oclif's list).
import {tty} from '@fpeer/core'
import {BaseCommand} from '../../base.js'

/** One plugin: `builtin` ships with the CLI, `user` came from `fpeer plugins install`, `link` from `fpeer plugins link`. */
export interface PluginEntry {
  name: string
  version: string
  type: 'builtin' | 'user' | 'link'
  protocols: string[]
  /** Where a linked plugin's sources are. */
  path?: string
}

export default class Plugins extends BaseCommand<typeof Plugins> {
  static override summary = 'List the transfer plugins of this peer: built in (HTTP, MANUAL), installed and linked, with their protocols.'
  static override description = `--json gives {"plugins": [{name, version, type, protocols, path?}]}: type is builtin, user (installed with \`fpeer plugins install\`) or link (\`fpeer plugins link\`, with its path). Installed plugins live in the plugins directory of the home ($FPEER_HOME/plugins when FPEER_HOME is set; FPEER_DATA_DIR overrides it).`
  static override examples = ['<%= config.bin %> plugins', '<%= config.bin %> plugins --json | jq -r ".plugins[] | [.name, .type] | @tsv"']

  async run(): Promise<{plugins: PluginEntry[]}> {
    const byPlugin = new Map<string, string[]>()
    for (const {transport, plugin} of (await this.registry()).list()) byPlugin.set(plugin, [...(byPlugin.get(plugin) ?? []), transport.protocol])
    const plugins: PluginEntry[] = []
    for (const p of this.config.getPluginsList()) {
      const type = p.type === 'user' || p.type === 'link' ? p.type : p.type === 'core' && byPlugin.has(p.name) ? 'builtin' : undefined
      // oclif's own plugins (help, plugins, autocomplete) are part of the CLI, not transfer plugins.
      if (!type) continue
      plugins.push({name: p.name, version: p.version, type, protocols: byPlugin.get(p.name) ?? [], ...(type === 'link' ? {path: p.root} : {})})
    }
    // oclif loads plugins concurrently, so its list comes in any order: built in first, then by name.
    const rank = {builtin: 0, user: 1, link: 2}
    plugins.sort((a, b) => rank[a.type] - rank[b.type] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const p of plugins)
      this.out(
        tty`${p.name} ${p.version}\t${p.type === 'builtin' ? 'built in' : p.type === 'link' ? `linked from ${p.path}` : 'installed'}\t${p.protocols.join(', ') || '(no protocol)'}`,
      )
    return {plugins}
  }
}
