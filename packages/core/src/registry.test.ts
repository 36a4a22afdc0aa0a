// Unit tests for the transport registry's shape check: a malformed transport from a plugin is E_PLUGIN when it registers.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FpeerError} from './errors.js'
import {TransportRegistry, checkTransport, loadOnUse} from './registry.js'
import type {Transport} from './transport.js'

const supports = {serve: true, fetch: true, resume: true, peerAuth: false, serverAuth: false, batch: false}
const good = (): Transport => ({
  protocol: 'TEST',
  description: 'a test transport',
  supports: {...supports},
  serve: async () => ({host: '', port: 0, close: async () => {}}),
  connect: async () => ({get: async () => ({stream: undefined as never}), close: async () => {}}),
})
const manual = (): Transport => ({
  protocol: 'BYHAND',
  description: 'by hand',
  supports: {...supports, serve: false, fetch: false, resume: false},
  handOver: async () => {},
})

describe('checkTransport', () => {
  it('accepts a fetching and serving transport, and a hand-over one', () => {
    const t = good()
    assert.equal(checkTransport(t, 'p'), t)
    checkTransport(manual(), 'p')
  })
  it('takes a transport of a plugin built before supports.batch (no batch key) as one that does not batch', () => {
    const {batch: _, ...older} = supports
    const t = {...good(), supports: older} as unknown as Transport
    assert.equal(checkTransport(t, 'p'), t)
  })
  const broken: Array<[string, (t: Record<string, unknown>) => unknown]> = [
    ['not an object', () => 'HTTP'],
    ['null', () => null],
    ['no protocol', (t) => ({...t, protocol: undefined})],
    ['a protocol that is no Line 4 token', (t) => ({...t, protocol: 'HT TP'})],
    ['no description', (t) => ({...t, description: 3})],
    ['no supports', (t) => ({...t, supports: undefined})],
    ['a supports flag that is no boolean', (t) => ({...t, supports: {...supports, resume: 'yes'}})],
    ['supports.serve without serve()', (t) => ({...t, serve: undefined})],
    ['supports.fetch without connect()', (t) => ({...t, connect: undefined})],
    ['a connect that is no function', (t) => ({...t, connect: {}})],
    ['connect() without supports.fetch', (t) => ({...t, supports: {...supports, fetch: false}})],
    ['a supports.batch that is no boolean', (t) => ({...t, supports: {...supports, batch: 'yes'}})],
    ['supports.batch without supports.fetch', () => ({...manual(), supports: {...supports, serve: false, fetch: false, batch: true}})],
    ['nothing it can do', () => ({...manual(), handOver: undefined})],
  ]
  for (const [title, make] of broken) {
    it(`refuses ${title} with E_PLUGIN naming the plugin`, () => {
      assert.throws(
        () => checkTransport(make(good() as unknown as Record<string, unknown>), '@x/plugin-bad'),
        (e: unknown) => e instanceof FpeerError && e.code === 'E_PLUGIN' && (e.details as {plugin: string}).plugin === '@x/plugin-bad',
      )
    })
  }
})

describe('TransportRegistry.addHookResult', () => {
  it('registers the good transports and reports each malformed one, so one broken plugin stops no other', () => {
    const r = new TransportRegistry()
    const errors = r.addHookResult({transports: [good(), {protocol: 'BAD'}, manual()]}, 'p')
    assert.deepEqual(
      errors.map((e) => e.code),
      ['E_PLUGIN'],
    )
    assert.deepEqual(r.protocols(), ['BYHAND', 'TEST'])
    assert.equal(r.list()[0]?.plugin, 'p')
  })
  it('reports a hook result without a transports list', () => {
    const r = new TransportRegistry()
    assert.deepEqual(
      r.addHookResult({transport: good()}, 'p').map((e) => e.code),
      ['E_PLUGIN'],
    )
    assert.deepEqual(r.protocols(), [])
  })
  it('throws E_PLUGIN from add() and registers nothing', () => {
    const r = new TransportRegistry()
    assert.throws(() => r.add({protocol: 'X'} as unknown as Transport, 'p'), {code: 'E_PLUGIN'})
    assert.equal(r.has('X'), false)
  })
})

describe('TransportRegistry.prepare', () => {
  it('starts the named transport’s prepare() in the background; an unknown protocol or a failing prepare() is no error', async () => {
    const r = new TransportRegistry()
    let calls = 0
    let done!: () => void
    const prepared = new Promise<void>((resolve) => (done = resolve))
    r.add({...good(), prepare: async () => void (++calls, done())}, 'p')
    r.add({...good(), protocol: 'FAILS', prepare: () => Promise.reject(new Error('cannot load'))}, 'q')
    r.prepare('test')
    r.prepare('NOPE')
    r.prepare('FAILS')
    await prepared
    assert.equal(calls, 1)
    // A rejection left unhandled would fail this test file's process.
    await new Promise((resolve) => setImmediate(resolve))
  })
})

describe('loadOnUse', () => {
  it("gives the loaded module, and a part that cannot load is E_PLUGIN naming the protocol, the part and the loader's reason", async () => {
    assert.deepEqual(await loadOnUse('MYP', 'client', async () => ({connect: 1})), {connect: 1})
    // A real failed import, as from a plugin installed without its files or dependencies.
    const missingModule = new URL('./no-such-module-here.js', import.meta.url).href
    const missing = Object.assign(new Error("Cannot find package 'ssh2' imported from client.js"), {code: 'ERR_MODULE_NOT_FOUND'})
    await assert.rejects(
      loadOnUse('SFTP', 'client', () => import(missingModule)),
      (err: unknown) =>
        err instanceof FpeerError &&
        err.code === 'E_PLUGIN' &&
        (err.cause as {code?: string}).code === 'ERR_MODULE_NOT_FOUND' &&
        err.message.startsWith('the SFTP plugin cannot load its client: ') &&
        /fpeer plugins/.test(err.hint ?? ''),
    )
    await assert.rejects(
      loadOnUse('FTP', 'server', () => Promise.reject(missing)),
      {code: 'E_PLUGIN', message: /FTP plugin cannot load its server: Cannot find package 'ssh2'/},
    )
  })
})
