// `fpeer --version` and `fpeer id` on the fast path print exactly what the oclif commands print, in every home layout.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {fileURLToPath} from 'node:url'

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/run.js')

interface Ran {
  code: number | null
  stdout: string
  stderr: string
  /** Whether oclif was loaded: a probe preloaded into the process says so on stderr's last line. */
  oclif: boolean
}

describe('the fast path of fpeer --version and fpeer id', {timeout: 600_000}, () => {
  let dir: string
  let probe: string
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'fpeer-fast-path-'))
    probe = path.join(dir, 'probe.cjs')
    // oclif, bundled (the CLI's dist/bundle/cli.js) or not, puts its settings on globalThis.oclif
    // as it loads; an unbundled copy's modules land in require.cache too.
    await writeFile(
      probe,
      "process.on('exit', () => process.stderr.write(globalThis.oclif || Object.keys(require.cache).some((k) => k.includes('@oclif/core')) ? '\\nPROBE oclif\\n' : '\\nPROBE fast\\n'))\n",
    )
  })
  after(async () => {
    await rm(dir, {recursive: true, force: true})
  })

  function fpeer(args: string[], env: NodeJS.ProcessEnv): Promise<Ran> {
    return new Promise((resolve) => {
      execFile(process.execPath, ['--require', probe, BIN, ...args], {env, timeout: 60_000}, (err, stdout, stderr) => {
        const lines = stderr.trimEnd().split('\n')
        const last = lines.pop() ?? ''
        resolve({code: err ? ((err as {code?: number}).code ?? 1) : 0, stdout, stderr: lines.join('\n').trim(), oclif: last === 'PROBE oclif'})
      })
    })
  }

  /** A clean environment with no fpeer variables, then `extra`. */
  function envWith(extra: Record<string, string>): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {PATH: process.env.PATH, HOME: path.join(dir, 'user')}
    return {...env, ...extra}
  }

  const layouts: Array<[string, (n: number) => Record<string, string>]> = [
    ['FPEER_HOME', (n) => ({FPEER_HOME: path.join(dir, `home${n}`)})],
    ['XDG_CONFIG_HOME', (n) => ({XDG_CONFIG_HOME: path.join(dir, `xdg${n}`)})],
    ['FPEER_CONFIG_DIR', (n) => ({FPEER_CONFIG_DIR: path.join(dir, `cfg${n}`)})],
    ['HOME only', (n) => ({HOME: path.join(dir, `user${n}`)})],
  ]

  layouts.forEach(([name, make], n) => {
    it(`prints what the commands print, with ${name}`, async () => {
      const env = envWith(make(n))
      for (const args of [['--version'], ['-V'], ['version'], ['--version', '--json'], ['id'], ['id', '--json']]) {
        const fast = await fpeer(args, env)
        // `-q` changes nothing these commands print, but it is a flag the fast path leaves to oclif.
        const slow = await fpeer([...args, '-q'], env)
        assert.equal(fast.oclif, false, `${args.join(' ')} loaded oclif`)
        assert.equal(slow.oclif, true, `${args.join(' ')} -q did not go through oclif`)
        assert.equal(fast.code, 0, fast.stderr)
        assert.equal(slow.code, 0, slow.stderr)
        assert.equal(fast.stdout, slow.stdout, args.join(' '))
        assert.equal(fast.stderr, '')
      }
    })
  })

  it('creates the identity where oclif would: one home, one key', async () => {
    const env = envWith({XDG_CONFIG_HOME: path.join(dir, 'xdg-one')})
    const first = await fpeer(['id'], env)
    assert.equal(first.oclif, false)
    assert.deepEqual(await readdir(path.join(dir, 'xdg-one')), ['fpeer'])
    assert.equal((await fpeer(['id', '-q'], env)).stdout, first.stdout)
  })

  it('leaves a failure to oclif, which reports it with its code', async () => {
    const env = envWith({FPEER_HOME: path.join(dir, 'bad'), FPEER_LOG_LEVEL: 'loud'})
    const r = await fpeer(['id', '--json'], env)
    assert.equal(r.oclif, true)
    assert.notEqual(r.code, 0)
    assert.equal(JSON.parse(r.stdout).error.code, 'E_USAGE')
  })

  it("a command through oclif skips oclif's own engines check (semver is never loaded), unless OCLIF_DISABLE_ENGINE_WARNING says otherwise", async () => {
    const semver = path.join(dir, 'semver.cjs')
    await writeFile(
      semver,
      "process.on('exit', () => process.stderr.write(Object.keys(require.cache).some((k) => /node_modules[\\\\/]semver[\\\\/]/.test(k)) ? '\\nPROBE semver\\n' : '\\nPROBE none\\n'))\n",
    )
    const run = (env: NodeJS.ProcessEnv) =>
      new Promise<string>((resolve) => {
        execFile(process.execPath, ['--require', semver, BIN, 'protocols', '--json'], {env, timeout: 60_000}, (_err, _stdout, stderr) =>
          resolve(stderr.trimEnd().split('\n').pop() ?? ''),
        )
      })
    const env = envWith({FPEER_HOME: path.join(dir, 'home-semver')})
    assert.equal(await run(env), 'PROBE none')
    // The user's own setting is kept: with the check asked for, oclif loads semver to make it.
    assert.equal(await run({...env, OCLIF_DISABLE_ENGINE_WARNING: '0'}), 'PROBE semver')
  })
})
