// FolderDirs on a real disk: symlinked parents refused, a directory swapped after it was opened does not redirect writes.
import assert from 'node:assert/strict'
import {closeSync, writeSync} from 'node:fs'
import {mkdir, mkdtemp, readdir, realpath, rename, rm, symlink, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {FolderDirs, findPart} from './folder-dirs.js'

describe('FolderDirs', () => {
  let work: string
  let root: string
  let outside: string

  before(async () => {
    work = await realpath(await mkdtemp(path.join(os.tmpdir(), 'fpeer-dirs-')))
    root = path.join(work, 'root')
    outside = path.join(work, 'outside')
    await mkdir(root)
    await mkdir(outside)
    await writeFile(path.join(outside, 'x'), 'outside\n')
  })
  after(() => rm(work, {recursive: true, force: true}))

  it('refuses a symlinked parent with E_PATH_UNSAFE, for reading and for creating', async () => {
    await symlink(outside, path.join(root, 'docs'))
    const dirs = new FolderDirs(root)
    try {
      assert.throws(
        () => dirs.open(['docs'], false),
        (e) => isFpeerError(e, 'E_PATH_UNSAFE'),
      )
      assert.throws(
        () => dirs.open(['docs', 'sub'], true),
        (e) => isFpeerError(e, 'E_PATH_UNSAFE'),
      )
    } finally {
      dirs.close()
    }
    assert.deepEqual(await readdir(outside), ['x'])
    await rm(path.join(root, 'docs'))
  })

  it('a directory swapped for a symlink after it was opened redirects nothing, and landing in it stops with E_PATH_UNSAFE', async (t) => {
    const dirs = new FolderDirs(root)
    const dir = dirs.need(['a', 'b'])
    if (dir.fd === undefined) return t.skip('no /proc/self/fd here: the lstat fallback has a window')
    try {
      // The race, done deterministically: the parent moves away and a symlink takes its place.
      await rename(path.join(root, 'a'), path.join(root, 'a-moved'))
      // A path-based writer would now land in outside/b.
      await mkdir(path.join(outside, 'b'))
      await symlink(outside, path.join(root, 'a'))
      const {fd, name} = dir.createExclusive('.fpeer-part-t-')
      writeSync(fd, 'content')
      closeSync(fd)
      assert.throws(
        () => dir.rename(name, 'landed.txt'),
        (e) => isFpeerError(e, 'E_PATH_UNSAFE'),
      )
      dir.unlink(name)
    } finally {
      dir.release()
      dirs.close()
    }
    assert.deepEqual(await readdir(path.join(outside, 'b')), [])
    await rm(path.join(outside, 'b'), {recursive: true})
    assert.deepEqual(await readdir(outside), ['x'])
    assert.deepEqual(await readdir(path.join(root, 'a-moved', 'b')), [])
  })

  it('findPart never opens a planted symlink and removes it; a part of ours is resumed', async () => {
    await mkdir(path.join(root, 'p'))
    await symlink(path.join(outside, 'x'), path.join(root, 'p', '.fpeer-part-abc-1'))
    const dirs = new FolderDirs(root)
    const dir = dirs.need(['p'])
    try {
      assert.equal(findPart(dir, '.fpeer-part-abc-'), undefined)
      assert.deepEqual(await readdir(path.join(root, 'p')), [])
      await writeFile(path.join(root, 'p', '.fpeer-part-abc-2'), 'half')
      const found = findPart(dir, '.fpeer-part-abc-')
      assert.equal(found?.size, 4)
      closeSync(found!.fd)
    } finally {
      dir.release()
      dirs.close()
    }
    assert.deepEqual(await readdir(outside), ['x'])
  })
})
