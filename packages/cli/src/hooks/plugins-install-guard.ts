// oclif `prerun` hook: `fpeer plugins:install` takes only the transfer plugins fpeer knows, so a typo never installs a stranger's package.
import type {Hook} from '@oclif/core'
import {EXIT_CODES, FpeerError, KNOWN_PLUGINS, knownPluginForInstall, pluginShortName} from '@fpeer/core'

/** Set to 1 to install a package that is not a known fpeer plugin (a third-party transport), on purpose. */
export const ALLOW_ANY_PLUGIN_ENV = 'FPEER_ALLOW_ANY_PLUGIN'

const INSTALL_COMMANDS = new Set(['plugins:install', 'plugins:add'])

/**
 * Runs before the command, so before @oclif/plugin-plugins expands `sftp` to
 * `@fpeer/plugin-sftp` (oclif `scope`) and asks the registry whether it exists: a refused
 * name never reaches npm. Accepted: `sftp`, `sftp@0.1.0`, `@fpeer/plugin-sftp[@range]`.
 */
const guard: Hook<'prerun'> = async function ({Command, argv}) {
  if (!INSTALL_COMMANDS.has(Command.id) || process.env[ALLOW_ANY_PLUGIN_ENV] === '1') return
  const unknown = argv.filter((a) => !a.startsWith('-') && !knownPluginForInstall(a))
  if (unknown.length === 0) return
  const known = Object.entries(KNOWN_PLUGINS).map(([protocol, k]) => `${pluginShortName(protocol)} (${k.package})`)
  const err = new FpeerError('E_UNKNOWN_PLUGIN', `not a known fpeer transfer plugin: ${unknown.join(', ')}`, {
    hint: `known: ${known.join(', ')}; to install another package on purpose, set ${ALLOW_ANY_PLUGIN_ENV}=1`,
    details: {refused: unknown, known: Object.values(KNOWN_PLUGINS).map((k) => k.package)},
  })
  if (argv.includes('--json')) process.stdout.write(JSON.stringify({error: err.toJSON()}) + '\n')
  else process.stderr.write(`Error [${err.code}]: ${err.message}\n  Hint: ${err.hint}\n`)
  this.exit(EXIT_CODES[err.kind])
}

export default guard
