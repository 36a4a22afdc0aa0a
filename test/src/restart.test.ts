// Prompt hand-over after a restart: a peer killed with -9 mid-update, or down during a change, converges with its peers by itself (catch-up off).
import assert from 'node:assert/strict'
import {writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Chain, RUNS, alive, killHard} from './chain.js'
import {waitFor} from './harness.js'

describe('a middle peer killed with -9 the moment it took a change, and restarted', () => {
  let chain: Chain
  before(async () => {
    chain = await Chain.create('127.0.133', 3)
  })
  after(() => chain.destroy())

  it('the peer behind it gets the change; every peer fetched it once', async (t) => {
    const [a, b] = chain.peers
    for (let run = 0; run < RUNS; run++) {
      const content = `change ${run} ${'x'.repeat(run * 100)}\n`
      const before = [await chain.stats(0), await chain.stats(2)]
      await writeFile(path.join(chain.dirs[0]!, 'note.txt'), content)
      // Polled tightly: the kill must land while B still owes the forward, not after it.
      await waitFor('the change to land on B', async () => (await chain.content(1)) === content, 30_000, 2)
      await killHard(b!.serveProcess!)
      const cHadIt = (await chain.content(2)) === content
      await b!.serve([], {}, {ports: 'default'})
      const restarted = Date.now()
      await waitFor('the change to reach C', async () => (await chain.content(2)) === content, 60_000, 50)
      const took = Date.now() - restarted
      await chain.settle()
      const [aNow, cNow] = [await chain.stats(0), await chain.stats(2)]
      assert.equal(cNow.filesFetched - before[1]!.filesFetched, 1, 'C fetched the change once')
      assert.equal(aNow.filesFetched - before[0]!.filesFetched, 0, 'A fetched nothing')
      // B fetched it before it was killed (it was on its disk); the restarted B fetches nothing.
      assert.equal((await chain.statsOfRunning(1)).filesFetched, 0, 'the restarted B fetched the change again')
      assert.ok(await alive(a!), 'A is still serving')
      assert.ok(await alive(b!), 'B is serving again')
      t.diagnostic(`run ${run}: restart -> C holds the change in ${took} ms (C had it already at the kill: ${cHadIt})`)
    }
  })

  it('B down while A changes: the restarted B takes the change by its own exchange and passes it on, once each', async (t) => {
    const [a, b] = chain.peers
    await b!.stop()
    const before = [await chain.stats(0), await chain.stats(2)]
    const content = 'changed while B was down\n'
    const mark = a!.serveStderr.length
    await writeFile(path.join(chain.dirs[0]!, 'note.txt'), content)
    // This change's failed push, not an earlier one: then A has recorded the change as its version.
    await waitFor("A's push to B to fail", () => /local change[^\n]*\n(.*\n)*.*push failed/.test(a!.serveStderr.slice(mark)), 30_000)
    // A restarted drops its in-memory retry of that push: only B's exchange at start can bring the change now.
    await a!.stop()
    await a!.serve([], {}, {ports: 'default'})
    await waitFor("A's own exchange to find B away", () => a!.serveStderr.includes('state exchange: peer not reached'), 30_000)
    // Its owed forwards damaged meanwhile (a garbled line before the last): set aside at start, they stop nothing.
    await writeFile(path.join(b!.home, 'folders', 'docs', 'owed.jsonl'), '{"o":"X garbled\n{"c":"X","p":"note.txt"}\n')
    await b!.serve([], {}, {ports: 'default'})
    const restarted = Date.now()
    await waitFor('the change to reach B and C', async () => (await chain.content(1)) === content && (await chain.content(2)) === content, 60_000, 50)
    assert.match(b!.serveStderr, /owed forwards were damaged/)
    t.diagnostic(`restart -> B and C hold the change in ${Date.now() - restarted} ms`)
    await chain.settle()
    assert.match(b!.serveStderr, /state exchanged folder=docs peer=\S+ pulled=1/, `B pulled the change itself; A's log:\n${a!.serveStderr}`)
    assert.equal((await chain.statsOfRunning(1)).filesFetched, 1, 'B fetched the change once')
    assert.equal((await chain.stats(2)).filesFetched - before[1]!.filesFetched, 1, 'C fetched the change once')
    assert.equal((await chain.statsOfRunning(0)).filesFetched, 0, 'A fetched nothing')
  })
})
