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
 * True when `tsc -b` built the package at `root` after `stamp` (a file of its bundle) was
 * written, or none was: the bundle may hold older code than dist/. Only a source tree has the
 * tsbuildinfo; an installed package's bundle came with it and is taken as it is.
 */
export function olderThanBuild(root, stamp) {
  const built = mtimeMs(path.join(root, 'tsconfig.tsbuildinfo'))
  if (built === undefined) return false
  const written = mtimeMs(path.join(root, 'dist', 'bundle', stamp))
  return written === undefined || written < built
}

/** True when core's bundle may hold older code than dist/ (olderThanBuild). */
export function bundleIsStale(coreRoot) {
  return olderThanBuild(coreRoot, 'index.js')
}

/**
 * Writes esbuild's output files into `outdir`, safe against a concurrent run and a concurrent
 * reader: chunks (named by their content) first, then the entries in the order of `last` (the
 * freshness stamp at its end), each through a temporary file and a rename. With `prune` (the
 * build's own run, nothing else running), whatever else is in `outdir` goes (chunks and
 * entries of older builds); a rebuild at start leaves them, as another process may be
 * importing the old entries.
 */
export function writeOutputs(outdir, outputFiles, last, prune) {
  mkdirSync(outdir, {recursive: true})
  const rank = (f) => last.indexOf(path.basename(f.path))
  for (const file of [...outputFiles].sort((a, b) => rank(a) - rank(b))) {
    const tmp = `${file.path}.${process.pid}.tmp`
    writeFileSync(tmp, file.contents)
    renameSync(tmp, file.path)
  }
  if (prune) {
    const keep = new Set(outputFiles.map((f) => path.basename(f.path)))
    // Everything else there is an older build's: its chunks, an entry no longer bundled, a crashed writer's temporary file.
    for (const name of readdirSync(outdir)) if (!keep.has(name)) rmSync(path.join(outdir, name), {force: true})
  }
  return {dir: outdir, files: outputFiles.length}
}

/** The esbuild options both bundles (core's and the CLI's) are made with. */
export function bundleOptions(outdir) {
  return {
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    // Class and function names stay what the code says (errors and logs print them).
    keepNames: true,
    chunkNames: 'chunk-[hash]',
    entryNames: '[name]',
    write: false,
    logLevel: 'warning',
  }
}

/** Writes dist/bundle/ from dist/ (writeOutputs). */
export async function writeBundle(coreRoot, {prune = false} = {}) {
  const esbuild = await import('esbuild')
  const dist = path.join(coreRoot, 'dist')
  const outdir = path.join(dist, 'bundle')
  const result = await esbuild.build({
    ...bundleOptions(outdir),
    entryPoints: Object.entries(ENTRIES).map(([out, src]) => ({out, in: path.join(dist, src)})),
    packages: 'external',
  })
  // index.js, the freshness stamp, last.
  return writeOutputs(outdir, result.outputFiles, [...Object.keys(ENTRIES).filter((n) => n !== 'index').map((n) => `${n}.js`), 'index.js'], prune)
}
