// `fpeer request`: asks a host to become a peer of one of its folders (the seed's steps 4-17).
import {Args, Flags} from '@oclif/core'
import {DEFAULT_CONTROL_PORT, EXIT_CODES, FpeerError, type RequestResult, isFpeerError, requestAndRecord, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'
import {ManualHandOver, type PendingDocument, type RequestTarget, requestTarget} from '../hand-over.js'
import {createProgress, progressFlag, type ProgressMode, type TransferEvent} from '../progress.js'
import {formatBytes} from '../util.js'

export default class Request extends BaseCommand<typeof Request> {
  static override summary = 'Become a peer of a folder on another peer: fetch it, let the host check it, get confirmed.'
  static override description = `Exits 0 only when the host has confirmed this peer with a signed TrustedPeerConfirm; the folder is then shared here too, with the host in its peerlist.

Ctrl-C stops it (exit 130): the files fetched so far, and the part of the one under way, are kept, and \`fpeer request --resume FOLDER\` (or the same request again) goes on from there; --json then prints {"error":{"code":"E_INTERRUPTED",…,"details":{…,"resume":…}}}. --timeout bounds the whole request; a transfer that makes no progress for --stall-timeout seconds fails with E_TIMEOUT, however long it has run.

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
    'fetch-port': Flags.integer({
      description: 'port this peer serves its copy on while the host checks it (default: any free port); open it in a firewall',
      min: 0,
      max: 65535,
    }),
    'dry-run': Flags.boolean({
      description:
        'show what would be fetched and which local files would be kept as conflict copies; write and record nothing (the host sees an abandoned handshake)',
    }),
    resume: Flags.boolean({description: 'go on with the pending request of FOLDER (interrupted, timed out, or MANUAL), or the only one'}),
    wait: Flags.boolean({description: 'MANUAL: wait for the files to be placed instead of exiting 75 (pending)'}),
    'wait-timeout': Flags.integer({description: 'MANUAL: seconds --wait waits before the request is left pending', default: 1800, min: 1}),
    timeout: Flags.integer({
      description: 'give up (E_TIMEOUT, resumable) when the whole request takes longer than this many seconds (default: no limit)',
      min: 1,
      max: 2_000_000,
    }),
    'stall-timeout': Flags.integer({
      description: 'give up when a transfer makes no progress for this many seconds (default: FPEER_STALL_TIMEOUT_MS, 60 s)',
      min: 1,
      max: 2_000_000,
    }),
    progress: progressFlag(),
  }

  #manual: ManualHandOver | undefined
  #target: RequestTarget | undefined
  readonly #stop = new AbortController()
  /** What the transfer did so far, for an interruption's report and its pending record. */
  readonly #done = {files: 0, bytes: 0, totalFiles: 0, totalBytes: 0, hostId: undefined as string | undefined, protocol: undefined as string | undefined}

  async run(): Promise<(RequestResult & {state: 'confirmed' | 'dry-run'; ms: number}) | PendingDocument> {
    const target = await requestTarget(this.home, this.args, this.flags)
    this.#target = target
    const registry = await this.registry()
    // A protocol asked for must have a plugin here: E_NO_TRANSPORT names it before anything is sent.
    if (target.protocol) registry.get(target.protocol)
    this.#manual = new ManualHandOver({
      home: this.home,
      target,
      registry,
      json: this.jsonEnabled(),
      waitMs: this.flags.wait ? this.flags['wait-timeout'] * 1000 : 0,
    })
    const t0 = Date.now()
    const progress = createProgress({mode: this.flags.progress as ProgressMode, json: this.jsonEnabled()})
    const stop = this.#stop
    // Ctrl-C stops the request (the terminal is restored by progress.stop below); a second one kills at once.
    const onSigint = () => {
      // MANUAL --wait handles its own Ctrl-C: the wait ends and the request is left pending (exit 75).
      if (this.#manual?.waiting) return
      if (stop.signal.aborted) process.exit(EXIT_CODES.interrupted)
      stop.abort(new FpeerError('E_INTERRUPTED', `interrupted: ${target.folder} from ${target.host}:${target.port}`))
    }
    process.on('SIGINT', onSigint)
    const timer = this.flags.timeout
      ? setTimeout(
          () =>
            stop.abort(
              new FpeerError('E_TIMEOUT', `the request did not finish within --timeout ${this.flags.timeout} s`, {
                details: {address: `${target.host}:${target.port}`},
              }),
            ),
          this.flags.timeout * 1000,
        )
      : undefined
    const stall = this.flags['stall-timeout']
    const result = await requestAndRecord(this.home, {
      ...target,
      registry,
      manual: this.#manual.callback,
      concurrency: this.flags.concurrency,
      ...(this.flags['fetch-port'] === undefined ? {} : {fetchPort: this.flags['fetch-port']}),
      ...(this.flags['dry-run'] ? {dryRun: true} : {}),
      timeouts: {...this.settings.timeouts, ...(stall ? {stall: stall * 1000} : {})},
      log: this.log_,
      signal: stop.signal,
      onEvent: (ev) => {
        this.#count(ev)
        progress.onEvent(ev)
      },
    }).finally(() => {
      clearTimeout(timer)
      process.off('SIGINT', onSigint)
      progress.stop()
    })
    const ms = Date.now() - t0
    if (result.plan) {
      // One line per file: ACTION<TAB>PATH (and the conflict copy's name), for people and for cut/awk.
      for (const p of result.plan) this.out(tty`${p.action}\t${p.path}` + (p.conflict ? tty`\t${p.conflict}` : ''))
      const n = (a: string) => result.plan!.filter((p) => p.action === a).length
      this.note(
        tty`dry run: ${n('fetch')} to fetch, ${n('conflict')} differing local file(s) to keep as conflict copies, ${n('same')} already here, ${n('ignored')} ignored, ${n('unsupported')} not carried by ${result.protocol}; nothing was written`,
      )
      return {state: 'dry-run', ...result, ms}
    }
    await this.#manual.confirmed()
    const kept = result.transfer.conflicts ?? []
    if (kept.length)
      this.note(tty`kept ${kept.length} differing local file(s) as conflict copies: ${kept.slice(0, 5).join(', ')}${kept.length > 5 ? ', …' : ''}`)
    if (result.ignored.length) this.note(tty`${result.ignored.length} file(s) not fetched: ignored here by .fpeerignore`)
    if (result.unsupported.length)
      this.note(
        tty`${result.unsupported.length} file(s) not fetched: ${result.protocol} cannot carry their names (E_UNSUPPORTED; use --protocol http or sftp for them)`,
      )
    // After a hand-over, stdout carried the files to get; the confirmation is then for humans only.
    const say = this.#manual.listing ? (t: string) => this.note(t) : (t: string) => this.out(t)
    say(
      tty`confirmed: peer of ${result.folder} on ${result.host.address} (${result.host.id}) over ${result.protocol}: ${result.files.length} files, ${result.transfer.fetched} fetched, ${formatBytes(result.transfer.bytes)} in ${(ms / 1000).toFixed(2)} s into ${result.into}`,
    )
    return {state: 'confirmed', ...result, ms}
  }

  #count(ev: TransferEvent): void {
    const d = this.#done
    if (ev.event === 'files-to-get') Object.assign(d, {totalFiles: ev.files, totalBytes: ev.bytes, hostId: ev.host, protocol: ev.protocol})
    else if (ev.event === 'bytes') d.bytes += ev.bytes
    else if (ev.event === 'file-done') d.files++
  }

  /**
   * An interrupted or timed-out request is kept in pending.json (its part files stay), so
   * `--resume` goes on with it; the error says what was done and how to resume.
   */
  async #keepResumable(err: FpeerError): Promise<FpeerError> {
    const t = this.#target
    if (!t) return err
    const d = this.#done
    const manual = d.protocol === 'MANUAL'
    if (!manual) {
      await this.home.pending.save({
        folder: t.folder,
        host: t.host,
        port: t.port,
        ...((d.hostId ?? t.expectedHost) ? {hostId: d.hostId ?? t.expectedHost!.toString()} : {}),
        into: t.into,
        protocol: t.protocol ?? '',
        reason: 'interrupted',
        ...(t.bind ? {bind: t.bind} : {}),
        controlPort: t.controlPort,
        files: [],
        savedAt: new Date().toISOString(),
      })
    }
    const resume = `fpeer request --resume ${t.folder}`
    const what = `${d.files} of ${d.totalFiles} file(s), ${formatBytes(d.bytes)} of ${formatBytes(d.totalBytes)} fetched into ${t.into}`
    return new FpeerError(err.code, `${err.message}: ${what}`, {
      cause: err,
      details: {...err.details, folder: t.folder, into: t.into, files: d.files, totalFiles: d.totalFiles, bytes: d.bytes, totalBytes: d.totalBytes, resume},
      hint: `what was fetched is kept: \`${resume}\` goes on from there`,
    })
  }

  /** A MANUAL request that stopped with files to place is not a failure: exit 75 and the pending document. */
  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    // Only our own stop (Ctrl-C, --timeout) is kept resumable: a peer's failure is not pending work.
    if (isFpeerError(err) && err === this.#stop.signal.reason) return super.catch(await this.#keepResumable(err).catch(() => err))
    const pending = await this.#manual?.stopped(err).catch(() => undefined)
    if (!pending) return super.catch(err)
    process.exitCode = EXIT_CODES.pending
    if (this.jsonEnabled()) process.stdout.write(JSON.stringify(pending) + '\n')
    else this.note(tty`pending: ${pending.files.length} file(s) still to place in ${pending.into}; then \`${pending.resume}\``)
    return undefined
  }
}
