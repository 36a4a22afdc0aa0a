// TrustedPeerConfirm: The host has fetched the files back and checked them; signed by the host: seed steps 14-15.
import type {Line} from './frame.js'
import {fileListFromLines, fileListToLines} from './file-list.js'
import type {TrustedPeerConfirm} from './types.js'

export function TrustedPeerConfirmFromWire(lines: Line[], folder: string): TrustedPeerConfirm {
  return {type: 'TrustedPeerConfirm', folder, meta: lines[0]!.attrs, ...fileListFromLines(lines, 'TrustedPeerConfirm')}
}

export function TrustedPeerConfirmToWire(msg: TrustedPeerConfirm): Line[] {
  return [{value: 'TrustedPeerConfirm', attrs: msg.meta}, {value: msg.folder, attrs: {}}, ...fileListToLines(msg)]
}
