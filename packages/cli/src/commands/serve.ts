// `fpeer serve`: runs this peer until interrupted.
import {isIP} from 'node:net'
import {Args, Flags} from '@oclif/core'
import {DEFAULT_CONTROL_PORT, DEFAULT_PORTS, FpeerError, PeerNode, formatDestination, shareFolder} from '@fpeer/core'
import {BaseCommand} from '../base.js'
import {progressFlag} from '../progress.js'

/** `--public-address HOST:PORT` values in the form `dst=` carries (`[v6]:port` for IPv6). */
function parsePublicAddresses(specs: string[]): string[] {
  return specs.map((spec) => {
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\s\[\]]+)):(\d{1,5})$/.exec(spec)
    // dst= holds the address the requester's socket reached, so a name would never match.
    if (!m || isIP(m[1] ?? m[2]!) === 0 || Number(m[3]) < 1 || Number(m[3]) > 65535)
      throw new FpeerError('E_USAGE', `--public-address wants HOST:PORT (e.g. 203.0.113.7:7734 or [2001:db8::1]:7734), got ${JSON.stringify(spec)}`)
    return formatDestination(m[1] ?? m[2]!, Number(m[3]))
  })
}

/** `serve` exits this long after SIGINT/SIGTERM at the latest (docs/security.md, "Connections"). */
export const STOP_DEADLINE_MS = 5000

export default class Serve extends BaseCommand<typeof Serve> {
  static override summary = 'Run this peer: answer peers on the control port and serve shared folders.'
  static override description = `Listens for messages on the control port (default ${DEFAULT_CONTROL_PORT}) and serves every shared folder over each installed transfer protocol (HTTP on 7735, FTP on 7736, SFTP on 7737 unless --data-port says otherwise). With a directory, shares it first. Logs one line per event on stderr (--progress=json: one JSON object per line); with --json, prints one JSON document on stdout once listening. Stops cleanly on SIGINT or SIGTERM, within 5 s whatever peers do (a second signal stops it at once); ignores SIGHUP (configuration changes made by other fpeer commands are picked up within a second). Exits non-zero at once, listening on nothing, when any of its ports is busy. A systemd unit: docs/fpeer.service.`
  static override examples = [
    '<%= config.bin %> serve ./docs --name 00-MainDocuments --open --host 127.0.0.2',
    '<%= config.bin %> serve --host 127.0.0.2 --port 7744 --data-port HTTP=0 --json --progress=json',
  ]
  static override args = {dir: Args.directory({description: 'directory to share and serve'})}
  static override flags = {
    host: Flags.string({description: 'address to listen on', default: '0.0.0.0'}),
    port: Flags.integer({description: 'control port', default: DEFAULT_CONTROL_PORT, min: 0, max: 65535}),
    'data-port': Flags.string({description: 'PROTOCOL=PORT for a transfer server (0: any free port; repeatable)', multiple: true, multipleNonGreedy: true}),
    name: Flags.string({description: 'folder name for DIR'}),
    open: Flags.boolean({description: 'let any peer join DIR', allowNo: true}),
    allow: Flags.string({description: 'peer ID allowed to join DIR (repeatable)', multiple: true, multipleNonGreedy: true}),
    concurrency: Flags.integer({description: 'parallel transfers when checking a peer', default: 8, min: 1, max: 64}),
    'max-handshakes': Flags.integer({
      description: 'handshakes answered at once; past that a request is handed to another peer of the folder (seed step 8)',
      default: 64,
      min: 0,
    }),
    'public-address': Flags.string({
      description: 'HOST:PORT peers reach this control port at through NAT or a port forward (repeatable); requests are bound to the address they were sent to',
      multiple: true,
      multipleNonGreedy: true,
    }),
    sync: Flags.boolean({description: 'watch shared folders, push changes to peers and catch up with them', default: true, allowNo: true}),
    progress: progressFlag('events on stderr: auto or bar (one line per event), json (one JSON object per line), none (warnings and errors only)'),
  }

  async run(): Promise<{id: string; host: string; control: number; ports: Record<string, number>}> {
    const ports: Record<string, number> = {}
    for (const spec of this.flags['data-port'] ?? []) {
      const m = /^([A-Za-z][A-Za-z0-9._+-]*)=(\d{1,5})$/.exec(spec)
      if (!m || Number(m[2]) > 65535) throw new FpeerError('E_USAGE', `--data-port wants PROTOCOL=PORT, got ${JSON.stringify(spec)}`)
      ports[m[1]!.toUpperCase()] = Number(m[2])
    }
    if (this.args.dir) {
      const f = await shareFolder({
        home: this.home,
        dir: this.args.dir,
        ...(this.flags.name ? {name: this.flags.name} : {}),
        ...(this.flags.open === undefined ? {} : {open: this.flags.open}),
        ...(this.flags.allow ? {allow: this.flags.allow} : {}),
      })
      this.log_.info('sharing', {folder: f.name, path: f.path, files: f.files, open: f.open})
    }
    const registry = await this.registry()
    // A port for a protocol nothing here serves would be silently unused: say so instead.
    const served = registry.protocols((t) => Boolean(t.supports.serve && t.serve))
    // fpeer's own protocols (FTP, SFTP) may just not be installed here: a warning, so one command line serves on every peer.
    for (const p of Object.keys(ports)) {
      if (served.includes(p)) continue
      if (p in DEFAULT_PORTS)
        this.log_.warn(`--data-port ${p}=… unused: the ${p} plugin is not installed (\`fpeer plugins install ${p.toLowerCase()}\`)`, {protocol: p})
      else
        throw new FpeerError('E_USAGE', `--data-port ${p}=…: no installed plugin serves ${p}`, {
          details: {protocol: p},
          hint: `protocols served here: ${served.join(', ') || 'none'} (\`fpeer protocols\`)`,
        })
    }
    const identity = await this.home.identity()
    // SIGHUP (a closed terminal, `systemctl reload`) must not kill a daemon: configuration is
    // re-read every second anyway, so there is nothing to reload; it is logged and ignored.
    const onHup = () => this.log_.info('SIGHUP ignored: configuration is re-read every second')
    process.on('SIGHUP', onHup)
    // Signals are handled from before the ports open: one that comes while serve starts, or
    // the moment it says it is ready (a busy machine may run the reader first), is never fatal.
    // SIGINT/SIGTERM then stop it cleanly, and a second one at once. One listener stays from
    // here to the end: between a `once` listener's removal and the next one's, a signal would
    // meet Node's default action and kill serve without a word (seen on a loaded machine).
    let signals = 0
    let onSecond: (() => void) | undefined
    let onFirst: (() => void) | undefined
    const onSignal = () => (++signals === 1 ? onFirst : onSecond)?.()
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    const stopRequested = new Promise<void>((resolve) => (onFirst = resolve))
    const node = new PeerNode({
      home: this.home,
      identity,
      registry,
      log: this.log_,
      host: this.flags.host,
      controlPort: this.flags.port,
      ports,
      concurrency: this.flags.concurrency,
      sync: this.flags.sync,
      maxHandshakes: this.flags['max-handshakes'],
      timeouts: this.settings.timeouts,
      rescanIntervalMs: this.settings.rescanIntervalMs,
      syncIntervalMs: this.settings.syncIntervalMs,
      idleReclaimMs: this.settings.idleReclaimMs,
      publicAddresses: parsePublicAddresses(this.flags['public-address'] ?? []),
      firstLineTimeoutMs: this.settings.firstLineTimeoutMs,
      controlBufferBytes: this.settings.controlBufferBytes,
    })
    await node.start()
    const ready = {id: identity.id.toString(), host: this.flags.host, control: node.controlPort, ports: node.ports}
    if (this.jsonEnabled()) process.stdout.write(JSON.stringify(ready) + '\n')
    // Under --progress=json every stderr line is a JSON object, the ready line too.
    else if (this.flags.progress === 'json') this.log_.info('serving on', ready)
    else
      this.note(
        `fpeer ${identity.id.toString()} serving on ${this.flags.host}:${node.controlPort} (${Object.entries(node.ports)
          .map(([p, n]) => `${p} ${n}`)
          .join(', ')}); Ctrl-C stops`,
      )
    await stopRequested
    process.off('SIGHUP', onHup)
    // Whatever peers do, serve is gone within STOP_DEADLINE_MS of the signal; a second signal ends it at once.
    const force = (why: string) => {
      this.log_.warn('stopping now, without waiting for the rest', {why})
      process.exit(1)
    }
    onSecond = () => force('a second signal')
    // A second signal that came before this point (nothing handled it yet) counts too.
    if (signals > 1) onSecond()
    this.log_.info('stopping')
    const watchdog = setTimeout(() => force(`not stopped within ${STOP_DEADLINE_MS} ms`), STOP_DEADLINE_MS)
    await node.stop()
    clearTimeout(watchdog)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    // The ready document was the output; returning undefined keeps oclif from printing another.
    return undefined as never
  }
}
