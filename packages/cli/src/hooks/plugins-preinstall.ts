// oclif `plugins:preinstall` hook: the last look at what @oclif/plugin-plugins is about to hand npm; anything but a known scoped plugin stops the install, and what goes ahead shares the CLI's core.
import type {Hook} from '@oclif/core'
import {FpeerError, pluginInstallAllowed} from '@fpeer/core'
import {ALLOW_ANY_PLUGIN_ENV, failInHook} from './plugins-install-guard.js'

/**
 * Also the one place that sees every install just before npm runs: it points the data dir's
 * `@fpeer/core` at the CLI's own (services/plugin-core.ts), so the plugin shares its core.
 *
 * The prerun guard already rewrote every argument to a full scoped name; this hook sees the
 * name plugin-plugins finally chose, after its own expansion and fallback. If that is ever
 * not a known `@fpeer/plugin-*` package (a future plugin-plugins expanding differently, a
 * path around the guard), nothing is installed.
 */
const preinstall: Hook<'plugins:preinstall'> = async function ({plugin, config}) {
  if (process.env[ALLOW_ANY_PLUGIN_ENV] === '1' || pluginInstallAllowed(plugin)) {
    // Allowed: npm is about to run in the data dir; it must link the CLI's core, not fetch one.
    const {linkCliCore} = await import('../services/plugin-core.js')
    await linkCliCore(config.dataDir, config.name)
    return
  }
  const asked = plugin.type === 'npm' ? `${plugin.name}@${plugin.tag}` : plugin.url
  const err = new FpeerError('E_UNKNOWN_PLUGIN', `refusing to install ${asked}: not a known fpeer transfer plugin`, {
    hint: `to install another package on purpose, set ${ALLOW_ANY_PLUGIN_ENV}=1`,
    details: {refused: [asked]},
  })
  // With --json, plugin-plugins' install command prints the error it catches as its one
  // document and exits with its exitCode; oclif lets a hook's error through only with `oclif.exit`.
  if (process.argv.includes('--json')) throw Object.assign(err, {oclif: {exit: err.exitCode}})
  failInHook(this, err, process.argv)
}

export default preinstall
