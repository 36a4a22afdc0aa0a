// FolderWatcher on a real disk: one watcher per directory there is now, whatever came and went.
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, realpath, rename, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {DIRTY_MAX, FolderWatcher, SETTLE_MS} from './watch.js'

/** Polls `cond` every 20 ms for up to 10 s (inotify events reach the watcher asynchronously). */
async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return
    await new Promise((r) => setTimeout(r, 20))
  }
  assert.fail(`timed out waiting for ${what}`)
}

describe('FolderWatcher', () => {
  let work: string

  before(async () => {
    work = await realpath(await mkdtemp(path.join(os.tmpdir(), 'fpeer-watch-')))
  })
  after(() => rm(work, {recursive: true, force: true}))

  it('watches directories only: files created and renamed into place add no watcher', async () => {
    const root = path.join(work, 'files')
    await mkdir(path.join(root, 'a'), {recursive: true})
    let changes = 0
    const w = new FolderWatcher(root, () => changes++)
    try {
      await w.start()
      assert.deepEqual(w.watching.sort(), ['', 'a'])
      // As fpeer lands a file (a temp name renamed into place) and as an editor writes one.
      for (let i = 0; i < 40; i++) {
        await writeFile(path.join(root, 'a', `.tmp${i}`), `${i}\n`)
        await rename(path.join(root, 'a', `.tmp${i}`), path.join(root, 'a', `f${i}.txt`))
        await writeFile(path.join(root, `g${i}.txt`), `${i}\n`)
      }
      // Events arrive in order: once the directory made last is watched, every file event before it was handled.
      await mkdir(path.join(root, 'last'))
      await until('the new directory to be watched', () => w.watching.includes('last'))
      assert.ok(changes > 0)
      assert.deepEqual(w.watching.sort(), ['', 'a', 'last'])
    } finally {
      w.close()
    }
  })

  it('lets go of removed and renamed directories, and watches one made again under the same name', async () => {
    const root = path.join(work, 'dirs')
    await mkdir(path.join(root, 'gone', 'deep'), {recursive: true})
    await mkdir(path.join(root, 'old'))
    let changes = 0
    const w = new FolderWatcher(root, () => changes++)
    try {
      await w.start()
      assert.deepEqual(w.watching.sort(), ['', 'gone', 'gone/deep', 'old'])
      await rm(path.join(root, 'gone'), {recursive: true})
      await rename(path.join(root, 'old'), path.join(root, 'new'))
      await until('the watchers to follow', () => w.watching.sort().join(',') === ',new')
      // Removed and made again: the new directory is watched (changes in it are seen), not the old one's dead watch kept.
      await rm(path.join(root, 'new'), {recursive: true})
      await mkdir(path.join(root, 'new'))
      await until('the remade directory to be watched', () => w.watching.includes('new'))
      // Only a watcher of the remade directory sees a directory made inside it.
      await mkdir(path.join(root, 'new', 'sub'))
      await until('a directory made in the remade one to be watched', () => w.watching.includes('new/sub'))
      assert.ok(changes > 0)
      assert.deepEqual(w.watching.sort(), ['', 'new', 'new/sub'])
    } finally {
      w.close()
    }
  })

  it('names the paths that changed (takeDirty), each set once, and gives up naming past DIRTY_MAX', async () => {
    const root = path.join(work, 'dirty')
    await mkdir(path.join(root, 'a'), {recursive: true})
    await writeFile(path.join(root, 'a', 'old.txt'), 'old')
    const w = new FolderWatcher(root, () => {})
    try {
      await w.start()
      assert.deepEqual(w.takeDirty(), [])
      await writeFile(path.join(root, 'a', 'old.txt'), 'edited')
      await writeFile(path.join(root, 'top.txt'), 'new')
      // A directory with a file made before its watcher can be there: the directory is named once watched.
      await mkdir(path.join(root, 'n', 'deep'), {recursive: true})
      await writeFile(path.join(root, 'n', 'deep', 'early.txt'), 'early')
      await until('the new directories to be watched', () => w.watching.includes('n/deep'))
      await mkdir(path.join(root, 'last'))
      await until('the last directory to be watched', () => w.watching.includes('last'))
      const dirty = w.takeDirty()
      assert.ok(dirty, 'named')
      for (const p of ['a/old.txt', 'top.txt', 'n', 'last']) assert.ok(dirty.includes(p), `${p} in ${JSON.stringify(dirty)}`)
      assert.ok(
        dirty.every((p) => ['a/old.txt', 'top.txt', 'last'].includes(p) || p === 'n' || p.startsWith('n/')),
        JSON.stringify(dirty),
      )
      assert.deepEqual(w.takeDirty(), [], 'a new set starts at each call')
      // More than DIRTY_MAX names: only a walk of everything can tell.
      for (let i = 0; i <= DIRTY_MAX; i++) await writeFile(path.join(root, 'a', `f${i}`), '')
      await mkdir(path.join(root, 'after'))
      await until('the directory made after them to be watched', () => w.watching.includes('after'))
      assert.equal(w.takeDirty(), undefined)
      assert.deepEqual(w.takeDirty(), [])
    } finally {
      w.close()
    }
    assert.equal(w.takeDirty(), undefined, 'a closed watcher names nothing')
  })

  it('takeDirty(now) holds back a path written less than SETTLE_MS before, and gives it once settled or once held HOLD_MAX long', async () => {
    const root = path.join(work, 'settle')
    await mkdir(root, {recursive: true})
    const w = new FolderWatcher(root, () => {})
    // Never settles, held at most a minute: the times passed below decide, not the machine's speed.
    const hot = new FolderWatcher(
      root,
      () => {},
      () => {},
      {settleMs: Number.MAX_SAFE_INTEGER, holdMaxMs: 60_000},
    )
    try {
      await w.start()
      await hot.start()
      const before = performance.now()
      await writeFile(path.join(root, 'log.txt'), 'one\n')
      await writeFile(path.join(root, 'done.txt'), 'done\n')
      await until('the events', () => w.held === 2 && hot.held === 2)
      const seen = performance.now()
      // At `before`, both were written "just now": held back, and still named afterwards.
      assert.deepEqual(w.takeDirty(before), [])
      assert.equal(w.held, 2)
      // An hour on, both have settled (events that came meanwhile made them no later than now).
      assert.deepEqual(w.takeDirty(performance.now() + 3_600_000 + SETTLE_MS)?.sort(), ['done.txt', 'log.txt'], 'both settled')
      assert.equal(w.held, 0)
      // Without `now`: everything named, nothing held (a listing for a request, `fpeer push`).
      await writeFile(path.join(root, 'log.txt'), 'three\n')
      await until('the third event', () => w.held === 1)
      assert.deepEqual(w.takeDirty(), ['log.txt'])
      // Written without pause for longer than holdMaxMs: given anyway.
      assert.deepEqual(hot.takeDirty(seen), [])
      assert.deepEqual(hot.takeDirty(before + 59_000), [], 'held for less than a minute')
      assert.deepEqual(hot.takeDirty(seen + 60_001)?.sort(), ['done.txt', 'log.txt'], 'held longer than a minute')
    } finally {
      w.close()
      hot.close()
    }
  })
})
