// The conformance suite's serving cases: the served tree arrives intact: hostile names, empty, large and many files, and server.close().
import assert from 'node:assert/strict'
import {readFile} from 'node:fs/promises'
import path from 'node:path'
import {describe} from 'node:test'
import {Identity, generateKeyPair} from '../identity.js'
import {fetchFiles} from '../transfer/fetch.js'
import {EMPTY_FILE, FOLDER, HOSTILE_NAMES, LARGE_FILE, MANY_DIR, listTree, sameBytes} from './fixture.js'
import {connectOptions, serveFixture} from './peer.js'
import {assertNoLeftovers, label, readAll, rejectsWith, type Suite} from './context.js'

/** Registers the serving cases. */
export function servingCases(s: Suite): void {
  const {transport, sup} = s
  describe('serving', () => {
    s.test('serves on the requested host at a free port, and close() is safe twice', {}, async () => {
      const {server} = await serveFixture(transport, s.fx)
      try {
        assert.equal(server.host, '127.0.0.1')
        assert.ok(Number.isInteger(server.port) && server.port > 0, `port ${server.port}`)
      } finally {
        await server.close()
        await server.close()
      }
    })

    describe('hostile names', () => {
      for (const name of HOSTILE_NAMES) {
        s.test(`get() returns the exact bytes of ${label(name)}`, {}, async () => {
          await s.peer({}, async ({client}) => {
            const {stream} = await client.get(FOLDER, name)
            assert.ok((await readAll(stream)).equals(await readFile(s.source(name))))
          })
        })
      }

      s.test('fetchFiles lands them all and the trees match byte for byte', {}, async () => {
        const dest = await s.fx.makeDest()
        await s.peer({}, async ({client}) => {
          const result = await fetchFiles({
            client,
            batch: s.sup.batch,
            folder: FOLDER,
            files: HOSTILE_NAMES.map(s.entry),
            mode: 'land',
            root: dest,
            concurrency: 4,
            resume: sup.resume,
          })
          assert.equal(result.fetched, HOSTILE_NAMES.length)
        })
        assert.deepEqual(await listTree(dest), [...HOSTILE_NAMES].sort())
        for (const name of HOSTILE_NAMES) assert.ok(await sameBytes(s.source(name), path.join(dest, ...name.split('/'))), `${name} differs`)
      })

      s.test('fetchFiles verifies them all without writing anything', {}, async () => {
        await s.peer({}, async ({client}) => {
          const result = await fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files: HOSTILE_NAMES.map(s.entry), mode: 'verify', concurrency: 4})
          assert.equal(result.fetched, HOSTILE_NAMES.length)
          assert.equal(
            result.bytes,
            HOSTILE_NAMES.reduce((n, p) => n + s.entry(p).size, 0),
          )
        })
      })
    })

    s.test('lands an empty file', {}, async () => {
      const dest = await s.fx.makeDest()
      await s.peer({}, async ({client}) => {
        const {stream} = await client.get(FOLDER, EMPTY_FILE)
        assert.equal((await readAll(stream)).length, 0)
        await fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files: [s.entry(EMPTY_FILE)], mode: 'land', root: dest, concurrency: 1})
      })
      assert.deepEqual(await listTree(dest), [EMPTY_FILE])
      assert.equal((await readFile(path.join(dest, EMPTY_FILE))).length, 0)
    })

    s.test(`lands a large file (${Math.round(s.largeBytes / (1 << 20))} MiB) and verifies it`, {timeout: 300_000}, async () => {
      const dest = await s.fx.makeDest()
      await s.peer({}, async ({client}) => {
        const result = await fetchFiles({
          client,
          batch: s.sup.batch,
          folder: FOLDER,
          files: [s.entry(LARGE_FILE)],
          mode: 'land',
          root: dest,
          concurrency: 1,
          resume: sup.resume,
        })
        assert.equal(result.bytes, s.largeBytes)
        await fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files: [s.entry(LARGE_FILE)], mode: 'verify', concurrency: 1})
      })
      assert.ok(await sameBytes(s.source(LARGE_FILE), path.join(dest, LARGE_FILE)))
      await assertNoLeftovers(dest)
    })

    s.test(`lands ${s.manyFiles} small files with concurrency ${s.concurrency}`, {timeout: 300_000}, async () => {
      const dest = await s.fx.makeDest()
      const files = [...s.fx.entries.values()].filter((e) => e.path.startsWith(`${MANY_DIR}/`))
      assert.equal(files.length, s.manyFiles)
      await s.peer({concurrency: s.concurrency}, async ({client}) => {
        const result = await fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files, mode: 'land', root: dest, concurrency: s.concurrency})
        assert.equal(result.fetched, s.manyFiles)
      })
      assert.deepEqual(await listTree(dest), files.map((f) => f.path).sort())
      for (const f of files) assert.ok(await sameBytes(s.source(f.path), path.join(dest, f.path)), `${f.path} differs`)
    })

    s.test('server.close() ends a transfer in flight and resolves; the client sees the loss', {}, async () => {
      const served = await serveFixture(transport, s.fx)
      const client = await s.connect(connectOptions(served, new Identity(generateKeyPair()), {}, s.timeoutMs))
      try {
        const {stream} = await client.get(FOLDER, LARGE_FILE)
        const it = stream[Symbol.asyncIterator]()
        await it.next()
        let timer: NodeJS.Timeout | undefined
        const closed = await Promise.race([
          served.server.close().then(() => true),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(false), 10_000)
          }),
        ])
        clearTimeout(timer)
        assert.ok(closed, 'server.close() did not resolve within 10 s while a transfer was open')
        await rejectsWith(async () => {
          for (let r = await it.next(); !r.done; r = await it.next());
          throw new Error('the stream ended cleanly although the server closed mid-file')
        }, ['E_CONNECTION_LOST', 'E_TIMEOUT'])
      } finally {
        await client.close()
        await client.close()
        await served.server.close()
      }
    })
  })
}
