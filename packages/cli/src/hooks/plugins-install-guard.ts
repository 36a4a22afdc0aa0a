// oclif `prerun` hook: `fpeer plugins install` installs only the scoped packages of the transfer plugins fpeer knows, and only once the registry has them; `plugins update` keeps them on the CLI's core.
import {existsSync} from 'node:fs'
import path from 'node:path'
import type {Hook} from '@oclif/core'
import type {FpeerError} from '@fpeer/core/startup'

/** Set to 1 to install a package that is not a known fpeer plugin (a third-party transport), on purpose. */
export const ALLOW_ANY_PLUGIN_ENV = 'FPEER_ALLOW_ANY_PLUGIN'

/** The ids oclif gives `plugins install` (and its alias `plugins add`), typed with a space or a colon. */
export const INSTALL_COMMANDS = new Set(['plugins:install', 'plugins:add'])

/** Prints one error the way fpeer's commands do (one JSON document with --json) and exits with its kind's code. */
export function failInHook(ctx: {exit(code?: number): void}, err: FpeerError, argv: readonly string[]): void {
  if (argv.includes('--json')) process.stdout.write(JSON.stringify({error: err.toJSON()}) + '\n')
  else process.stderr.write(`Error [${err.code}]: ${err.message}\n${err.hint ? `  Hint: ${err.hint}\n` : ''}`)
  ctx.exit(err.exitCode)
}

/**
 * Runs before @oclif/plugin-plugins parses its arguments. Left alone, plugin-plugins expands
 * `sftp` to `@fpeer/plugin-sftp` (oclif `scope`) only when the registry has it and otherwise
 * installs the unscoped `sftp`, a stranger's package with its own install scripts. So every
 * argument is resolved here: a known short name is rewritten in place (oclif hands this same
 * argv array to the command) to its full scoped name, after the registry confirmed it exists;
 * anything else is refused (E_UNKNOWN_PLUGIN) before any registry is asked, unless
 * FPEER_ALLOW_ANY_PLUGIN=1. A missing plugin is E_PLUGIN_NOT_FOUND and nothing is installed.
 */
const guard: Hook<'prerun'> = async function ({Command, argv, config}) {
  if (Command.id === 'plugins:update') {
    // plugin-plugins runs no hook before an update's `npm install`; the core link is refreshed here instead.
    const {linkCliCore} = await import('../services/plugin-core.js')
    if (existsSync(path.join(config.dataDir, 'package.json'))) await linkCliCore(config.dataDir, config.name)
    return
  }
  if (!INSTALL_COMMANDS.has(Command.id)) return
  // This hook runs before every command: what only an install needs is loaded here, not at start.
  const [{isFpeerError, resolvePluginInstall}, {assertInRegistry}] = await Promise.all([import('@fpeer/core'), import('../services/plugin-registry.js')])
  // Every install flag is boolean, so each argument not starting with `-` names a package.
  const positions = argv.flatMap((a, i) => (a.startsWith('-') ? [] : [i]))
  try {
    const targets = resolvePluginInstall(
      positions.map((i) => argv[i]!),
      process.env[ALLOW_ANY_PLUGIN_ENV] === '1',
    )
    for (const t of targets) await assertInRegistry(t, {registry: config.npmRegistry, cwd: config.dataDir})
    targets.forEach((t, n) => (argv[positions[n]!] = t.spec))
  } catch (err) {
    if (!isFpeerError(err)) throw err
    failInHook(this, err, argv)
  }
}

export default guard
