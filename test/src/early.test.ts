// End to end: the host checks files back while the requester still fetches the rest (early=1, protocol 4.9), and the large file while it is fetched (follow=1, 4.10), over HTTP, FTP and SFTP, through the fpeer binary.
import assert from 'node:assert/strict'
import {mkdir, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Peer, linkPlugins, oclifDirs, pseudoRandom, tempDir, treeHashes, waitFor} from './harness.js'

const FOLDER = 'early'
/**
 * Enough files that the fetch cannot end within the requester's first 50 ms of gathering
 * (each file is written, hash-checked and renamed), so some are announced early on any
 * machine; a busy one only makes the fetch longer.
 */
const SMALL = 1500
const BIG = 8 * 1024 * 1024

describe('early fetch-back (protocol 4.9, 4.10) through the fpeer binary', () => {
  let work: string
  let shared: string
  let env: NodeJS.ProcessEnv
  let host: Peer
  const requesters: Peer[] = []

  before(async () => {
    work = await tempDir()
    shared = path.join(work, 'shared')
    for (let d = 0; d < 15; d++) {
      await mkdir(path.join(shared, `d${d}`), {recursive: true})
      for (let i = 0; i < SMALL / 15; i++) await writeFile(path.join(shared, `d${d}`, `f${i}.txt`), pseudoRandom(4096, d * 1000 + i + 1))
    }
    await writeFile(path.join(shared, 'big.bin'), pseudoRandom(BIG, 99))
    env = oclifDirs(path.join(work, 'oclif'))
    await linkPlugins(env, ['sftp', 'ftp'])
    host = await Peer.create('127.0.0.1', env)
  })

  after(async () => {
    for (const p of requesters) await p.destroy()
    await host?.destroy()
    await rm(work, {recursive: true, force: true})
  })

  for (const protocol of ['HTTP', 'FTP', 'SFTP']) {
    it(`over ${protocol}: the host checked files back before FilesUpdated, every byte was checked, both list each other`, async () => {
      const requester = await Peer.create(`127.0.0.${requesters.length + 2}`, env)
      requesters.push(requester)
      const id = await requester.id()
      if (!host.ready) await host.serve([shared, '--name', FOLDER])
      assert.equal((await host.run(['allow', FOLDER, id])).code, 0)
      const into = path.join(work, `copy-${protocol}`)
      const r = await requester.run(['request', host.control, FOLDER, '--into', into, '--bind', requester.address, '--protocol', protocol, '--json'], {
        timeoutMs: 300_000,
      })
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assert.equal(JSON.parse(r.stdout).protocol, protocol)
      assert.deepEqual(await treeHashes(into), await treeHashes(shared))
      // The host logs its check before it confirms; the log line may reach us just after the request ends.
      const line = () => host.serveStderr.split('\n').find((l) => l.includes('verified peer copy') && l.includes(requester.address))
      await waitFor('the host to log its check', () => line() !== undefined)
      const early = Number(/early=(\d+)/.exec(line()!)?.[1])
      const files = Number(/files=(\d+)/.exec(line()!)?.[1])
      assert.equal(files, SMALL + 1, 'every file was checked back')
      assert.ok(early >= 1 && early <= SMALL + 1, `files checked early: ${early}`)
      // big.bin (8 MiB) was announced as it began to come, and read back as it grew (4.10).
      assert.equal(Number(/followed=(\d+)/.exec(line()!)?.[1]), 1, line())
      assert.deepEqual(((await host.json(['peers', FOLDER])).peers as Array<{id: string}>).map((p) => p.id).includes(id), true)
      assert.equal(((await requester.json(['peers', FOLDER])).peers as Array<{address: string}>)[0]?.address, '127.0.0.1')
    })
  }
})
