// `fpeer demo`: the main job in one command, a host and a requester on loopback, showing the four messages and both peerlists.
import {Flags} from '@oclif/core'
import {escapeForTerminal, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'
import {type DemoMessage, type DemoResult, runDemo} from '../services/demo.js'

export default class Demo extends BaseCommand<typeof Demo> {
  static override summary = 'Show the main job on this computer: a host and a requester on loopback become peers of a sample folder.'
  static override description = `Writes a small sample folder, serves it from a host on 127.0.0.1 and asks to become a peer of it from a requester on 127.0.0.2 (127.0.0.1 where that address cannot be bound), each with its own home and free ports, through the same code as \`fpeer serve\` and \`fpeer request\`. Shows the four messages as they cross the wire (BePeerRequest, FilesToGet, FilesUpdated, TrustedPeerConfirm) and each side's peerlist once confirmed, then stops the host and removes everything it wrote (also on Ctrl-C or failure) unless --keep names a directory to keep it in. Touches neither this peer's home nor its ports.`
  static override examples = ['<%= config.bin %> demo', '<%= config.bin %> demo --json | jq -r ".messages[].type"']
  static override flags = {
    keep: Flags.string({description: 'keep the homes and folders in this directory (created if missing) for inspection'}),
  }

  async run(): Promise<DemoResult> {
    const controller = new AbortController()
    const stop = () => controller.abort(new Error('interrupted'))
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    let result: DemoResult
    try {
      result = await runDemo({
        registry: await this.registry(),
        // The messages are the show; the host's own log lines would interleave with them (-v brings them back).
        log: this.verbose ? this.log_ : {...this.log_, info: this.log_.debug},
        ...(this.flags.keep === undefined ? {} : {keep: this.flags.keep}),
        signal: controller.signal,
        onMessage: (m) => this.out(showMessage(m)),
      })
    } catch (err) {
      if (!controller.signal.aborted) throw err
      this.note('interrupted: the demo host is stopped and its files are removed')
      return this.exit(130)
    } finally {
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
    }
    const r = result
    const peerLine = (p: {id: string; address: string; role: string}) => tty`    ${p.id}  ${p.address}  (${p.role})`
    this.out(
      [
        tty`peers of ${r.folder} on the host (${r.host.id}):`,
        ...r.peers.host.map(peerLine),
        tty`peers of ${r.folder} on the requester (${r.requester.id}):`,
        ...r.peers.requester.map(peerLine),
        tty`confirmed: ${r.files} files in ${(r.timings.handshakeMs / 1000).toFixed(2)} s; ${r.kept ? `kept in ${r.dir}` : 'everything removed'}`,
      ].join('\n'),
    )
    return r
  }
}

/** One message as it crossed the wire: a header, then its lines, each escaped whole (a TAB shows as \t). */
function showMessage(m: DemoMessage): string {
  const lines = m.text.replace(/\n\n$/, '').split('\n')
  return [tty`${m.from} -> ${m.to}: ${m.type} (+${m.ms} ms)`, ...lines.map((l) => '    ' + escapeForTerminal(l)), '    (empty line: end of message)', ''].join(
    '\n',
  )
}
