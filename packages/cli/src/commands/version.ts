// `fpeer version` (also `fpeer -V`, `fpeer --version`): which fpeer this is, on which Node.
import {BaseCommand} from '../base.js'

export default class Version extends BaseCommand<typeof Version> {
  static override summary = 'Print the version of fpeer (also `fpeer -V` and `fpeer --version`).'
  static override examples = ['<%= config.bin %> version', '<%= config.bin %> --version --json | jq -r .version']

  async run(): Promise<{version: string; node: string; platform: string}> {
    this.out(this.config.userAgent)
    return {version: this.config.version, node: process.versions.node, platform: `${this.config.platform}-${this.config.arch}`}
  }
}
