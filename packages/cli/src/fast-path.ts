// The entry point's fast path: `fpeer --version` and `fpeer id` answered without loading oclif, whose own start costs more than all of node's.
import {readFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'

interface CliPackage {
  name: string
  version: string
  oclif: {bin: string; dirname: string}
}

/**
 * Answers `version` (what `-V` and `--version` become) and `id`, each alone or with `--json`,
 * the way those commands do, and returns true; returns false for anything else, which oclif
 * then runs: any other flag (`-q`, `--debug`, `--new`, `--help`), a platform whose directories
 * or name oclif works out otherwise (Windows, WSL), `--json` to a terminal (oclif colours it).
 * A failure is not reported here either: oclif runs the command again and reports it as usual.
 * Skipped on this path: oclif's `init` and `prerun` hooks, which no fpeer plugin has for these.
 */
export async function fastPath(argv: readonly string[], cliRoot: string): Promise<boolean> {
  const json = argv.length === 2 && argv[1] === '--json'
  if (argv.length !== 1 && !json) return false
  if (argv[0] !== 'version' && argv[0] !== 'id') return false
  if (process.platform !== 'linux' && process.platform !== 'darwin') return false
  if (os.release().toLowerCase().includes('microsoft')) return false
  if (json && process.stdout.isTTY) return false
  try {
    const pkg = JSON.parse(readFileSync(path.join(cliRoot, 'package.json'), 'utf8')) as CliPackage
    const result = argv[0] === 'version' ? version(pkg) : await id(pkg)
    process.stdout.write(json ? JSON.stringify(result.json, null, 2) + '\n' : result.text + '\n')
    return true
  } catch {
    return false
  }
}

function version(pkg: CliPackage): {text: string; json: object} {
  const platform = `${process.platform}-${process.arch}`
  return {text: `${pkg.name}/${pkg.version} ${platform} node-${process.version}`, json: {version: pkg.version, node: process.versions.node, platform}}
}

async function id(pkg: CliPackage): Promise<{text: string; json: object}> {
  const [{escapeForTerminal, loadIdentity, resolveHome}, {readSettings}] = await Promise.all([import('@fpeer/core/startup'), import('./settings.js')])
  const home = resolveHome(readSettings().home ?? configDir(pkg))
  const value = (await loadIdentity(home, {replace: false})).id.toString()
  return {text: escapeForTerminal(value, {keep: '\t\n'}), json: {id: value}}
}

/** oclif's config directory on Linux and macOS: $FPEER_CONFIG_DIR, else $XDG_CONFIG_HOME/fpeer, else ~/.config/fpeer. */
function configDir(pkg: CliPackage): string {
  const scoped = process.env[`${pkg.oclif.bin.toUpperCase().replaceAll('-', '_')}_CONFIG_DIR`]
  if (scoped) return scoped
  const home = process.env.HOME || os.homedir() || os.tmpdir()
  return path.join(process.env.XDG_CONFIG_HOME || path.join(home, '.config'), pkg.oclif.dirname)
}
