// LocalFileSource on a real disk: reads through held directories stay confined when directories are moved, replaced or swapped for links between reads.
import assert from 'node:assert/strict'
import {mkdir, mkdtemp, readdir, realpath, rename, rm, symlink, writeFile} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {LocalFileSource} from './local-source.js'

const WHO = {address: '127.0.0.1'}

describe('LocalFileSource', () => {
  let work: string
  let root: string
  let outside: string
  let source: LocalFileSource

  before(async () => {
    work = await realpath(await mkdtemp(path.join(os.tmpdir(), 'fpeer-source-')))
    root = path.join(work, 'root')
    outside = path.join(work, 'outside')
    await mkdir(path.join(root, 'd'), {recursive: true})
    await mkdir(outside)
    await writeFile(path.join(outside, 'a'), 'outside\n')
    await writeFile(path.join(root, 'd', 'a'), 'first\n')
    source = new LocalFileSource({root: (f) => (f === 'share' ? root : undefined), mayRead: () => true}, () => ['share'])
  })
  after(() => rm(work, {recursive: true, force: true}))

  /** The content served for `rel`, or the error's code. */
  const read = async (rel: string): Promise<string> => {
    try {
      const o = await source.open('share', rel, WHO)
      if (o.data) return o.data.toString()
      const chunks: Buffer[] = []
      for await (const c of o.stream) chunks.push(c as Buffer)
      return Buffer.concat(chunks).toString()
    } catch (err) {
      if (isFpeerError(err)) return err.code
      throw err
    }
  }

  it('serves a file, then the new directory put where the old one was (never the old one, moved inside or out)', async () => {
    assert.equal(await read('d/a'), 'first\n')
    await rename(path.join(root, 'd'), path.join(root, 'old'))
    await mkdir(path.join(root, 'd'))
    await writeFile(path.join(root, 'd', 'a'), 'second\n')
    assert.equal(await read('d/a'), 'second\n')
    assert.equal(await read('old/a'), 'first\n')
    // Moved out of the folder: it is not served under its old name, nor anything else.
    await rename(path.join(root, 'old'), path.join(work, 'gone'))
    assert.equal(await read('old/a'), 'E_NOT_FOUND')
    assert.equal(await read('d/a'), 'second\n')
  })

  it('a directory swapped for a link leaving the folder after a read is refused; a link inside the folder is followed', async () => {
    assert.equal(await read('d/a'), 'second\n')
    await rename(path.join(root, 'd'), path.join(root, 'kept'))
    await symlink(outside, path.join(root, 'd'))
    assert.equal(await read('d/a'), 'E_PATH_UNSAFE')
    await rm(path.join(root, 'd'))
    await symlink('kept', path.join(root, 'd'))
    assert.equal(await read('d/a'), 'second\n')
    await symlink('kept/a', path.join(root, 'link'))
    assert.equal(await read('link'), 'second\n')
    await symlink(path.join(outside, 'a'), path.join(root, 'escape'))
    assert.equal(await read('escape'), 'E_PATH_UNSAFE')
    assert.equal(await read('nothing/here'), 'E_NOT_FOUND')
    // Nothing outside was touched.
    assert.deepEqual(await readdir(outside), ['a'])
  })
})
