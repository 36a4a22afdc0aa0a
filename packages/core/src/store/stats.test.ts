// Stats: counted in memory, flushed while running and once at stop; no timer left after stop or abort.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'
import {StatsFile} from './stats.js'

async function until(what: string, cond: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const read = async (home: string) =>
  JSON.parse(await readFile(path.join(home, 'stats.json'), 'utf8').catch(() => 'null')) as {pushes: number; pid: number} | null

describe('StatsFile', () => {
  const homes: string[] = []
  const home = async () => {
    const h = await mkdtemp(path.join(os.tmpdir(), 'fpeer-stats-'))
    homes.push(h)
    return h
  }
  after(async () => {
    for (const h of homes) await rm(h, {recursive: true, force: true})
  })

  it('flushes changed counters periodically, and once more at stop; no timer after stop', async () => {
    const h = await home()
    const s = new StatsFile({home: h, flushMs: 20})
    const ac = new AbortController()
    await s.start(ac.signal)
    assert.equal(s.timers, 1)
    s.count('pushes', 2)
    await until('the periodic flush', async () => (await read(h))?.pushes === 2)
    s.count('pushes')
    await s.stop()
    assert.equal(s.timers, 0)
    assert.equal((await read(h))?.pushes, 3)
    assert.equal((await read(h))?.pid, process.pid)
    await s.stop()
  })

  it('abort clears the timer; a one-shot (no flushMs) starts none and writes at stop', async () => {
    const h = await home()
    const s = new StatsFile({home: h, flushMs: 20})
    const ac = new AbortController()
    await s.start(ac.signal)
    ac.abort()
    assert.equal(s.timers, 0)
    const once = new StatsFile({home: h})
    await once.start(new AbortController().signal)
    assert.equal(once.timers, 0)
    once.count('pushes', 5)
    assert.equal((await read(h))?.pushes ?? 0, 0)
    await once.stop()
    assert.equal((await read(h))?.pushes, 5)
  })

  it('stop before start writes the counters and leaves no timer; a later start starts none', async () => {
    const h = await home()
    const s = new StatsFile({home: h, flushMs: 20})
    await s.stop()
    assert.equal((await read(h))?.pushes, 0)
    await s.start(new AbortController().signal)
    assert.equal(s.timers, 0)
  })

  it('replaces stats.json whole: a reader never sees half of it; a dead process’s leftover temporary file is removed at start', async () => {
    const h = await home()
    // A process that has exited (its pid is free) and one that runs (our parent) each left a temporary file.
    const dead = spawnSync(process.execPath, ['-e', '0']).pid
    const deadTmp = `.stats.json.${dead}.0badc0de.tmp`
    const liveTmp = `.stats.json.${process.ppid}.0badc0de.tmp`
    await writeFile(path.join(h, deadTmp), '{"half')
    await writeFile(path.join(h, liveTmp), '{"half')
    const s = new StatsFile({home: h, flushMs: 1})
    await s.start(new AbortController().signal)
    const left = await readdir(h)
    assert.ok(!left.includes(deadTmp), 'the dead process’s file is gone')
    assert.ok(left.includes(liveTmp), 'a running process’s file is its own')
    let reads = 0
    let written = 0
    for (let i = 0; i < 300; i++) {
      // Counters that make the document long, so a write takes more than one system call to land.
      s.count('pushes', 1_000_000_007)
      if (i % 3 === 0) void s.flush(true)
      const text = await readFile(path.join(h, 'stats.json'), 'utf8').catch(() => undefined)
      if (text === undefined) continue
      reads++
      const doc = JSON.parse(text) as {pushes: number}
      assert.ok(doc.pushes >= written)
      written = doc.pushes
    }
    await s.stop()
    assert.ok(reads > 200, `read ${reads} times`)
    assert.equal((await read(h))?.pushes, 300 * 1_000_000_007)
    assert.deepEqual(
      (await readdir(h)).filter((n) => n.endsWith('.tmp')),
      [liveTmp],
      'no temporary file of ours is left',
    )
  })
})
