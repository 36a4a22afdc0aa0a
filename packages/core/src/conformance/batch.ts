// The conformance suite's batch cases: many small files through getMany(), each checked, landed whole, failing alone.
import assert from 'node:assert/strict'
import {readFile} from 'node:fs/promises'
import path from 'node:path'
import {describe} from 'node:test'
import {fetchFiles, type FetchEvent} from '../transfer/fetch.js'
import type {BatchItem, TransferClient} from '../transport.js'
import type {FileEntry} from '../wire/types.js'
import {FOLDER, HOSTILE_NAMES, MANY_DIR, SECRET_FILE, listTree, sameBytes, type FixtureEntry} from './fixture.js'
import type {Peer, PeerSetup} from './peer.js'
import {assertNoLeftovers, at, rejectsWith, type Suite} from './context.js'

/** A client that counts which path core took: one get() per file, or getMany() batches. */
function counting(client: Required<TransferClient>): TransferClient & {gets: number; batches: number} {
  const counted = {
    gets: 0,
    batches: 0,
    get(folder: string, p: string, options?: {offset?: number; signal?: AbortSignal}) {
      counted.gets++
      return client.get(folder, p, options)
    },
    getMany(folder: string, items: Array<{path: string; size: number}>, options?: {signal?: AbortSignal}) {
      counted.batches++
      return client.getMany(folder, items, options)
    },
    close: () => client.close(),
  }
  return counted
}

/** Registers the batch cases: they run when the transport declares `supports.batch` (what core batches on), and are skipped, shown, when not. */
export function batchCases(s: Suite): void {
  const small = (n: number): FixtureEntry[] => [...s.fx.entries.values()].filter((e) => e.path.startsWith(`${MANY_DIR}/`)).slice(0, n)
  const notDeclared = !s.sup.batch && 'transport does not batch (supports.batch false)'
  /** Runs `fn` with a client of the batching transport, which must have the getMany() it declares. */
  const batching = (setup: PeerSetup, fn: (peer: Peer & {client: Required<TransferClient>}) => Promise<void>) =>
    s.peer(setup, async (peer) => {
      assert.equal(typeof peer.client.getMany, 'function', 'supports.batch, but the client has no getMany()')
      await fn(peer as Peer & {client: Required<TransferClient>})
    })

  describe('batch', () => {
    s.test('supports.batch is truthful: a connected client has getMany() exactly when the transport declares it', {}, async () => {
      await s.peer({}, async ({client}) => {
        assert.equal(typeof client.getMany === 'function', s.sup.batch, `supports.batch is ${s.sup.batch}, getMany() is ${typeof client.getMany}`)
      })
    })

    s.test('getMany() answers every item in the order asked, and a bad item fails alone with its code', {skip: notDeclared}, async () => {
      const good = [...small(30), ...HOSTILE_NAMES.map(s.entry)]
      const bad = new Map([
        ['no such file.txt', 'E_NOT_FOUND'],
        [SECRET_FILE, 'E_ACCESS'],
      ])
      // Bad items between good ones: the first, in the middle, the last but one.
      const items = good.map((f) => ({path: f.path, size: f.size}))
      items.splice(0, 0, {path: 'no such file.txt', size: 10})
      items.splice(items.length >> 1, 0, {path: SECRET_FILE, size: s.entry(SECRET_FILE).size})
      await batching({plan: {unreadable: new Set([SECRET_FILE])}}, async ({client}) => {
        const got: BatchItem[] = []
        for await (const item of client.getMany(FOLDER, items)) got.push(item)
        assert.deepEqual(
          got.map((i) => i.path),
          items.map((i) => i.path),
          'one result per item, in the order asked',
        )
        for (const item of got) {
          const code = bad.get(item.path)
          if (code) {
            assert.ok('error' in item, `${item.path} was answered with bytes`)
            assert.equal(item.error.code, code, `${item.path}: ${item.error.message}`)
          } else {
            assert.ok(!('error' in item), `${item.path} failed: ${'error' in item ? item.error.code : ''}`)
            assert.ok(item.data.equals(await readFile(s.source(item.path))), `${item.path}: wrong bytes`)
          }
        }
      })
    })

    s.test('getMany(): an item larger than announced fails alone with E_SIZE_MISMATCH, and the items after it still arrive', {skip: notDeclared}, async () => {
      const files = small(12)
      // Announced one byte short (the file grew since it was listed), then half, then at size 0: the first, the middle, the last but one.
      const short = new Map([
        [at(files, 0).path, at(files, 0).size - 1],
        [at(files, 6).path, at(files, 6).size >> 1],
        [at(files, 10).path, 0],
      ])
      const items = files.map((f) => ({path: f.path, size: short.get(f.path) ?? f.size}))
      await batching({}, async ({client}) => {
        const got: BatchItem[] = []
        for await (const item of client.getMany(FOLDER, items)) got.push(item)
        assert.deepEqual(
          got.map((i) => i.path),
          items.map((i) => i.path),
          'one result per item, in the order asked',
        )
        for (const item of got) {
          if (short.has(item.path)) {
            assert.ok('error' in item, `${item.path} (larger than announced) was answered with bytes`)
            assert.equal(item.error.code, 'E_SIZE_MISMATCH', `${item.path}: ${item.error.message}`)
          } else {
            assert.ok(!('error' in item), `${item.path} failed after an oversized item: ${'error' in item ? item.error.code : ''}`)
            assert.ok(item.data.equals(await readFile(s.source(item.path))), `${item.path}: wrong bytes`)
          }
        }
        // The client still works after such a reply.
        const again: BatchItem[] = []
        for await (const item of client.getMany(FOLDER, files.slice(0, 3))) again.push(item)
        assert.deepEqual(
          again.map((i) => ('error' in i ? i.error.code : i.data.length)),
          files.slice(0, 3).map((f) => f.size),
        )
      })
    })

    s.test(
      'fetchFiles lands many small files through getMany(), each checked, with no get() and no part file',
      {timeout: 300_000, skip: notDeclared},
      async () => {
        const dest = await s.fx.makeDest()
        const files = [...small(s.manyFiles), ...HOSTILE_NAMES.map(s.entry)]
        await batching({}, async ({client}) => {
          const c = counting(client)
          const result = await fetchFiles({client: c, batch: true, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 4})
          assert.equal(result.fetched, files.length)
          assert.equal(c.gets, 0, 'core fell back to get() although the transport batches')
          assert.ok(c.batches >= 1 && c.batches < files.length, `${c.batches} batches for ${files.length} files`)
        })
        assert.deepEqual(await listTree(dest), files.map((f) => f.path).sort())
        for (const f of files) assert.ok(await sameBytes(s.source(f.path), path.join(dest, f.path)), `${f.path} differs`)
      },
    )

    s.test('in a batch, a wrong sha256 is E_HASH_MISMATCH and a body larger than announced E_SIZE_MISMATCH; neither lands', {skip: notDeclared}, async () => {
      const files = small(40)
      const victim = at(files, 20)
      const spoiled: Array<[string, FileEntry, 'E_HASH_MISMATCH' | 'E_SIZE_MISMATCH']> = [
        ['hash', {...victim, sha256: 'f'.repeat(64)}, 'E_HASH_MISMATCH'],
        ['size', {...victim, size: victim.size - 1}, 'E_SIZE_MISMATCH'],
      ]
      await batching({}, async ({client}) => {
        for (const [what, bad, code] of spoiled) {
          const dest = await s.fx.makeDest()
          const list = files.map((f) => (f.path === bad.path ? bad : f))
          await rejectsWith(
            fetchFiles({client: counting(client), batch: true, folder: FOLDER, files: list, mode: 'land', root: dest, concurrency: 1, retries: 1}),
            code,
          )
          await assertNoLeftovers(dest, [bad.path])
          // Whatever did land is whole and right: each file is checked before it lands, not the batch.
          for (const p of await listTree(dest)) assert.ok(await sameBytes(s.source(p), path.join(dest, p)), `${what}: ${p} landed with other bytes`)
        }
      })
    })

    s.test('a batch cut midway lands nothing partial, and a retry completes it', {skip: notDeclared}, async () => {
      const files = small(40)
      const cut = at(files, 25).path
      const cutPlan = (times: number) => ({plan: {drop: new Map([[cut, {times, afterBytes: 3}]])}})
      const dest = await s.fx.makeDest()
      await batching(cutPlan(1000), async ({client}) => {
        await rejectsWith(fetchFiles({client: counting(client), batch: true, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 1, retries: 1}), [
          'E_CONNECTION_LOST',
          'E_TRANSFER',
        ])
      })
      await assertNoLeftovers(dest, [cut])
      for (const p of await listTree(dest)) assert.ok(await sameBytes(s.source(p), path.join(dest, p)), `${p} landed with other bytes`)

      const again = await s.fx.makeDest()
      const events: FetchEvent[] = []
      await batching(cutPlan(1), async ({client}) => {
        const c = counting(client)
        await fetchFiles({client: c, batch: true, folder: FOLDER, files, mode: 'land', root: again, concurrency: 1, retries: 2, onEvent: (e) => events.push(e)})
        assert.equal(c.gets, 0, 'the retry left the batch path')
      })
      assert.ok(
        events.some((e) => e.event === 'retry'),
        'the cut batch was not retried',
      )
      assert.deepEqual(await listTree(again), files.map((f) => f.path).sort())
      for (const f of files) assert.ok(await sameBytes(s.source(f.path), path.join(again, f.path)), `${f.path} differs`)
    })
  })
}
