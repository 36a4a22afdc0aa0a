// Seed step 8: a busy host hands a BePeerRequest to another confirmed peer, which sends FilesToGet from its own address.
import assert from 'node:assert/strict'
import {mkdir, rm, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {
  Identity,
  TransportRegistry,
  createLogger,
  defaultTimeouts,
  generateKeyPair,
  issueTicket,
  loadIdentity,
  PeerId,
  requestFolder,
  isFpeerError,
} from '@fpeer/core'
import {httpTransport} from '@fpeer/plugin-http'
import {Peer, tempDir, treeHashes} from './harness.js'

describe('delegation by a busy host', () => {
  let work: string
  let host: Peer
  let delegate: Peer
  let requester: Peer
  let shared: string
  const H = '127.0.16.1'
  const D = '127.0.16.2'
  const R = '127.0.16.3'

  before(async () => {
    work = await tempDir()
    shared = path.join(work, 'docs')
    await mkdir(path.join(shared, 'sub'), {recursive: true})
    await writeFile(path.join(shared, 'a.txt'), 'alpha\n')
    await writeFile(path.join(shared, 'sub', 'b.txt'), 'beta\n')
    host = await Peer.create(H, {FPEER_SYNC_INTERVAL_MS: '3600000'})
    delegate = await Peer.create(D, {FPEER_SYNC_INTERVAL_MS: '3600000'})
    requester = await Peer.create(R)
    await host.run(['share', shared, '--name', 'docs', '--allow', await delegate.id(), '--allow', await requester.id()])
    await host.serve([], {}, {ports: 'default'})
    await delegate.serve([], {}, {ports: 'default'})
    const r = await delegate.run(['request', `${H}:7734`, 'docs', '--into', path.join(work, 'delegate'), '--bind', D, '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    // Now the host is busy: every further request is handed to a confirmed peer.
    await host.stop()
    await host.serve(['--max-handshakes', '0'], {}, {ports: 'default'})
  })
  after(async () => {
    for (const p of [host, delegate, requester]) await p.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('the requester asks the host, is handed to the delegate, and is confirmed by it', async () => {
    const hostId = await host.id()
    const delegateId = await delegate.id()
    const into = path.join(work, 'requester')
    const r = await requester.run(['request', `${H}:7734`, 'docs', '--into', into, '--bind', R, '--peer-id', hostId, '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const res = JSON.parse(r.stdout)
    assert.equal(res.delegatedBy, hostId)
    assert.equal(res.host.id, delegateId)
    assert.equal(res.host.address, D, 'the FilesToGet came from the delegate’s own address')
    assert.deepEqual(await treeHashes(into), await treeHashes(shared))
    assert.deepEqual(
      (await requester.json(['peers', 'docs'])).peers.map((p: {id: string}) => p.id),
      [delegateId],
    )
    const dPeers = (await delegate.json(['peers', 'docs'])).peers.map((p: {id: string}) => p.id)
    assert.ok(dPeers.includes(await requester.id()), 'the delegate lists the requester')
  })

  async function direct(identity: Identity, extraMeta: Record<string, string>) {
    const registry = new TransportRegistry()
    registry.add(httpTransport, '@fpeer/plugin-http')
    return requestFolder({
      host: D,
      port: 7734,
      folder: 'docs',
      into: path.join(work, `direct-${Math.random()}`),
      bind: '127.0.16.4',
      identity,
      registry,
      concurrency: 4,
      timeouts: defaultTimeouts(),
      log: createLogger({level: 'error'}),
      extraMeta,
      expectedHost: PeerId.parse(await delegate.id()),
    })
  }

  it('a ticket from a peer that is not a confirmed peer of the folder admits nobody', async () => {
    const stranger = new Identity(generateKeyPair())
    const me = new Identity(generateKeyPair())
    await assert.rejects(
      direct(me, issueTicket(stranger, 'docs', me.id, PeerId.parse(await delegate.id()))),
      (e: unknown) => isFpeerError(e, 'E_NOT_ALLOWED') && (e.details as {peerCode: string}).peerCode === 'E_NOT_ALLOWED',
    )
  })

  it('a genuine ticket issued for another requester is refused', async () => {
    const hostIdentity = await loadIdentity(host.home)
    const thief = new Identity(generateKeyPair())
    const ticket = issueTicket(hostIdentity, 'docs', PeerId.parse(await requester.id()), PeerId.parse(await delegate.id()))
    await assert.rejects(
      direct(thief, ticket),
      (e: unknown) => isFpeerError(e, 'E_PEER_ERROR') && (e.details as {peerCode: string}).peerCode === 'E_BAD_SIGNATURE',
    )
  })
})
