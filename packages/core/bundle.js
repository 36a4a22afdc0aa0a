// Part of `npm run build` (after `tsc -b`): bundles core's compiled modules into a few files under dist/bundle/, which package.json's exports point to.
//
// Why: node 20 loads ESM module by module (resolve, read, translate, link), and core is some
// 75 of them; importing '@fpeer/core' cost 0.35 CPU-s against 0.14 bundled, and every fpeer
// process pays it. The entries share chunks (esbuild's code splitting), so '@fpeer/core',
// '@fpeer/core/plugin', '/startup', '/testing' and '/conformance' still hold one copy of each
// class (FpeerError, Transport…), and each loads only the chunks it uses. Dependencies stay
// imports of their own packages. Not published: dist/bundle/ is.
import {mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync} from 'node:fs'
import path from 'node:path'

/** The bundle's entries: export name → compiled module. The workers too: their files sit beside the chunks, where `new URL('./lander-thread.js', import.meta.url)` looks. */
const ENTRIES = {
  index: 'index.js',
  startup: 'startup.js',
  plugin: 'plugin.js',
  testing: 'testing/index.js',
  conformance: 'conformance/index.js',
  'scan-thread': 'fs/scan-thread.js',
  'lander-thread': 'fs/lander-thread.js',
}

function mtimeMs(file) {
  try {
    return statSync(file).mtimeMs
  } catch {
    return undefined
  }
}

/**
 * True when `tsc -b` built core after its bundle was written (or none was), so the bundle may
 * hold older code than dist/. Only a source tree has the tsbuildinfo; an installed package's
 * bundle came with it and is taken as it is.
 */
export function bundleIsStale(coreRoot) {
  const built = mtimeMs(path.join(coreRoot, 'tsconfig.tsbuildinfo'))
  if (built === undefined) return false
  const written = mtimeMs(path.join(coreRoot, 'dist', 'bundle', 'index.js'))
  return written === undefined || written < built
}

/**
 * Writes dist/bundle/ from dist/. Safe against a concurrent run and a concurrent reader: chunks
 * are named by their content and written first, entries (fixed names) last, each through a
 * temporary file and a rename; index.js, the freshness stamp, is the very last.
 */
export async function writeBundle(coreRoot, {prune = false} = {}) {
  const esbuild = await import('esbuild')
  const dist = path.join(coreRoot, 'dist')
  const outdir = path.join(dist, 'bundle')
  const result = await esbuild.build({
    entryPoints: Object.entries(ENTRIES).map(([out, src]) => ({out, in: path.join(dist, src)})),
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    // Class and function names stay what the code says (errors and logs print them).
    keepNames: true,
    chunkNames: 'chunk-[hash]',
    entryNames: '[name]',
    write: false,
    logLevel: 'warning',
  })
  mkdirSync(outdir, {recursive: true})
  const entryFiles = new Set(Object.keys(ENTRIES).map((name) => path.join(outdir, `${name}.js`)))
  const order = (f) => (f.path.endsWith(`${path.sep}index.js`) ? 2 : entryFiles.has(f.path) ? 1 : 0)
  for (const file of [...result.outputFiles].sort((a, b) => order(a) - order(b))) {
    const tmp = `${file.path}.${process.pid}.tmp`
    writeFileSync(tmp, file.contents)
    renameSync(tmp, file.path)
  }
  // With `prune` (the build's own run, nothing else running), chunks of older builds go. A
  // rebuild at start leaves them: another process may be importing the old entries.
  if (!prune) return {dir: outdir, files: result.outputFiles.length}
  const keep = new Set(result.outputFiles.map((f) => path.basename(f.path)))
  for (const name of readdirSync(outdir)) if (name.startsWith('chunk-') && !keep.has(name)) rmSync(path.join(outdir, name), {force: true})
  return {dir: outdir, files: result.outputFiles.length}
}
