// The shared lifecycle: parts start in order and stop in reverse under one signal; a failed start stops what started.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FpeerError} from './errors.js'
import {Lifecycle, type Startable, Tasks} from './lifecycle.js'

/** A part that records what happens to it, in one shared log. */
function part(name: string, log: string[], fail?: FpeerError): Startable & {signal: AbortSignal | undefined} {
  const p = {
    signal: undefined as AbortSignal | undefined,
    async start(signal: AbortSignal) {
      p.signal = signal
      log.push(`start ${name}`)
      signal.addEventListener('abort', () => log.push(`abort seen by ${name}`), {once: true})
      if (fail) throw fail
    },
    async stop() {
      log.push(`stop ${name}`)
    },
  }
  return p
}

describe('Lifecycle', () => {
  it('starts in order, aborts the one signal, then stops in reverse', async () => {
    const log: string[] = []
    const parts = [part('a', log), part('b', log), part('c', log)]
    const life = new Lifecycle(parts)
    await life.start()
    assert.deepEqual(log, ['start a', 'start b', 'start c'])
    assert.ok(parts.every((p) => p.signal === life.signal))
    log.length = 0
    await life.stop()
    assert.equal(life.signal.aborted, true)
    assert.deepEqual(log, ['abort seen by a', 'abort seen by b', 'abort seen by c', 'stop c', 'stop b', 'stop a'])
  })

  it('a part that fails to start: the started ones and it are stopped in reverse, the later ones never start, the error is thrown as it was', async () => {
    const log: string[] = []
    const life = new Lifecycle([part('a', log), part('b', log, new FpeerError('E_USAGE', 'port in use')), part('c', log)])
    await assert.rejects(life.start(), (err: FpeerError) => err.code === 'E_USAGE')
    assert.deepEqual(
      log.filter((l) => !l.startsWith('abort')),
      ['start a', 'start b', 'stop b', 'stop a'],
    )
  })

  it('stop twice stops each part once; stop before start starts nothing later', async () => {
    const log: string[] = []
    const life = new Lifecycle([part('a', log)])
    await Promise.all([life.stop(), life.stop()])
    await life.start()
    assert.deepEqual(log, [])
    const log2: string[] = []
    const life2 = new Lifecycle([part('a', log2)])
    await life2.start()
    await life2.stop()
    await life2.stop()
    assert.deepEqual(
      log2.filter((l) => l.startsWith('stop')),
      ['stop a'],
    )
  })
})

describe('Tasks', () => {
  it('stop waits for work that ends when the signal aborts', async () => {
    const tasks = new Tasks({graceMs: 60_000})
    const ac = new AbortController()
    await tasks.start(ac.signal)
    let ended = false
    void tasks.track(new Promise<void>((resolve) => ac.signal.addEventListener('abort', () => setImmediate(() => ((ended = true), resolve())), {once: true})))
    assert.equal(tasks.size, 1)
    ac.abort()
    await tasks.stop()
    assert.equal(ended, true)
    assert.equal(tasks.size, 0)
  })

  it('work that ignores the signal is left behind once the grace is over', async () => {
    const tasks = new Tasks({graceMs: 50})
    const ac = new AbortController()
    await tasks.start(ac.signal)
    let release = () => {}
    void tasks.track(new Promise<void>((resolve) => (release = resolve)))
    ac.abort()
    await tasks.stop()
    assert.equal(tasks.size, 1, 'the stuck work is still tracked: stop() did not wait for it')
    release()
  })
})
