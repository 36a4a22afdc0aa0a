// The transfer servers part over the in-memory transport: all start or none, stop and abort close every one.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FpeerError} from '../errors.js'
import {Identity, generateKeyPair} from '../identity.js'
import {Lifecycle} from '../lifecycle.js'
import {TransportRegistry} from '../registry.js'
import {createMemoryTransport} from '../testing/memory-transport.js'
import type {FileSource} from '../transport.js'
import {TransportServers} from './servers.js'

const identity = new Identity(generateKeyPair())
const files: FileSource = {
  folders: async () => [],
  list: async () => [],
  open: async () => {
    throw new FpeerError('E_NOT_FOUND', 'nothing here')
  },
} as unknown as FileSource

function setup() {
  const a = createMemoryTransport({protocol: 'A'})
  const b = createMemoryTransport({protocol: 'B'})
  const registry = new TransportRegistry()
  registry.add(a, 'test')
  registry.add(b, 'test')
  const servers = (ports: Record<string, number>) => new TransportServers({registry, host: '127.0.0.1', ports, files, identity, admit: () => true})
  return {a, b, servers}
}

describe('TransportServers', () => {
  it('starts one server per serving transport; stop closes them all', async () => {
    const {a, b, servers} = setup()
    const s = servers({A: 0, B: 0})
    await s.start(new AbortController().signal)
    assert.equal(s.size, 2)
    assert.deepEqual(Object.keys(s.ports).sort(), ['A', 'B'])
    assert.equal(s.port('a'), s.ports.A)
    assert.equal(a.listeners + b.listeners, 2)
    await s.stop()
    assert.equal(s.size, 0)
    assert.equal(a.listeners + b.listeners, 0)
    await s.stop()
  })

  it('one that cannot listen: its error is thrown (typed) and, stopped by the lifecycle, the others close', async () => {
    const {a, b, servers} = setup()
    const first = servers({A: 20_000, B: 20_001})
    await first.start(new AbortController().signal)
    const second = servers({A: 20_002, B: 20_001})
    const life = new Lifecycle([second])
    await assert.rejects(life.start(), (err: FpeerError) => err.code === 'E_BAD_ADDRESS')
    assert.equal(second.size, 0)
    assert.equal(a.listeners, 1, "only the first part's A server is left")
    assert.equal(b.listeners, 1)
    await first.stop()
    assert.equal(a.listeners + b.listeners, 0)
  })

  it('abort closes every server without stop(); stop before start starts none', async () => {
    const {a, b, servers} = setup()
    const s = servers({A: 0, B: 0})
    const ac = new AbortController()
    await s.start(ac.signal)
    ac.abort()
    assert.equal(s.size, 0)
    await s.stop()
    assert.equal(a.listeners + b.listeners, 0)
    const never = servers({A: 0, B: 0})
    await never.stop()
    await never.start(new AbortController().signal)
    assert.equal(never.size, 0)
    assert.equal(a.listeners + b.listeners, 0)
  })
})
