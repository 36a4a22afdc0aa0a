// `fpeer conflicts`: the conflict copies in a shared folder.
import {Args} from '@oclif/core'
import {folderConflicts, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'

export default class Conflicts extends BaseCommand<typeof Conflicts> {
  static override summary = 'List conflict copies: versions that lost to a concurrent edit, kept beside the winner.'
  static override examples = ['<%= config.bin %> conflicts 00-MainDocuments', '<%= config.bin %> conflicts 00-MainDocuments --json | jq -r ".conflicts[].path"']
  static override args = {folder: Args.string({description: 'shared folder name', required: true})}

  async run(): Promise<{folder: string; conflicts: Awaited<ReturnType<typeof folderConflicts>>}> {
    const conflicts = await folderConflicts(this.home, this.args.folder)
    for (const c of conflicts) this.out(tty`${c.path}\t(of ${c.of})`)
    if (conflicts.length === 0) this.note(tty`${this.args.folder} has no conflict copies`)
    return {folder: this.args.folder, conflicts}
  }
}
