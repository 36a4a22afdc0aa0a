// `fpeer share`: registers a folder to share.
import {Args, Flags} from '@oclif/core'
import {type FolderSummary, shareFolder, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'
import {formatBytes} from '../util.js'

export default class Share extends BaseCommand<typeof Share> {
  static override summary = 'Share a folder: register it and index its files.'
  static override description = 'Only peers named with --allow (or `fpeer allow`) may join, unless --open lets anyone in, as in the seed protocol.'
  static override examples = [
    '<%= config.bin %> share ./docs --name 00-MainDocuments --open',
    '<%= config.bin %> share ./docs --name 00-MainDocuments --allow "$PEER_ID"',
  ]
  static override args = {dir: Args.directory({description: 'directory to share', required: true})}
  static override flags = {
    name: Flags.string({description: "folder name peers ask for (default: the directory's name)"}),
    open: Flags.boolean({description: 'let any peer join', allowNo: true}),
    allow: Flags.string({description: 'peer ID allowed to join (repeatable)', multiple: true, multipleNonGreedy: true}),
  }

  async run(): Promise<FolderSummary> {
    const f = await shareFolder({
      home: this.home,
      dir: this.args.dir,
      ...(this.flags.name ? {name: this.flags.name} : {}),
      ...(this.flags.open === undefined ? {} : {open: this.flags.open}),
      ...(this.flags.allow ? {allow: this.flags.allow} : {}),
    })
    this.out(
      tty`shared ${f.name} from ${f.path}: ${f.files} files, ${formatBytes(f.bytes)}, ${f.open ? 'open to anyone' : `${f.allow.length} allowed peer(s)`}`,
    )
    const links = f.skipped?.symlinks ?? []
    if (links.length)
      this.note(tty`${links.length} symlink(s) not shared (fpeer never follows links): ${links.slice(0, 5).join(', ')}${links.length > 5 ? ', …' : ''}`)
    return f
  }
}
