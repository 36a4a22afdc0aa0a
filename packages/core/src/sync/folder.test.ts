// FolderSync on real files: what a rescan turns into versions, and what apply may touch.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {Identity, generateKeyPair} from '../identity.js'
import {type ContentFetcher, FolderSync} from './folder.js'
import {signVersion} from './version.js'

describe('FolderSync.rescan', () => {
  it('records a folder’s first content as the original and later changes as signed versions', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'fpeer-sync-'))
    try {
      const dir = path.join(base, 'docs')
      await mkdir(dir)
      await writeFile(path.join(dir, 'a.txt'), 'one')
      const sync = new FolderSync(path.join(base, 'home'), {name: 'docs', path: dir, open: false, allow: [], createdAt: ''}, new Identity(generateKeyPair()))
      assert.deepEqual((await sync.rescan()).versions, [])
      await writeFile(path.join(dir, 'a.txt'), 'two')
      const {versions} = await sync.rescan()
      assert.deepEqual(versions.map((v) => [v.path, v.deleted, v.lamport]), [['a.txt', false, 1]])
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('files added to a folder that was shared empty become versions too', async () => {
    const base = await mkdtemp(path.join(os.tmpdir(), 'fpeer-sync-'))
    try {
      const dir = path.join(base, 'docs')
      await mkdir(dir)
      const sync = new FolderSync(path.join(base, 'home'), {name: 'docs', path: dir, open: false, allow: [], createdAt: ''}, new Identity(generateKeyPair()))
      assert.deepEqual((await sync.rescan()).versions, [])
      await writeFile(path.join(dir, 'new.txt'), 'hello')
      assert.deepEqual((await sync.rescan()).versions.map((v) => v.path), ['new.txt'])
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })
})

describe('FolderSync.apply on a folder with links and names of its own', () => {
  const sha = (t: string) => createHash('sha256').update(t).digest('hex')
  const origin = new Identity(generateKeyPair())
  let lamport = 10
  const version = (p: string, text?: string) => {
    lamport++
    const content = text === undefined ? {deleted: true, sha256: '', size: 0} : {deleted: false, sha256: sha(text), size: Buffer.byteLength(text)}
    return signVersion('docs', {path: p, ...content, mtimeMs: 1_700_000_000_000, lamport, vv: {[origin.id.compact]: lamport}}, origin)
  }
  /** A fetcher that lands the given contents in the staging folder, as a transport would. */
  const fetcher = (contents: Record<string, string>): ContentFetcher => async (items, staging) => {
    for (const {entry} of items) {
      await mkdir(path.dirname(path.join(staging, entry.path)), {recursive: true})
      await writeFile(path.join(staging, entry.path), contents[entry.path]!)
    }
  }

  async function setup() {
    const base = await mkdtemp(path.join(os.tmpdir(), 'fpeer-apply-'))
    const dir = path.join(base, 'docs')
    const outside = path.join(base, 'outside')
    await mkdir(dir)
    await mkdir(outside)
    await writeFile(path.join(outside, 'x'), 'outside\n')
    await writeFile(path.join(dir, 'a.txt'), 'local a\n')
    await writeFile(path.join(dir, '.fpeer'), 'the user\'s own file\n')
    await symlink(outside, path.join(dir, 'link'))
    const sync = new FolderSync(path.join(base, 'home'), {name: 'docs', path: dir, open: false, allow: [], createdAt: ''}, new Identity(generateKeyPair()))
    await sync.rescan()
    return {base, dir, outside, sync}
  }

  it('a deletion through a symlinked directory deletes nothing and is recorded', async () => {
    const {base, outside, sync} = await setup()
    try {
      const r = await sync.apply([version('link/x')], fetcher({}))
      assert.deepEqual(r.applied.map((v) => v.path), ['link/x'])
      assert.equal(await readFile(path.join(outside, 'x'), 'utf8'), 'outside\n')
      assert.equal((await sync.records()).get('link/x')?.version?.deleted, true)
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('content copied locally or fetched never lands through a symlinked directory (E_PATH_UNSAFE), and nothing moves', async () => {
    const {base, dir, outside, sync} = await setup()
    try {
      for (const v of [version('link/copy.txt', 'local a\n'), version('link/fetched.txt', 'new\n')]) {
        await assert.rejects(sync.apply([v], fetcher({'link/fetched.txt': 'new\n'})), (e) => isFpeerError(e, 'E_PATH_UNSAFE'))
      }
      assert.deepEqual((await readdir(outside)).sort(), ['x'])
      assert.deepEqual((await readdir(dir)).sort(), ['.fpeer', 'a.txt', 'link'])
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('a user file named .fpeer does not stop updates that carry content, and no staging is left', async () => {
    const {base, dir, sync} = await setup()
    try {
      const r = await sync.apply([version('sub/b.txt', 'bee\n'), version('c.txt', 'local a\n')], fetcher({'sub/b.txt': 'bee\n'}))
      assert.deepEqual(r.fetched, ['sub/b.txt'])
      assert.deepEqual(r.copied, ['c.txt'])
      assert.equal(await readFile(path.join(dir, 'sub', 'b.txt'), 'utf8'), 'bee\n')
      assert.equal(await readFile(path.join(dir, '.fpeer'), 'utf8'), 'the user\'s own file\n')
      assert.deepEqual((await readdir(dir)).sort(), ['.fpeer', 'a.txt', 'c.txt', 'link', 'sub'])
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })

  it('a concurrent edit keeps the local content as a conflict copy (linked, then renamed into place)', async () => {
    const {base, dir, sync} = await setup()
    try {
      await writeFile(path.join(dir, 'a.txt'), 'edited here\n')
      await sync.rescan()
      const r = await sync.apply([version('a.txt', 'edited there\n')], fetcher({'a.txt': 'edited there\n'}))
      assert.equal(r.conflicts.length, 1)
      assert.equal(await readFile(path.join(dir, 'a.txt'), 'utf8'), 'edited there\n')
      assert.equal(await readFile(path.join(dir, r.conflicts[0]!), 'utf8'), 'edited here\n')
      assert.deepEqual((await readdir(dir)).filter((n) => n.startsWith('.fpeer-')), [])
    } finally {
      await rm(base, {recursive: true, force: true})
    }
  })
})
