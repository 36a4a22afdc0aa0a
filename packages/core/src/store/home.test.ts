// The Home object: it owns the home's stores (one peerfile per folder), and its queues order one key's work within that Home alone (no module-global state).
import assert from 'node:assert/strict'
import {mkdtemp, readdir, rm, stat} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {describe, it} from 'node:test'
import {Home} from './home.js'

/** A promise and its resolver, to hold a task open until the test lets it go. */
function gate(): {wait: Promise<void>; open: () => void} {
  let open!: () => void
  const wait = new Promise<void>((r) => (open = r))
  return {wait, open}
}

describe('Home.serial', () => {
  it("runs one key's tasks one after another, also after a failure", async () => {
    const home = new Home('/tmp/fpeer-home-serial')
    const log: string[] = []
    const first = gate()
    const a = home.serial('k', async () => {
      log.push('a start')
      await first.wait
      log.push('a end')
      throw new Error('a failed')
    })
    const b = home.serial('k', async () => {
      log.push('b')
      return 2
    })
    // b is queued behind a: a has started, b has not.
    await Promise.resolve()
    assert.deepEqual(log, ['a start'])
    first.open()
    await assert.rejects(a, /a failed/)
    assert.equal(await b, 2)
    assert.deepEqual(log, ['a start', 'a end', 'b'])
  })

  it('lets other keys, and the same key of another Home, run meanwhile', async () => {
    const one = new Home('/tmp/fpeer-home-serial')
    const two = new Home('/tmp/fpeer-home-serial')
    const held = gate()
    const blocked = one.serial('apply\0F', () => held.wait)
    // Neither waits for `blocked`: were the queues module-global, `two` would.
    assert.equal(await one.serial('apply\0G', async () => 'other key'), 'other key')
    assert.equal(await two.serial('apply\0F', async () => 'other home'), 'other home')
    held.open()
    await blocked
  })

  it('resolves the home path and refuses none', () => {
    assert.equal(new Home('/tmp/a/../b').dir, '/tmp/b')
    assert.throws(
      () => new Home(''),
      (e: unknown) => (e as {code?: string}).code === 'E_USAGE',
    )
  })
})

describe('Home stores', () => {
  it('hands out one peerfile per folder, its stores write under the home, forget drops a folder', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fpeer-home-'))
    try {
      const home = new Home(dir)
      assert.equal(home.peerfile('F'), home.peerfile('F'), 'one journal cache per folder in this home')
      assert.notEqual(home.peerfile('F'), home.peerfile('G'))
      assert.notEqual(new Home(dir).peerfile('F'), home.peerfile('F'), 'another Home, another object')
      assert.equal(home.peerfile('a/b').dir, home.folderStateDir('a/b'))
      await home.ensure()
      assert.equal((await stat(dir)).mode & 0o777, 0o700)
      const id = await home.identity()
      assert.equal((await home.readIdentity())?.id.toString(), id.id.toString())
      await home.config.share({name: 'F', path: dir})
      await home.pending.save({folder: 'F', host: '127.0.0.2', port: 1, into: dir, protocol: '', files: [], savedAt: ''})
      await home.peerfile('F').addPeer({id: 'plain:127.0.0.2', address: '127.0.0.2', controlPort: 1, protocols: ['HTTP'], role: 'host', confirmedAt: ''})
      assert.deepEqual((await readdir(dir)).filter((n) => !n.endsWith('.bak')).sort(), ['config.json', 'folders', 'identity.json', 'pending.json'])
      const before = home.peerfile('F')
      home.forget('F')
      assert.notEqual(home.peerfile('F'), before)
      assert.equal((await home.peerfile('F').peers()).length, 1, 'the state on disk stays: forget drops only what the object held')
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  })
})
