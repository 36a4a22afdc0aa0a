// `fpeer plugins install`: asks the npm registry whether a known plugin's scoped package exists before anything is installed.
import {spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {createRequire} from 'node:module'
import os from 'node:os'
import path from 'node:path'
import {FpeerError, type PluginInstallTarget} from '@fpeer/core'

/** How long one `npm view` may take: long enough for a slow registry, short enough that a dead one is an error, not a hang. */
export const REGISTRY_LOOKUP_TIMEOUT_MS = 60_000

export interface RegistryLookupOptions {
  /** `--registry` for npm (FPEER_NPM_REGISTRY / oclif.npmRegistry); undefined lets npm use its own (npm_config_registry, .npmrc). */
  registry?: string
  /** npm's working directory: the oclif data dir when it exists, so npm reads the same project .npmrc as the install will. */
  cwd: string
  timeoutMs?: number
}

/**
 * The npm CLI plugin-plugins itself runs (its pinned dependency, else the one on PATH), so the
 * lookup and the install read the same configuration.
 */
function npmCommand(): {cmd: string; args: string[]} {
  try {
    const req = createRequire(import.meta.url)
    const fromPlugins = createRequire(req.resolve('@oclif/plugin-plugins'))
    const pjsonPath = fromPlugins.resolve('npm/package.json')
    const pjson = fromPlugins(pjsonPath) as {bin: {npm: string}}
    return {cmd: process.execPath, args: [path.join(path.dirname(pjsonPath), pjson.bin.npm)]}
  } catch {
    return {cmd: 'npm', args: []}
  }
}

/** Which registry a lookup went to, for messages: npm's default unless configured. */
export function registryName(registry: string | undefined): string {
  const url = registry ?? process.env.npm_config_registry ?? process.env.NPM_CONFIG_REGISTRY
  return url ? `the npm registry ${url}` : "npm's configured registry (https://registry.npmjs.org/ unless .npmrc says otherwise)"
}

/** The other ways to get a plugin that the registry does not have; named in E_PLUGIN_NOT_FOUND. */
export function otherWays(target: PluginInstallTarget): string[] {
  const short = target.known?.short ?? 'NAME'
  return [
    `from a clone of fpeer (npm ci && npx tsc -b): fpeer plugins link --no-install <clone>/plugins/${short}`,
    `from a registry that has ${target.package}: FPEER_NPM_REGISTRY=<url> fpeer plugins install ${short}`,
  ]
}

/** What one `npm view <spec> name --json` said, from its exit code and stdout. */
export type ViewOutcome = {found: true} | {found: false; missing: true} | {found: false; missing: false; npmCode?: string; otherName?: string}

/**
 * Reads `npm view … name --json`: the name (one string, or one per matching version) when the
 * package exists; `{"error": {"code": "E404"}}` (npm ≥ 7) or nothing (older npm) when the name
 * or no version in the range exists; another error code when the registry could not be asked.
 */
export function classifyView(pkg: string, code: number | null, stdout: string): ViewOutcome {
  let doc: unknown
  try {
    doc = stdout.trim() === '' ? undefined : JSON.parse(stdout)
  } catch {
    doc = undefined
  }
  const names = typeof doc === 'string' ? [doc] : Array.isArray(doc) ? doc.filter((n): n is string => typeof n === 'string') : []
  if (code === 0 && names.length > 0)
    return names.every((n) => n === pkg) ? {found: true} : {found: false, missing: false, otherName: names.find((n) => n !== pkg)!}
  const npmCode = (doc as {error?: {code?: unknown}} | undefined)?.error?.code
  if ((code === 0 && doc === undefined) || npmCode === 'E404') return {found: false, missing: true}
  return {found: false, missing: false, ...(typeof npmCode === 'string' ? {npmCode} : {})}
}

/** Runs npm with a deadline; stdout is kept (bounded), stderr dropped (npm's own chatter). */
function runNpm(args: string[], cwd: string, timeoutMs: number): Promise<{code: number | null; stdout: string; timedOut: boolean}> {
  const npm = npmCommand()
  return new Promise((resolve, reject) => {
    const child = spawn(npm.cmd, [...npm.args, ...args], {cwd: existsSync(cwd) ? cwd : os.homedir(), stdio: ['ignore', 'pipe', 'ignore']})
    let stdout = ''
    let timedOut = false
    child.stdout.on('data', (d: Buffer) => {
      // A name lookup is small; a registry streaming megabytes at us is cut off.
      if (stdout.length < 1_000_000) stdout += d.toString()
    })
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, timeoutMs)
    child.once('error', (err) => {
      clearTimeout(timer)
      reject(new FpeerError('E_PLUGIN', `cannot run npm: ${err.message}`, {cause: err, hint: 'fpeer plugins install needs npm (it comes with Node.js)'}))
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({code, stdout, timedOut})
    })
  })
}

/**
 * Resolves when the registry has `target.package` at `target.range` (any version when none),
 * E_PLUGIN_NOT_FOUND when it does not, E_CONNECT / E_TIMEOUT when it cannot be asked.
 * Read-only: nothing is written to the oclif data dir.
 */
export async function assertInRegistry(target: PluginInstallTarget, options: RegistryLookupOptions): Promise<void> {
  if (!target.package) return
  const spec = `${target.package}@${target.range ?? '*'}`
  const timeoutMs = options.timeoutMs ?? REGISTRY_LOOKUP_TIMEOUT_MS
  const {code, stdout, timedOut} = await runNpm(
    [
      ...['view', spec, 'name', '--json', '--loglevel=silent', '--no-update-notifier'],
      // One quick retry: a dead registry is an error in seconds, not after npm's minute of backoff.
      ...['--fetch-retries=1', '--fetch-retry-mintimeout=1000', '--fetch-retry-maxtimeout=2000'],
      ...(options.registry ? [`--registry=${options.registry}`] : []),
    ],
    options.cwd,
    timeoutMs,
  )
  const where = registryName(options.registry)
  const registry = options.registry ?? process.env.npm_config_registry ?? process.env.NPM_CONFIG_REGISTRY ?? null
  if (timedOut) {
    throw new FpeerError('E_TIMEOUT', `${where} did not answer within ${timeoutMs / 1000} s looking up ${spec}`, {details: {package: target.package, registry}})
  }
  const outcome = classifyView(target.package, code, stdout)
  if (outcome.found) return
  if (outcome.missing) {
    const ways = otherWays(target)
    throw new FpeerError('E_PLUGIN_NOT_FOUND', `${spec} is not in ${where}`, {
      hint: `fpeer installs only ${target.package} for \`${target.arg}\`, never a package of another name; other ways: ${ways.join('; ')}`,
      details: {package: target.package, ...(target.range ? {range: target.range} : {}), registry, ways},
    })
  }
  if (outcome.otherName !== undefined) {
    throw new FpeerError('E_PLUGIN', `${where} answers for ${spec} with a package named ${JSON.stringify(outcome.otherName)}; not installing it`, {
      details: {package: target.package, registry, answered: outcome.otherName},
    })
  }
  throw new FpeerError('E_CONNECT', `cannot ask ${where} for ${spec}${outcome.npmCode ? ` (${outcome.npmCode})` : ''}`, {
    hint: 'check the network and the registry (FPEER_NPM_REGISTRY, npm_config_registry or .npmrc)',
    details: {package: target.package, registry, ...(outcome.npmCode ? {npm: outcome.npmCode} : {})},
  })
}
