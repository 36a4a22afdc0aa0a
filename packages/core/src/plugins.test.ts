// `fpeer plugins install` name resolution: what each argument becomes, and what is refused, written out literally.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {isFpeerError} from './errors.js'
import {pluginInstallAllowed, resolvePluginInstall} from './plugins.js'

describe('resolvePluginInstall: a known plugin always becomes its full scoped name', () => {
  const cases: Array<[string, string, string | undefined]> = [
    ['sftp', '@fpeer/plugin-sftp', undefined],
    ['ftp', '@fpeer/plugin-ftp', undefined],
    ['sftp@0.1.0', '@fpeer/plugin-sftp@0.1.0', '0.1.0'],
    ['sftp@^0.1', '@fpeer/plugin-sftp@^0.1', '^0.1'],
    ['sftp@>=0.1 <0.3', '@fpeer/plugin-sftp@>=0.1 <0.3', '>=0.1 <0.3'],
    ['sftp@latest', '@fpeer/plugin-sftp@latest', 'latest'],
    ['@fpeer/plugin-sftp', '@fpeer/plugin-sftp', undefined],
    ['@fpeer/plugin-ftp@~0.1.0', '@fpeer/plugin-ftp@~0.1.0', '~0.1.0'],
  ]
  for (const [arg, spec, range] of cases) {
    it(`${arg} → ${spec}`, () => {
      for (const allowAny of [false, true]) {
        const [t] = resolvePluginInstall([arg], allowAny)
        assert.equal(t!.spec, spec)
        assert.equal(t!.range, range)
        assert.equal(t!.package, spec.replace(/(?<!^)@.*$/, ''))
      }
    })
  }
})

describe('resolvePluginInstall: anything else is E_UNKNOWN_PLUGIN without consent, passed through as typed with it', () => {
  const refused = [
    'nonsense-name',
    'sftpp',
    'SFTP',
    '@evil/plugin-sftp',
    '@fpeer/plugin-sftpx',
    'https://github.com/someone/fpeer-plugin',
    'someone/fpeer-plugin',
    'file:./fpeer-plugin-sftp-0.1.0.tgz',
    // An npm alias, a path, a git or a URL after the `@` installs another package under the known name.
    'sftp@npm:sftp@1.0.0',
    '@fpeer/plugin-sftp@npm:sftp',
    'sftp@file:../sftp',
    'sftp@github:someone/sftp',
    'sftp@git+https://example.com/x.git',
    'sftp@http://example.com/x.tgz',
    'sftp@',
    'sftp@1.0.0\nx',
  ]
  for (const arg of refused) {
    it(JSON.stringify(arg), () => {
      assert.throws(
        () => resolvePluginInstall(['sftp', arg], false),
        (e: unknown) => isFpeerError(e, 'E_UNKNOWN_PLUGIN') && JSON.stringify((e.details as {refused: string[]}).refused) === JSON.stringify([arg]),
      )
      assert.deepEqual(resolvePluginInstall([arg], true), [{arg, spec: arg}])
    })
  }
})

describe('pluginInstallAllowed: what plugin-plugins finally hands npm', () => {
  const cases: Array<[Parameters<typeof pluginInstallAllowed>[0], boolean]> = [
    [{type: 'npm', name: '@fpeer/plugin-sftp', tag: 'latest'}, true],
    [{type: 'npm', name: '@fpeer/plugin-ftp', tag: '^0.1'}, true],
    [{type: 'npm', name: 'sftp', tag: 'latest'}, false],
    [{type: 'npm', name: 'ftp', tag: 'latest'}, false],
    [{type: 'npm', name: '@fpeer/plugin-sftp', tag: 'npm:sftp@1'}, false],
    [{type: 'npm', name: '@evil/plugin-sftp', tag: 'latest'}, false],
    [{type: 'repo', url: 'https://github.com/someone/fpeer-plugin'}, false],
  ]
  for (const [plugin, want] of cases) it(`${JSON.stringify(plugin)}: ${want}`, () => assert.equal(pluginInstallAllowed(plugin), want))
})
