// .fpeerignore rules and what a scan leaves out (ignored files, symlinks), finds (empty directories) and keeps (the exec bit), on a real disk.
import assert from 'node:assert/strict'
import {chmod, mkdir, mkdtemp, realpath, rm, symlink, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {IGNORE_FILE, IgnoreRules, IgnoreRulesCache} from './ignore-rules.js'
import {type ScanSkips, scanFolder} from './scan.js'

describe('.fpeerignore and the scan', () => {
  let work: string
  let root: string

  before(async () => {
    work = await realpath(await mkdtemp(path.join(os.tmpdir(), 'fpeer-ignore-')))
    root = path.join(work, 'root')
    await mkdir(path.join(root, '.git/objects'), {recursive: true})
    await mkdir(path.join(root, 'src/build'), {recursive: true})
    await mkdir(path.join(root, 'build'), {recursive: true})
    await mkdir(path.join(root, 'empty/leaf'), {recursive: true})
    await mkdir(path.join(root, 'only-ignored'), {recursive: true})
    await writeFile(path.join(root, '.git/config'), 'x')
    await writeFile(path.join(root, '.env'), 'SECRET=1')
    await writeFile(path.join(root, 'a.tmp'), 't')
    await writeFile(path.join(root, 'keep.tmp'), 'k')
    await writeFile(path.join(root, 'build/out.o'), 'o')
    await writeFile(path.join(root, 'src/build/gen.c'), 'c')
    await writeFile(path.join(root, 'only-ignored/x.tmp'), 'x')
    await writeFile(path.join(root, 'tool.sh'), '#!/bin/sh\n')
    await chmod(path.join(root, 'tool.sh'), 0o755)
    await writeFile(path.join(root, 'plain.txt'), 'p')
    await symlink('plain.txt', path.join(root, 'inside-link'))
    await symlink('/etc', path.join(root, 'outside-link'))
    await writeFile(path.join(root, '.fpeerignore'), '# comments and blank lines are fine\n\n.git/\n.env\n*.tmp\n!keep.tmp\n/build\n')
  })

  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  it('matches as gitignore does: directories, globs, anchors, negation; the rules file itself always', () => {
    const rules = IgnoreRules.load(root)
    const table: Array<[string, boolean, boolean]> = [
      ['.git', true, true],
      ['.git/config', false, true],
      ['.env', false, true],
      ['deep/.env', false, true],
      ['a.tmp', false, true],
      ['keep.tmp', false, false],
      ['build/out.o', false, true],
      ['src/build/gen.c', false, false],
      ['.fpeerignore', false, true],
      ['sub/.fpeerignore', false, false],
      ['plain.txt', false, false],
    ]
    for (const [rel, dir, want] of table) assert.equal(rules.ignores(rel, dir), want, rel)
  })

  it('a missing rules file, or one that is a symlink, ignores nothing but itself', async () => {
    const other = path.join(work, 'other')
    await mkdir(other)
    assert.equal(IgnoreRules.load(other).ignores('.env'), false)
    await symlink(path.join(root, '.fpeerignore'), path.join(other, '.fpeerignore'))
    const rules = IgnoreRules.load(other)
    assert.equal(rules.ignores('.env'), false)
    assert.equal(rules.ignores('.fpeerignore'), true)
  })

  it('a scan leaves out ignored files and symlinks (reporting the links), finds empty leaves, and keeps the exec bit', async () => {
    const skips: ScanSkips = {symlinks: [], emptyDirs: []}
    const files = await scanFolder(root, undefined, 8, skips)
    assert.deepEqual(
      files.map((f) => f.path),
      ['keep.tmp', 'plain.txt', 'src/build/gen.c', 'tool.sh'],
    )
    assert.deepEqual(skips.symlinks.sort(), ['inside-link', 'outside-link'])
    // `empty` holds a directory, so only its leaf is listed; `only-ignored` holds nothing shared, so it is one too.
    assert.deepEqual(skips.emptyDirs, ['empty/leaf', 'only-ignored'])
    assert.equal(files.find((f) => f.path === 'tool.sh')!.mode, 0o755)
    assert.equal(files.find((f) => f.path === 'plain.txt')!.mode, undefined)
    // A chmod alone (same size, mtime, inode) is seen on the next scan, which reuses the hash.
    await chmod(path.join(root, 'plain.txt'), 0o700)
    const again = await scanFolder(root, new Map(files.map((f) => [f.path, f])))
    assert.equal(again.find((f) => f.path === 'plain.txt')!.mode, 0o755)
    await chmod(path.join(root, 'plain.txt'), 0o644)
  })
})

describe('IgnoreRulesCache', () => {
  it('keeps one rules instance while the file is unchanged, reloads when it changes, and shares nothing with another cache', async () => {
    const root = await realpath(await mkdtemp(path.join(os.tmpdir(), 'fpeer-ignore-cache-')))
    try {
      await writeFile(path.join(root, IGNORE_FILE), '*.tmp\n')
      const cache = new IgnoreRulesCache()
      const first = cache.rules(root, 0)
      assert.equal(cache.rules(root, 0), first, 'unchanged: the same matcher, with what it remembered')
      assert.ok(first.ignores('a.tmp'))
      // Another size, so the stamp differs even within the file system's mtime granularity.
      await writeFile(path.join(root, IGNORE_FILE), '*.log\n# longer\n')
      const second = cache.rules(root, 0)
      assert.notEqual(second, first)
      assert.ok(second.ignores('a.log') && !second.ignores('a.tmp'))
      assert.notEqual(new IgnoreRulesCache().rules(root, 0), second, 'each owner has its own cache')
    } finally {
      await rm(root, {recursive: true, force: true})
    }
  })
})
