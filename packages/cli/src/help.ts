// fpeer's help: oclif's, plus examples and the exit codes on `fpeer --help`.
import {Help} from '@oclif/core'
import {exitCodeTable} from './exit-codes.js'
import {ENVIRONMENT} from './settings.js'

/** The examples of `fpeer --help`; tests run each one (with `<%= config.bin %>` as `fpeer`). */
export const ROOT_EXAMPLES = [
  '<%= config.bin %> demo',
  '<%= config.bin %> id',
  '<%= config.bin %> share ./docs --name 00-MainDocuments --open',
  '<%= config.bin %> serve --host 127.0.0.2 --port 0 --data-port HTTP=0',
  '<%= config.bin %> request 127.0.0.1 00-MainDocuments --into ./docs --json | jq .transfer',
  '<%= config.bin %> message build --type BePeerRequest --folder 00-MainDocuments | <%= config.bin %> message parse',
]

export default class FpeerHelp extends Help {
  override async showRootHelp(): Promise<void> {
    await super.showRootHelp()
    const bin = this.config.bin
    this.log(this.section('EXAMPLES', ROOT_EXAMPLES.map((e) => `$ ${e.replaceAll('<%= config.bin %>', bin)}`).join('\n')))
    this.log('')
    this.log(
      this.section(
        'EXIT CODES',
        exitCodeTable()
          .map((r) => `${String(r.code).padStart(2)}  ${r.meaning}`)
          .join('\n'),
      ),
    )
    this.log('')
    this.log(this.section('ENVIRONMENT', environmentText()))
    this.log('')
    this.log(
      this.section(
        'MORE',
        `Every command takes --json (one JSON document on stdout; errors as {"error":{…}}).\nGuides: docs/scripting.md, docs/commands.md, docs/protocol.md, docs/security.md.`,
      ),
    )
    this.log('')
  }
}

/** The ENVIRONMENT section: each variable, its default and meaning (an invalid value is an E_USAGE error naming it). */
export function environmentText(): string {
  return [
    ...ENVIRONMENT.map((v) => `${v.name}\n    ${v.meaning} (default: ${v.default})`),
    'An invalid value is an error (E_USAGE, exit 2) naming the variable; it never falls back to the default silently.',
  ].join('\n')
}
