// Running fpeer as a service: SIGHUP does not stop `serve`, the man page renders, the systemd unit verifies.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {copyFile, mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Peer, ROOT, tempDir} from './harness.js'

const have = (cmd: string, args: string[]) => spawnSync(cmd, args).status === 0
const HAVE_MAN = have('man', ['--version'])
const HAVE_GROFF = have('groff', ['--version'])
const HAVE_SYSTEMD_ANALYZE = have('systemd-analyze', ['--version'])
const MAN_PAGE = path.join(ROOT, 'docs/fpeer.1')
const UNIT = path.join(ROOT, 'docs/fpeer.service')

describe('operations', () => {
  let work: string

  before(async () => {
    work = await tempDir('fpeer-ops-')
  })

  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  it('serve ignores SIGHUP and keeps serving; SIGTERM then stops it with exit 0', async () => {
    await mkdir(path.join(work, 'shared'))
    await writeFile(path.join(work, 'shared', 'a.txt'), 'a\n')
    const host = await Peer.create('127.0.0.1')
    const me = await Peer.create('127.0.0.2')
    try {
      await host.serve([path.join(work, 'shared'), '--name', 'shared', '--open', '--no-sync'])
      const child = host.serveProcess!
      child.kill('SIGHUP')
      // A request after the SIGHUP can only succeed if serve is still there.
      const r = await me.run(['request', host.control, 'shared', '--into', path.join(work, 'copy'), '--bind', '127.0.0.2', '--json'])
      assert.equal(r.code, 0, r.stdout + r.stderr + host.serveStderr)
      assert.equal(child.exitCode, null, 'serve is still running')
      assert.match(host.serveStderr, /SIGHUP ignored/)
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
      child.kill('SIGTERM')
      assert.equal(await exited, 0)
    } finally {
      await host.destroy()
      await me.destroy()
    }
  })

  it('the man page is what `npm run docs` generates, and renders without a roff warning', {skip: !HAVE_GROFF && 'groff is not installed'}, () => {
    const check = spawnSync(process.execPath, [path.join(ROOT, 'scripts/docs.js'), '--check'], {encoding: 'utf8'})
    assert.equal(check.status, 0, check.stderr)
    // -ww: every warning; -z: no output. "cannot adjust line" is typesetting, not a defect of the source.
    const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', MAN_PAGE], {encoding: 'utf8'})
    assert.equal(r.status, 0, r.stderr)
    const warnings = r.stderr.split('\n').filter((l) => l && !/cannot adjust line/.test(l))
    assert.deepEqual(warnings, [])
  })

  it('`man -l docs/fpeer.1` shows every command, the exit codes, the environment and the signals', {skip: !HAVE_MAN && 'man is not installed'}, () => {
    const r = spawnSync('man', ['-l', MAN_PAGE], {encoding: 'utf8', env: {...process.env, MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '100'}})
    assert.equal(r.status, 0, r.stderr)
    // eslint-disable-next-line no-control-regex -- man overstrikes bold with a backspace
    const text = r.stdout.replace(/.\x08/g, '')
    for (const heading of ['NAME', 'SYNOPSIS', 'COMMANDS', 'EXIT STATUS', 'ENVIRONMENT', 'SIGNALS'])
      assert.match(text, new RegExp(`^${heading}$`, 'm'), heading)
    for (const cmd of ['fpeer request', 'fpeer serve', 'fpeer share', 'fpeer status']) assert.ok(text.includes(cmd), cmd)
    for (const v of ['FPEER_HOME', 'FPEER_STALL_TIMEOUT_MS', 'FPEER_LOG_LEVEL']) assert.ok(text.includes(v), v)
    assert.match(text, /^\s+130\s+interrupted/m, 'exit status 130 is listed')
  })

  it('docs/fpeer.service is a valid systemd unit that runs `fpeer serve` and reloads with SIGHUP', async () => {
    const unit = await readFile(UNIT, 'utf8')
    assert.match(unit, /^ExecStart=.*\bfpeer serve\b/m)
    assert.match(unit, /^ExecReload=.*-HUP/m)
    assert.match(unit, /^Environment=FPEER_HOME=/m)
    if (HAVE_SYSTEMD_ANALYZE) {
      const copy = path.join(work, 'fpeer.service')
      await copyFile(UNIT, copy)
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', copy], {encoding: 'utf8'})
      assert.equal(r.status, 0, r.stderr)
    }
  })
})
