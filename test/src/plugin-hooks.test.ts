// Each transfer plugin's `fpeer:transport` hook is thin: running it (as every command that builds the registry does) loads no protocol library; the transport's prepare() and connect() do.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import path from 'node:path'
import {describe, it} from 'node:test'
import {fileURLToPath, pathToFileURL} from 'node:url'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..')

/** The library each plugin's client is built on, as a path segment of its modules. */
const LIBRARIES = [
  {plugin: 'http', protocol: 'HTTP', library: '/node_modules/undici/'},
  {plugin: 'ftp', protocol: 'FTP', library: '/node_modules/basic-ftp/'},
  {plugin: 'sftp', protocol: 'SFTP', library: '/node_modules/ssh2/'},
]

describe('transfer plugin hooks load no protocol library', () => {
  for (const {plugin, protocol, library} of LIBRARIES) {
    it(`${plugin}: the hook gives the ${protocol} transport without ${library.split('/')[2]}; prepare() loads it`, () => {
      const hook = pathToFileURL(path.join(ROOT, 'plugins', plugin, 'dist/hooks/transport.js')).href
      const code = [
        "const {createRequire} = await import('node:module')",
        `const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes(${JSON.stringify(library)}))`,
        `const {transports} = await (await import(${JSON.stringify(hook)})).default.call({}, {})`,
        'const t = transports[0]',
        'const atHook = loaded()',
        'await t.prepare()',
        'console.log(JSON.stringify({protocol: t.protocol, atHook, afterPrepare: loaded()}))',
      ].join('\n')
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {encoding: 'utf8', timeout: 60_000})
      assert.equal(r.status, 0, r.stderr)
      assert.deepEqual(JSON.parse(r.stdout) as unknown, {protocol, atHook: false, afterPrepare: true}, r.stderr)
    })
  }
})
