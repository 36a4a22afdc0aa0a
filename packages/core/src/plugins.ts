// The transfer plugins fpeer knows by name: the one list `plugins:install` and E_NO_TRANSPORT hints use.
import {FpeerError} from './errors.js'

/** Protocol (Line 4) → npm package of the plugin that provides it. Add a plugin here, nowhere else. */
export const KNOWN_PLUGINS: Readonly<Record<string, {package: string; core: boolean}>> = {
  HTTP: {package: '@fpeer/plugin-http', core: true},
  MANUAL: {package: '@fpeer/plugin-manual', core: true},
  FTP: {package: '@fpeer/plugin-ftp', core: false},
  SFTP: {package: '@fpeer/plugin-sftp', core: false},
}

export interface KnownPlugin {
  protocol: string
  short: string
  package: string
  core: boolean
}

/** The short name `fpeer plugins:install` takes for a protocol's plugin, e.g. `sftp`. */
export function pluginShortName(protocol: string): string {
  return protocol.toLowerCase()
}

/** The known plugin for a protocol, if any. */
export function knownPlugin(protocol: string): KnownPlugin | undefined {
  const p = protocol.toUpperCase()
  const k = KNOWN_PLUGINS[p]
  return k ? {protocol: p, short: pluginShortName(p), ...k} : undefined
}

/** Splits `name[@range]` and `@scope/name[@range]`; the range is undefined when none is given. */
function splitSpec(arg: string): {name: string; range?: string} {
  const at = arg.indexOf('@', 1)
  return at === -1 ? {name: arg} : {name: arg.slice(0, at), range: arg.slice(at + 1)}
}

/**
 * A version, a semver range (`^0.1`, `>=0.1 <0.3`) or a dist-tag (`latest`, `next`). Never a
 * `:` or `/`: npm reads `npm:sftp@1`, `file:…`, `github:…` and URLs after the `@` as a
 * different package under the asked-for name, which is exactly the substitution refused here.
 */
const SAFE_RANGE = /^[A-Za-z0-9.^~<>=*|+ -]{1,64}$/

/**
 * What `fpeer plugins:install <arg>` may install: a known short name (`sftp`, `sftp@0.1.0`)
 * or a known package name (`@fpeer/plugin-sftp@^0.1`). Anything else (another package, a
 * URL, a GitHub slug, an npm alias as the range) is undefined, so a typo never installs a
 * stranger's package.
 */
export function knownPluginForInstall(arg: string): KnownPlugin | undefined {
  // npm names are lower case; `SFTP` is refused rather than guessed at.
  const {name, range} = splitSpec(arg)
  if (range !== undefined && !SAFE_RANGE.test(range)) return undefined
  for (const protocol of Object.keys(KNOWN_PLUGINS)) {
    const k = knownPlugin(protocol)!
    if (name === k.short || name === k.package) return k
  }
  return undefined
}

/** One argument of `fpeer plugins:install`, resolved to exactly what npm will be asked for. */
export interface PluginInstallTarget {
  /** The argument as typed. */
  arg: string
  /** What plugin-plugins receives instead of `arg`: always a full package name for a known plugin. */
  spec: string
  /** The package and range to look up in the registry first; undefined for a consented third-party spec. */
  package?: string
  range?: string
  known?: KnownPlugin
}

/**
 * Resolves every argument of `fpeer plugins:install` before @oclif/plugin-plugins sees it.
 * A known plugin always becomes its full scoped name (`sftp@^0.1` → `@fpeer/plugin-sftp@^0.1`),
 * so plugin-plugins never expands a short name itself: its expansion falls back to the
 * unscoped package (`sftp`, a stranger's) when the scoped one is missing from the registry.
 * Anything else is E_UNKNOWN_PLUGIN unless `allowAny` (the user's explicit consent), and then
 * it passes through exactly as typed.
 */
export function resolvePluginInstall(args: readonly string[], allowAny: boolean): PluginInstallTarget[] {
  const targets: PluginInstallTarget[] = []
  const refused: string[] = []
  for (const arg of args) {
    const known = knownPluginForInstall(arg)
    if (known) {
      const {range} = splitSpec(arg)
      targets.push({
        arg,
        spec: range === undefined ? known.package : `${known.package}@${range}`,
        package: known.package,
        ...(range === undefined ? {} : {range}),
        known,
      })
    } else if (allowAny) targets.push({arg, spec: arg})
    else refused.push(arg)
  }
  if (refused.length > 0) {
    const known = Object.entries(KNOWN_PLUGINS).map(([protocol, k]) => `${pluginShortName(protocol)} (${k.package})`)
    throw new FpeerError('E_UNKNOWN_PLUGIN', `not a known fpeer transfer plugin: ${refused.join(', ')}`, {
      hint: `known: ${known.join(', ')}; to install another package on purpose, set FPEER_ALLOW_ANY_PLUGIN=1`,
      details: {refused, known: Object.values(KNOWN_PLUGINS).map((k) => k.package)},
    })
  }
  return targets
}

/**
 * Whether plugin-plugins may go on with what it parsed (its `plugins:preinstall` hook): only
 * a known package from the registry, with a plain range. A second line behind
 * resolvePluginInstall, so a change in how plugin-plugins expands names can never turn a
 * known short name into an unscoped stranger.
 */
export function pluginInstallAllowed(plugin: {type: 'npm'; name: string; tag: string} | {type: 'repo'; url: string}): boolean {
  if (plugin.type !== 'npm') return false
  const k = knownPluginForInstall(plugin.name)
  return k !== undefined && k.package === plugin.name && SAFE_RANGE.test(plugin.tag)
}
