// `fpeer files`: a shared folder's file structure, as last indexed.
import {Args} from '@oclif/core'
import {folderFiles, tty} from '@fpeer/core'
import {BaseCommand} from '../base.js'

export default class Files extends BaseCommand<typeof Files> {
  static override summary = "List a shared folder's files with size and SHA-256, as last indexed."
  static override examples = ['<%= config.bin %> files 00-MainDocuments', '<%= config.bin %> files 00-MainDocuments --json | jq -r ".files[].path"']
  static override args = {folder: Args.string({description: 'shared folder name', required: true})}

  async run(): Promise<{folder: string; files: Awaited<ReturnType<typeof folderFiles>>}> {
    const files = await folderFiles(this.home, this.args.folder)
    // Under --json the document is the output: no line is made only to be dropped (100,000 of them).
    if (!this.jsonEnabled()) {
      // Written in slices of lines, not one write per file.
      let slice = ''
      for (const f of files) {
        slice += tty`${f.sha256}  ${f.size}\t${f.path}\n`
        if (slice.length >= 1 << 16) {
          this.out(slice.slice(0, -1))
          slice = ''
        }
      }
      if (slice) this.out(slice.slice(0, -1))
    }
    return {folder: this.args.folder, files}
  }
}
