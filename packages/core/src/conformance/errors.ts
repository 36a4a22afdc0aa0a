// The conformance suite's errors cases: failures reach the client with their typed codes, and a failed fetch leaves nothing behind.
import assert from 'node:assert/strict'
import {readFile} from 'node:fs/promises'
import path from 'node:path'
import {describe} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import {fetchFiles, type FetchEvent} from '../transfer/fetch.js'
import {FLAKY_FILE, FOLDER, NAME, SECRET_FILE, listTree, sameBytes} from './fixture.js'
import {assertNoLeftovers, closedPort, readAll, rejectsWith, type Suite} from './context.js'

/** Registers the errors cases. */
export function errorsCases(s: Suite): void {
  const {transport, sup} = s
  describe('errors', () => {
    s.test('a missing file is E_NOT_FOUND and nothing is landed', {}, async () => {
      const dest = await s.fx.makeDest()
      await s.peer({}, async ({client}) => {
        await rejectsWith(client.get(FOLDER, 'no such file.txt'), 'E_NOT_FOUND')
        const files = [{path: 'missing/nope.txt', size: 3, sha256: 'a'.repeat(64)}]
        await rejectsWith(
          fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 1, retries: 1, resume: sup.resume}),
          'E_NOT_FOUND',
        )
      })
      await assertNoLeftovers(dest, ['missing/nope.txt'])
    })

    s.test('an unknown folder is E_NOT_FOUND', {}, async () => {
      await s.peer({}, async ({client}) => {
        await rejectsWith(client.get('no-such-folder', NAME), 'E_NOT_FOUND')
      })
    })

    s.test('an unreadable file is E_ACCESS and nothing is landed', {}, async () => {
      const dest = await s.fx.makeDest()
      await s.peer({plan: {unreadable: new Set([SECRET_FILE])}}, async ({client}) => {
        await rejectsWith(client.get(FOLDER, SECRET_FILE), 'E_ACCESS')
        await rejectsWith(
          fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files: [s.entry(SECRET_FILE)], mode: 'land', root: dest, concurrency: 1, retries: 1}),
          'E_ACCESS',
        )
      })
      await assertNoLeftovers(dest, [SECRET_FILE])
    })

    s.test('a read failing mid-file reaches the client as E_CONNECTION_LOST, not a clean short end', {}, async () => {
      await s.peer({plan: {drop: new Map([[FLAKY_FILE, {times: 1, afterBytes: 1 << 20}]])}}, async ({client}) => {
        await rejectsWith(async () => {
          const {stream} = await client.get(FOLDER, FLAKY_FILE)
          await readAll(stream)
        }, 'E_CONNECTION_LOST')
        // The client must still work after a dropped transfer.
        const {stream} = await client.get(FOLDER, FLAKY_FILE)
        assert.ok((await readAll(stream)).equals(await readFile(s.source(FLAKY_FILE))))
      })
    })

    s.test('fetchFiles retries a dropped file and lands it intact, leaving no part file', {}, async () => {
      const dest = await s.fx.makeDest()
      const events: FetchEvent[] = []
      await s.peer({plan: {drop: new Map([[FLAKY_FILE, {times: 2, afterBytes: 1 << 20}]])}}, async ({client}) => {
        await fetchFiles({
          client,
          batch: s.sup.batch,
          folder: FOLDER,
          files: [s.entry(FLAKY_FILE)],
          mode: 'land',
          root: dest,
          concurrency: 1,
          retries: 3,
          resume: sup.resume,
          onEvent: (e) => events.push(e),
        })
      })
      assert.equal(events.filter((e) => e.event === 'retry').length, 2, 'expected two retries')
      assert.ok(await sameBytes(s.source(FLAKY_FILE), path.join(dest, FLAKY_FILE)))
      await assertNoLeftovers(dest)
    })

    s.test('a fetch that keeps failing leaves no partial target (and no part file unless resuming)', {}, async () => {
      const dest = await s.fx.makeDest()
      await s.peer({plan: {drop: new Map([[FLAKY_FILE, {times: 1000, afterBytes: 1 << 20}]])}}, async ({client}) => {
        await rejectsWith(
          fetchFiles({
            client,
            batch: s.sup.batch,
            folder: FOLDER,
            files: [s.entry(FLAKY_FILE)],
            mode: 'land',
            root: dest,
            concurrency: 1,
            retries: 1,
            resume: false,
          }),
          'E_CONNECTION_LOST',
        )
        await assertNoLeftovers(dest, [FLAKY_FILE])
        if (sup.resume) {
          // With resume on, core keeps the part file on purpose so that the next run continues it.
          await rejectsWith(
            fetchFiles({
              client,
              batch: s.sup.batch,
              folder: FOLDER,
              files: [s.entry(FLAKY_FILE)],
              mode: 'land',
              root: dest,
              concurrency: 1,
              retries: 1,
              resume: true,
            }),
            'E_CONNECTION_LOST',
          )
          assert.ok(!(await listTree(dest)).includes(FLAKY_FILE), 'a partial target was landed')
        }
      })
    })

    s.test('a wrong sha256 is E_HASH_MISMATCH and nothing is landed', {}, async () => {
      const dest = await s.fx.makeDest()
      const name = NAME
      await s.peer({}, async ({client}) => {
        const files = [{...s.entry(name), sha256: 'f'.repeat(64)}]
        await rejectsWith(
          fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 1, resume: sup.resume}),
          'E_HASH_MISMATCH',
        )
        await rejectsWith(fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files, mode: 'verify', concurrency: 1}), 'E_HASH_MISMATCH')
      })
      assert.deepEqual(await listTree(dest), [])
    })

    s.test('connecting to a port nobody listens on is E_CONNECT', {}, async () => {
      const port = await closedPort()
      await rejectsWith(async () => {
        const client = await s.connect({host: '127.0.0.1', port, identity: new Identity(generateKeyPair()), concurrency: 1, timeoutMs: s.timeoutMs})
        try {
          await client.get(FOLDER, NAME)
        } finally {
          await client.close()
        }
      }, 'E_CONNECT')
    })
  })
}
