// PeerError: fpeer's reply to a message it cannot or will not answer (not in the seed; see docs/protocol.md).
import {FpeerError} from '../errors.js'
import type {Line} from './frame.js'
import {MAX_REASON_CHARS} from './limits.js'
import type {PeerError} from './types.js'

export function PeerErrorFromWire(lines: Line[], folder: string): PeerError {
  if (lines.length < 3 || lines.length > 4) throw new FpeerError('E_MSG_BAD_FIELD', `PeerError has 3 or 4 lines, got ${lines.length}`)
  const code = lines[2]!.value
  if (!/^E_[A-Z0-9_]{1,40}$/.test(code)) throw new FpeerError('E_MSG_BAD_FIELD', `bad error code ${JSON.stringify(code.slice(0, 40))}`)
  return {type: 'PeerError', folder, meta: lines[0]!.attrs, code, text: lines[3]?.value ?? ''}
}

export function PeerErrorToWire(msg: PeerError): Line[] {
  // eslint-disable-next-line no-control-regex
  const text = msg.text.replace(/[\u0000-\u001f\u007f]+/g, ' ').slice(0, MAX_REASON_CHARS) || msg.code
  return [
    {value: 'PeerError', attrs: msg.meta},
    {value: msg.folder, attrs: {}},
    {value: msg.code, attrs: {}},
    {value: text, attrs: {}},
  ]
}
