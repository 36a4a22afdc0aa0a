// How the data dir's package.json is pointed at the CLI's own core: fresh, kept, refreshed, and left alone when it is not JSON.
import assert from 'node:assert/strict'
import {mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {after, before, describe, it} from 'node:test'
import {ALLOWED_SCRIPTS, CORE_PACKAGE, cliCoreDir, coreSpec, linkCliCore} from './plugin-core.js'

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..')

describe('cliCoreDir', () => {
  it("is the real directory of the workspace's core in a clone", () => {
    assert.equal(cliCoreDir(), path.join(repo, 'packages/core'))
  })
})

describe('linkCliCore', () => {
  let dir: string
  before(async () => (dir = await mkdtemp(path.join(os.tmpdir(), 'fpeer-core-link-'))))
  after(async () => rm(dir, {recursive: true, force: true}))
  const read = async (d: string) => JSON.parse(await readFile(path.join(d, 'package.json'), 'utf8')) as Record<string, unknown>

  it("creates the data dir's package.json the way plugin-plugins would, plus the core dependency", async () => {
    const data = path.join(dir, 'fresh', 'data')
    assert.equal(await linkCliCore(data, '@fpeer/cli', '/opt/cli/node_modules/@fpeer/core'), true)
    assert.deepEqual(await read(data), {
      name: '@fpeer/cli',
      dependencies: {'@fpeer/core': 'file:/opt/cli/node_modules/@fpeer/core'},
      oclif: {plugins: [], schema: 1},
      private: true,
      allowScripts: {ssh2: true, 'cpu-features': true},
    })
    assert.deepEqual(await readdir(data), ['package.json'])
  })

  it("allows ssh2's and cpu-features' install scripts, keeping a choice the user made, and adds them to a data dir an older fpeer linked", async () => {
    const data = path.join(dir, 'scripts')
    await linkCliCore(data, 'x', '/c')
    const pjson = await read(data)
    await writeFile(path.join(data, 'package.json'), JSON.stringify({...pjson, allowScripts: {'cpu-features': false, other: true}}))
    assert.equal(await linkCliCore(data, 'x', '/c'), true)
    assert.deepEqual((await read(data)).allowScripts, {ssh2: true, 'cpu-features': false, other: true})
    assert.equal(await linkCliCore(data, 'x', '/c'), false)
    // Linked by an older fpeer: the core dependency is right, the allowScripts missing.
    await writeFile(path.join(data, 'package.json'), JSON.stringify({...pjson, allowScripts: undefined}))
    assert.equal(await linkCliCore(data, 'x', '/c'), true)
    assert.deepEqual((await read(data)).allowScripts, ALLOWED_SCRIPTS)
  })

  it('keeps what is there, changes nothing when already linked, and re-points a moved CLI', async () => {
    const data = path.join(dir, 'kept')
    const plugins = [{name: '@fpeer/plugin-sftp', tag: 'latest', type: 'user'}]
    await linkCliCore(data, 'x', '/old/core')
    const before = {name: '@fpeer/cli', dependencies: {'@fpeer/plugin-sftp': '^0.1.0', [CORE_PACKAGE]: '^0.1.0'}, oclif: {plugins, schema: 1}, private: true}
    await writeFile(path.join(data, 'package.json'), JSON.stringify(before))
    assert.equal(await linkCliCore(data, 'x', '/old/core'), true)
    assert.deepEqual(await read(data), {
      ...before,
      dependencies: {'@fpeer/plugin-sftp': '^0.1.0', [CORE_PACKAGE]: coreSpec('/old/core')},
      allowScripts: ALLOWED_SCRIPTS,
    })
    assert.equal(await linkCliCore(data, 'x', '/old/core'), false)
    assert.equal(await linkCliCore(data, 'x', '/new/core'), true)
    assert.deepEqual((await read(data)).dependencies, {'@fpeer/plugin-sftp': '^0.1.0', [CORE_PACKAGE]: 'file:/new/core'})
    assert.deepEqual(await readdir(data), ['package.json'])
  })

  it('leaves a package.json that is not JSON to plugin-plugins', async () => {
    const data = path.join(dir, 'broken')
    await linkCliCore(data, 'x', '/c')
    await writeFile(path.join(data, 'package.json'), '{not json')
    assert.equal(await linkCliCore(data, 'x', '/c'), false)
    assert.equal(await readFile(path.join(data, 'package.json'), 'utf8'), '{not json')
  })
})
