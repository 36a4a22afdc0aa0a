// oclif `plugins:preinstall` hook: the last look at what @oclif/plugin-plugins is about to hand npm; anything but a known scoped plugin stops the install.
import type {Hook} from '@oclif/core'
import {FpeerError, pluginInstallAllowed} from '@fpeer/core'
import {ALLOW_ANY_PLUGIN_ENV, failInHook} from './plugins-install-guard.js'

/**
 * The prerun guard already rewrote every argument to a full scoped name; this hook sees the
 * name plugin-plugins finally chose, after its own expansion and fallback. If that is ever
 * not a known `@fpeer/plugin-*` package (a future plugin-plugins expanding differently, a
 * path around the guard), nothing is installed.
 */
const preinstall: Hook<'plugins:preinstall'> = async function ({plugin}) {
  if (process.env[ALLOW_ANY_PLUGIN_ENV] === '1' || pluginInstallAllowed(plugin)) return
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
