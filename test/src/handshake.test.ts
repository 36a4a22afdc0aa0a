// End to end: two peers on 127.0.0.1 and 127.0.0.2 run the whole "Becoming a Peer" handshake through the fpeer binary.
import assert from 'node:assert/strict'
import {rm} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Identity, generateKeyPair} from '@fpeer/core'
import {Peer, exists, makeTree, tempDir, treeHashes} from './harness.js'

describe('becoming a peer over HTTP, through the fpeer binary', () => {
  let work: string
  let host: Peer
  let requester: Peer
  let shared: string
  let into: string

  before(async () => {
    work = await tempDir()
    shared = path.join(work, 'shared')
    into = path.join(work, 'copy')
    await makeTree(shared)
    host = await Peer.create('127.0.0.1')
    requester = await Peer.create('127.0.0.2')
  })

  after(async () => {
    await host.destroy()
    await requester.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('the requester is confirmed, the trees are identical, and each peerlist lists the other', async () => {
    const requesterId = await requester.id()
    const hostId = await host.id()
    await host.serve([shared, '--name', '00-MainDocuments', '--allow', requesterId])
    const r = await requester.run(['request', host.control, '00-MainDocuments', '--into', into, '--bind', '127.0.0.2', '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const result = JSON.parse(r.stdout)
    assert.equal(result.host.id, hostId)
    assert.equal(result.protocol, 'HTTP')
    assert.equal(result.files.length, 8)
    assert.deepEqual(await treeHashes(into), await treeHashes(shared))

    const hostPeers = await host.json(['peers', '00-MainDocuments'])
    assert.deepEqual(
      hostPeers.peers.map((p: {id: string}) => p.id),
      [requesterId],
    )
    assert.equal(hostPeers.peers[0].address, '127.0.0.2')
    const reqPeers = await requester.json(['peers', '00-MainDocuments'])
    assert.deepEqual(
      reqPeers.peers.map((p: {id: string}) => p.id),
      [hostId],
    )
    assert.equal(reqPeers.peers[0].address, '127.0.0.1')
  })

  it('the peerlists survive a restart of both peers, and the peers still know each other', async () => {
    await host.stop()
    const hostId = await host.id()
    const requesterId = await requester.id()
    await host.serve()
    await requester.serve()
    assert.deepEqual(
      (await host.json(['peers', '00-MainDocuments'])).peers.map((p: {id: string}) => p.id),
      [requesterId],
    )
    assert.deepEqual(
      (await requester.json(['peers', '00-MainDocuments'])).peers.map((p: {id: string}) => p.id),
      [hostId],
    )
    const status = await requester.json(['status'])
    assert.equal(status.folders[0].name, '00-MainDocuments')
    assert.equal(status.folders[0].files, 8)
    // A confirmed peer may ask again after the restart; nothing needs to move.
    const again = await requester.run(['request', host.control, '00-MainDocuments', '--into', into, '--bind', '127.0.0.2', '--json', '--peer-id', hostId])
    assert.equal(again.code, 0, again.stdout + again.stderr)
    const res = JSON.parse(again.stdout)
    assert.equal(res.transfer.fetched, 0)
    assert.equal(res.transfer.skipped, 8)
    await requester.stop()
    await host.stop()
  })

  it('a peer that is not allowed is refused with a stable code and exit code', async () => {
    const stranger = await Peer.create('127.0.0.3')
    try {
      await host.serve()
      const r = await stranger.run(['request', host.control, '00-MainDocuments', '--into', path.join(work, 'stranger'), '--bind', '127.0.0.3', '--json'])
      assert.equal(r.code, 3)
      // The peer's own refusal code, not a generic E_REFUSED (issue 12): scripts test one code per cause.
      assert.equal(JSON.parse(r.stdout).error.code, 'E_NOT_ALLOWED')
      assert.equal(JSON.parse(r.stdout).error.details.peerCode, 'E_NOT_ALLOWED')
    } finally {
      await host.stop()
      await stranger.destroy()
    }
  })

  it('a wrong --peer-id refuses the host before any file lands', async () => {
    const fresh = await Peer.create('127.0.0.4')
    const dest = path.join(work, 'wrong-host')
    try {
      assert.equal((await host.run(['allow', '00-MainDocuments', await fresh.id()])).code, 0)
      await host.serve()
      const wrongId = new Identity(generateKeyPair()).id.toString()
      const r = await fresh.run(['request', host.control, '00-MainDocuments', '--into', dest, '--bind', '127.0.0.4', '--json', '--peer-id', wrongId])
      assert.equal(r.code, 5, r.stdout + r.stderr)
      assert.equal(JSON.parse(r.stdout).error.code, 'E_PEER_ID_MISMATCH')
      // Nothing landed, and the --into it created is gone with the failed request (issue 12).
      assert.equal(await exists(dest), false)
      assert.deepEqual((await fresh.json(['status'])).folders, [])
    } finally {
      await host.stop()
      await fresh.destroy()
    }
  })
})
