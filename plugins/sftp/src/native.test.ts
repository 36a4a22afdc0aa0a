// ssh2's native crypto binding is built (its install script ran: package.json's allowScripts names it, for an npm that blocks the rest): without it, SFTP falls back to pure JavaScript ciphers at about two thirds of the speed.
import assert from 'node:assert/strict'
import {existsSync, readFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import path from 'node:path'
import {describe, it} from 'node:test'

describe("ssh2's native crypto binding", () => {
  it('is built, and loads in the Node it was built for', (t) => {
    const require = createRequire(import.meta.url)
    // ssh2 is ssh2-sftp-client's dependency: resolved from there, as the plugin's client does.
    const fromClient = createRequire(require.resolve('ssh2-sftp-client'))
    const build = path.join(path.dirname(fromClient.resolve('ssh2/package.json')), 'lib/protocol/crypto/build')
    const binding = path.join(build, 'Release/sshcrypto.node')
    const why = "ssh2's install script did not build it (is ssh2 in package.json's allowScripts, and are python3, make and g++ present?)"
    assert.ok(existsSync(binding), `${binding} is missing: ${why}`)
    // Built for the Node that ran `npm ci`; another Node line (CI's pass on the current LTS) has another ABI, and ssh2 falls back to its JavaScript ciphers there.
    const abi = /"node_module_version": (\d+)/.exec(readFileSync(path.join(build, 'config.gypi'), 'utf8'))?.[1]
    if (abi !== process.versions.modules) {
      t.diagnostic(`built for ABI ${abi}, this is ${process.versions.modules}: not loaded here`)
      return
    }
    assert.doesNotThrow(() => fromClient(binding), `${binding} does not load: ${why}`)
  })
})
