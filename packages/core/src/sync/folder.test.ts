// FolderSync on real files: what a rescan turns into versions.
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {describe, it} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import {FolderSync} from './folder.js'

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
