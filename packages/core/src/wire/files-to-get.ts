// FilesToGet: The host (or a delegate) lists the files a peer should fetch: seed steps 8-9, and step 1 of an update.
import type {Line} from './frame.js'
import {fileListFromLines, fileListToLines} from './file-list.js'
import type {FilesToGet} from './types.js'

export function FilesToGetFromWire(lines: Line[], folder: string): FilesToGet {
  return {type: 'FilesToGet', folder, meta: lines[0]!.attrs, ...fileListFromLines(lines, 'FilesToGet')}
}

export function FilesToGetToWire(msg: FilesToGet): Line[] {
  return [{value: 'FilesToGet', attrs: msg.meta}, {value: msg.folder, attrs: {}}, ...fileListToLines(msg)]
}
