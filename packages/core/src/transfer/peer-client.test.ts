// Unit tests of the one fetch-from-a-peer helper: it refuses what cannot fetch with a typed code and always closes what it opened.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import {TransportRegistry} from '../registry.js'
import {createHandOverTransport, createMemoryTransport} from '../testing/memory-transport.js'
import {FpeerError} from '../errors.js'
import {silentLogger, type TransferClient, type Transport} from '../transport.js'
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

  it('hands the work what the transport declares (supports.batch), and a batching transport whose client has no getMany() is E_PLUGIN', async () => {
    const lying = createMemoryTransport({protocol: 'LIAR'})
    const liar: Transport = {
      ...lying,
      connect: async (o) => {
        const {getMany: _, ...client} = await lying.connect(o)
        closed.push(client)
        return client
      },
    }
    const closed: TransferClient[] = []
    const r = new TransportRegistry()
    r.add(memory, 'memory')
    r.add(liar, 'liar')
    const server = await memory.serve({host: '127.0.0.1', port: 0, files, identity})
    const served = await lying.serve({host: '127.0.0.1', port: 0, files, identity})
    try {
      const declared = await withPeerClient(
        {...ctx, registry: r},
        {protocol: 'MEMORY', host: '127.0.0.1', port: server.port, peer: identity.id, grant: undefined},
        async (_c, sup) => sup.batch,
      )
      assert.equal(declared, true)
      await assert.rejects(
        withPeerClient({...ctx, registry: r}, {protocol: 'LIAR', host: '127.0.0.1', port: served.port, peer: identity.id, grant: undefined}, async () => 1),
        {code: 'E_PLUGIN'},
      )
      // The malformed client was closed, not left open.
      assert.equal(closed.length, 1)
      await assert.rejects(closed[0]!.get('f', 'p'), {code: 'E_CONNECTION_LOST'})
    } finally {
      await server.close()
      await served.close()
    }
  })

  it('an abort while connecting rejects at once with the signal’s typed reason; the client that connects later is closed', async () => {
    let arrive: (c: TransferClient) => void = () => {}
    let closedLate = false
    const slow: Transport = {
      ...createMemoryTransport({protocol: 'SLOW'}),
      connect: () => new Promise<TransferClient>((resolve) => (arrive = resolve)),
    }
    const r = new TransportRegistry()
    r.add(slow, 'slow')
    const ac = new AbortController()
    let worked = false
    const run = withPeerClient(
      {...ctx, registry: r},
      {protocol: 'SLOW', host: '127.0.0.1', port: 1, peer: undefined, grant: undefined},
      async () => {
        worked = true
      },
      ac.signal,
    )
    ac.abort(new FpeerError('E_INTERRUPTED', 'stopping'))
    await assert.rejects(run, {code: 'E_INTERRUPTED'})
    arrive({get: async () => ({stream: undefined as never}), close: async () => void (closedLate = true)})
    await new Promise((r) => setImmediate(r))
    assert.equal(closedLate, true, 'a client that connected after the abort was left open')
    assert.equal(worked, false)
  })
})
