// A newcomer's first hour: `fpeer demo`, -V/--version/-h, -q/-v, a typo at a real terminal, `fpeer plugins`, and a linked plugin that keeps stderr JSON.
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {mkdir, readdir, rm} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FPEER, ROOT, exists, linkPlugins, oclifDirs, runFpeer, tempDir} from './harness.js'

const HAVE_SCRIPT = spawnSync('script', ['--version']).status === 0
const MESSAGES = ['BePeerRequest', 'FilesToGet', 'FilesUpdated', 'TrustedPeerConfirm']

/** Resolves true once a TCP connection to `host:port` is refused (nothing listens there any more). */
function refused(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({host, port})
    s.once('connect', () => {
      s.destroy()
      resolve(false)
    })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'))
  })
}

/** Every line of `text` is one JSON object. */
function allJsonLines(text: string, what: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      try {
        const v = JSON.parse(l) as unknown
        assert.equal(typeof v, 'object', `${what}: not an object: ${l}`)
        return v as Record<string, unknown>
      } catch {
        return assert.fail(`${what}: a stderr line is not JSON: ${JSON.stringify(l)}\n${text}`)
      }
    })
}

describe('the first hour', () => {
  let work: string
  let env: NodeJS.ProcessEnv

  before(async () => {
    work = await tempDir('fpeer-first-')
    env = {...process.env, FPEER_HOME: path.join(work, 'home')}
    delete env.NODE_OPTIONS
    delete env.DEBUG
    delete env.FPEER_LOG_LEVEL
  })

  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  it('fpeer demo --json: the four messages in order, each side lists the other, and nothing is left behind', async () => {
    // A private TMPDIR: the demo's temporary directory must be gone once it exits.
    const tmp = path.join(work, 'tmp-demo')
    await mkdir(tmp)
    const r = await runFpeer(['demo', '--json'], {env: {...env, TMPDIR: tmp}})
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.deepEqual(
      doc.messages.map((m: {type: string}) => m.type),
      MESSAGES,
    )
    assert.deepEqual(
      doc.messages.map((m: {from: string}) => m.from),
      ['requester', 'host', 'requester', 'host'],
    )
    for (const m of doc.messages) assert.ok(m.text.startsWith(m.type), m.text)
    assert.deepEqual(
      doc.peers.host.map((p: {id: string}) => p.id),
      [doc.requester.id],
    )
    assert.deepEqual(
      doc.peers.requester.map((p: {id: string; address: string}) => `${p.id} ${p.address}`),
      [`${doc.host.id} 127.0.0.1`],
    )
    assert.equal(doc.files, 4)
    assert.equal(doc.kept, false)
    assert.equal(typeof doc.timings.handshakeMs, 'number')
    assert.deepEqual(await readdir(tmp), [])
    assert.equal(await exists(doc.dir), false)
    // The demo's host stopped with it: its ports are closed.
    assert.ok(await refused(doc.host.address, doc.host.control), 'control port still open')
    for (const port of Object.values(doc.host.ports) as number[]) assert.ok(await refused(doc.host.address, port), `port ${port} still open`)
    // This peer's own home was not used.
    assert.equal(await exists(path.join(env.FPEER_HOME!, 'identity.json')), false)
  })

  it('fpeer demo (text) shows the messages escaped and both peerlists; --keep keeps the homes; -q is silent on stderr, -v logs', async () => {
    const keep = path.join(work, 'kept')
    const r = await runFpeer(['demo', '--keep', keep, '-q'], {env})
    assert.equal(r.code, 0, r.stderr)
    for (const type of MESSAGES) assert.match(r.stdout, new RegExp(`-> (host|requester): ${type} `))
    // The wire's TABs are shown, not sent raw to the terminal.
    assert.match(r.stdout, /BePeerRequest\\t/)
    assert.doesNotMatch(r.stdout, /\t/)
    assert.match(r.stdout, /peers of 00-MainDocuments on the host/)
    assert.match(r.stdout, /peers of 00-MainDocuments on the requester[^\n]*\n[^\n]*127\.0\.0\.1/)
    assert.equal(r.stderr, '')
    assert.ok(await exists(path.join(keep, 'host-home', 'identity.json')))
    assert.ok(await exists(path.join(keep, 'requester', '00-MainDocuments', 'readme.txt')))
    const v = await runFpeer(['demo', '-v'], {env})
    assert.equal(v.code, 0, v.stderr)
    assert.match(v.stderr, / debug /)
    assert.match(v.stderr, / info {2}peer listening /)
    const both = await runFpeer(['demo', '-q', '-v', '--json'], {env})
    assert.equal(both.code, 2)
    assert.equal(JSON.parse(both.stdout).error.code, 'E_USAGE')
  })

  it('Ctrl-C during fpeer demo: exit 130, the host stopped and every file removed', async () => {
    const tmp = path.join(work, 'tmp-interrupted')
    await mkdir(tmp)
    const child = spawn(process.execPath, [FPEER, 'demo'], {env: {...env, TMPDIR: tmp}, stdio: ['ignore', 'pipe', 'pipe']})
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : null))))
    const t = setTimeout(() => child.kill('SIGKILL'), 60_000)
    // The first message is on the wire: the demo's directory exists and its host listens.
    await Promise.race([new Promise<void>((resolve) => child.stdout.on('data', () => /: BePeerRequest /.test(out) && resolve())), exited])
    child.kill('SIGINT')
    const code = await exited
    clearTimeout(t)
    // The handshake may win the race to the signal; either way nothing is left behind.
    assert.ok(code === 130 || code === 0, `exit ${code}: ${err}`)
    if (code === 130) assert.match(err, /^interrupted: /m)
    assert.deepEqual(await readdir(tmp), [])
  })

  it('-V, --version, version (each with --json) and -h', async () => {
    for (const args of [['-V'], ['--version'], ['version']]) {
      const r = await runFpeer(args, {env})
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /^@fpeer\/cli\/\d+\.\d+\.\d+ \S+ node-v\d+/)
      const j = await runFpeer([...args, '--json'], {env})
      assert.equal(j.code, 0, j.stderr)
      assert.match(JSON.parse(j.stdout).version, /^\d+\.\d+\.\d+$/)
    }
    const h = await runFpeer(['-h'], {env})
    assert.equal(h.code, 0, h.stderr)
    assert.match(h.stdout, /^USAGE/m)
    assert.match(h.stdout, /demo/)
    const sub = await runFpeer(['request', '-h'], {env})
    assert.equal(sub.code, 0, sub.stderr)
    assert.match(sub.stdout, /--into/)
  })

  it(
    'a typo at a real terminal: asked, answered no, exit 2 with the suggestion and no stack',
    {skip: !HAVE_SCRIPT && 'script(1) is not installed'},
    async () => {
      const cmd = `'${process.execPath}' '${FPEER}' reqest 127.0.0.1 Docs`
      const child = spawn('script', ['-qfec', cmd, '/dev/null'], {env, stdio: ['pipe', 'pipe', 'pipe']})
      let out = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      child.stderr.on('data', (d: Buffer) => (out += d.toString()))
      const exited = new Promise<number | null>((resolve) => child.once('close', resolve))
      const asked = new Promise<void>((resolve) => child.stdout.on('data', () => /Did you mean request\?/.test(out) && resolve()))
      const t = setTimeout(() => child.kill('SIGKILL'), 60_000)
      await Promise.race([asked, exited])
      child.stdin.end('n\n')
      const code = await exited
      clearTimeout(t)
      assert.equal(code, 2, out)
      assert.match(out, /Error \[E_USAGE\]: unknown command: reqest/)
      assert.match(out, /did you mean `fpeer request`/)
      assert.doesNotMatch(out, /exports|ERR_|\n\s+at .+:\d+:\d+/)
    },
  )

  it('a mistyped topic gets a suggestion too; in a script, no prompt', async () => {
    const r = await runFpeer(['mesage', 'parse'], {env})
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '')
    assert.match(r.stderr, /^Error \[E_USAGE\]: unknown command: mesage\n {2}Hint: did you mean `fpeer message parse`\?/)
    const topic = await runFpeer(['mesage', '--json'], {env})
    assert.equal(topic.code, 2)
    assert.equal(JSON.parse(topic.stdout).error.details.suggestion, 'message')
  })

  it('fpeer plugins lists the built-in transports; --json is {plugins: [{name, version, type, protocols}]}', async () => {
    const dirs = oclifDirs(path.join(work, 'oclif-plain'))
    const r = await runFpeer(['plugins', '--json'], {env: {...env, ...dirs}})
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout) as {plugins: Array<{name: string; type: string; protocols: string[]; version: string}>}
    assert.deepEqual(
      doc.plugins.map((p) => `${p.name} ${p.type} ${p.protocols.join(',')}`),
      ['@fpeer/plugin-http builtin HTTP', '@fpeer/plugin-manual builtin MANUAL'],
    )
    const text = await runFpeer(['plugins'], {env: {...env, ...dirs}})
    assert.match(text.stdout, /^@fpeer\/plugin-http \S+\tbuilt in\tHTTP$/m)
  })

  it('with a linked plugin: listed as a link, no warning on stderr, and --progress=json keeps every stderr line JSON', async () => {
    const dirs = oclifDirs(path.join(work, 'oclif-linked'))
    const linked = {...env, ...dirs}
    await linkPlugins(linked, ['ftp'])
    const list = await runFpeer(['plugins', '--json'], {env: linked})
    const ftp = (JSON.parse(list.stdout) as {plugins: Array<{name: string; type: string; protocols: string[]; path?: string}>}).plugins.find(
      (p) => p.name === '@fpeer/plugin-ftp',
    )
    assert.deepEqual(ftp && {type: ftp.type, protocols: ftp.protocols, path: ftp.path}, {
      type: 'link',
      protocols: ['FTP'],
      path: path.join(ROOT, 'plugins/ftp'),
    })
    const protocols = await runFpeer(['protocols'], {env: linked})
    assert.equal(protocols.code, 0)
    assert.equal(protocols.stderr, '')
    // A serve with the linked plugin: every stderr line, the ready line included, is a JSON object.
    const child = spawn(
      process.execPath,
      [FPEER, 'serve', '--host', '127.0.0.3', '--port', '0', '--data-port', 'HTTP=0', '--data-port', 'FTP=0', '--progress=json'],
      {env: linked, stdio: ['ignore', 'pipe', 'pipe']},
    )
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    const t = setTimeout(() => child.kill('SIGKILL'), 60_000)
    await Promise.race([new Promise<void>((resolve) => child.stderr.on('data', () => /"msg":"serving on"/.test(stderr) && resolve())), exited])
    child.kill('SIGTERM')
    assert.equal(await exited, 0, stderr)
    clearTimeout(t)
    const lines = allJsonLines(stderr, 'serve --progress=json')
    assert.ok(
      lines.some((l) => l.msg === 'serving on' && typeof (l.ports as Record<string, number>).FTP === 'number'),
      stderr,
    )
  })

  it('plugins belong to the home: with FPEER_HOME set and no FPEER_DATA_DIR, a linked plugin is seen by that home only', async () => {
    const a: NodeJS.ProcessEnv = {...env, FPEER_HOME: path.join(work, 'home-a')}
    const b: NodeJS.ProcessEnv = {...env, FPEER_HOME: path.join(work, 'home-b')}
    for (const e of [a, b]) delete e.FPEER_DATA_DIR
    await linkPlugins(a, ['ftp'])
    assert.ok(await exists(path.join(a.FPEER_HOME!, 'plugins', 'package.json')))
    const protocolsOf = async (e: NodeJS.ProcessEnv) =>
      (JSON.parse((await runFpeer(['protocols', '--json'], {env: e})).stdout) as {protocols: Array<{protocol: string}>}).protocols.map((p) => p.protocol)
    assert.deepEqual(await protocolsOf(a), ['FTP', 'HTTP', 'MANUAL'])
    assert.deepEqual(await protocolsOf(b), ['HTTP', 'MANUAL'])
  })
})
