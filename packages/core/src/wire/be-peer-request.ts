// BePeerRequest: a peer asks the host to become a peer of a folder: seed steps 4-5.
import {FpeerError} from '../errors.js'
import type {Line} from './frame.js'
import type {BePeerRequest} from './types.js'

export function BePeerRequestFromWire(lines: Line[], folder: string): BePeerRequest {
  if (lines.length !== 2) throw new FpeerError('E_MSG_BAD_FIELD', `BePeerRequest has 2 lines before the empty line, got ${lines.length}`)
  return {type: 'BePeerRequest', folder, meta: lines[0]!.attrs}
}

export function BePeerRequestToWire(msg: BePeerRequest): Line[] {
  return [
    {value: 'BePeerRequest', attrs: msg.meta},
    {value: msg.folder, attrs: {}},
  ]
}
