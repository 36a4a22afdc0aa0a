// The landing thread on a real disk: files land under their names, and room() holds senders back while the thread has MAX_QUEUED requests.
import assert from 'node:assert/strict'
import {mkdtemp, readFile, readdir, realpath, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FolderDirs, landedMode, partPrefix} from './folder-dirs.js'
import {type LandItem, Lander} from './lander.js'

describe('Lander', () => {
  let work: string

  before(async () => {
    work = await realpath(await mkdtemp(path.join(os.tmpdir(), 'fpeer-lander-')))
  })
  after(() => rm(work, {recursive: true, force: true}))

  it('makes senders wait while 8 requests are queued, and lets them go as the thread answers', async () => {
    const root = await mkdtemp(path.join(work, 'root-'))
    const dirs = new FolderDirs(root)
    const lander = new Lander()
    try {
      const dir = dirs.need([])
      const item = (i: number): LandItem => ({
        dir,
        prefix: partPrefix(`f${i}`),
        name: `f${i}`,
        data: Buffer.from(`file ${i}\n`),
        mode: landedMode(),
        rel: `f${i}`,
      })
      // Sent before the thread can have answered anything: its replies come as messages, on a later turn of the event loop.
      const replies = Array.from({length: 8}, (_, i) => lander.land([item(i)]))
      let roomed = false
      const room = lander.room().then(() => (roomed = true))
      await Promise.resolve()
      assert.equal(roomed, false, 'room() resolved with 8 requests queued')
      await room
      const outcomes = await Promise.all(replies)
      for (const o of outcomes) assert.ok(o[0] && !(o[0] instanceof Error), `not landed: ${String(o[0])}`)
      // Fewer queued than the bound: at once.
      await lander.room()
      assert.deepEqual((await readdir(root)).sort(), Array.from({length: 8}, (_, i) => `f${i}`).sort())
      assert.equal(await readFile(path.join(root, 'f3'), 'utf8'), 'file 3\n')
      dir.release()
    } finally {
      await lander.close()
      dirs.close()
    }
  })

  it('lets a waiting sender go when the thread stops, and land() then reports the failure', async () => {
    const root = await mkdtemp(path.join(work, 'root-'))
    const dirs = new FolderDirs(root)
    const lander = new Lander()
    try {
      const dir = dirs.need([])
      const item = (i: number): LandItem => ({dir, prefix: partPrefix(`g${i}`), name: `g${i}`, data: Buffer.from('x'), mode: landedMode(), rel: `g${i}`})
      const replies = Array.from({length: 8}, (_, i) => lander.land([item(i)]).catch((e: Error) => e))
      const room = lander.room()
      await lander.close()
      await room
      await Promise.all(replies)
      await assert.rejects(lander.land([item(9)]), /landing thread stopped/)
      dir.release()
    } finally {
      dirs.close()
    }
  })
})
