// The conformance suite's resume cases: resuming: get() from an offset, and fetchFiles continuing a part file.
import assert from 'node:assert/strict'
import {readFile} from 'node:fs/promises'
import path from 'node:path'
import {describe} from 'node:test'
import {PART_PREFIX} from '../fs/safe-path.js'
import {fetchFiles} from '../transfer/fetch.js'
import {FLAKY_FILE, FOLDER, RESUME_FILE, listTree, sameBytes} from './fixture.js'
import {assertNoLeftovers, at, readAll, rejectsWith, type Suite} from './context.js'

/** Registers the resume cases. */
export function resumeCases(s: Suite): void {
  const {transport, sup} = s
  describe('resume', () => {
    s.test(
      'get() with an offset returns exactly the bytes from that offset',
      {skip: !sup.resume && 'transport cannot resume (supports.resume false)'},
      async () => {
        const whole = await readFile(s.source(RESUME_FILE))
        await s.peer({}, async ({client}) => {
          for (const offset of [0, 1, 65_536, 700_001, whole.length - 1, whole.length]) {
            const {stream} = await client.get(FOLDER, RESUME_FILE, {offset})
            const got = await readAll(stream)
            assert.equal(got.length, whole.length - offset, `length at offset ${offset}`)
            assert.ok(got.equals(whole.subarray(offset)), `bytes at offset ${offset}`)
          }
        })
      },
    )

    s.test('fetchFiles resumes a part file left by an earlier attempt', {skip: !sup.resume && 'transport cannot resume (supports.resume false)'}, async () => {
      const dest = await s.fx.makeDest()
      // Let the first run fail for good (resume on keeps the part), then a second run completes it.
      await s.peer({plan: {drop: new Map([[FLAKY_FILE, {times: 2, afterBytes: 1 << 20}]])}}, async ({client, source: served}) => {
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
        const parts = (await listTree(dest)).filter((p) => p.startsWith(PART_PREFIX))
        const before = served.opens.length
        await fetchFiles({client, batch: s.sup.batch, folder: FOLDER, files: [s.entry(FLAKY_FILE)], mode: 'land', root: dest, concurrency: 1, resume: true})
        const resumed = served.opens.slice(before)
        assert.equal(resumed.length, 1)
        // Only when the first attempt got bytes onto disk is there something to resume from.
        if (parts.length > 0) assert.ok((at(resumed, 0).range?.start ?? 0) > 0, 'the second run started from zero although a part file was there')
      })
      assert.ok(await sameBytes(s.source(FLAKY_FILE), path.join(dest, FLAKY_FILE)))
      await assertNoLeftovers(dest)
    })
  })
}
