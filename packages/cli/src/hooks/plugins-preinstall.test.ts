// The `plugins:preinstall` hook through oclif's real hook runner: a name the prerun guard should have stopped still never reaches npm.
import assert from 'node:assert/strict'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {describe, it} from 'node:test'
import {Config} from '@oclif/core'

const CLI_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

describe('plugins:preinstall', () => {
  it('refuses an unscoped or aliased name plugin-plugins might fall back to (exit 2), and lets the known scoped package through', async () => {
    const config = await Config.load(CLI_ROOT)
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
      assert.ok(
        said.every((s) => s.startsWith('Error [E_UNKNOWN_PLUGIN]')),
        said.join(''),
      )
      const ok = await config.runHook('plugins:preinstall', {plugin: {type: 'npm', name: '@fpeer/plugin-sftp', tag: 'latest'}})
      assert.deepEqual(ok.failures, [])
    } finally {
      process.stderr.write = write
    }
  })
})
