// `fpeer request`: asks a host to become a peer of one of its folders (the seed's steps 4-17).
import path from 'node:path'
import {Args, Flags} from '@oclif/core'
import {DEFAULT_CONTROL_PORT, PeerId, type RequestResult, defaultTimeouts, requestAndRecord} from '@fpeer/core'
import {BaseCommand} from '../base.js'
import {createProgress, progressFlag, type ProgressMode} from '../progress.js'
import {formatBytes, parseHostPort} from '../util.js'

export default class Request extends BaseCommand<typeof Request> {
  static override summary = 'Become a peer of a folder on another peer: fetch it, let the host check it, get confirmed.'
  static override description = 'Exits 0 only when the host has confirmed this peer with a signed TrustedPeerConfirm; the folder is then shared here too, with the host in its peerlist.'
  static override examples = [
    '<%= config.bin %> request 127.0.0.1 00-MainDocuments --into ./docs',
    '<%= config.bin %> request 127.0.0.1:7734 00-MainDocuments --protocol sftp --peer-id ABCDEFGHIJKLM-…',
  ]
  static override args = {
    host: Args.string({description: `host[:port] of the peer (control port, default ${DEFAULT_CONTROL_PORT})`, required: true}),
    folder: Args.string({description: 'folder name on that peer', required: true}),
  }
  static override flags = {
    into: Flags.string({description: 'directory to fill (default: ./FOLDER)'}),
    bind: Flags.string({description: 'local address to connect from and serve the check on'}),
    protocol: Flags.string({description: 'ask for this transfer protocol (HTTP, FTP, SFTP, MANUAL, …)'}),
    'peer-id': Flags.string({description: 'refuse the host unless its ID is this one'}),
    concurrency: Flags.integer({description: 'parallel transfers', default: 8, min: 1, max: 64}),
    'control-port': Flags.integer({description: 'control port this peer serves on, told to the host for later updates', default: DEFAULT_CONTROL_PORT}),
    progress: progressFlag(),
  }

  async run(): Promise<RequestResult & {ms: number}> {
    const {host, port} = parseHostPort(this.args.host)
    const expectedHost = this.flags['peer-id'] ? PeerId.parse(this.flags['peer-id']) : undefined
    const t0 = Date.now()
    const progress = createProgress({mode: this.flags.progress as ProgressMode, json: this.jsonEnabled()})
    const result = await requestAndRecord(this.home, {
      host,
      port,
      folder: this.args.folder,
      into: path.resolve(this.flags.into ?? this.args.folder),
      ...(this.flags.bind ? {bind: this.flags.bind} : {}),
      ...(this.flags.protocol ? {protocol: this.flags.protocol} : {}),
      ...(expectedHost ? {expectedHost} : {}),
      controlPort: this.flags['control-port'],
      registry: await this.registry(),
      concurrency: this.flags.concurrency,
      timeouts: defaultTimeouts(),
      log: this.log_,
      onEvent: (ev) => progress.onEvent(ev),
    }).finally(() => progress.stop())
    const ms = Date.now() - t0
    this.out(`confirmed: peer of ${result.folder} on ${result.host.address} (${result.host.id}) over ${result.protocol}: ${result.files.length} files, ${result.transfer.fetched} fetched, ${formatBytes(result.transfer.bytes)} in ${(ms / 1000).toFixed(2)} s into ${result.into}`)
    return {...result, ms}
  }
}
