// The `plugins:preinstall` hook through oclif's real hook runner: a name the prerun guard should have stopped still never reaches npm; one it lets through gets the CLI's core.
import assert from 'node:assert/strict'
import {existsSync} from 'node:fs'
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {describe, it} from 'node:test'
import {Config} from '@oclif/core'

const CLI_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

describe('plugins:preinstall', () => {
  it('refuses an unscoped or aliased name plugin-plugins might fall back to (exit 2), and lets the known scoped package through, linked to the CLI core', async () => {
    const work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-preinstall-'))
    // oclif reads the data dir from the environment when the config loads: this test's own, never the user's.
    const saved = process.env.FPEER_DATA_DIR
    process.env.FPEER_DATA_DIR = path.join(work, 'data')
    const config = await Config.load(CLI_ROOT)
    if (saved === undefined) delete process.env.FPEER_DATA_DIR
    else process.env.FPEER_DATA_DIR = saved
    assert.equal(config.dataDir, path.join(work, 'data'))
    // Quiet: the hook writes its error to stderr, which is not what is under test here.
    const write = process.stderr.write.bind(process.stderr)
    const said: string[] = []
    process.stderr.write = ((chunk: string) => (said.push(String(chunk)), true)) as typeof process.stderr.write
    try {
      for (const plugin of [
        {type: 'npm' as const, name: 'sftp', tag: 'latest'},
        {type: 'npm' as const, name: '@fpeer/plugin-sftp', tag: 'npm:sftp@1'},
        {type: 'repo' as const, url: 'https://github.com/someone/sftp'},
      ]) {
        await assert.rejects(config.runHook('plugins:preinstall', {plugin}), (e: {oclif?: {exit?: number}}) => e.oclif?.exit === 2, JSON.stringify(plugin))
      }
      assert.equal(said.length, 3, said.join(''))
      // A refused name leaves the data dir as it was: not even a package.json.
      assert.equal(existsSync(config.dataDir), false)
      assert.ok(
        said.every((s) => s.startsWith('Error [E_UNKNOWN_PLUGIN]')),
        said.join(''),
      )
      const ok = await config.runHook('plugins:preinstall', {plugin: {type: 'npm', name: '@fpeer/plugin-sftp', tag: 'latest'}})
      assert.deepEqual(ok.failures, [])
      const pjson = JSON.parse(await readFile(path.join(config.dataDir, 'package.json'), 'utf8')) as {dependencies: Record<string, string>}
      assert.deepEqual(pjson.dependencies, {'@fpeer/core': `file:${path.resolve(CLI_ROOT, '../core')}`})
    } finally {
      process.stderr.write = write
      await rm(work, {recursive: true, force: true})
    }
  })
})
