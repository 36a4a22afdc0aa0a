// On Node 22.1+, bin/run.js keeps V8's compiled code in fpeer's cache directory, and only in a directory of this user that no one else may write.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {existsSync, readdirSync, statSync} from 'node:fs'
import {chmod, mkdir, mkdtemp, rm, symlink} from 'node:fs/promises'
import module from 'node:module'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {fileURLToPath} from 'node:url'

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/run.js')
const SUPPORTED = typeof (module as {enableCompileCache?: unknown}).enableCompileCache === 'function'

describe("fpeer's compile cache", {timeout: 600_000}, () => {
  let work: string
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-compile-cache-'))
  })
  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  /** Runs `fpeer protocols --json` with this cache directory; resolves once it has exited 0 (the cache is written at exit). */
  function run(cacheDir: string): Promise<void> {
    const env: NodeJS.ProcessEnv = {...process.env, FPEER_HOME: path.join(work, 'home'), FPEER_CACHE_DIR: cacheDir}
    delete env.NODE_COMPILE_CACHE
    delete env.NODE_DISABLE_COMPILE_CACHE
    return new Promise((resolve, reject) => {
      execFile(process.execPath, [BIN, 'protocols', '--json'], {env, timeout: 60_000}, (err, stdout, stderr) => {
        if (err) return reject(new Error(`${err.message}\n${stderr}`))
        assert.ok(Array.isArray(JSON.parse(stdout).protocols), stdout)
        resolve()
      })
    })
  }

  /** Every file under `dir`. */
  const files = (dir: string): string[] =>
    readdirSync(dir, {recursive: true, withFileTypes: true})
      .filter((e) => e.isFile())
      .map((e) => e.name)

  it(SUPPORTED ? 'is written to FPEER_CACHE_DIR/node-compile-cache, a 0700 directory' : 'is not made on a Node without one (Node 20)', async () => {
    const cache = path.join(work, 'own')
    await run(cache)
    const dir = path.join(cache, 'node-compile-cache')
    if (!SUPPORTED) return void assert.equal(existsSync(dir), false)
    assert.equal(statSync(dir).mode & 0o777, 0o700)
    assert.equal(statSync(cache).mode & 0o777, 0o700)
    const first = files(dir)
    assert.ok(first.length > 0, 'compiled code was kept')
    // A second run reads it and adds nothing new.
    await run(cache)
    assert.deepEqual(files(dir).sort(), first.sort())
  })

  it(
    'is not used in a directory others may write, through a symlink, or in a directory held by one others may write',
    {skip: !SUPPORTED && 'Node 20 has no compile cache'},
    async () => {
      const open = path.join(work, 'open')
      await mkdir(path.join(open, 'node-compile-cache'), {recursive: true})
      await chmod(path.join(open, 'node-compile-cache'), 0o777)
      await run(open)
      assert.deepEqual(files(path.join(open, 'node-compile-cache')), [], 'nothing written where others could plant code')

      const linked = path.join(work, 'linked')
      const elsewhere = path.join(work, 'elsewhere')
      await mkdir(elsewhere, {mode: 0o700})
      await mkdir(linked, {mode: 0o700})
      await symlink(elsewhere, path.join(linked, 'node-compile-cache'))
      await run(linked)
      assert.deepEqual(files(elsewhere), [], 'nothing written through the link')

      // A private cache directory in a directory others may write: they could swap it after the check.
      const shared = path.join(work, 'shared')
      await mkdir(path.join(shared, 'node-compile-cache'), {recursive: true, mode: 0o700})
      await chmod(shared, 0o777)
      await run(shared)
      assert.deepEqual(files(path.join(shared, 'node-compile-cache')), [], 'nothing written under a parent others may write')
    },
  )
})
