// Small CLI helpers: parsing `host[:port]`, formatting sizes.
import {DEFAULT_CONTROL_PORT, FpeerError} from '@fpeer/core'

/** Parses `host`, `host:port`, `[v6]:port`; the port defaults to the control port. */
export function parseHostPort(text: string, dflt = DEFAULT_CONTROL_PORT): {host: string; port: number} {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text)
  if (!m || (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535))) {
    throw new FpeerError('E_BAD_ADDRESS', `not a host[:port]: ${JSON.stringify(text)}`, {hint: 'e.g. 127.0.0.1 or 127.0.0.1:7734'})
  }
  return {host: m[1]!, port: m[2] ? Number(m[2]) : dflt}
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  let v = n
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`
}
