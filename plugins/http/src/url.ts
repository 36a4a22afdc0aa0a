// The HTTP transport's URL layout, shared by server and client: `/<folder>/<segment>/…`, each segment percent-encoded.
import {checkRelativePath} from '@fpeer/core/plugin'

const UNRESERVED = /^[A-Za-z0-9._~-]*$/

/** A path segment as it goes into a URL: everything outside RFC 3986 unreserved characters is escaped. */
export function encodeSegment(segment: string): string {
  // Most names are unreserved characters only: one test instead of an encode and a replace (a batch encodes every name it asks for).
  if (UNRESERVED.test(segment)) return segment
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/**
 * The request path for `rel` inside `folder`. `rel` is checked first (E_PATH_UNSAFE), so
 * `..`, absolute paths and empty segments never reach the wire.
 */
export function filePath(folder: string, rel: string): string {
  return `/${[folder, ...checkRelativePath(rel)].map(encodeSegment).join('/')}`
}

/**
 * Splits a request target into percent-decoded path segments. Returns undefined when the
 * target cannot name a file: not origin-form, bad percent-encoding, or a segment that
 * decodes to something holding `/` (which would smuggle in a path separator).
 * `directory` is true when the target ends in `/`. The query string is ignored.
 */
export function parseTarget(target: string): {segments: string[]; directory: boolean} | undefined {
  const q = target.indexOf('?')
  const rawPath = q === -1 ? target : target.slice(0, q)
  if (!rawPath.startsWith('/')) return undefined
  const raw = rawPath.slice(1).split('/')
  const directory = raw[raw.length - 1] === ''
  if (directory) raw.pop()
  const segments: string[] = []
  for (const seg of raw) {
    let decoded: string
    try {
      decoded = decodeURIComponent(seg)
    } catch {
      return undefined
    }
    if (decoded.includes('/')) return undefined
    segments.push(decoded)
  }
  return {segments, directory}
}
