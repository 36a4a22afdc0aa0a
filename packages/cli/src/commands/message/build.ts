// `fpeer message build`: JSON on stdin (or flags) to the exact wire form on stdout.
import {Flags} from '@oclif/core'
import {FpeerError} from '@fpeer/core'
import {BaseCommand} from '../../base.js'
import {buildWire, readStdin} from '../../services/message.js'

export default class MessageBuild extends BaseCommand<typeof MessageBuild> {
  static override summary = "Build wire messages from JSON on stdin, or one message from flags; --sign signs with this peer's key."
  static override description =
    'Input is what `fpeer message parse` prints: one JSON object or an array of them, so `build | parse` gives the input back. Output is the canonical wire text (LF line breaks, attributes sorted, each message ending with an empty line), ready for `fpeer message send` or `nc`. With --json, prints {"wire": "…"} instead.'
  static override examples = [
    '<%= config.bin %> message build --type BePeerRequest --folder 00-MainDocuments',
    '<%= config.bin %> message build --type BePeerRequest --folder 00-MainDocuments --nonce --sign --meta protocols=HTTP',
    'echo \'{"type":"PeerError","folder":"*","meta":{},"code":"E_BUSY","text":"try later"}\' | <%= config.bin %> message build',
  ]
  static override flags = {
    type: Flags.string({
      description: 'message type (then no JSON is read)',
      options: ['BePeerRequest', 'FilesToGet', 'FilesUpdated', 'TrustedPeerConfirm', 'PeerError'],
    }),
    folder: Flags.string({description: 'Line 2: the folder name (`*` for a PeerError about no folder)'}),
    port: Flags.integer({description: 'Line 3 of a file list: the port', min: 0, max: 65535}),
    protocol: Flags.string({description: 'Line 4 of a file list: the transfer protocol', default: 'HTTP'}),
    file: Flags.string({description: 'a file path for Lines 5..n (repeatable)', multiple: true, multipleNonGreedy: true}),
    code: Flags.string({description: 'PeerError: the E_ code'}),
    text: Flags.string({description: 'PeerError: the reason'}),
    meta: Flags.string({description: 'KEY=VALUE attribute on Line 1 (repeatable)', multiple: true, multipleNonGreedy: true}),
    nonce: Flags.boolean({description: 'add a fresh nonce= to each message that has none'}),
    sign: Flags.boolean({description: "sign each message with this peer's key (adds fpeer=, id=, sig=)"}),
  }

  async run(): Promise<{wire: string}> {
    const f = this.flags
    const meta: Record<string, string> = {}
    for (const kv of f.meta ?? []) {
      const eq = kv.indexOf('=')
      if (eq <= 0) throw new FpeerError('E_USAGE', `--meta wants KEY=VALUE, got ${JSON.stringify(kv)}`)
      meta[kv.slice(0, eq)] = kv.slice(eq + 1)
    }
    let fields
    let json: unknown
    if (f.type) {
      if (!f.folder) throw new FpeerError('E_USAGE', '--type needs --folder')
      fields = {
        type: f.type,
        folder: f.folder,
        meta,
        protocol: f.protocol,
        ...(f.port === undefined ? {} : {port: f.port}),
        ...(f.file ? {files: f.file} : {}),
        ...(f.code ? {code: f.code} : {}),
        ...(f.text ? {text: f.text} : {}),
      }
    } else {
      if (process.stdin.isTTY) this.note('reading JSON from stdin (or give --type and --folder); end with Ctrl-D')
      const text = (await readStdin()).toString('utf8')
      try {
        json = JSON.parse(text)
      } catch (err) {
        throw new FpeerError('E_USAGE', `stdin is not JSON: ${(err as Error).message}`, {
          hint: 'give what `fpeer message parse` prints, or use --type and --folder',
        })
      }
    }
    const {wire} = buildWire({...(fields ? {fields} : {json}), nonce: f.nonce, ...(f.sign ? {identity: await this.home.identity()} : {})})
    if (!this.jsonEnabled()) process.stdout.write(wire)
    return {wire}
  }
}
