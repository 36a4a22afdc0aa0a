// Part of `npm run build` (after core's bundle): bundles the CLI's compiled modules with @oclif/core into dist/bundle/, which bin/run.js and package.json's oclif settings point to.
//
// Why: node loads @oclif/core module by module (some 65 CommonJS files: 0.26 CPU-s to import,
// 0.19 bundled), and every fpeer command pays it. Two entries share chunks (esbuild's code
// splitting): `fast.js` (the fast path of `fpeer id` and `--version`, and the --json writer)
// loads no oclif; `cli.js` holds oclif's run, the commands (COMMANDS, oclif's "explicit"
// discovery), the help class and the hooks, so each exists once whichever way it is reached.
// @fpeer/* stay imports: the plugins must share the CLI's one core. Not published: dist/bundle/ is.
import {readdirSync} from 'node:fs'
import path from 'node:path'
// The same staleness rule, esbuild options and safe writes as core's (a source tree has both).
import {bundleOptions, olderThanBuild, writeOutputs} from '../core/bundle.js'

/**
 * Left to node_modules: fpeer's own packages (one core for the CLI and every plugin); oclif's
 * optional TypeScript loaders (fpeer runs compiled JavaScript only, auto-transpile is off); and
 * semver, which oclif loads only for the engines check bin/run.js skips.
 */
const NEVER_BUNDLED = ['@fpeer/*', 'typescript', 'ts-node', 'tsx', 'semver']

/** True when `tsc -b` built the CLI after its bundle was written, or none was (olderThanBuild). */
export function cliBundleIsStale(cliRoot) {
  return olderThanBuild(cliRoot, 'cli.js')
}

/** Command files under dist/commands → oclif command IDs (`message/send.js` → `message:send`, `plugins/index.js` → `plugins`). */
function commandFiles(dir, prefix = '') {
  const out = []
  for (const entry of readdirSync(dir, {withFileTypes: true}).sort((a, b) => a.name.localeCompare(b.name))) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name
    if (entry.isDirectory()) out.push(...commandFiles(path.join(dir, entry.name), rel))
    else if (entry.name.endsWith('.js') && !entry.name.endsWith('.test.js')) {
      const id = rel.slice(0, -3).replace(/\/index$/, '').replaceAll('/', ':')
      out.push({id, file: `./commands/${rel}`})
    }
  }
  return out
}

/** The source of the two entries, made from what dist/ holds, so a new command needs no list kept by hand. */
function entrySources(dist) {
  const commands = commandFiles(path.join(dist, 'commands'))
  const cli = [
    "export {run, handle, settings, Plugin} from '@oclif/core'",
    "export {default as FpeerHelp} from './help.js'",
    "export {default as notFoundHook} from './hooks/not-found.js'",
    "export {default as prerunHook} from './hooks/plugins-install-guard.js'",
    "export {default as preinstallHook} from './hooks/plugins-preinstall.js'",
    ...commands.map((c, i) => `import C${i} from '${c.file}'`),
    `export const COMMANDS = {${commands.map((c, i) => `${JSON.stringify(c.id)}: C${i}`).join(', ')}}`,
  ].join('\n')
  const fast = ["export {fastPath} from './fast-path.js'", "export {jsonWritten} from './json-out.js'"].join('\n')
  return {cli, fast}
}

/** Writes dist/bundle/ from dist/ (core's writeOutputs). */
export async function writeCliBundle(cliRoot, {prune = false} = {}) {
  const esbuild = await import('esbuild')
  const dist = path.join(cliRoot, 'dist')
  const outdir = path.join(dist, 'bundle')
  const sources = entrySources(dist)
  const result = await esbuild.build({
    ...bundleOptions(outdir),
    entryPoints: [
      {in: 'fpeer-entry:cli', out: 'cli'},
      {in: 'fpeer-entry:fast', out: 'fast'},
    ],
    plugins: [
      {
        name: 'fpeer-entries',
        setup(build) {
          build.onResolve({filter: /^fpeer-entry:/}, (args) => ({path: args.path.slice('fpeer-entry:'.length), namespace: 'fpeer-entry'}))
          build.onLoad({filter: /.*/, namespace: 'fpeer-entry'}, (args) => ({contents: sources[args.path], resolveDir: dist, loader: 'js'}))
        },
      },
    ],
    external: NEVER_BUNDLED,
    // oclif is CommonJS: its require() of a path it computes (a plugin's CommonJS hook) needs a real one.
    banner: {js: "import {createRequire as __fpeerCreateRequire} from 'node:module'; const require = __fpeerCreateRequire(import.meta.url);"},
  })
  // cli.js, the freshness stamp, last.
  return writeOutputs(outdir, result.outputFiles, ['fast.js', 'cli.js'], prune)
}
