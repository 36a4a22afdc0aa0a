// ssh2's native crypto binding is built (its install script ran: package.json's allowScripts names it, for an npm that blocks the rest): without it, SFTP falls back to pure JavaScript ciphers at about two thirds of the speed.
import assert from 'node:assert/strict'
import {createRequire} from 'node:module'
import path from 'node:path'
import {describe, it} from 'node:test'

describe("ssh2's native crypto binding", () => {
  it('is built and loads', () => {
    const require = createRequire(import.meta.url)
    // ssh2 is ssh2-sftp-client's dependency: resolved from there, as the plugin's client does.
    const fromClient = createRequire(require.resolve('ssh2-sftp-client'))
    const ssh2 = path.dirname(fromClient.resolve('ssh2/package.json'))
    const binding = path.join(ssh2, 'lib/protocol/crypto/build/Release/sshcrypto.node')
    assert.doesNotThrow(
      () => fromClient(binding),
      `${binding} is missing or does not load: ssh2's install script did not build it (is ssh2 in package.json's allowScripts, and are python3, make and g++ present?)`,
    )
  })
})
