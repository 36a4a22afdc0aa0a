// End to end: a FilesUpdated larger than the host's whole control budget (as a 1,000,000-file folder's is) is taken, as the reply to the host's own list.
import assert from 'node:assert/strict'
import {mkdir, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Peer, tempDir, treeHashes, waitFor} from './harness.js'

const FOLDER = 'large-list'
/** The smallest control budget serve takes (FPEER_CONTROL_BUFFER_BYTES). */
const BUDGET = 1 << 20
/** About 120 bytes a line in the FilesUpdated (name, got=1, mtime, sha256, size): 1.6 MB, well past BUDGET. */
const FILES = 14_000

describe('a reply larger than the control budget', () => {
  let work: string
  let shared: string
  let host: Peer
  let requester: Peer

  before(async () => {
    work = await tempDir()
    shared = path.join(work, 'shared')
    for (let d = 0; d < FILES / 1000; d++) {
      await mkdir(path.join(shared, `d${d}`), {recursive: true})
      for (let i = 0; i < 1000; i++) await writeFile(path.join(shared, `d${d}`, `f${String(i).padStart(4, '0')}.txt`), `${d}:${i}\n`)
    }
    host = await Peer.create('127.0.40.1', {FPEER_CONTROL_BUFFER_BYTES: String(BUDGET)})
    requester = await Peer.create('127.0.40.2')
  })

  after(async () => {
    await requester?.destroy()
    await host?.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('is held in the reply budget: the request completes, every file checked back, and serve still answers', async () => {
    await host.serve([shared, '--name', FOLDER])
    const id = await requester.id()
    assert.equal((await host.run(['allow', FOLDER, id])).code, 0)
    const into = path.join(work, 'copy')
    const r = await requester.run(['request', host.control, FOLDER, '--into', into, '--bind', requester.address, '--json'], {timeoutMs: 600_000})
    // Without the reply budget the host refused the FilesUpdated (E_BUSY) and the request failed.
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.deepEqual(await treeHashes(into), await treeHashes(shared))
    // The host logs its check before it confirms; the line may reach us just after the request ends.
    const checked = () => /verified peer copy.*files=(\d+)/.exec(host.serveStderr)?.[1]
    await waitFor('the host to log its check', () => checked() !== undefined)
    assert.equal(Number(checked()), FILES, 'every file was checked back')
    // Still serving: the folder's list is answered again (a dry run of the same request, from the folder the requester holds now).
    assert.equal(host.serveProcess?.exitCode, null)
    const again = await requester.run(['request', host.control, FOLDER, '--into', into, '--bind', requester.address, '--dry-run', '--json'], {
      timeoutMs: 600_000,
    })
    assert.equal(again.code, 0, again.stdout + again.stderr)
  })
})
