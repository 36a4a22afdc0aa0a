// Folder runners on real folders: leftovers cleaned, the watcher's events debounced into one rescan, and no timer or watcher after stop or abort.
import {Home} from '../store/home.js'
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import {appendFile, mkdir, mkdtemp, rm, stat, utimes, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import type {FolderConfig} from '../store/config.js'
import {FolderRunner, type FolderRunnerOptions, FolderRunners} from './folder-runner.js'
import {FolderSync} from './folder.js'

const sha = (text: string) => createHash('sha256').update(text).digest('hex')

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
    // (Written in one turn of the event loop, so their events come together however slow the machine is.)
    for (let i = 0; rescans.length === 0 && i < 30; i++) {
      for (let j = 0; j < 5; j++) writeFileSync(path.join(f.path, `f${i}-${j}.txt`), `${i}\n`)
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

  it('an event-driven rescan is told the paths the watcher named; the periodic one is told nothing (it walks everything)', async () => {
    const {home, f} = await folder()
    await writeFile(path.join(f.path, 'kept.txt'), 'kept')
    const told: Array<string[] | undefined> = []
    let r: FolderRunner | undefined
    r = runner(home, f, [], {rescan: () => told.push(r!.sync.dirty())})
    await r.start(new AbortController().signal)
    // The watcher starts in the background: once it watches the whole folder, one write is seen.
    await until('the folder to be watched whole', () => r!.changes !== undefined)
    await writeFile(path.join(f.path, 'edited.txt'), 'edited\n')
    await until('a rescan', () => told.length > 0)
    assert.deepEqual(told, [['edited.txt']])
    await r.stop()
    const periodic: Array<string[] | undefined> = []
    r = runner(home, f, [], {rescanMs: 30, rescan: () => periodic.push(r!.sync.dirty())})
    await r.start(new AbortController().signal)
    await until('a periodic rescan', () => periodic.length > 0)
    await r.stop()
    assert.equal(periodic[0], undefined)
  })

  it('a file written without pause delays the rest no longer than MAX_WAIT_MS, and is itself looked at once its writes stop', async () => {
    const {home, f} = await folder()
    const told: Array<string[] | undefined> = []
    let r: FolderRunner | undefined
    // As the node's rescans do (settle): paths written a moment ago are held back.
    r = runner(home, f, [], {rescan: () => told.push(r!.sync.dirty(performance.now()))})
    await r.start(new AbortController().signal)
    try {
      await watchedWhileLogged(r, f, told)
    } finally {
      await r.stop()
    }
  })

  /** The body of the test above: a busy log beside a single change. */
  async function watchedWhileLogged(r: FolderRunner, f: FolderConfig, told: Array<string[] | undefined>): Promise<void> {
    await until('the folder to be watched whole', () => r.changes !== undefined)
    // A log appended every 10 ms (events far closer than DEBOUNCE_MS), for at most 20 s.
    let writing = true
    let appends = 0
    const writer = (async () => {
      for (const end = Date.now() + 20_000; writing && Date.now() < end; appends++) {
        await appendFile(path.join(f.path, 'busy.log'), `line ${appends}\n`)
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    })()
    try {
      await until('the log to be written', () => appends > 5)
      await writeFile(path.join(f.path, 'other.txt'), 'other\n')
      // Before: every append put the rescan off again, so other.txt waited for the log to stop.
      await until('a rescan naming other.txt while the log is still written', () => told.some((d) => d?.includes('other.txt')) || !writing, 15_000)
      assert.ok(writing && told.some((d) => d?.includes('other.txt')), `told ${JSON.stringify(told)}`)
    } finally {
      writing = false
      await writer
    }
    // The log's writes stopped: it settles, a rescan names it, and nothing is left held back.
    await until('every event of the log to be taken by a rescan', () => told.some((d) => d?.includes('busy.log')) && r.sync.held() === 0)
  }

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

  it('a listing reuses the last walk while the watcher saw nothing and the journal is as it left it; a change walks again and re-hashes', async () => {
    const {home, f} = await folder()
    await mkdir(path.join(f.path, 'sub'))
    await writeFile(path.join(f.path, 'sub', 'a.txt'), 'one\n')
    await writeFile(path.join(f.path, 'b.txt'), 'bee\n')
    const r = runner(home, f, [], {rescanMs: 3_600_000})
    const ac = new AbortController()
    try {
      await r.start(ac.signal)
      await until('the watcher to watch every directory', () => r.changes !== undefined)
      const sync = r.sync
      const first = await sync.current()
      assert.equal(sync.scans, 1)
      assert.equal(first.records.get('sub/a.txt')?.sha256, sha('one\n'))
      // Nothing happened: the journal's records, no walk.
      const again = await sync.current()
      assert.equal(sync.scans, 1, 'no walk while nothing changed')
      assert.deepEqual([...again.records.keys()].sort(), ['b.txt', 'sub/a.txt'])
      assert.equal(again.records.get('sub/a.txt')?.sha256, sha('one\n'))
      // Same size, new content, in a subdirectory: the watcher tells, the walk re-hashes it and signs a version.
      const seen = r.changes!
      await writeFile(path.join(f.path, 'sub', 'a.txt'), 'two\n')
      await until('the event', () => (r.changes ?? seen) !== seen)
      const changed = await sync.current()
      assert.equal(sync.scans, 2)
      assert.equal(changed.records.get('sub/a.txt')?.sha256, sha('two\n'))
      assert.deepEqual(
        changed.versions.map((v) => [v.path, v.sha256]),
        [['sub/a.txt', sha('two\n')]],
      )
      await sync.current()
      assert.equal(sync.scans, 2, 'quiet again')
      // The journal written behind this instance's back (another process recording): walked again.
      const other = new FolderSync(new Home(home), f, identity)
      const all = await other.records()
      const rec = {...all.get('b.txt')!, mtimeMs: 1}
      all.set('b.txt', rec)
      await other.peerfile.put([rec], all)
      const after = await sync.current()
      assert.equal(sync.scans, 3, 'a journal changed since the walk is not trusted')
      assert.equal(after.records.get('b.txt')?.sha256, sha('bee\n'))
      assert.notEqual(after.records.get('b.txt')?.mtimeMs, 1, 'the walk put the disk back in the record')
    } finally {
      ac.abort()
      await r.stop()
    }
  })

  it('not watched (one-shot use, or the watcher stopped): every listing walks the folder and sees a change', async () => {
    const {home, f} = await folder()
    await writeFile(path.join(f.path, 'a.txt'), 'one\n')
    const r = runner(home, f, [], {live: false})
    await r.start(new AbortController().signal)
    assert.equal(r.changes, undefined)
    await r.sync.current()
    await writeFile(path.join(f.path, 'a.txt'), 'two\n')
    const out = await r.sync.current()
    assert.equal(r.sync.scans, 2)
    assert.equal(out.records.get('a.txt')?.sha256, sha('two\n'))
    await r.stop()
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
