// The peer node's lifecycle in-process (real control socket, in-memory transfer servers): all parts start or none, and stop leaves nothing listening.
import {Home} from './store/home.js'
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, readFile, rm} from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'
import type {FpeerError} from './errors.js'
import {Identity, generateKeyPair} from './identity.js'
import {PeerNode, type PeerNodeOptions} from './node.js'
import {TransportRegistry} from './registry.js'
import {ConfigStore} from './store/config.js'
import {createMemoryTransport} from './testing/memory-transport.js'
import {silentLogger} from './transport.js'

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => (s.destroy(), resolve(false)))
    s.once('error', () => resolve(true))
  })
}

describe('PeerNode lifecycle', () => {
  const homes: string[] = []
  after(async () => {
    for (const h of homes) await rm(h, {recursive: true, force: true})
  })

  async function setup(over: Partial<PeerNodeOptions> = {}) {
    const home = await mkdtemp(path.join(os.tmpdir(), 'fpeer-node-'))
    homes.push(home)
    await mkdir(path.join(home, 'F'))
    await new ConfigStore(home).share({name: 'F', path: path.join(home, 'F')})
    const transport = createMemoryTransport()
    const registry = new TransportRegistry()
    registry.add(transport, 'test')
    const node = new PeerNode({
      home: new Home(home),
      identity: new Identity(generateKeyPair()),
      registry,
      log: silentLogger,
      host: '127.0.0.1',
      controlPort: 0,
      ports: {MEMORY: 0},
      sync: true,
      ...over,
    })
    return {home, node, transport}
  }

  it('start opens the control port and a server per protocol; stop closes both and writes the stats', async (t) => {
    const {home, node, transport} = await setup()
    await node.start()
    const port = node.controlPort
    assert.ok(port > 0)
    assert.equal(await refused(port), false)
    assert.deepEqual(Object.keys(node.ports), ['MEMORY'])
    assert.equal(transport.listeners, 1)
    // An idle connection does not hold the stop.
    const idle = net.connect(port, '127.0.0.1')
    idle.on('error', () => {})
    await new Promise((r) => idle.once('connect', r))
    const t0 = performance.now()
    await node.stop()
    t.diagnostic(`stop with an idle connection open: ${Math.round(performance.now() - t0)} ms`)
    assert.equal(await refused(port), true)
    assert.equal(transport.listeners, 0)
    assert.deepEqual(node.ports, {})
    assert.equal(JSON.parse(await readFile(path.join(home, 'stats.json'), 'utf8')).pid, process.pid)
    idle.destroy()
    await node.stop()
  })

  it('a busy control port: start throws E_USAGE and the transfer servers it opened are closed', async () => {
    const first = await setup()
    await first.node.start()
    const {node, transport} = await setup({controlPort: first.node.controlPort})
    await assert.rejects(node.start(), (err: FpeerError) => err.code === 'E_USAGE')
    assert.equal(transport.listeners, 0)
    assert.equal(await refused(first.node.controlPort), false, 'the first node still serves')
    await first.node.stop()
  })

  it('stop before start: start opens nothing', async () => {
    const {node, transport} = await setup()
    await node.stop()
    await node.start()
    assert.equal(transport.listeners, 0)
    assert.deepEqual(node.ports, {})
  })

  it('a one-shot node (no control, no sync) serves files and pushes by hand', async () => {
    const {node, transport} = await setup({control: false, sync: false})
    await node.start()
    assert.equal(transport.listeners, 1)
    assert.deepEqual(await node.pushChanges('F'), {versions: 0, peers: 0, failed: 0})
    await node.stop()
    assert.equal(transport.listeners, 0)
  })
})
