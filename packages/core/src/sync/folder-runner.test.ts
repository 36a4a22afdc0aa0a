// Folder runners on real folders: leftovers cleaned, the watcher's events debounced into one rescan, and no timer or watcher after stop or abort.
import {Home} from '../store/home.js'
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, rm, stat, utimes, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import type {FolderConfig} from '../store/config.js'
import {FolderRunner, type FolderRunnerOptions, FolderRunners} from './folder-runner.js'

async function until(what: string, cond: () => boolean, ms = 15_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const identity = new Identity(generateKeyPair())

describe('FolderRunner', () => {
  const dirs: string[] = []
  after(async () => {
    for (const d of dirs) await rm(d, {recursive: true, force: true})
  })

  async function folder(name = 'F'): Promise<{home: string; f: FolderConfig}> {
    const home = await mkdtemp(path.join(os.tmpdir(), 'fpeer-runner-'))
    dirs.push(home)
    const root = path.join(home, name)
    await mkdir(root)
    return {home, f: {name, path: root, open: false, allow: [], createdAt: new Date().toISOString()}}
  }

  function runner(home: string, f: FolderConfig, rescans: string[], over: Partial<FolderRunnerOptions> = {}): FolderRunner {
    return new FolderRunner(f, {home: new Home(home), identity, live: true, clean: false, rescanMs: 60_000, rescan: (name) => rescans.push(name), ...over})
  }

  it('cleans leftovers, turns a burst of file events into one rescan, and stop leaves no timer or watcher', async () => {
    const {home, f} = await folder()
    const part = path.join(f.path, '.fpeer-part-old')
    await writeFile(part, 'half a file')
    await utimes(part, new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000))
    const rescans: string[] = []
    const r = runner(home, f, rescans, {clean: true})
    await r.start(new AbortController().signal)
    await assert.rejects(stat(part), (err: NodeJS.ErrnoException) => err.code === 'ENOENT')
    assert.equal(r.watching, true)
    assert.equal(r.timers, 1, 'the periodic rescan')
    // The watcher starts in the background: a burst of writes, again until it reports; each burst makes one rescan.
    for (let i = 0; rescans.length === 0 && i < 30; i++) {
      for (let j = 0; j < 5; j++) await writeFile(path.join(f.path, `f${i}-${j}.txt`), `${i}\n`)
      await until('a rescan', () => rescans.length > 0, 1000).catch(() => {})
    }
    assert.deepEqual(rescans, ['F'])
    r.schedule(10_000)
    assert.equal(r.timers, 2, 'a pending debounced rescan')
    await r.stop()
    assert.equal(r.timers, 0)
    assert.equal(r.watching, false)
    r.schedule(0)
    assert.equal(r.timers, 0, 'nothing scheduled after stop')
    await r.stop()
  })

  it('the periodic rescan runs every rescanMs; abort through the signal ends it and the watcher', async () => {
    const {home, f} = await folder()
    const rescans: string[] = []
    const r = runner(home, f, rescans, {rescanMs: 30})
    const ac = new AbortController()
    await r.start(ac.signal)
    await until('two periodic rescans', () => rescans.length >= 2)
    ac.abort()
    assert.equal(r.timers, 0)
    assert.equal(r.watching, false)
    const n = rescans.length
    await r.stop()
    assert.equal(rescans.length, n)
  })

  it('not live (one-shot use): holds its FolderSync, starts no watcher or timer; stop before start starts nothing', async () => {
    const {home, f} = await folder()
    const r = runner(home, f, [], {live: false})
    await r.start(new AbortController().signal)
    assert.equal(r.sync.folder.name, 'F')
    assert.equal(r.watching, false)
    assert.equal(r.timers, 0)
    const never = runner(home, f, [])
    await never.stop()
    await never.start(new AbortController().signal)
    assert.equal(never.watching, false)
    assert.equal(never.timers, 0)
  })
})

describe('FolderRunners', () => {
  it('keeps one runner per shared folder: new ones start at once, unshared or moved ones stop', async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), 'fpeer-runners-'))
    try {
      const mk = async (name: string) => {
        await mkdir(path.join(home, name))
        return {name, path: path.join(home, name), open: false, allow: [], createdAt: ''} satisfies FolderConfig
      }
      const [a, b] = [await mk('A'), await mk('B')]
      const made: FolderRunner[] = []
      const runners = new FolderRunners({
        make: (f, clean) => {
          const r = new FolderRunner(f, {home: new Home(home), identity, live: true, clean, rescanMs: 60_000, rescan: () => {}})
          made.push(r)
          return r
        },
      })
      runners.update([a])
      assert.equal(runners.get('A')?.watching, false, 'not started before start()')
      const ac = new AbortController()
      await runners.start(ac.signal)
      assert.equal(runners.get('A')?.watching, true)
      runners.update([a, b])
      await until('B to be watched', () => runners.get('B')?.watching === true)
      const oldA = runners.get('A')!
      runners.update([{...a, open: true}, b].slice(0, 1))
      assert.equal(runners.size, 1)
      assert.equal(oldA.watching, false, 'the changed folder got a new runner')
      assert.equal(made[1]!.watching, false, 'the unshared folder stopped')
      await until('the new A to be watched', () => runners.get('A')?.watching === true)
      ac.abort()
      await runners.stop()
      assert.ok(made.every((r) => !r.watching && r.timers === 0))
      await runners.stop()
    } finally {
      await rm(home, {recursive: true, force: true})
    }
  })
})
