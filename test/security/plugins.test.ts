// Supply chain: `fpeer plugins install` against a hostile registry that serves decoy unscoped `sftp`/`ftp` and lacks the scoped plugins.
import assert from 'node:assert/strict'
import http from 'node:http'
import type net from 'node:net'
import {mkdir, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {spawn} from 'node:child_process'
import {fileURLToPath} from 'node:url'
import {type RunResult, runFpeer, tempDir, treeHashes} from '../src/harness.js'

const WITHOUT_GUARD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures/install-without-guard.js')

/**
 * A real HTTP npm registry on loopback that knows only the decoys, as the public registry
 * did when this was found: `sftp` and `ftp` are strangers' packages, `@fpeer/plugin-*` is
 * missing. `reset` makes it drop every connection instead. It records every path asked for.
 */
async function hostileRegistry(): Promise<{url: string; asked: string[]; mode: {reset: boolean}; close(): Promise<void>}> {
  const asked: string[] = []
  const mode = {reset: false}
  const sockets = new Set<net.Socket>()
  const server = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)
    asked.push(p)
    if (mode.reset) return void req.socket.resetAndDestroy()
    const decoy = /^\/(s?ftp)$/.exec(p)?.[1]
    if (decoy) {
      const tarball = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/${decoy}/-/${decoy}-9.9.9.tgz`
      res.writeHead(200, {'content-type': 'application/json'})
      return void res.end(
        JSON.stringify({
          name: decoy,
          'dist-tags': {latest: '9.9.9'},
          versions: {'9.9.9': {name: decoy, version: '9.9.9', scripts: {postinstall: 'node -e 1'}, dist: {tarball, shasum: '0'.repeat(40)}}},
        }),
      )
    }
    res.writeHead(404, {'content-type': 'application/json'})
    res.end(JSON.stringify({error: 'not found'}))
  })
  server.on('connection', (s) => {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/`,
    asked,
    mode,
    close: () => {
      for (const s of sockets) s.destroy()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

describe('plugins install against a registry with decoy unscoped sftp/ftp and no @fpeer plugins', {timeout: 180_000}, () => {
  let work: string
  let npmCache: string
  let registry: Awaited<ReturnType<typeof hostileRegistry>>
  let env: NodeJS.ProcessEnv

  before(async () => {
    work = await tempDir('fpeer-sec-plugins-')
    // npm's own cache is outside the compared tree: a lookup may cache what it read.
    npmCache = await tempDir('fpeer-sec-npm-cache-')
    registry = await hostileRegistry()
    await mkdir(path.join(work, 'untouched'), {recursive: true})
    await writeFile(path.join(work, 'untouched', 'file.txt'), 'before\n')
    env = {
      ...process.env,
      FPEER_HOME: path.join(work, 'home'),
      FPEER_DATA_DIR: path.join(work, 'data'),
      FPEER_CONFIG_DIR: path.join(work, 'config'),
      FPEER_CACHE_DIR: path.join(work, 'cache'),
      FPEER_NPM_REGISTRY: registry.url,
      npm_config_registry: registry.url,
      npm_config_cache: npmCache,
      npm_config_update_notifier: 'false',
    }
    delete env.FPEER_ALLOW_ANY_PLUGIN
  })

  after(async () => {
    await registry?.close()
    await rm(work, {recursive: true, force: true})
    await rm(npmCache, {recursive: true, force: true})
  })

  /** Every entry under `work` (directories too: a created-but-empty data dir counts) and every file's hash. */
  async function listing(): Promise<{entries: string[]; hashes: Map<string, string>}> {
    return {entries: (await readdir(work, {recursive: true})).sort(), hashes: await treeHashes(work)}
  }

  /** Runs one install and checks the invariants every case shares: its exit code and error code, and that nothing under `work` changed. */
  async function attempt(
    args: string[],
    options: {code: number; error: string; env?: NodeJS.ProcessEnv},
  ): Promise<RunResult & {err?: {code: string; details?: Record<string, unknown>}}> {
    const before = await listing()
    const r = await runFpeer(args, {env: {...env, ...options.env}, timeoutMs: 120_000})
    assert.equal(r.code, options.code, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
    let err
    if (args.includes('--json')) {
      // Exactly one JSON document on stdout.
      err = JSON.parse(r.stdout).error
      assert.equal(err.code, options.error, r.stdout)
    } else {
      assert.equal(r.stdout, '')
      assert.match(r.stderr, new RegExp(`^Error \\[${options.error}\\]`))
    }
    assert.deepEqual(await listing(), before, 'an install attempt changed files')
    return {...r, err}
  }

  it('a known short name is looked up only as @fpeer/plugin-NAME: E_PLUGIN_NOT_FOUND (exit 6), the decoys are never asked for, nothing is written', async () => {
    registry.asked.length = 0
    const a = await attempt(['plugins', 'install', 'sftp', '--json'], {code: 6, error: 'E_PLUGIN_NOT_FOUND'})
    assert.equal(a.err!.details!.package, '@fpeer/plugin-sftp')
    await attempt(['plugins:add', 'ftp@^0.1'], {code: 6, error: 'E_PLUGIN_NOT_FOUND'})
    await attempt(['plugins:install', '@fpeer/plugin-sftp@latest', '--json'], {code: 6, error: 'E_PLUGIN_NOT_FOUND'})
    // Consent to third-party packages does not change what a known short name means.
    await attempt(['plugins', 'install', 'sftp', '--json'], {code: 6, error: 'E_PLUGIN_NOT_FOUND', env: {FPEER_ALLOW_ANY_PLUGIN: '1'}})
    assert.ok(registry.asked.includes('/@fpeer/plugin-sftp') && registry.asked.includes('/@fpeer/plugin-ftp'), registry.asked.join(' '))
    assert.deepEqual(
      registry.asked.filter((p) => !p.startsWith('/@fpeer/plugin-')),
      [],
      'the unscoped decoys (or anything else) were asked for',
    )
  })

  it('an npm alias, path or URL as the version, and unknown names, are E_UNKNOWN_PLUGIN (exit 2) without a single registry request', async () => {
    registry.asked.length = 0
    for (const arg of [
      'sftp@npm:sftp@9.9.9',
      '@fpeer/plugin-ftp@npm:ftp',
      'sftp@file:../sftp',
      'sftp@github:someone/sftp',
      'sftp@http://127.0.0.1:1/sftp.tgz',
      'ftp2',
      'Sftp',
    ]) {
      await attempt(['plugins:install', arg, '--json'], {code: 2, error: 'E_UNKNOWN_PLUGIN'})
    }
    assert.deepEqual(registry.asked, [])
  })

  it('with the name guard switched off, oclif falls back to the decoy and the preinstall hook stops it: E_UNKNOWN_PLUGIN (exit 2), the decoy is never fetched, no package recorded', async () => {
    registry.asked.length = 0
    const r = await new Promise<{code: number | null; stdout: string}>((resolve, reject) => {
      const child = spawn(process.execPath, [WITHOUT_GUARD, 'plugins', 'install', 'sftp', '--json'], {env, stdio: ['ignore', 'pipe', 'ignore']})
      let stdout = ''
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
      const t = setTimeout(() => child.kill('SIGKILL'), 120_000)
      child.once('error', reject)
      child.once('close', (code) => {
        clearTimeout(t)
        resolve({code, stdout})
      })
    })
    assert.equal(r.code, 2, r.stdout)
    const err = JSON.parse(r.stdout).error
    assert.equal(err.code, 'E_UNKNOWN_PLUGIN')
    // oclif fell back to the unscoped name (its scoped lookup got a 404), and went no further:
    // the hook stopped it before its install asked the registry for the decoy.
    assert.deepEqual(err.details.refused, ['sftp@latest'])
    assert.deepEqual(registry.asked, ['/@fpeer/plugin-sftp'])
    const pjson = JSON.parse(await readFile(path.join(work, 'data', 'package.json'), 'utf8')) as {dependencies: object; oclif: {plugins: unknown[]}}
    assert.deepEqual([pjson.dependencies, pjson.oclif.plugins], [{}, []])
    await rm(path.join(work, 'data'), {recursive: true, force: true})
  })

  it('a registry that resets every connection is E_CONNECT (exit 4), and nothing is written', async () => {
    registry.mode.reset = true
    try {
      const a = await attempt(['plugins', 'install', 'sftp', '--json'], {code: 4, error: 'E_CONNECT'})
      assert.equal(a.err!.details!.registry, registry.url)
    } finally {
      registry.mode.reset = false
    }
  })
})
