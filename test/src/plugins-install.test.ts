// End to end: `fpeer plugins:install sftp` from a real npm registry (verdaccio on loopback) that also holds decoy unscoped `sftp`/`ftp` packages, a request over it on the CLI's own core, uninstall, reinstall and update.
import assert from 'node:assert/strict'
import {type ChildProcess, spawn, spawnSync} from 'node:child_process'
import {existsSync, realpathSync} from 'node:fs'
import http from 'node:http'
import {lstat, mkdir, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import {createRequire} from 'node:module'
import net from 'node:net'
import path from 'node:path'
import {pathToFileURL} from 'node:url'
import {after, before, describe, it} from 'node:test'
import {Peer, ROOT, makeTree, runFpeer, tempDir, treeHashes} from './harness.js'
import {FpeerError} from '@fpeer/core'
import {freePort} from '@fpeer/core/testing'

const FOLDER = 'installed-sftp'
// This suite's own loopback hosts: the registry and the two peers.
const REGISTRY_HOST = '127.0.131.3'
const HOST = '127.0.131.1'
const REQUESTER = '127.0.131.2'
/** The real directory of the @fpeer/core the CLI under test loads (the workspace's). */
const CLI_CORE = realpathSync(path.join(ROOT, 'packages/core'))

function ping(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(`${url}-/ping`, {timeout: 2000}, (res) => {
      res.resume()
      resolve(res.statusCode === 200)
    })
    req.once('error', () => resolve(false))
    req.once('timeout', () => req.destroy())
  })
}

/** Runs a command to completion, bounded; resolves with its exit code and output. */
function run(
  cmd: string,
  args: string[],
  options: {cwd: string; env: NodeJS.ProcessEnv; timeoutMs?: number},
): Promise<{code: number | null; out: string; stdout: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    let stdout = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      stdout += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    const t = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${cmd} ${args.join(' ')} timed out: ${out}`))
    }, options.timeoutMs ?? 120_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(t)
      resolve({code, out, stdout})
    })
  })
}

/**
 * A bound for an install or update that hangs, not an expected time: one takes about 25 s on a
 * quiet machine, and went past 180 s at load 50 (npm, verdaccio and the CLI all starved).
 */
const INSTALL_BOUND_MS = 600_000

/** The unscoped names a careless expansion of `sftp` / `ftp` falls back to: strangers' packages on the public registry. */
const DECOYS = ['sftp', 'ftp']

/**
 * verdaccio 6 on REGISTRY_HOST with temp storage. @fpeer/* and the decoys are served only from
 * what the test publishes (anonymous publish, no uplink, so the public `sftp` and `ftp` are
 * never fetched); every other package (ssh2, lowdb, …) is proxied from the public npm
 * registry, read-only.
 */
async function startVerdaccio(dir: string): Promise<{url: string; child: ChildProcess; log: () => string}> {
  const port = await freePort()
  const url = `http://${REGISTRY_HOST}:${port}/`
  const config = path.join(dir, 'config.yaml')
  await mkdir(dir, {recursive: true})
  await writeFile(
    config,
    [
      `storage: ${JSON.stringify(path.join(dir, 'storage'))}`,
      'auth:',
      '  htpasswd:',
      `    file: ${JSON.stringify(path.join(dir, 'htpasswd'))}`,
      '    max_users: -1',
      'uplinks:',
      '  npmjs:',
      '    url: https://registry.npmjs.org/',
      '    timeout: 60s',
      'packages:',
      "  '@fpeer/*':",
      '    access: $all',
      '    publish: $all',
      '    unpublish: $all',
      ...DECOYS.flatMap((name) => [`  '${name}':`, '    access: $all', '    publish: $all', '    unpublish: $all']),
      "  '**':",
      '    access: $all',
      '    proxy: npmjs',
      'log: {type: stdout, format: pretty, level: warn}',
      '',
    ].join('\n'),
  )
  const child = spawn(process.execPath, [path.join(ROOT, 'node_modules/verdaccio/bin/verdaccio'), '--config', config, '--listen', `${REGISTRY_HOST}:${port}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let log = ''
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()))
  // Generous: on a loaded 2-core machine verdaccio has taken over 30 s to answer its first ping.
  const deadline = Date.now() + 180_000
  while (!(await ping(url))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`verdaccio did not start: ${log}`)
    }
    await new Promise((r) => setTimeout(r, 250))
  }
  return {url, child, log: () => log}
}

/**
 * A decoy unscoped package: a valid oclif plugin (so an install would keep it) whose install
 * script writes `marker`, the proof that a stranger's code ran.
 */
async function makeDecoy(dir: string, name: string, marker: string): Promise<string> {
  const root = path.join(dir, `decoy-${name}`)
  await mkdir(root, {recursive: true})
  const script = `require('fs').writeFileSync(${JSON.stringify(marker)}, 'decoy ${name} ran')`
  await writeFile(
    path.join(root, 'package.json'),
    JSON.stringify(
      {
        name,
        version: '9.9.9',
        description: 'decoy: must never be installed by fpeer',
        type: 'commonjs',
        scripts: {preinstall: `node -e ${JSON.stringify(script)}`, postinstall: `node -e ${JSON.stringify(script)}`},
        oclif: {},
      },
      null,
      2,
    ),
  )
  await writeFile(path.join(root, 'index.js'), 'module.exports = {}\n')
  return root
}

/** What a failed or refused install must not leave in the oclif data dir: the decoys in node_modules or package.json. */
async function decoyTraces(dataDir: string): Promise<string[]> {
  const traces: string[] = []
  for (const name of DECOYS) if (existsSync(path.join(dataDir, 'node_modules', name))) traces.push(`node_modules/${name}`)
  const pjsonPath = path.join(dataDir, 'package.json')
  if (existsSync(pjsonPath)) {
    const pjson = JSON.parse(await readFile(pjsonPath, 'utf8')) as {dependencies?: Record<string, string>; oclif?: {plugins?: Array<{name: string} | string>}}
    for (const name of Object.keys(pjson.dependencies ?? {})) if (DECOYS.includes(name)) traces.push(`dependencies.${name}`)
    for (const p of pjson.oclif?.plugins ?? []) if (DECOYS.includes(typeof p === 'string' ? p : p.name)) traces.push(`oclif.plugins ${JSON.stringify(p)}`)
  }
  return traces
}

/**
 * Every `node_modules/@fpeer/core` under the data dir (links not followed, so a nested copy
 * is found wherever npm put it), each with its real path.
 */
async function coresUnder(dataDir: string): Promise<Array<{at: string; real: string; link: boolean}>> {
  const found: Array<{at: string; real: string; link: boolean}> = []
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 12) return
    for (const entry of await readdir(dir, {withFileTypes: true}).catch(() => [])) {
      const p = path.join(dir, entry.name)
      if (p.endsWith(path.join('node_modules', '@fpeer', 'core'))) {
        found.push({at: path.relative(dataDir, p), real: realpathSync(p), link: (await lstat(p)).isSymbolicLink()})
      } else if (entry.isDirectory()) await walk(p, depth + 1)
    }
  }
  await walk(path.join(dataDir, 'node_modules'), 0)
  return found
}

/**
 * Where node-gyp finds Node's headers without downloading them (this machine's npm config says
 * so; the tests' own npmrc carries it on): only then can npm build ssh2's native crypto here,
 * and only then is that checked.
 */
const NODE_HEADERS = ((): string | undefined => {
  const dir = spawnSync('npm', ['config', 'get', 'nodedir'], {encoding: 'utf8', timeout: 60_000}).stdout?.trim()
  return dir && existsSync(path.join(dir, 'include/node/node.h')) ? dir : undefined
})()

/**
 * The installed plugin shares the CLI's core: exactly one @fpeer/core under the data dir, a
 * link to the CLI's, recorded as a `file:` dependency; what the plugin resolves for
 * `@fpeer/core/plugin` is the CLI's file; and an FpeerError the plugin's own code makes has the
 * CLI's FpeerError.prototype (not merely its brand, which a second copy would also carry).
 */
async function assertSharesCliCore(dataDir: string): Promise<void> {
  assert.deepEqual(await coresUnder(dataDir), [{at: path.join('node_modules', '@fpeer', 'core'), real: CLI_CORE, link: true}])
  const pjson = JSON.parse(await readFile(path.join(dataDir, 'package.json'), 'utf8')) as {dependencies: Record<string, string>}
  assert.equal(pjson.dependencies['@fpeer/core'], `file:${CLI_CORE}`)
  const pluginRoot = path.join(dataDir, 'node_modules/@fpeer/plugin-sftp')
  assert.equal(realpathSync(pluginRoot).startsWith(realpathSync(dataDir)), true, 'the plugin is the installed one, not a link to the workspace')
  const fromPlugin = createRequire(path.join(pluginRoot, 'package.json')).resolve('@fpeer/core/plugin')
  assert.equal(fromPlugin, path.join(CLI_CORE, 'dist/bundle/plugin.js'))
  const plugin = (await import(pathToFileURL(path.join(pluginRoot, 'dist/index.js')).href)) as {mapSshError(err: unknown, context: string): unknown}
  // SFTP status 2 (no such file): the plugin's own code builds this FpeerError from the core it resolved.
  const err = plugin.mapSshError(Object.assign(new Error('No such file'), {code: 2}), 'reading')
  assert.equal(Object.getPrototypeOf(err), FpeerError.prototype)
  assert.ok(err instanceof FpeerError)
  assert.equal((err as FpeerError).code, 'E_NOT_FOUND')
  // npm 11 ran ssh2's install script (the data dir's allowScripts): its native crypto is built.
  if (!NODE_HEADERS) return
  const client = createRequire(createRequire(path.join(pluginRoot, 'package.json')).resolve('ssh2-sftp-client'))
  const binding = path.join(path.dirname(client.resolve('ssh2/package.json')), 'lib/protocol/crypto/build/Release/sshcrypto.node')
  assert.ok(existsSync(binding), `${binding}: ssh2's native crypto was not built`)
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(t)
}

describe('fpeer plugins:install refuses names it does not know, without asking anyone', () => {
  it('a bare unknown name, another package, a URL or a GitHub slug is E_UNKNOWN_PLUGIN (exit 2), and no registry is contacted', async () => {
    const work = await tempDir()
    // A "registry" that counts connections: none may arrive.
    let connections = 0
    const trap = net.createServer((s) => {
      connections++
      s.destroy()
    })
    await new Promise<void>((resolve) => trap.listen(0, REGISTRY_HOST, resolve))
    const registry = `http://${REGISTRY_HOST}:${(trap.address() as net.AddressInfo).port}/`
    try {
      const env = {
        ...process.env,
        FPEER_HOME: path.join(work, 'home'),
        FPEER_DATA_DIR: path.join(work, 'data'),
        FPEER_CONFIG_DIR: path.join(work, 'config'),
        FPEER_CACHE_DIR: path.join(work, 'cache'),
        FPEER_NPM_REGISTRY: registry,
        npm_config_registry: registry,
      }
      for (const args of [
        ['plugins:install', 'nonsense-name'],
        ['plugins', 'install', 'sftpp'],
        ['plugins:add', '@evil/plugin-sftp'],
        ['plugins:install', 'https://github.com/someone/fpeer-plugin'],
        ['plugins:install', 'someone/fpeer-plugin'],
        ['plugins:install', 'SFTP'],
        ['plugins:install', 'sftp', 'nonsense-name'],
        ['plugins:install', 'sftp@npm:sftp@1.0.0'],
        ['plugins', 'add', '@fpeer/plugin-sftp@file:../sftp'],
        ['plugins:install', 'file:./fpeer-plugin-sftp-0.1.0.tgz'],
      ]) {
        const r = await runFpeer([...args, '--json'], {env})
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
        const err = JSON.parse(r.stdout).error
        assert.equal(err.code, 'E_UNKNOWN_PLUGIN', args.join(' '))
        assert.ok(err.details.known.includes('@fpeer/plugin-sftp'))
      }
      const text = await runFpeer(['plugins:install', 'nonsense-name'], {env})
      assert.equal(text.code, 2)
      assert.match(text.stderr, /E_UNKNOWN_PLUGIN/)
      assert.equal(connections, 0, 'a refused name reached the registry')
      assert.equal((await runFpeer(['plugins', '--json'], {env})).stdout.includes('nonsense'), false)
    } finally {
      await new Promise((resolve) => trap.close(resolve))
      await rm(work, {recursive: true, force: true})
    }
  })
})

describe(
  'fpeer plugins:install sftp from a registry that also holds decoy unscoped `sftp` and `ftp`, a request over SFTP, then plugins:uninstall',
  {timeout: 3_600_000},
  () => {
    let work: string
    let verdaccio: Awaited<ReturnType<typeof startVerdaccio>> | undefined
    let npmEnv: NodeJS.ProcessEnv
    let host: Peer
    let requester: Peer
    const dataDir = (name: string) => path.join(work, name, 'data')
    const marker = (name: string) => path.join(work, `decoy-${name}-ran`)
    const publish = async (dir: string) => {
      const r = await run('npm', ['publish', '--registry', verdaccio!.url], {cwd: dir, env: {...process.env, ...npmEnv}})
      assert.equal(r.code, 0, `npm publish ${dir}: ${r.out}`)
    }

    before(async () => {
      work = await tempDir('fpeer-plugins-')
      verdaccio = await startVerdaccio(path.join(work, 'verdaccio'))
      const npmrc = path.join(work, 'npmrc')
      // Anonymous publish still needs some token for npm to send; verdaccio allows $all for @fpeer/* and the decoys.
      await writeFile(
        npmrc,
        `registry=${verdaccio.url}\n//${verdaccio.url.slice('http://'.length)}:_authToken=anonymous\n${NODE_HEADERS ? `nodedir=${NODE_HEADERS}\n` : ''}`,
      )
      npmEnv = {
        npm_config_userconfig: npmrc,
        npm_config_cache: path.join(work, 'npm-cache'),
        npm_config_registry: verdaccio.url,
        npm_config_update_notifier: 'false',
        npm_config_fund: 'false',
        npm_config_audit: 'false',
        FPEER_NPM_REGISTRY: verdaccio.url,
      }
      // Core and the decoys now; the plugins themselves only once the not-found case has run.
      await publish(path.join(ROOT, 'packages/core'))
      for (const name of DECOYS) {
        await publish(await makeDecoy(work, name, marker(name)))
        // The decoy really is what an unscoped fallback would get from this registry.
        const view = await run('npm', ['view', name, 'name', 'version', '--json', '--registry', verdaccio.url], {cwd: work, env: {...process.env, ...npmEnv}})
        // stdout only: under `npm test` the child npm warns on stderr about the npm_config_* variables it inherits.
        assert.deepEqual(JSON.parse(view.stdout), {name, version: '9.9.9'}, view.out)
      }
      const peerEnv = (name: string) => ({
        ...npmEnv,
        FPEER_DATA_DIR: dataDir(name),
        FPEER_CONFIG_DIR: path.join(work, name, 'config'),
        FPEER_CACHE_DIR: path.join(work, name, 'cache'),
      })
      host = await Peer.create(HOST, peerEnv('host'))
      requester = await Peer.create(REQUESTER, peerEnv('requester'))
    })

    after(async () => {
      await requester?.destroy()
      await host?.destroy()
      await stopChild(verdaccio?.child)
      await rm(work, {recursive: true, force: true})
    })

    it('with @fpeer/plugin-sftp and -ftp not published, `plugins install sftp|ftp` is E_PLUGIN_NOT_FOUND (exit 6) naming the other ways; no decoy is installed and nothing is left behind', async () => {
      for (const args of [
        ['plugins:install', 'sftp'],
        ['plugins', 'install', 'sftp@^0.1'],
        ['plugins:add', 'ftp'],
        ['plugins:install', '@fpeer/plugin-sftp'],
      ]) {
        const r = await host.run([...args, '--json'], {timeoutMs: 120_000})
        assert.equal(r.code, 6, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
        // One JSON document, nothing else, on stdout.
        const err = JSON.parse(r.stdout).error
        assert.equal(err.code, 'E_PLUGIN_NOT_FOUND', args.join(' '))
        assert.equal(err.kind, 'plugin')
        assert.match(err.details.package, /^@fpeer\/plugin-s?ftp$/)
        assert.ok(
          err.details.ways.some((w: string) => w.includes('fpeer plugins link')),
          JSON.stringify(err),
        )
      }
      const text = await host.run(['plugins', 'install', 'sftp'], {timeoutMs: 120_000})
      assert.equal(text.code, 6, text.stdout + text.stderr)
      assert.equal(text.stdout, '')
      assert.match(text.stderr, /Error \[E_PLUGIN_NOT_FOUND\][\s\S]*Hint: .*fpeer plugins link --no-install <clone>\/plugins\/sftp/)
      for (const name of DECOYS) assert.equal(existsSync(marker(name)), false, `the decoy ${name}'s install script ran`)
      assert.deepEqual(await decoyTraces(dataDir('host')), [])
      // Nothing at all was installed: no node_modules, no plugin recorded.
      assert.equal(existsSync(path.join(dataDir('host'), 'node_modules')), false)
      assert.deepEqual(
        (await host.json<{plugins: Array<{name: string; type: string}>}>(['plugins']).then((d) => d.plugins)).filter((x) => x.type === 'user'),
        [],
      )
    })

    it('once published, installs @fpeer/plugin-sftp as `sftp` on both peers, never the decoy; fpeer plugins and fpeer protocols show it', async () => {
      await publish(path.join(ROOT, 'plugins/sftp'))
      await publish(path.join(ROOT, 'plugins/ftp'))
      for (const [name, p] of [
        ['host', host],
        ['requester', requester],
      ] as const) {
        const r = await p.run(['plugins:install', 'sftp'], {timeoutMs: INSTALL_BOUND_MS})
        assert.equal(r.code, 0, `${r.stdout}${r.stderr}\nverdaccio: ${verdaccio!.log()}`)
        const plugins = await p.json<{plugins: Array<{name: string; type: string; version: string; protocols: string[]}>}>(['plugins']).then((d) => d.plugins)
        const sftp = plugins.find((x) => x.name === '@fpeer/plugin-sftp')
        assert.ok(sftp, JSON.stringify(plugins))
        assert.equal(sftp.type, 'user')
        assert.deepEqual(sftp.protocols, ['SFTP'])
        assert.equal(sftp.version, '0.1.0')
        const protocols = (await p.json(['protocols'])).protocols as Array<{protocol: string; plugin: string}>
        assert.deepEqual(
          protocols.map((x) => `${x.protocol} ${x.plugin}`),
          ['HTTP @fpeer/plugin-http', 'MANUAL @fpeer/plugin-manual', 'SFTP @fpeer/plugin-sftp'],
        )
        assert.deepEqual(await decoyTraces(dataDir(name)), [])
        const pjson = JSON.parse(await readFile(path.join(dataDir(name), 'package.json'), 'utf8')) as {dependencies: Record<string, string>}
        assert.deepEqual(Object.keys(pjson.dependencies).sort(), ['@fpeer/core', '@fpeer/plugin-sftp'])
        // The registry has @fpeer/core too (published above), yet npm linked the CLI's.
        await assertSharesCliCore(dataDir(name))
      }
      for (const name of DECOYS) assert.equal(existsSync(marker(name)), false, `the decoy ${name}'s install script ran`)
    })

    it('a request over the installed SFTP plugin is confirmed; the trees are identical and each peerlist lists the other', async () => {
      const shared = path.join(work, 'shared')
      const into = path.join(work, 'copy')
      await makeTree(shared, 2 * 1024 * 1024)
      const hostId = await host.id()
      const requesterId = await requester.id()
      const ready = await host.serve([shared, '--name', FOLDER, '--allow', requesterId])
      assert.ok(ready.ports.SFTP, JSON.stringify(ready))
      const r = await requester.run(['request', host.control, FOLDER, '--into', into, '--bind', REQUESTER, '--protocol', 'sftp', '--peer-id', hostId, '--json'])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      const doc = JSON.parse(r.stdout)
      assert.equal(doc.protocol, 'SFTP')
      assert.equal(doc.transfer.fetched, 8)
      assert.deepEqual(await treeHashes(into), await treeHashes(shared))
      assert.deepEqual(
        (await host.json(['peers', FOLDER])).peers.map((p: {id: string}) => p.id),
        [requesterId],
      )
      assert.deepEqual(
        (await requester.json(['peers', FOLDER])).peers.map((p: {id: string}) => p.id),
        [hostId],
      )
    })

    it('after plugins:uninstall sftp, SFTP is gone and asking for it is E_NO_TRANSPORT naming the install command', async () => {
      const r = await requester.run(['plugins:uninstall', 'sftp'])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.equal(
        (await requester.json<{plugins: Array<{name: string}>}>(['plugins']).then((d) => d.plugins)).some((x) => x.name === '@fpeer/plugin-sftp'),
        false,
      )
      assert.deepEqual(
        ((await requester.json(['protocols'])).protocols as Array<{protocol: string}>).map((x) => x.protocol),
        ['HTTP', 'MANUAL'],
      )
      const again = await requester.run([
        'request',
        host.control,
        FOLDER,
        '--into',
        path.join(work, 'copy2'),
        '--bind',
        REQUESTER,
        '--protocol',
        'sftp',
        '--json',
      ])
      assert.equal(again.code, 6, again.stdout + again.stderr)
      const err = JSON.parse(again.stdout).error
      assert.equal(err.code, 'E_NO_TRANSPORT')
      assert.equal(err.details.plugin, '@fpeer/plugin-sftp')
      assert.match(err.hint, /fpeer plugins:install sftp/)
      const text = await requester.run(['request', host.control, FOLDER, '--into', path.join(work, 'copy2'), '--protocol', 'sftp'])
      assert.match(text.stderr, /Error \[E_NO_TRANSPORT\].*SFTP[\s\S]*fpeer plugins:install sftp/)
    })

    it('plugins:link --no-install puts the workspace plugin back, and plugins lists it as a link', async () => {
      const r = await requester.run(['plugins:link', '--no-install', path.join(ROOT, 'plugins/sftp')])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      const sftp = (await requester.json<{plugins: Array<{name: string; type: string}>}>(['plugins']).then((d) => d.plugins)).find(
        (x) => x.name === '@fpeer/plugin-sftp',
      )
      assert.equal(sftp?.type, 'link')
      assert.ok(((await requester.json(['protocols'])).protocols as Array<{protocol: string}>).some((x) => x.protocol === 'SFTP'))
      assert.equal((await requester.run(['plugins:uninstall', '@fpeer/plugin-sftp'])).code, 0)
    })

    it('plugins:install again after the uninstall, then plugins:update: SFTP comes back, still on the CLI core, and a request over it is confirmed', async () => {
      // The uninstall left the core link in package.json (a dependency, not a plugin): harmless, and reused.
      assert.equal(existsSync(path.join(dataDir('requester'), 'node_modules/@fpeer/plugin-sftp')), false)
      const r = await requester.run(['plugins:install', 'sftp'], {timeoutMs: INSTALL_BOUND_MS})
      assert.equal(r.code, 0, r.stdout + r.stderr)
      await assertSharesCliCore(dataDir('requester'))
      // A data dir an older fpeer filled, whose core entry points elsewhere: update re-points it to this CLI's.
      const pjsonPath = path.join(dataDir('requester'), 'package.json')
      const pjson = JSON.parse(await readFile(pjsonPath, 'utf8')) as {dependencies: Record<string, string>}
      await writeFile(pjsonPath, JSON.stringify({...pjson, dependencies: {...pjson.dependencies, '@fpeer/core': '^0.1.0'}}, null, 2))
      const u = await requester.run(['plugins:update'], {timeoutMs: INSTALL_BOUND_MS})
      assert.equal(u.code, 0, u.stdout + u.stderr)
      await assertSharesCliCore(dataDir('requester'))
      assert.deepEqual(
        ((await requester.json(['protocols'])).protocols as Array<{protocol: string}>).map((x) => x.protocol),
        ['HTTP', 'MANUAL', 'SFTP'],
      )
      // The folder is already shared here, into `copy`: asked for again over SFTP, it is fetched into the same place.
      const into = path.join(work, 'copy')
      const got = await requester.run(['request', host.control, FOLDER, '--into', into, '--bind', REQUESTER, '--protocol', 'sftp', '--json'])
      assert.equal(got.code, 0, got.stdout + got.stderr)
      assert.equal(JSON.parse(got.stdout).protocol, 'SFTP')
      assert.deepEqual(await treeHashes(into), await treeHashes(path.join(work, 'shared')))
    })
  },
)
