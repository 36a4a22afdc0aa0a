// The Home object: its queues order one key's work within the home, and belong to that Home alone (no module-global state).
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {Home} from './home.js'

/** A promise and its resolver, to hold a task open until the test lets it go. */
function gate(): {wait: Promise<void>; open: () => void} {
  let open!: () => void
  const wait = new Promise<void>((r) => (open = r))
  return {wait, open}
}

describe('Home.serial', () => {
  it('runs one key\'s tasks one after another, also after a failure', async () => {
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
    assert.throws(() => new Home(''), (e: unknown) => (e as {code?: string}).code === 'E_USAGE')
  })
})
