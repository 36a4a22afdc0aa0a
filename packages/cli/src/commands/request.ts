// `fpeer request`: asks a host to become a peer of one of its folders (the seed's steps 4-17).
import {Args, Flags} from '@oclif/core'
import {DEFAULT_CONTROL_PORT, EXIT_CODES, type RequestResult, defaultTimeouts, requestAndRecord, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'
import {ManualHandOver, type PendingDocument, requestTarget} from '../hand-over.js'
import {createProgress, progressFlag, type ProgressMode} from '../progress.js'
import {formatBytes} from '../util.js'

export default class Request extends BaseCommand<typeof Request> {
  static override summary = 'Become a peer of a folder on another peer: fetch it, let the host check it, get confirmed.'
  static override description = `Exits 0 only when the host has confirmed this peer with a signed TrustedPeerConfirm; the folder is then shared here too, with the host in its peerlist.

With --protocol manual, you place the files: it prints them (stdout: one URL, else target path, per line; --json: one document with path, size, sha256, url and target of each) and exits 75 (pending), keeping the request; once they are in place, \`fpeer request --resume [FOLDER]\` (or the same request again) checks them and goes on. With --wait it polls for them instead, up to --wait-timeout.`
  static override examples = [
    '<%= config.bin %> request 127.0.0.1 00-MainDocuments --into ./docs --dry-run',
    '<%= config.bin %> request 127.0.0.1 00-MainDocuments --into ./docs',
    '<%= config.bin %> request 127.0.0.1:7734 00-MainDocuments --protocol http --peer-id "$HOST_ID" --json | jq .transfer',
    '<%= config.bin %> request 127.0.0.1 00-MainDocuments --protocol manual --json | jq -j \'.files[] | .url, "\\u0000", .target, "\\u0000"\' | xargs -0 -r -n 2 sh -c \'curl -fsS --create-dirs -o "$2" -- "$1"\' _',
    '<%= config.bin %> request --resume 00-MainDocuments',
  ]
  static override args = {
    host: Args.string({description: `host[:port] of the peer (control port, default ${DEFAULT_CONTROL_PORT}); with --resume and no FOLDER, the folder`}),
    folder: Args.string({description: 'folder name on that peer'}),
  }
  static override flags = {
    into: Flags.string({description: 'directory to fill (default: ./FOLDER)'}),
    bind: Flags.string({description: 'local address to connect from and serve the check on'}),
    protocol: Flags.string({description: 'ask for this transfer protocol (HTTP, FTP, SFTP, MANUAL, …)'}),
    'peer-id': Flags.string({description: 'refuse the host unless its ID is this one'}),
    concurrency: Flags.integer({description: 'parallel transfers', default: 8, min: 1, max: 64}),
    'control-port': Flags.integer({description: 'control port this peer serves on, told to the host for later updates', default: DEFAULT_CONTROL_PORT}),
    'fetch-port': Flags.integer({description: 'port this peer serves its copy on while the host checks it (default: any free port); open it in a firewall', min: 0, max: 65535}),
    'dry-run': Flags.boolean({description: 'show what would be fetched and which local files would be kept as conflict copies; write and record nothing (the host sees an abandoned handshake)'}),
    resume: Flags.boolean({description: 'go on with the pending (MANUAL) request of FOLDER, or the only one'}),
    wait: Flags.boolean({description: 'MANUAL: wait for the files to be placed instead of exiting 75 (pending)'}),
    'wait-timeout': Flags.integer({description: 'MANUAL: seconds --wait waits before the request is left pending', default: 1800, min: 1}),
    progress: progressFlag(),
  }

  #manual: ManualHandOver | undefined

  async run(): Promise<(RequestResult & {state: 'confirmed' | 'dry-run'; ms: number}) | PendingDocument> {
    const target = await requestTarget(this.home, this.args, this.flags)
    const registry = await this.registry()
    // A protocol asked for must have a plugin here: E_NO_TRANSPORT names it before anything is sent.
    if (target.protocol) registry.get(target.protocol)
    this.#manual = new ManualHandOver({home: this.home, target, registry, json: this.jsonEnabled(), waitMs: this.flags.wait ? this.flags['wait-timeout'] * 1000 : 0})
    const t0 = Date.now()
    const progress = createProgress({mode: this.flags.progress as ProgressMode, json: this.jsonEnabled()})
    const result = await requestAndRecord(this.home, {
      ...target,
      registry,
      manual: this.#manual.callback,
      concurrency: this.flags.concurrency,
      ...(this.flags['fetch-port'] === undefined ? {} : {fetchPort: this.flags['fetch-port']}),
      ...(this.flags['dry-run'] ? {dryRun: true} : {}),
      timeouts: defaultTimeouts(),
      log: this.log_,
      onEvent: (ev) => progress.onEvent(ev),
    }).finally(() => progress.stop())
    const ms = Date.now() - t0
    if (result.plan) {
      // One line per file: ACTION<TAB>PATH (and the conflict copy's name), for people and for cut/awk.
      for (const p of result.plan) this.out(tty`${p.action}\t${p.path}` + (p.conflict ? tty`\t${p.conflict}` : ''))
      const n = (a: string) => result.plan!.filter((p) => p.action === a).length
      this.note(tty`dry run: ${n('fetch')} to fetch, ${n('conflict')} differing local file(s) to keep as conflict copies, ${n('same')} already here, ${n('ignored')} ignored; nothing was written`)
      return {state: 'dry-run', ...result, ms}
    }
    await this.#manual.confirmed()
    const kept = result.transfer.conflicts ?? []
    if (kept.length) this.note(tty`kept ${kept.length} differing local file(s) as conflict copies: ${kept.slice(0, 5).join(', ')}${kept.length > 5 ? ', …' : ''}`)
    if (result.ignored.length) this.note(tty`${result.ignored.length} file(s) not fetched: ignored here by .fpeerignore`)
    // After a hand-over, stdout carried the files to get; the confirmation is then for humans only.
    const say = this.#manual.listing ? (t: string) => this.note(t) : (t: string) => this.out(t)
    say(tty`confirmed: peer of ${result.folder} on ${result.host.address} (${result.host.id}) over ${result.protocol}: ${result.files.length} files, ${result.transfer.fetched} fetched, ${formatBytes(result.transfer.bytes)} in ${(ms / 1000).toFixed(2)} s into ${result.into}`)
    return {state: 'confirmed', ...result, ms}
  }

  /** A MANUAL request that stopped with files to place is not a failure: exit 75 and the pending document. */
  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    const pending = await this.#manual?.stopped(err).catch(() => undefined)
    if (!pending) return super.catch(err)
    process.exitCode = EXIT_CODES.pending
    if (this.jsonEnabled()) process.stdout.write(JSON.stringify(pending) + '\n')
    else this.note(tty`pending: ${pending.files.length} file(s) still to place in ${pending.into}; then \`${pending.resume}\``)
    return undefined
  }
}
