// Where a file can be fetched by hand: the URL layout of the protocol the host names in `via=`.

/** A URL path segment as the HTTP plugin encodes it: only RFC 3986 unreserved characters stay literal. */
export function encodeSegment(segment: string): string {
  return encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
}

/**
 * The URL of `path` in `folder` on `host:port` for the `via` protocol, or undefined when
 * there is none (no port, or a protocol without a URL layout fpeer knows). HTTP's layout is
 * `http://H:P/<folder>/<path>` with every segment percent-encoded (docs/protocol.md §6), plus
 * `?grant=<secret>` when the host granted access by secret.
 */
export function fileUrl(via: string | undefined, host: string, port: number, folder: string, path: string, grant?: string): string | undefined {
  if (!via || port <= 0) return undefined
  const scheme = via.toUpperCase() === 'HTTP' ? 'http' : undefined
  if (!scheme) return undefined
  const h = host.includes(':') ? `[${host}]` : host
  // The grant secret rides in the query, so the URL alone works in curl, wget or a browser (§4.6).
  const query = grant ? `?grant=${encodeURIComponent(grant)}` : ''
  return `${scheme}://${h}:${port}/${[folder, ...path.split('/')].map(encodeSegment).join('/')}${query}`
}
