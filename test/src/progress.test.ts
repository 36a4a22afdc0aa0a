// The transfer progress bar: drawn in a real terminal (tmux), never into a pipe; --progress=json is NDJSON on stderr.
import assert from 'node:assert/strict'
import {execFileSync, spawnSync} from 'node:child_process'
import {rm} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FPEER, Peer, makeTree, tempDir} from './harness.js'

const HAVE_TMUX = spawnSync('tmux', ['-V']).status === 0
const BAR = /█+░*\s+\d+% \| \d+\/\d+ files \| [\d.]+ [KMG]?i?B\/[\d.]+ [KMG]?i?B \| [\d.]+ [KMG]?i?B\/s \| ETA /

describe('transfer progress', () => {
  let work: string
  let host: Peer
  let requester: Peer
  const others: Peer[] = []
  const fresh = async () => {
    const p = await Peer.create('127.0.0.2')
    others.push(p)
    return p
  }

  before(async () => {
    work = await tempDir()
    await makeTree(path.join(work, 'shared'), 30 * 1024 * 1024)
    host = await Peer.create('127.0.0.1')
    requester = await Peer.create('127.0.0.2')
    await host.serve([path.join(work, 'shared'), '--name', 'Big', '--open'])
  })

  after(async () => {
    await host.destroy()
    await requester.destroy()
    for (const p of others) await p.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('a terminal gets a bar on stderr with files, bytes, speed and ETA', {skip: !HAVE_TMUX && 'tmux is not installed'}, async () => {
    const session = `fpeer-progress-${process.pid}`
    const into = path.join(work, 'tty-copy')
    const cmd = `env FPEER_HOME='${requester.home}' '${process.execPath}' '${FPEER}' request ${host.control} Big --into '${into}' --bind 127.0.0.2 >/dev/null; echo "EXIT=$?"`
    execFileSync('tmux', ['new-session', '-d', '-s', session, '-x', '160', '-y', '40'])
    try {
      execFileSync('tmux', ['send-keys', '-t', session, cmd, 'Enter'])
      let screen = ''
      const deadline = Date.now() + 90_000
      while (!/EXIT=\d+/.test(screen) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 300))
        screen = execFileSync('tmux', ['capture-pane', '-p', '-t', session, '-S', '-40'], {encoding: 'utf8'})
      }
      assert.match(screen, /EXIT=0/, screen)
      assert.match(screen, BAR, screen)
      assert.match(screen, /100% \| 8\/8 files \| 30\.0 MiB\/30\.0 MiB/, screen)
    } finally {
      execFileSync('tmux', ['kill-session', '-t', session])
    }
  })

  it('a pipe gets no bar, and stdout only the result', async () => {
    const requester = await fresh()
    const r = await requester.run(['request', host.control, 'Big', '--into', path.join(work, 'pipe-copy'), '--bind', '127.0.0.2'], {
      env: {FPEER_LOG_LEVEL: 'warn'},
    })
    assert.equal(r.code, 0, r.stderr)
    assert.doesNotMatch(r.stderr, /█|░|ETA|\r/)
    assert.equal(r.stderr, '')
    assert.match(r.stdout, /^confirmed: /)
  })

  it('--progress=json: every stderr line is a JSON object; the events add up; stdout is the result document', async () => {
    const requester = await fresh()
    const r = await requester.run(['request', host.control, 'Big', '--into', path.join(work, 'json-copy'), '--bind', '127.0.0.2', '--json', '--progress=json'])
    assert.equal(r.code, 0, r.stderr)
    const result = JSON.parse(r.stdout)
    const events = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as {event?: string; [k: string]: unknown})
    const kinds = events.map((e) => e.event).filter(Boolean)
    assert.deepEqual(kinds.slice(0, 2), ['phase', 'files-to-get'])
    assert.equal(kinds.filter((k) => k === 'file-done').length, 8)
    assert.equal(kinds.filter((k) => k === 'file-start').length, 8)
    assert.ok(!kinds.includes('bytes'), 'chunk events are folded into progress events')
    const last = events.filter((e) => e.event === 'progress').at(-1)!
    assert.equal(last.files, 8)
    assert.equal(last.bytes, last.totalBytes)
    assert.equal(
      last.totalBytes,
      result.files.reduce((n: number, f: {size: number}) => n + f.size, 0),
    )
  })

  it('--progress=bar draws into a pipe when asked to', async () => {
    const requester = await fresh()
    const r = await requester.run(['request', host.control, 'Big', '--into', path.join(work, 'bar-copy'), '--bind', '127.0.0.2', '--progress=bar'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /100% \| 8\/8 files/)
  })
})
