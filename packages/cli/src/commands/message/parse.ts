// `fpeer message parse`: wire messages on stdin to one JSON array on stdout.
import {Flags} from '@oclif/core'
import type {Message} from '@fpeer/core'
import {BaseCommand} from '../../base.js'
import {parseWire, readStdin} from '../../services/message.js'

export default class MessageParse extends BaseCommand<typeof MessageParse> {
  static override summary = 'Parse wire messages from stdin into JSON (always an array, one object per message).'
  static override description =
    'Reads one or more messages (each ending with an empty line, LF or CRLF) and prints a JSON array: --json is implied. Each object has type, folder and meta (Line 1 attributes); file lists add port, protocol and files (path, size, sha256, mtimeMs, ext); PeerError adds code and text. `fpeer message build` takes the same shape back. Malformed input exits 7 with the E_MSG_* code.'
  static override examples = [
    "printf 'BePeerRequest\\n00-MainDocuments\\n\\n' | <%= config.bin %> message parse",
    '<%= config.bin %> message build --type FilesToGet --folder 00-MainDocuments --port 7735 --protocol HTTP --file a.txt | <%= config.bin %> message parse | jq -r ".[0].files[].path"',
  ]
  static override flags = {
    verify: Flags.boolean({description: 'fail (exit 5) unless every message is signed by the key of its id='}),
  }

  async run(): Promise<Message[]> {
    if (process.stdin.isTTY) this.note('reading wire messages from stdin; end with an empty line and Ctrl-D')
    const messages = parseWire(await readStdin(), {verify: this.flags.verify})
    this.out(JSON.stringify(messages, null, 2))
    return messages
  }
}
