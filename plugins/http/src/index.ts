// @fpeer/plugin-http: the HTTP transfer plugin (read-only node:http server with Range, undici client).
import type {Transport} from '@fpeer/core/plugin'
import {connectHttp} from './client.js'
import {serveHttp} from './server.js'

/** Builds the HTTP transport; `httpTransport` is this one. Every plugin has a `createXTransport`, `serveX` and `connectX`. */
export function createHttpTransport(): Transport {
  return {
    protocol: 'HTTP',
    description: 'plain HTTP/1.1: read-only server with byte ranges (works with curl, wget, browsers); no peer authentication',
    supports: {serve: true, fetch: true, resume: true, peerAuth: false, serverAuth: false, batch: true},
    serve: serveHttp,
    connect: connectHttp,
  }
}

export const httpTransport: Transport = createHttpTransport()

export {connectHttp, HttpTransferClient} from './client.js'
export {serveHttp, HttpTransportServer, SERVER_LIMITS, SERVER_TIMEOUTS, parseRange, type RangeRequest} from './server.js'
export {encodeSegment, filePath, parseTarget} from './url.js'
