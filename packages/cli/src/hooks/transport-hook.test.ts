// The typed `fpeer:transport` hook through a real oclif Config: each plugin's hook module answers with its transport.
import assert from 'node:assert/strict'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {describe, it} from 'node:test'
import {Config} from '@oclif/core'
import type {TransportHookResult} from '@fpeer/core/startup'

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..')

/** The protocols every hook of the CLI rooted at `root` returns, by plugin; no cast: the hook is typed by declaration merging. */
async function protocolsOf(root: string): Promise<Record<string, string[]>> {
  const config = await Config.load(root)
  const res = await config.runHook('fpeer:transport', {})
  assert.deepEqual(
    res.failures.map((f) => `${f.plugin.name}: ${f.error.message}`),
    [],
  )
  const out: Record<string, string[]> = {}
  for (const s of res.successes) {
    const result: TransportHookResult | undefined = s.result
    out[s.plugin.name] = (result?.transports ?? []).map((t) => t.protocol)
  }
  return out
}

describe('the fpeer:transport hook', () => {
  it('answers from the plugins the CLI bundles (HTTP, MANUAL)', async () => {
    assert.deepEqual(await protocolsOf(path.join(repo, 'packages/cli')), {'@fpeer/plugin-http': ['HTTP'], '@fpeer/plugin-manual': ['MANUAL']})
  })
  for (const [dir, protocol] of [
    ['ftp', 'FTP'],
    ['sftp', 'SFTP'],
  ]) {
    it(`answers from the ${protocol} plugin's own hook module`, async () => {
      assert.deepEqual(await protocolsOf(path.join(repo, 'plugins', dir)), {[`@fpeer/plugin-${dir}`]: [protocol]})
    })
  }
})
