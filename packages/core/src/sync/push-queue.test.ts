// Unit tests of the push queue: a few pushes in flight per peer, later versions coalesced, retries bounded by distinct versions, one abort listener.
import assert from 'node:assert/strict'
import {getEventListeners} from 'node:events'
import {describe, it} from 'node:test'
import {FpeerError} from '../errors.js'
import type {PeerRecord} from '../store/peerfile.js'
import {silentLogger} from '../transport.js'
import {PushQueue, type PushQueueDeps} from './push-queue.js'
import type {FileVersion} from './version.js'

const PEER: PeerRecord = {id: 'PEER1', address: '127.0.0.2', controlPort: 7734, protocols: ['HTTP'], role: 'member', confirmedAt: ''}
const OTHER: PeerRecord = {...PEER, id: 'PEER2', address: '127.0.0.3'}

/** Versions need no signatures here: the queue only orders and groups them. */
function v(p: string, lamport: number, origin = 'o'): FileVersion {
  return {path: p, deleted: false, sha256: 'a'.repeat(64), size: 1, mtimeMs: 1, lamport, vv: {[origin]: lamport}, origin, sig: ''}
}

/** A deliver whose pushes end when the test says: what it was given, and how many ran at once. */
function gate() {
  const calls: Array<{peer: string; versions: FileVersion[]; end(err?: unknown): void}> = []
  let running = 0
  let most = 0
  const deliver: PushQueueDeps['deliver'] = (_folder, peer, versions) =>
    new Promise<void>((resolve, reject) => {
      running++
      most = Math.max(most, running)
      calls.push({peer: peer.id, versions, end: (err) => (running--, err ? reject(err) : resolve())})
    })
  return {calls, deliver, most: () => most}
}

/** Lets settled promises run their handlers (no clock involved). */
const flush = () => new Promise((r) => setImmediate(r))

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 2))
  assert.ok(cond(), `timed out waiting for ${what}`)
}

function queue(deliver: PushQueueDeps['deliver'], options: ConstructorParameters<typeof PushQueue>[1] = {}): PushQueue {
  const q = new PushQueue({log: silentLogger, deliver, peer: (_f, id) => [PEER, OTHER].find((p) => p.id === id)}, options)
  q.start()
  return q
}

describe('PushQueue', () => {
  it('keeps at most the bound in flight per peer and folder, and sends what waited as one push of the newest per path', async () => {
    const g = gate()
    const q = queue(g.deliver, {inFlight: 2})
    const done: Array<Promise<void>> = []
    for (let i = 1; i <= 50; i++) done.push(q.push('F', PEER, [v(`f${i % 5}`, i)]))
    await flush()
    assert.equal(g.calls.length, 2, 'two pushes started, the rest wait')
    assert.deepEqual(q.size, {lanes: 1, pending: 5, inFlight: 2, backingOff: 0})
    g.calls[0]!.end()
    await until('the waiting versions to go', () => g.calls.length === 3)
    // The 48 changes that waited went as one push: one version per path, each the newest.
    assert.deepEqual(g.calls[2]!.versions.map((x) => `${x.path}@${x.lamport}`).sort(), ['f0@50', 'f1@46', 'f2@47', 'f3@48', 'f4@49'])
    g.calls[1]!.end()
    g.calls[2]!.end()
    await Promise.all(done)
    assert.equal(g.most(), 2)
    assert.deepEqual(q.size, {lanes: 0, pending: 0, inFlight: 0, backingOff: 0}, 'an idle lane is removed')
    q.stop()
  })

  it('bounds each peer on its own: a slow peer does not hold another', async () => {
    const g = gate()
    const q = queue(g.deliver, {inFlight: 1})
    const a = q.push('F', PEER, [v('a', 1)])
    void q.push('F', PEER, [v('a', 2)]).catch(() => {})
    const b = q.push('F', OTHER, [v('a', 1)])
    await flush()
    assert.deepEqual(
      g.calls.map((c) => c.peer),
      ['PEER1', 'PEER2'],
    )
    g.calls[1]!.end()
    await b
    g.calls[0]!.end()
    await a
    q.stop()
  })

  it('retries an unreachable peer with backoff, queuing no more than one version per path', async () => {
    const g = gate()
    const q = queue(g.deliver, {inFlight: 2, policy: {retries: 5, baseMs: 5, maxMs: 20}})
    const first = q.push('F', PEER, [v('a', 1), v('b', 1)])
    await flush()
    g.calls[0]!.end(new FpeerError('E_TIMEOUT', 'stalled'))
    await assert.rejects(first, (err: FpeerError) => err.code === 'E_TIMEOUT')
    // While it backs off, 200 more changes of 3 paths arrive: each caller is told at once, nothing is sent.
    for (let i = 2; i < 202; i++) await assert.rejects(q.push('F', PEER, [v(['a', 'b', 'c'][i % 3]!, i)]), (err: FpeerError) => err.code === 'E_TIMEOUT')
    assert.equal(g.calls.length, 1, 'nothing sent during the backoff')
    assert.deepEqual(q.size, {lanes: 1, pending: 3, inFlight: 0, backingOff: 1})
    await until('the retry', () => g.calls.length === 2)
    assert.deepEqual(g.calls[1]!.versions.map((x) => `${x.path}@${x.lamport}`).sort(), ['a@201', 'b@199', 'c@200'])
    g.calls[1]!.end()
    await until('the lane to empty', () => q.size.lanes === 0)
    q.stop()
  })

  it('ends a backoff at once when the peer is known to answer again', async () => {
    const g = gate()
    const q = queue(g.deliver, {policy: {retries: 5, baseMs: 60_000, maxMs: 60_000}})
    const first = q.push('F', PEER, [v('a', 1)])
    await flush()
    g.calls[0]!.end(new FpeerError('E_CONNECT', 'refused'))
    await assert.rejects(first)
    assert.equal(q.size.backingOff, 1)
    q.reachable('F', PEER.id)
    await flush()
    assert.equal(g.calls.length, 2, 'sent without waiting out the minute')
    assert.deepEqual(
      g.calls[1]!.versions.map((x) => x.path),
      ['a'],
    )
    g.calls[1]!.end()
    await until('the lane to empty', () => q.size.lanes === 0)
    q.stop()
  })

  it('gives up after the policy’s retries and forgets the versions', async () => {
    let calls = 0
    const q = queue(
      async () => {
        calls++
        throw new FpeerError('E_CONNECT', 'refused')
      },
      {policy: {retries: 3, baseMs: 1, maxMs: 2}},
    )
    await assert.rejects(q.push('F', PEER, [v('a', 1)]), (err: FpeerError) => err.code === 'E_CONNECT')
    await until('the retries to run out', () => q.size.lanes === 0)
    assert.equal(calls, 4, 'the first push and 3 retries')
    q.stop()
  })

  it('does not retry a refusal, nor anything when retries are off', async () => {
    for (const [retry, code] of [
      [true, 'E_NOT_ALLOWED'],
      [false, 'E_CONNECT'],
    ] as const) {
      let calls = 0
      const q = queue(
        async () => {
          calls++
          throw new FpeerError(code, 'no')
        },
        {retry, policy: {retries: 3, baseMs: 1, maxMs: 1}},
      )
      await assert.rejects(q.push('F', PEER, [v('a', 1)]), (err: FpeerError) => err.code === code)
      await flush()
      assert.deepEqual(q.size, {lanes: 0, pending: 0, inFlight: 0, backingOff: 0})
      assert.equal(calls, 1)
      q.stop()
    }
  })

  it('sends again what is still current when the receiver refused because a file changed here while it fetched', async () => {
    const g = gate()
    const refusal = new FpeerError('E_PEER_ERROR', 'the peer refused: E_NOT_FOUND: gone', {details: {peerCode: 'E_NOT_FOUND'}})
    // `moved` was renamed away here meanwhile (its newer version goes on its own); `kept` still is ours.
    const current: PushQueueDeps['current'] = async (_f, _p, versions) => versions.filter((x) => x.path !== 'moved')
    const q = new PushQueue({log: silentLogger, deliver: g.deliver, peer: () => PEER, current}, {policy: {retries: 3, baseMs: 1, maxMs: 2}})
    q.start()
    const first = q.push('F', PEER, [v('kept', 1), v('moved', 1)])
    await until('the first push', () => g.calls.length === 1)
    g.calls[0]!.end(refusal)
    await assert.rejects(first, (err: FpeerError) => err.code === 'E_PEER_ERROR')
    await until('the push to go again', () => g.calls.length === 2)
    assert.deepEqual(
      g.calls[1]!.versions.map((x) => x.path),
      ['kept'],
    )
    g.calls[1]!.end()
    await until('the lane to empty', () => q.size.lanes === 0)
    q.stop()
  })

  it('sends again what is still current after any failure of a reached peer (busy, a grant run out, a local stall), but not a push it refused', async () => {
    const failures = [
      new FpeerError('E_PEER_ERROR', 'the peer refused: E_BUSY', {details: {peerCode: 'E_BUSY'}}),
      new FpeerError('E_PEER_ERROR', 'the peer refused: E_ACCESS', {details: {peerCode: 'E_ACCESS'}}),
      new FpeerError('E_TRANSFER', 'stalled'),
      new FpeerError('E_BUSY', 'too many connections'),
    ]
    for (const failure of failures) {
      const g = gate()
      const q = new PushQueue(
        {log: silentLogger, deliver: g.deliver, peer: () => PEER, current: async (_f, _p, versions) => versions},
        {policy: {retries: 3, baseMs: 1, maxMs: 2}},
      )
      q.start()
      const first = q.push('F', PEER, [v('a', 1), v('b', 1)])
      await until('the first push', () => g.calls.length === 1)
      g.calls[0]!.end(failure)
      await assert.rejects(first, (err: FpeerError) => err.code === failure.code)
      await until(`the push to go again after ${failure.message}`, () => g.calls.length === 2)
      assert.deepEqual(
        g.calls[1]!.versions.map((x) => x.path),
        ['a', 'b'],
      )
      g.calls[1]!.end()
      await until('the lane to empty', () => q.size.lanes === 0)
      q.stop()
    }
  })

  it('does not send again a refused push whose versions were all superseded, nor any other refusal', async () => {
    for (const peerCode of ['E_NOT_FOUND', 'E_NOT_ALLOWED']) {
      let calls = 0
      const q = new PushQueue(
        {
          log: silentLogger,
          deliver: async () => {
            calls++
            throw new FpeerError('E_PEER_ERROR', 'no', {details: {peerCode}})
          },
          peer: () => PEER,
          // Current when it first goes; superseded here once it was refused.
          current: async (_f, _p, versions) => (calls === 0 ? versions : []),
        },
        {policy: {retries: 3, baseMs: 1, maxMs: 1}},
      )
      q.start()
      await assert.rejects(q.push('F', PEER, [v('a', 1)]), (err: FpeerError) => err.code === 'E_PEER_ERROR')
      await until('the lane to empty', () => q.size.lanes === 0)
      assert.equal(calls, 1, peerCode)
      q.stop()
    }
  })

  it('offers only what is still our newest: a version superseded while it waited for a slot is not sent, and its caller is not failed', async () => {
    const g = gate()
    // `b` at lamport 1 was superseded here (by a version from the peer itself, so not queued to it) while it waited.
    const superseded = new Set(['b@1'])
    const current: PushQueueDeps['current'] = async (_f, _p, versions) => versions.filter((x) => !superseded.has(`${x.path}@${x.lamport}`))
    const q = new PushQueue({log: silentLogger, deliver: g.deliver, peer: () => PEER, current}, {inFlight: 1})
    q.start()
    const first = q.push('F', PEER, [v('a', 1)])
    await until('the first push', () => g.calls.length === 1)
    const second = q.push('F', PEER, [v('b', 1), v('c', 1)])
    const third = q.push('F', PEER, [v('b', 1)])
    g.calls[0]!.end()
    await first
    await until('the second push', () => g.calls.length === 2)
    assert.deepEqual(
      g.calls[1]!.versions.map((x) => x.path),
      ['c'],
    )
    g.calls[1]!.end()
    await Promise.all([second, third])
    // Nothing of `b` alone goes: a push with nothing current is no push.
    superseded.add('d@1')
    await q.push('F', PEER, [v('d', 1)])
    assert.equal(g.calls.length, 2)
    await until('the lane to empty', () => q.size.lanes === 0)
    q.stop()
  })

  it('tells callers still waiting E_INTERRUPTED at stop, and adds one listener to the node’s signal however many pushes run', async () => {
    const g = gate()
    const ctl = new AbortController()
    const q = new PushQueue({log: silentLogger, deliver: g.deliver, peer: () => PEER}, {inFlight: 1})
    q.start(ctl.signal)
    const waiting: Array<Promise<void>> = []
    for (let i = 0; i < 100; i++) waiting.push(q.push('F', PEER, [v(`p${i}`, 1)]))
    assert.equal(getEventListeners(ctl.signal, 'abort').length, 1)
    ctl.abort()
    assert.equal(getEventListeners(ctl.signal, 'abort').length, 0)
    // The one under way ends with the node's signal (here: by hand); the 99 that waited are told at once.
    const results = await Promise.allSettled(waiting.slice(1))
    assert.ok(results.every((r) => r.status === 'rejected' && (r.reason as FpeerError).code === 'E_INTERRUPTED'))
    g.calls[0]!.end()
    await waiting[0]
    await assert.rejects(q.push('F', PEER, [v('late', 1)]), (err: FpeerError) => err.code === 'E_INTERRUPTED')
  })
})
