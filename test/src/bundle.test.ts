// The bundles (packages/core/bundle.js, packages/cli/bundle.js): what importers get is the bundle, one copy of each class across the entries, every export of dist/ and both worker threads; the CLI's holds every command, hook and the help class oclif is told of, and its fast path loads no oclif; a build after a bundle makes it stale and a rebuild brings it back.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {cp, readFile, readdir, rm, stat, symlink, utimes, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {pathToFileURL} from 'node:url'
import * as core from '@fpeer/core'
import * as conformance from '@fpeer/core/conformance'
import * as plugin from '@fpeer/core/plugin'
import * as startup from '@fpeer/core/startup'
import * as testing from '@fpeer/core/testing'
import {ROOT, tempDir} from './harness.js'

const CORE = path.join(ROOT, 'packages/core')
const CLI = path.join(ROOT, 'packages/cli')

interface Bundler {
  bundleIsStale(coreRoot: string): boolean
  writeBundle(coreRoot: string, options?: {prune?: boolean}): Promise<{dir: string; files: number}>
}
const bundler = (await import(pathToFileURL(path.join(CORE, 'bundle.js')).href)) as Bundler
interface CliBundler {
  cliBundleIsStale(cliRoot: string): boolean
  writeCliBundle(cliRoot: string, options?: {prune?: boolean}): Promise<{dir: string; files: number}>
}
const cliBundler = (await import(pathToFileURL(path.join(CLI, 'bundle.js')).href)) as CliBundler

/** The command files of a compiled CLI, as oclif command IDs. */
async function commandIds(dist: string, prefix = ''): Promise<string[]> {
  const ids: string[] = []
  for (const e of await readdir(path.join(dist, 'commands', prefix), {withFileTypes: true})) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name
    if (e.isDirectory()) ids.push(...(await commandIds(dist, rel)))
    else if (e.name.endsWith('.js') && !e.name.endsWith('.test.js'))
      ids.push(
        rel
          .slice(0, -3)
          .replace(/\/index$/, '')
          .replaceAll('/', ':'),
      )
  }
  return ids.sort()
}

/** Each entry of the package, its compiled module and its bundle file. */
const ENTRIES: Array<[string, string, string]> = [
  ['@fpeer/core', 'index.js', 'index.js'],
  ['@fpeer/core/startup', 'startup.js', 'startup.js'],
  ['@fpeer/core/plugin', 'plugin.js', 'plugin.js'],
  ['@fpeer/core/testing', 'testing/index.js', 'testing.js'],
  ['@fpeer/core/conformance', 'conformance/index.js', 'conformance.js'],
]

describe("@fpeer/core's bundle", () => {
  it('is what every entry of the package resolves to', () => {
    for (const [spec, , file] of ENTRIES) assert.equal(import.meta.resolve(spec), pathToFileURL(path.join(CORE, 'dist/bundle', file)).href, spec)
  })

  it('holds one copy of each class, whichever entry it comes through', () => {
    assert.equal(plugin.FpeerError, core.FpeerError)
    assert.equal(startup.FpeerError, core.FpeerError)
    assert.equal(startup.TransportRegistry, core.TransportRegistry)
    assert.equal(plugin.retry, core.retry)
    const err = new plugin.FpeerError('E_IO', 'x')
    assert.ok(err instanceof core.FpeerError)
    assert.ok(core.isFpeerError(err))
    // The testing and conformance entries build on the same classes.
    assert.ok(typeof testing.createMemoryTransport === 'function')
    assert.ok(typeof conformance === 'object')
  })

  it('keeps the names the code gives its classes', () => {
    assert.equal(core.FpeerError.name, 'FpeerError')
    assert.equal(core.TransportRegistry.name, 'TransportRegistry')
  })

  it('finds each worker thread it starts beside the file that starts it', async () => {
    const dir = path.join(CORE, 'dist/bundle')
    const workers = new Set<string>()
    for (const name of await readdir(dir)) {
      if (!name.endsWith('.js')) continue
      const text = await readFile(path.join(dir, name), 'utf8')
      for (const m of text.matchAll(/new URL\("\.\/([^"]+)", import\.meta\.url\)/g)) workers.add(m[1])
    }
    assert.deepEqual([...workers].sort(), ['lander-thread.js', 'scan-thread.js'])
    for (const w of workers) assert.ok((await stat(path.join(dir, w))).isFile(), w)
  })

  describe('a copy of the compiled package', () => {
    let work: string
    let copy: string
    before(async () => {
      work = await tempDir('fpeer-bundle-')
      copy = path.join(work, 'core')
      await cp(path.join(CORE, 'dist'), path.join(copy, 'dist'), {recursive: true, filter: (src) => !src.includes(`${path.sep}bundle`)})
      await cp(path.join(CORE, 'bundle.js'), path.join(copy, 'bundle.js'))
      // The compiled modules import their dependencies by name: from here, the repository's.
      await symlink(path.join(ROOT, 'node_modules'), path.join(work, 'node_modules'))
    })
    after(async () => {
      await rm(work, {recursive: true, force: true})
    })

    it('is stale with no bundle, fresh once bundled, stale again after a build', async () => {
      // No tsbuildinfo: an installed package, taken as it is.
      assert.equal(bundler.bundleIsStale(copy), false)
      const info = path.join(copy, 'tsconfig.tsbuildinfo')
      await writeFile(info, '{}')
      assert.equal(bundler.bundleIsStale(copy), true)
      await bundler.writeBundle(copy, {prune: true})
      assert.equal(bundler.bundleIsStale(copy), false)
      const later = new Date(Date.now() + 60_000)
      await utimes(info, later, later)
      assert.equal(bundler.bundleIsStale(copy), true)
    })

    it('exports from each entry exactly what the compiled module does', async () => {
      await bundler.writeBundle(copy, {prune: true})
      for (const [spec, compiled, file] of ENTRIES) {
        const want = Object.keys((await import(pathToFileURL(path.join(copy, 'dist', compiled)).href)) as object).sort()
        const got = Object.keys((await import(pathToFileURL(path.join(copy, 'dist/bundle', file)).href)) as object).sort()
        assert.deepEqual(got, want, spec)
      }
    })

    it('prunes the chunks and entries of an older build only when asked', async () => {
      const dir = path.join(copy, 'dist/bundle')
      await writeFile(path.join(dir, 'chunk-OLDBUILD.js'), 'export {}\n')
      await writeFile(path.join(dir, 'gone-thread.js'), 'export {}\n')
      await bundler.writeBundle(copy)
      assert.ok((await readdir(dir)).includes('chunk-OLDBUILD.js'))
      assert.ok((await readdir(dir)).includes('gone-thread.js'))
      await bundler.writeBundle(copy, {prune: true})
      assert.ok(!(await readdir(dir)).includes('chunk-OLDBUILD.js'))
      assert.ok(!(await readdir(dir)).includes('gone-thread.js'))
      assert.ok((await readdir(dir)).includes('index.js'))
      assert.ok(!(await readdir(dir)).some((n) => n.endsWith('.tmp')))
    })
  })

  describe("the CLI's bundle", () => {
    type Target = {target: string; identifier: string}
    let pjson: {oclif: {commands: Target; helpClass: Target; hooks: Record<string, Target>}}
    let cli: Record<string, unknown>
    before(async () => {
      pjson = JSON.parse(await readFile(path.join(CLI, 'package.json'), 'utf8')) as typeof pjson
      cli = (await import(pathToFileURL(path.join(CLI, 'dist/bundle/cli.js')).href)) as Record<string, unknown>
    })

    it('holds every command of dist/commands, under the IDs the manifest lists', async () => {
      const {target, identifier} = pjson.oclif.commands
      assert.equal(path.join(CLI, target), path.join(CLI, 'dist/bundle/cli.js'))
      const commands = cli[identifier] as Record<string, {run?: unknown}>
      const ids = await commandIds(path.join(CLI, 'dist'))
      assert.ok(ids.includes('request') && ids.includes('message:send') && ids.includes('plugins'), ids.join(' '))
      assert.deepEqual(Object.keys(commands).sort(), ids)
      for (const id of ids) assert.equal(typeof commands[id]?.run, 'function', id)
      const manifest = JSON.parse(await readFile(path.join(CLI, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, unknown>}
      assert.deepEqual(Object.keys(manifest.commands).sort(), ids)
    })

    it('exports the help class and each hook oclif is told of', () => {
      for (const t of [pjson.oclif.helpClass, ...Object.values(pjson.oclif.hooks)]) {
        assert.equal(path.join(CLI, t.target), path.join(CLI, 'dist/bundle/cli.js'))
        assert.equal(typeof cli[t.identifier], 'function', t.identifier)
      }
    })

    it('fast.js, the fast path, loads no oclif', () => {
      const code = `await import(${JSON.stringify(pathToFileURL(path.join(CLI, 'dist/bundle/fast.js')).href)}); console.log(Boolean(globalThis.oclif))`
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {encoding: 'utf8', timeout: 60_000})
      assert.equal(r.stdout.trim(), 'false', r.stderr)
    })

    it('is stale after a build and fresh once rebuilt, in a copy of the compiled CLI', async () => {
      const work = await tempDir('fpeer-cli-bundle-')
      try {
        const copy = path.join(work, 'cli')
        await cp(path.join(CLI, 'dist'), path.join(copy, 'dist'), {recursive: true, filter: (src) => !src.includes(`${path.sep}bundle`)})
        await cp(path.join(CLI, 'bundle.js'), path.join(copy, 'bundle.js'))
        // The CLI's bundler shares core's helpers, from beside it as in the repository.
        await cp(path.join(CORE, 'bundle.js'), path.join(work, 'core', 'bundle.js'))
        await symlink(path.join(ROOT, 'node_modules'), path.join(work, 'node_modules'))
        assert.equal(cliBundler.cliBundleIsStale(copy), false)
        await writeFile(path.join(copy, 'tsconfig.tsbuildinfo'), '{}')
        assert.equal(cliBundler.cliBundleIsStale(copy), true)
        await cliBundler.writeCliBundle(copy, {prune: true})
        assert.equal(cliBundler.cliBundleIsStale(copy), false)
        const built = (await readdir(path.join(copy, 'dist/bundle'))).sort()
        assert.ok(built.includes('cli.js') && built.includes('fast.js'), built.join(' '))
        assert.ok(!built.some((n) => n.endsWith('.tmp')))
      } finally {
        await rm(work, {recursive: true, force: true})
      }
    })
  })
})
