// Installed plugins load the CLI's own @fpeer/core: the oclif data dir's package.json depends on it by path, so npm links it there instead of fetching a second copy.
import {existsSync, readFileSync, realpathSync} from 'node:fs'
import {mkdir, readFile, rename, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {FpeerError} from '@fpeer/core'

export const CORE_PACKAGE = '@fpeer/core'

/**
 * The real directory of the @fpeer/core this CLI runs: the workspace's `packages/core` in a
 * clone, `…/node_modules/@fpeer/core` when installed from npm. Real, because Node's ESM
 * resolver keys modules by real path: a plugin whose `@fpeer/core` is a link to this
 * directory gets the very module instances the CLI has.
 */
export function cliCoreDir(): string {
  // The package's exports do not include package.json, so walk up from its entry.
  let dir = path.dirname(fileURLToPath(import.meta.resolve(CORE_PACKAGE)))
  for (let i = 0; i < 8; i++) {
    const pjson = path.join(dir, 'package.json')
    if (existsSync(pjson) && (JSON.parse(readFileSync(pjson, 'utf8')) as {name?: string}).name === CORE_PACKAGE) return realpathSync(dir)
    dir = path.dirname(dir)
  }
  throw new FpeerError('E_INTERNAL', `cannot find the package directory of ${CORE_PACKAGE} above ${fileURLToPath(import.meta.resolve(CORE_PACKAGE))}`)
}

/** The dependency spec that makes npm link `coreDir` instead of fetching @fpeer/core from a registry. */
export function coreSpec(coreDir: string): string {
  return `file:${coreDir}`
}

/**
 * Install scripts the data dir allows (package.json's `allowScripts`). npm 11, which
 * plugin-plugins runs, warns about every dependency install script that field does not name,
 * and its documentation says such scripts are blocked by default (11.19-11.21 still run them).
 * fpeer's SFTP plugin needs ssh2's (its native crypto; without it, SFTP runs on JavaScript
 * ciphers at about two thirds of the speed) and cpu-features' (ssh2's optional dependency), so
 * they are named; nothing else is. An entry the user set is kept.
 */
export const ALLOWED_SCRIPTS: Readonly<Record<string, boolean>> = {ssh2: true, 'cpu-features': true}

/** What @oclif/plugin-plugins writes into a fresh data dir (its `initPJSON`), so its own reads see nothing new. */
function freshPjson(name: string): Record<string, unknown> {
  return {name, dependencies: {}, oclif: {plugins: [], schema: 1}, private: true}
}

/**
 * Makes the plugin install in `dataDir` depend on `coreDir` by path, and allow the install
 * scripts of ALLOWED_SCRIPTS. npm (7+) then satisfies
 * every plugin's `@fpeer/core` peer dependency with a link to it instead of installing a
 * second copy, and reports a version the plugin's peer range refuses as an error instead of
 * loading two cores. Run before every install and update: it also re-points the link when the
 * CLI moved (a new Node, a new global prefix) and replaces a copy an older fpeer left there.
 * Returns whether package.json changed. A package.json that is not JSON is left to
 * plugin-plugins, which reports it.
 */
export async function linkCliCore(dataDir: string, cliName: string, coreDir: string = cliCoreDir()): Promise<boolean> {
  const file = path.join(dataDir, 'package.json')
  let pjson: Record<string, unknown>
  try {
    pjson = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return false
    pjson = freshPjson(cliName)
  }
  const deps = (typeof pjson.dependencies === 'object' && pjson.dependencies !== null ? pjson.dependencies : {}) as Record<string, string>
  const allowed = (typeof pjson.allowScripts === 'object' && pjson.allowScripts !== null ? pjson.allowScripts : {}) as Record<string, boolean>
  const spec = coreSpec(coreDir)
  if (deps[CORE_PACKAGE] === spec && Object.keys(ALLOWED_SCRIPTS).every((name) => name in allowed)) return false
  pjson.dependencies = {...deps, [CORE_PACKAGE]: spec}
  pjson.allowScripts = {...ALLOWED_SCRIPTS, ...allowed}
  await mkdir(dataDir, {recursive: true})
  // Written whole, then renamed: an interrupted write must not leave plugin-plugins a truncated file.
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, JSON.stringify(pjson, null, 2))
  await rename(tmp, file)
  return true
}
