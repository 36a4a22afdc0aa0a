// The conformance suite's abort cases: an AbortSignal stops a fetch at once, leaves no part file and lets go of the server's file.
import assert from 'node:assert/strict'
import {describe} from 'node:test'
import type {ErrorCode} from '../errors.js'
import {fetchFiles} from '../transfer/fetch.js'
import {FOLDER, HOSTILE_NAMES, LARGE_FILE, MANY_DIR, NAME, listTree} from './fixture.js'
import {assertNoLeftovers, readAll, rejectsWith, until, type Suite} from './context.js'

/**
 * What an aborted fetch ends with: E_TRANSFER ("aborted") is what transports and
 * net/errors-map.ts say today, E_INTERRUPTED what a caller's own reason says. Never
 * E_TIMEOUT: that would mean the signal was ignored until the idle timeout fired.
 */
const ABORTED: readonly ErrorCode[] = ['E_TRANSFER', 'E_INTERRUPTED']

/** Bytes of the large file the server sends before it stops sending (and holds the transfer open). */
const STALL_AFTER = 1 << 20

/** Registers the abort cases. */
export function abortCases(s: Suite): void {
  const {sup} = s
  describe('abort', () => {
    s.test('an already-aborted signal moves no byte and lands nothing', {}, async () => {
      const dest = await s.fx.makeDest()
      const ac = new AbortController()
      ac.abort()
      const small = [...s.fx.entries.values()].filter((e) => e.path.startsWith(`${MANY_DIR}/`)).slice(0, 20)
      const files = [s.entry(LARGE_FILE), ...HOSTILE_NAMES.map(s.entry), ...small]
      await s.peer({}, async ({client, source: served}) => {
        await rejectsWith(
          fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 4, resume: sup.resume, signal: ac.signal}),
          ABORTED,
        )
        assert.equal(served.opens.length, 0, 'the server opened a file for a fetch aborted before it began')
      })
      assert.deepEqual(await listTree(dest), [])
    })

    for (const resume of sup.resume ? [false, true] : [false]) {
      s.test(
        `aborting mid-file ends fetchFiles with its code, not a timeout; ${resume ? 'with resume, no target is landed' : 'no part file is left'}; the server lets go`,
        {},
        async () => {
          const dest = await s.fx.makeDest()
          const ac = new AbortController()
          await s.peer({plan: {stall: new Map([[LARGE_FILE, STALL_AFTER]])}}, async ({client, source: served}) => {
            const fetching = fetchFiles({
              client,
              batch: s.sup.batch,
              folder: FOLDER,
              files: [s.entry(LARGE_FILE)],
              mode: 'land',
              root: dest,
              concurrency: 1,
              retries: 0,
              resume,
              signal: ac.signal,
              onEvent: (e) => {
                // The first bytes are in: the transfer is under way, and the server holds it open.
                if (e.event === 'bytes') ac.abort()
              },
            })
            await rejectsWith(fetching, ABORTED)
            assert.equal(served.stalls.held, 1, 'the server never reached the point where it stops sending')
            // The server's side of the transfer ends too: no connection is left reading the file.
            await until(() => served.stalls.open === 0, 'the server still has the aborted transfer open')
            // And the client still works.
            const name = NAME
            const {stream} = await client.get(FOLDER, name)
            assert.equal((await readAll(stream)).length, s.entry(name).size)
          })
          if (resume) assert.ok(!(await listTree(dest)).includes(LARGE_FILE), 'a partial target was landed')
          else await assertNoLeftovers(dest, [LARGE_FILE])
        },
      )
    }
  })
}
