// The client loads undici's Pool from its own module: the very class undici exports, without loading undici's index (fetch, WebSocket, cache, mocks).
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {createRequire} from 'node:module'
import {describe, it} from 'node:test'
import {undiciPool} from './client.js'

describe('undiciPool', () => {
  it("is the Pool undici's index exports", () => {
    const undici = createRequire(import.meta.url)('undici') as typeof import('undici')
    assert.equal(undiciPool(), undici.Pool)
  })

  it("loads neither undici's index nor its fetch, and requests through the pool without them", () => {
    const client = new URL('./client.js', import.meta.url).href
    const code = [
      `const {undiciPool} = await import(${JSON.stringify(client)})`,
      "const {createRequire} = await import('node:module')",
      "const http = await import('node:http')",
      "const server = http.createServer((req, res) => res.end('hello ' + req.url)).listen(0, '127.0.0.1')",
      "await new Promise((resolve) => server.once('listening', resolve))",
      'const Pool = undiciPool()',
      'const pool = new Pool(`http://127.0.0.1:${server.address().port}`)',
      "const res = await pool.request({path: '/x', method: 'GET'})",
      'const body = await res.body.text()',
      'await pool.close()',
      'server.close()',
      'const loaded = Object.keys(createRequire(import.meta.url).cache)',
      "console.log(JSON.stringify({body, pool: loaded.some((k) => k.endsWith('/lib/dispatcher/pool.js')), index: loaded.some((k) => /undici[\\\\/]index\\.js$/.test(k)), fetch: loaded.some((k) => k.includes('/lib/web/fetch/'))}))",
    ].join('\n')
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {encoding: 'utf8', timeout: 60_000})
    assert.deepEqual(JSON.parse(r.stdout) as unknown, {body: 'hello /x', pool: true, index: false, fetch: false}, r.stderr)
  })
  it("is loaded by the transport's prepare(), which a requester runs while the host answers, and not before", () => {
    const transport = new URL('./transport.js', import.meta.url).href
    const code = [
      `const {httpTransport} = await import(${JSON.stringify(transport)})`,
      "const {createRequire} = await import('node:module')",
      "const pool = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.endsWith('/lib/dispatcher/pool.js'))",
      'const before = pool()',
      'await httpTransport.prepare()',
      'console.log(JSON.stringify({before, after: pool()}))',
    ].join('\n')
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {encoding: 'utf8', timeout: 60_000})
    assert.deepEqual(JSON.parse(r.stdout) as unknown, {before: false, after: true}, r.stderr)
  })
})
