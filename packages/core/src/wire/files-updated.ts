// FilesUpdated: The fetching peer reports it holds the files and serves them on Line 3's port: seed steps 11-12.
import type {Line} from './frame.js'
import {fileListFromLines, fileListToLines} from './file-list.js'
import type {FilesUpdated} from './types.js'

export function FilesUpdatedFromWire(lines: Line[], folder: string): FilesUpdated {
  return {type: 'FilesUpdated', folder, meta: lines[0]!.attrs, ...fileListFromLines(lines, 'FilesUpdated')}
}

export function FilesUpdatedToWire(msg: FilesUpdated): Line[] {
  return [{value: 'FilesUpdated', attrs: msg.meta}, {value: msg.folder, attrs: {}}, ...fileListToLines(msg)]
}
