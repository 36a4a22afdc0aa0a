// Validation of the seed's fields: folder name, port, protocol; shared by every message file.
import {FpeerError} from '../errors.js'
import {MAX_FOLDER_BYTES} from './limits.js'

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/

/** A folder name is one path segment: not empty, not `.`/`..`, no `/`, `\`, TAB or control characters. */
export function checkFolderName(name: string): string {
  if (name === '' || name === '.' || name === '..' || /[/\\]/.test(name) || CONTROL.test(name) || Buffer.byteLength(name) > MAX_FOLDER_BYTES) {
    throw new FpeerError('E_MSG_BAD_FIELD', `bad folder name ${JSON.stringify(name.slice(0, 80))}`, {
      hint: `a folder name is one path segment of at most ${MAX_FOLDER_BYTES} bytes, without / \\ or control characters`,
    })
  }
  return name
}

export function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new FpeerError('E_MSG_BAD_FIELD', `bad port ${JSON.stringify(text.slice(0, 20))} on line 3`)
  return Number(text)
}

/** Protocol names are case-insensitive tokens; the canonical form is upper case. */
export function parseProtocol(text: string): string {
  if (!/^[A-Za-z][A-Za-z0-9._+-]{0,31}$/.test(text)) throw new FpeerError('E_MSG_BAD_FIELD', `bad protocol ${JSON.stringify(text.slice(0, 40))} on line 4`)
  return text.toUpperCase()
}

export function parseDecimal(text: string, what: string): number {
  if (!/^\d{1,16}$/.test(text)) throw new FpeerError('E_MSG_BAD_FIELD', `bad ${what} ${JSON.stringify(text.slice(0, 40))}`)
  return Number(text)
}
