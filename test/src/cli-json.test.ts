// Every command's --json: one JSON document on stdout and nothing else, on success and on failure; errors carry stable codes.
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {rm} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Config} from '@oclif/core'
import {FPEER, Peer, ROOT, tempDir} from './harness.js'

const CLI = path.join(ROOT, 'packages/cli')

/** Exactly one JSON document (pretty or not) and nothing else. */
function oneDocument(stdout: string, what: string): any {
  assert.ok(stdout.trim() !== '', `${what}: nothing on stdout`)
  try {
    return JSON.parse(stdout)
  } catch (err) {
    assert.fail(`${what}: stdout is not one JSON document (${(err as Error).message}):\n${stdout}`)
  }
}

describe('--json on every command', () => {
  let work: string
  let host: Peer
  let local: Peer
  let ids: string[]
  let jsonIds: Set<string>
  let ours: Set<string>

  before(async () => {
    work = await tempDir()
    host = await Peer.create('127.0.0.1')
    local = await Peer.create('127.0.0.2')
    const {makeTree} = await import('./harness.js')
    await makeTree(path.join(work, 'shared'), 1024)
    await makeTree(path.join(work, 'mine'), 1024)
    await host.serve([path.join(work, 'shared'), '--name', 'Docs', '--open'])
    const share = await local.run(['share', path.join(work, 'mine'), '--name', 'Mine', '--open'])
    assert.equal(share.code, 0, share.stderr)
    const config = await Config.load({root: CLI, userPlugins: false, devPlugins: false})
    ids = config.commands
      .filter((c) => !c.hidden)
      .map((c) => c.id)
      .sort()
    jsonIds = new Set(config.commands.filter((c) => c.flags?.json).map((c) => c.id))
    ours = new Set(config.commands.filter((c) => c.pluginName?.startsWith('@fpeer/')).map((c) => c.id))
  })

  after(async () => {
    await host.destroy()
    await local.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it("every fpeer command has --json (oclif's own commands are listed, not required)", async () => {
    const config = await Config.load({root: CLI, userPlugins: false, devPlugins: false})
    const ours = config.commands.filter((c) => c.pluginName?.startsWith('@fpeer/'))
    assert.ok(ours.length >= 10)
    for (const c of ours) assert.ok(c.flags?.json, `${c.id} has no --json`)
  })

  it('with arguments that succeed: one document, exit 0', async () => {
    const ok: Record<string, {args: string[]; input?: string}> = {
      id: {args: []},
      status: {args: []},
      protocols: {args: []},
      share: {args: [path.join(work, 'mine'), '--name', 'Mine']},
      allow: {args: ['Mine', await host.id()]},
      files: {args: ['Mine']},
      peers: {args: ['Mine']},
      conflicts: {args: ['Mine']},
      request: {args: [host.control, 'Docs', '--into', path.join(work, 'copy'), '--bind', '127.0.0.2']},
      'message:parse': {args: [], input: 'BePeerRequest\nDocs\n\n'},
      'message:build': {args: ['--type', 'BePeerRequest', '--folder', 'Docs']},
      'message:send': {args: [host.control, '--bind', '127.0.0.2'], input: 'BePeerRequest\nnope\n\n'},
      plugins: {args: []},
      demo: {args: []},
      version: {args: []},
    }
    for (const id of ids) {
      const spec = ok[id]
      if (!spec || !jsonIds.has(id)) continue
      const r = await local.run([...id.split(':'), ...spec.args, '--json'], {...(spec.input ? {input: spec.input} : {})})
      const doc = oneDocument(r.stdout, id)
      assert.equal(r.code, 0, `${id}: ${r.stdout} ${r.stderr}`)
      assert.equal(doc.error, undefined, id)
    }
  })

  it('with no arguments, or bad ones: one document (success or {"error"}), a stable code, no stack trace', async () => {
    const runs = ids.filter((id) => jsonIds.has(id) && id !== 'serve').flatMap((id) => [[], ['--no-such-flag']].map((extra) => ({id, extra})))
    // Three at a time: each is a whole CLI start, and none of them touches the network.
    const results = new Map<number, Awaited<ReturnType<Peer['run']>>>()
    let next = 0
    await Promise.all(
      [0, 1, 2].map(async () => {
        while (next < runs.length) {
          const i = next++
          results.set(i, await local.run([...runs[i]!.id.split(':'), ...runs[i]!.extra, '--json'], {input: ''}))
        }
      }),
    )
    for (const [i, {id, extra}] of runs.entries()) {
      {
        const r = results.get(i)!
        const doc = oneDocument(r.stdout, `${id} ${extra.join(' ')}`)
        // oclif's own commands (plugins) print their own error object: one document, but not fpeer's codes.
        if (r.code !== 0 && !ours.has(id)) assert.ok(doc.error, `${id}: ${r.stdout}`)
        else if (r.code !== 0) {
          assert.match(doc.error?.code ?? '', /^E_[A-Z0-9_]+$/, `${id}: ${r.stdout}`)
          assert.ok([2, 3, 4, 5, 6, 7, 8, 75].includes(r.code!), `${id}: exit ${r.code}`)
        }
        assert.doesNotMatch(r.stderr, /\n\s+at .+:\d+:\d+\)?\n/, `${id}: stack trace on stderr`)
      }
    }
  })

  it('serve --json prints one document once listening, and nothing more when stopped', async () => {
    const home = await tempDir('fpeer-home-')
    try {
      const child = spawn(process.execPath, [FPEER, 'serve', '--host', '127.0.0.3', '--port', '0', '--data-port', 'HTTP=0', '--json'], {
        env: {...process.env, FPEER_HOME: home},
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let out = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('serve did not start')), 20_000)
        child.stdout.on('data', () => out.includes('\n') && (clearTimeout(t), resolve()))
      })
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      assert.equal(await exited, 0)
      assert.equal(typeof oneDocument(out, 'serve').control, 'number')
    } finally {
      await rm(home, {recursive: true, force: true})
    }
  })

  it('an unknown command fails with E_USAGE and names the closest command, without prompting', async () => {
    const r = await local.run(['reqest', 'x'])
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '')
    assert.match(r.stderr, /^Error \[E_USAGE\]: .*\n {2}Hint: did you mean `fpeer request`\?/)
    const j = await local.run(['reqest', '--json'])
    assert.equal(j.code, 2)
    assert.equal(oneDocument(j.stdout, 'reqest').error.details.suggestion, 'request')
  })

  it('parse errors and failures say what went wrong and what to do, with a code; a stack trace only with --debug', async () => {
    const missing = await local.run(['files'])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /^Error \[E_USAGE\]: /)
    assert.match(missing.stderr, /Hint: /)
    const flag = await local.run(['files', 'Mine', '--bogus'])
    assert.equal(flag.code, 2)
    assert.match(flag.stderr, /^Error \[E_USAGE\]: Nonexistent flag: --bogus\n {2}Hint: see `fpeer files --help`\n$/)
    const refused = await local.run(['request', '127.0.0.1:1', 'Nothing', '--into', path.join(work, 'x')])
    assert.equal(refused.code, 4)
    assert.match(refused.stderr, /^Error \[E_CONNECT\]: .*\n {2}Hint: /)
    assert.doesNotMatch(refused.stderr, /\n\s+at /)
    const debug = await local.run(['request', '127.0.0.1:1', 'Nothing', '--into', path.join(work, 'x'), '--debug'])
    assert.equal(debug.code, 4)
    assert.match(debug.stderr, /\n\s+at /)
  })

  it('shell completion: `fpeer autocomplete bash` explains the setup, and the bash script completes fpeer', async () => {
    const env = {XDG_CACHE_HOME: path.join(local.home, 'cache'), XDG_DATA_HOME: path.join(local.home, 'data')}
    const setup = await local.run(['autocomplete', 'bash'], {env})
    assert.equal(setup.code, 0, setup.stderr)
    assert.match(setup.stdout, /fpeer autocomplete script bash/)
    const script = await local.run(['autocomplete', 'script', 'bash'], {env})
    assert.equal(script.code, 0, script.stderr)
    assert.match(script.stdout, /FPEER_AC_BASH_SETUP_PATH/)
    // Complete for real in bash, as a user's shell would after sourcing the setup.
    const fn = path.join(env.XDG_CACHE_HOME, 'fpeer', 'autocomplete', 'functions', 'bash', 'fpeer.bash')
    const complete = (line: string) => {
      const words = line.split(' ')
      const script = `source '${fn}'; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; COMP_LINE='${line}'; COMP_POINT=${line.length}; _fpeer_autocomplete; echo "\${COMPREPLY[*]}"`
      return spawnSync('bash', ['-c', script], {encoding: 'utf8'}).stdout.trim()
    }
    assert.equal(complete('fpeer req'), 'request')
    assert.equal(complete('fpeer message p'), 'parse')
  })
})
