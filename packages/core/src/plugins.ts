// The transfer plugins fpeer knows by name: the one list `plugins:install` and E_NO_TRANSPORT hints use.

/** Protocol (Line 4) → npm package of the plugin that provides it. Add a plugin here, nowhere else. */
export const KNOWN_PLUGINS: Readonly<Record<string, {package: string; core: boolean}>> = {
  HTTP: {package: '@fpeer/plugin-http', core: true},
  MANUAL: {package: '@fpeer/plugin-manual', core: true},
  FTP: {package: '@fpeer/plugin-ftp', core: false},
  SFTP: {package: '@fpeer/plugin-sftp', core: false},
}

/** The short name `fpeer plugins:install` takes for a protocol's plugin, e.g. `sftp`. */
export function pluginShortName(protocol: string): string {
  return protocol.toLowerCase()
}

/** The known plugin for a protocol, if any. */
export function knownPlugin(protocol: string): {protocol: string; short: string; package: string; core: boolean} | undefined {
  const p = protocol.toUpperCase()
  const k = KNOWN_PLUGINS[p]
  return k ? {protocol: p, short: pluginShortName(p), ...k} : undefined
}

/**
 * What `fpeer plugins:install <arg>` may install: a known short name (`sftp`, `sftp@0.1.0`)
 * or a known package name (`@fpeer/plugin-sftp@^0.1`). Anything else (another package, a
 * URL, a GitHub slug) is undefined, so a typo never installs a stranger's package.
 */
export function knownPluginForInstall(arg: string): {protocol: string; short: string; package: string; core: boolean} | undefined {
  const at = arg.indexOf('@', 1)
  // npm names are lower case; `SFTP` is refused rather than guessed at.
  const name = at === -1 ? arg : arg.slice(0, at)
  for (const protocol of Object.keys(KNOWN_PLUGINS)) {
    const k = knownPlugin(protocol)!
    if (name === k.short || name === k.package) return k
  }
  return undefined
}
