// @fpeer/core's bundle (packages/core/bundle.js): what importers get is the bundle, one copy of each class across the entries, every export of dist/ and both worker threads; a build after it makes it stale and a rebuild brings it back.
import assert from 'node:assert/strict'
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

interface Bundler {
  bundleIsStale(coreRoot: string): boolean
  writeBundle(coreRoot: string, options?: {prune?: boolean}): Promise<{dir: string; files: number}>
}
const bundler = (await import(pathToFileURL(path.join(CORE, 'bundle.js')).href)) as Bundler

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

    it('prunes the chunks of an older build only when asked', async () => {
      const dir = path.join(copy, 'dist/bundle')
      const old = path.join(dir, 'chunk-OLDBUILD.js')
      await writeFile(old, 'export {}\n')
      await bundler.writeBundle(copy)
      assert.ok((await readdir(dir)).includes('chunk-OLDBUILD.js'))
      await bundler.writeBundle(copy, {prune: true})
      assert.ok(!(await readdir(dir)).includes('chunk-OLDBUILD.js'))
      assert.ok(!(await readdir(dir)).some((n) => n.endsWith('.tmp')))
    })
  })
})
