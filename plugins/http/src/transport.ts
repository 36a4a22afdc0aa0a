// The HTTP transport as the CLI registers it: its client module (and undici with it) loads on the first connect, not at start.
import {loadOnUse, type ConnectOptions, type Transport} from '@fpeer/core/plugin'
import {serveHttp} from './server.js'

const client = () => loadOnUse('HTTP', 'client', () => import('./client.js'))

/** Builds the HTTP transport; `httpTransport` is this one. Every plugin has a `createXTransport`, `serveX` and `connectX`. */
export function createHttpTransport(): Transport {
  return {
    protocol: 'HTTP',
    description: 'plain HTTP/1.1: read-only server with byte ranges (works with curl, wget, browsers); no peer authentication',
    supports: {serve: true, fetch: true, resume: true, peerAuth: false, serverAuth: false, batch: true},
    serve: serveHttp,
    // undici costs about 0.14 s of CPU to load: a serve that only hosts, or starts before its first push, does without it.
    connect: async (options: ConnectOptions) => (await client()).connectHttp(options),
    // A requester loads it, undici's Pool included, while the host answers: that no longer
    // follows the FilesToGet (undici's Pool alone is about 40 ms of a 10,000-file request's start).
    prepare: async () => void (await client()).undiciPool(),
  }
}

export const httpTransport: Transport = createHttpTransport()
