// `fpeer push`: rescans a shared folder now and pushes what changed to its peers.
import {Args, Flags} from '@oclif/core'
import {FolderSync, FpeerError, PeerNode, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'

export default class Push extends BaseCommand<typeof Push> {
  static override summary = 'Rescan a shared folder now and push its changes to every peer.'
  static override description = `What \`fpeer serve\` does by itself when it notices a change, on demand. The peers fetch the changed files from this process (served on --bind while the push runs), check them against this peer's signed versions, and pass them on to their own peers.`
  static override examples = [
    '<%= config.bin %> push 00-MainDocuments',
    '<%= config.bin %> push 00-MainDocuments --bind 127.0.0.2 --json',
    '<%= config.bin %> push 00-MainDocuments --bind 127.0.0.2 --push-port 7745',
    '<%= config.bin %> push 00-MainDocuments --dry-run',
  ]
  static override args = {folder: Args.string({description: 'shared folder name', required: true})}
  static override flags = {
    bind: Flags.string({description: 'local address to push from and serve the changed files on (peers fetch from it)', default: '0.0.0.0'}),
    concurrency: Flags.integer({description: 'parallel transfers', default: 8, min: 1, max: 64}),
    'dry-run': Flags.boolean({description: 'list what changed since the last scan (what a push would send) and to how many peers; record and send nothing'}),
    'push-port': Flags.string({
      description:
        'PORT (HTTP, which every peer has) or PROTOCOL=PORT the changed files are served on while the push runs (default: any free port; repeatable); open it in a firewall',
      multiple: true,
      multipleNonGreedy: true,
    }),
  }

  async run(): Promise<{
    folder: string
    versions: number
    peers: number
    failed: number
    dryRun?: boolean
    changes?: Array<{path: string; deleted: boolean; size: number}>
  }> {
    const folder = await this.home.config.requireFolder(this.args.folder)
    const identity = await this.home.identity()
    if (this.flags['dry-run']) {
      const changes = await new FolderSync(this.home, folder, identity).preview()
      const peers = (await this.home.peerfile(folder.name).peers()).filter((p) => p.controlPort && !p.id.startsWith('plain:')).length
      for (const c of changes) this.out(tty`${c.deleted ? 'delete' : 'send'}\t${c.path}`)
      this.note(tty`dry run: ${changes.length} change(s) would go to ${peers} peer(s); nothing was recorded or sent`)
      return {folder: folder.name, versions: changes.length, peers, failed: 0, dryRun: true, changes}
    }
    const ports: Record<string, number> = Object.fromEntries((await this.registry()).protocols().map((p) => [p, 0]))
    for (const spec of this.flags['push-port'] ?? []) {
      const m = /^(?:([A-Za-z][A-Za-z0-9._+-]*)=)?(\d{1,5})$/.exec(spec)
      if (!m || Number(m[2]) > 65535) throw new FpeerError('E_USAGE', `--push-port wants PORT or PROTOCOL=PORT, got ${JSON.stringify(spec)}`)
      const protocol = (m[1] ?? 'HTTP').toUpperCase()
      if (!(protocol in ports))
        throw new FpeerError('E_USAGE', `--push-port names ${protocol}, which no installed plugin serves`, {
          hint: `installed: ${Object.keys(ports).join(', ')}`,
        })
      ports[protocol] = Number(m[2])
    }
    const node = new PeerNode({
      home: this.home,
      identity,
      registry: await this.registry(),
      log: this.log_,
      timeouts: this.settings.timeouts,
      host: this.flags.bind,
      controlPort: 0,
      ports,
      control: false,
      sync: false,
      concurrency: this.flags.concurrency,
    })
    await node.start()
    try {
      const r = await node.pushChanges(this.args.folder)
      this.out(
        r.versions === 0
          ? tty`${this.args.folder}: no changes`
          : tty`${this.args.folder}: ${r.versions} change(s) pushed to ${r.peers - r.failed} of ${r.peers} peer(s)`,
      )
      if (r.failed > 0 && r.failed === r.peers)
        throw new FpeerError('E_CONNECT', `no peer of ${this.args.folder} could be reached`, {hint: 'they catch up when they come back (fpeer serve)'})
      return {folder: this.args.folder, ...r}
    } finally {
      await node.stop()
    }
  }
}
