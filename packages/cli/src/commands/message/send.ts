// `fpeer message send`: sends the message on stdin to a peer's control port and prints its reply.
import {Args, Flags} from '@oclif/core'
import {DEFAULT_CONTROL_PORT, type Message, formatMessage} from '@fpeer/core'
import {BaseCommand} from '../../base.js'
import {peerErrorToError, readStdin, sendWire} from '../../services/message.js'
import {parseHostPort} from '../../util.js'

export default class MessageSend extends BaseCommand<typeof MessageSend> {
  static override summary = "Send the message on stdin to a peer's control port and print its reply."
  static override description =
    'Sends exactly one message (canonical form) and waits for one reply, bounded by --timeout. Prints the reply in wire form, or with --json as the array `fpeer message parse` prints. A PeerError reply is a reply like any other (exit 0) unless --fail makes it an error with its code and exit code.'
  static override examples = [
    '<%= config.bin %> message build --type BePeerRequest --folder 00-MainDocuments --nonce --sign | <%= config.bin %> message send 127.0.0.1 --json | jq -r ".[0].type"',
    "printf 'BePeerRequest\\nno-such-folder\\n\\n' | <%= config.bin %> message send 127.0.0.1:7734",
  ]
  static override args = {
    host: Args.string({description: `host[:port] of the peer (control port, default ${DEFAULT_CONTROL_PORT})`, required: true}),
  }
  static override flags = {
    bind: Flags.string({description: 'local address to connect from'}),
    timeout: Flags.integer({description: 'ms to wait for the connection and for the reply', default: 10_000, min: 1}),
    fail: Flags.boolean({description: 'a PeerError reply fails the command with its code (exit 3 for refusals, …)'}),
  }

  async run(): Promise<Message[]> {
    const {host, port} = parseHostPort(this.args.host)
    if (process.stdin.isTTY) this.note('reading one wire message from stdin; end with an empty line and Ctrl-D')
    const {reply} = await sendWire({host, port, text: await readStdin(), timeoutMs: this.flags.timeout, ...(this.flags.bind ? {bind: this.flags.bind} : {})})
    const failure = this.flags.fail ? peerErrorToError(reply) : undefined
    if (failure) throw failure
    if (!this.jsonEnabled()) process.stdout.write(formatMessage(reply))
    return [reply]
  }
}
