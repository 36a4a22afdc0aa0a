// Unit tests of the one fetch-from-a-peer helper: it refuses what cannot fetch with a typed code and always closes what it opened.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import {TransportRegistry} from '../registry.js'
import {createHandOverTransport, createMemoryTransport} from '../testing/memory-transport.js'
import {silentLogger} from '../transport.js'
import {connectToPeer, withPeerClient} from './peer-client.js'

describe('withPeerClient', () => {
  const identity = new Identity(generateKeyPair())
  const memory = createMemoryTransport()
  const registry = new TransportRegistry()
  registry.add(memory, 'memory')
  registry.add(createHandOverTransport(), 'byhand')
  const ctx = {identity, registry, log: silentLogger, concurrency: 1, timeouts: {io: 5000}}
  const files = {
    folders: async () => [],
    stat: async () => ({type: 'file' as const, size: 0, mtimeMs: 0}),
    list: async () => [],
    open: async () => ({stream: undefined as never, size: 0, mtimeMs: 0}),
  }

  it('a protocol that cannot fetch by itself (a hand-over) is E_UNSUPPORTED, not a TypeError', async () => {
    await assert.rejects(connectToPeer(ctx, {protocol: 'BYHAND', host: '127.0.0.1', port: 1, peer: undefined, grant: undefined}), {code: 'E_UNSUPPORTED'})
  })

  it('a protocol no plugin provides is E_NO_TRANSPORT', async () => {
    await assert.rejects(connectToPeer(ctx, {protocol: 'GOPHER', host: '127.0.0.1', port: 1, peer: undefined, grant: undefined}), {code: 'E_NO_TRANSPORT'})
  })

  it('nobody serving there is E_CONNECT', async () => {
    await assert.rejects(
      withPeerClient(ctx, {protocol: 'MEMORY', host: '127.0.0.1', port: 1, peer: undefined, grant: undefined}, async () => 1),
      {code: 'E_CONNECT'},
    )
  })

  it('closes the client when the work fails, and passes the failure on', async () => {
    const server = await memory.serve({host: '127.0.0.1', port: 0, files, identity})
    try {
      let seen: {get: unknown} | undefined
      await assert.rejects(
        withPeerClient(ctx, {protocol: 'memory', host: '127.0.0.1', port: server.port, peer: identity.id, grant: undefined}, async (client) => {
          seen = client
          throw new Error('work failed')
        }),
        /work failed/,
      )
      // A closed memory client refuses every request with E_CONNECTION_LOST.
      await assert.rejects((seen as unknown as {get(f: string, p: string): Promise<unknown>}).get('f', 'p'), {code: 'E_CONNECTION_LOST'})
    } finally {
      await server.close()
    }
  })
})
