// What a peer lacks, from its structure: the half of the state exchange that decides what to offer.
import assert from 'node:assert/strict'
import {mkdtemp, rm} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {describe, it} from 'node:test'
import {FpeerError} from '../errors.js'
import {Identity, generateKeyPair} from '../identity.js'
import {Home} from '../store/home.js'
import type {FileRecord, PeerRecord} from '../store/peerfile.js'
import type {FileEntry} from '../wire/types.js'
import {silentLogger} from '../transport.js'
import {type ExchangeDeps, StateExchange, lacking} from './exchange.js'
import type {FolderSync} from './folder.js'
import {OwedForwards} from './owed.js'
import {type FileVersion, signVersion, versionToEntry} from './version.js'

const x = new Identity(generateKeyPair())
const y = new Identity(generateKeyPair())

function v(by: Identity, p: string, lamport: number, vv: Record<string, number>, sha = 'a'.repeat(64), deleted = false): FileVersion {
  return signVersion('F', {path: p, deleted, sha256: deleted ? '' : sha, size: deleted ? 0 : 1, mtimeMs: 1, lamport, vv}, by)
}

function rec(p: string, version?: FileVersion): FileRecord {
  return {path: p, size: 1, mtimeMs: 1, sha256: 'a'.repeat(64), ...(version ? {version} : {})}
}

describe('lacking', () => {
  const X = x.id.compact
  const Y = y.id.compact
  const x1 = v(x, 'f', 1, {[X]: 1})
  const x2 = v(x, 'f', 2, {[X]: 2})
  const yc = v(y, 'f', 2, {[Y]: 2}, 'b'.repeat(64))
  const gone = v(x, 'g', 3, {[X]: 3}, '', true)
  const cases: Array<{name: string; theirs: FileEntry[]; ours: FileRecord[]; offered: string[]}> = [
    {name: 'the same version: nothing', theirs: [versionToEntry(x2)], ours: [rec('f', x2)], offered: []},
    {name: 'they hold an older one: ours', theirs: [versionToEntry(x1)], ours: [rec('f', x2)], offered: ['f@2']},
    {name: 'they hold a newer one: nothing', theirs: [versionToEntry(x2)], ours: [rec('f', x1)], offered: []},
    {name: 'they lack the path: ours', theirs: [], ours: [rec('f', x1)], offered: ['f@1']},
    {name: 'they hold only the original: ours', theirs: [{path: 'f', size: 1, sha256: 'a'.repeat(64)}], ours: [rec('f', x1)], offered: ['f@1']},
    {name: 'concurrent edits: ours, as a conflict to settle there', theirs: [versionToEntry(yc)], ours: [rec('f', x2)], offered: ['f@2']},
    {name: 'our original (no version): nothing', theirs: [], ours: [rec('f')], offered: []},
    {name: 'a deletion of a path they never had: nothing', theirs: [], ours: [rec('g', gone)], offered: []},
    {name: 'a deletion of a path they hold: ours', theirs: [{path: 'g', size: 1, sha256: 'a'.repeat(64)}], ours: [rec('g', gone)], offered: ['g@3']},
    {
      name: 'a line with a damaged version: ours, the peer decides',
      theirs: [{path: 'f', size: 1, sha256: 'a'.repeat(64), ext: {ver: 'x', origin: X, osig: ''}}],
      ours: [rec('f', x1)],
      offered: ['f@1'],
    },
  ]
  for (const c of cases) {
    it(c.name, () => {
      const got = lacking(c.theirs, new Map(c.ours.map((r) => [r.path, r]))).map((l) => `${l.path}@${l.lamport}`)
      assert.deepEqual(got, c.offered)
    })
  }
})

/** An exchange over an in-memory structure (only `records()` is read from the folder here; applying is the pull's business), with one peer. */
function exchangeOver(
  records: Map<string, FileRecord>,
  owed: OwedForwards,
  peer: PeerRecord,
  deps: Pick<ExchangeDeps, 'pull' | 'push'> & Partial<ExchangeDeps>,
): StateExchange {
  return new StateExchange({
    log: silentLogger,
    sync: () => ({records: async () => records}) as unknown as FolderSync,
    peers: () => [peer],
    owed: () => owed,
    ...deps,
  })
}

describe('StateExchange.withPeer', () => {
  const X = x.id.compact
  const peer = {id: 'PEER', address: '127.0.0.1', controlPort: 7734, protocols: ['HTTP'], role: 'member' as const, confirmedAt: ''}
  const held = v(x, 'held.txt', 2, {[X]: 2})
  const owedOnly = v(x, 'owed.txt', 3, {[X]: 3})

  async function run(pull: ExchangeDeps['pull']): Promise<{pushed: FileVersion[][]; owedLeft: string[]}> {
    const home = await mkdtemp(path.join(os.tmpdir(), 'fpeer-exchange-'))
    try {
      const owed = new OwedForwards(new Home(home), 'F')
      await owed.owe([peer.id], [owedOnly])
      const records = new Map([held, owedOnly].map((h) => [h.path, rec(h.path, h)]))
      const pushed: FileVersion[][] = []
      const ex = exchangeOver(records, owed, peer, {
        pull,
        push: async (_f, _p, versions) => {
          pushed.push(versions)
          await owed.paid(peer.id, versions)
        },
      })
      await ex.withPeer('F', peer)
      return {pushed, owedLeft: [...((await owed.all()).get(peer.id) ?? [])].map((o) => o.path)}
    } finally {
      await rm(home, {recursive: true, force: true})
    }
  }

  it('offers in one push what the peer lacks and what is owed to it; the owed entry is then cleared', async () => {
    const r = await run(async (_f, _p, seen) => {
      seen([{path: 'other.txt', size: 1, sha256: 'a'.repeat(64)}])
      return 0
    })
    assert.deepEqual(
      r.pushed.map((b) => b.map((o) => o.path).sort()),
      [['held.txt', 'owed.txt']],
    )
    assert.deepEqual(r.owedLeft, [])
  })

  it('one exchange per peer at a time: calls before its pull answered join it, a call after runs it once more', async () => {
    const home = await mkdtemp(path.join(os.tmpdir(), 'fpeer-exchange-'))
    try {
      const owed = new OwedForwards(new Home(home), 'F')
      const records = new Map([held].map((h) => [h.path, rec(h.path, h)]))
      let pulls = 0
      let pushes = 0
      let answer: (() => void) | undefined
      let answered: (() => void) | undefined
      const seenFirst = new Promise<void>((r) => (answered = r))
      const ex = exchangeOver(records, owed, peer, {
        pull: async (_f, _p, seen) => {
          pulls++
          if (pulls === 1) await new Promise<void>((r) => (answer = r))
          seen([{path: 'other.txt', size: 1, sha256: 'a'.repeat(64)}])
          if (pulls === 1) {
            answered!()
            // Held after the answer too, so calls can arrive past it.
            await new Promise<void>((r) => (answer = r))
          }
          return 0
        },
        push: async () => {
          pushes++
        },
      })
      const first = ex.withPeer('F', peer)
      // Before the pull answered: joined, nothing more runs.
      const joined = [ex.withPeer('F', peer), ex.withPeer('F', peer, true)]
      answer!()
      await seenFirst
      assert.equal(pulls, 1)
      // After it answered: one more run, however many ask.
      const later = [ex.withPeer('F', peer), ex.withPeer('F', peer), ex.withPeer('F', peer)]
      answer!()
      await Promise.all([first, ...joined, ...later])
      assert.equal(pulls, 2)
      assert.equal(pushes, 2)
      // Nothing under way now: the next call runs on its own.
      await ex.withPeer('F', peer)
      assert.equal(pulls, 3)
    } finally {
      await rm(home, {recursive: true, force: true})
    }
  })

  it('a peer that holds everything gets no push, and its structure settles what was owed to it', async () => {
    const r = await run(async (_f, _p, seen) => {
      seen([versionToEntry(held), versionToEntry(owedOnly)])
      return 0
    })
    assert.deepEqual(r.pushed, [])
    assert.deepEqual(r.owedLeft, [])
  })

  it('a pull that failed after the peer answered still offers what its structure lacks', async () => {
    const r = await run(async (_f, _p, seen) => {
      seen([versionToEntry(owedOnly)])
      throw new FpeerError('E_ACCESS', 'the grant ran out')
    })
    assert.deepEqual(
      r.pushed.map((b) => b.map((o) => o.path)),
      [['held.txt']],
    )
    assert.deepEqual(r.owedLeft, [])
  })

  it('a peer that cannot be pulled from still gets what is owed to it', async () => {
    const r = await run(async () => {
      throw new FpeerError('E_CONNECT', 'refused')
    })
    assert.deepEqual(
      r.pushed.map((b) => b.map((o) => o.path)),
      [['owed.txt']],
    )
  })
})

describe('StateExchange retries an exchange whose pull did not reach the peer', () => {
  const X = x.id.compact
  const peer = {id: 'PEER', address: '127.0.0.1', controlPort: 7734, protocols: ['HTTP'], role: 'member' as const, confirmedAt: ''}
  const held = v(x, 'held.txt', 2, {[X]: 2})
  const fast = {retries: 4, baseMs: 5, maxMs: 20}

  /** An exchange whose pull fails `failures` times with `code`, then answers with an empty structure. */
  async function exchange(failures: number, code: string, signal: AbortSignal | undefined, policy = fast) {
    const home = await mkdtemp(path.join(os.tmpdir(), 'fpeer-exchange-retry-'))
    const owed = new OwedForwards(new Home(home), 'F')
    const records = new Map([[held.path, rec(held.path, held)]])
    const pushed: FileVersion[][] = []
    let pulls = 0
    const work = new Set<Promise<unknown>>()
    const ex = exchangeOver(records, owed, peer, {
      pull: async (_f, _p, seen) => {
        if (++pulls <= failures) throw new FpeerError(code as 'E_TIMEOUT', 'not reached')
        seen([])
        return 0
      },
      push: async (_f, _p, versions) => void pushed.push(versions),
      signal: () => signal,
      track: (p) => {
        work.add(p)
        return p
      },
      retry: policy,
    })
    await ex.withPeer('F', peer)
    return {ex, pushed, pulls: () => pulls, work, cleanup: () => rm(home, {recursive: true, force: true})}
  }

  /** Waits (bounded) until `cond` holds, awaiting the exchange's tracked work as it comes. */
  async function until(cond: () => boolean, work: Set<Promise<unknown>>): Promise<void> {
    for (let i = 0; i < 500 && !cond(); i++) {
      await Promise.all(work)
      await new Promise((r) => setTimeout(r, 10))
    }
  }

  it('a serving node tries again with backoff until the pull answers, then offers what the peer lacks', async () => {
    const ac = new AbortController()
    const r = await exchange(2, 'E_TIMEOUT', ac.signal)
    try {
      await until(() => r.pushed.length > 0, r.work)
      assert.equal(r.pulls(), 3)
      assert.deepEqual(
        r.pushed.map((b) => b.map((o) => o.path)),
        [['held.txt']],
      )
      assert.equal(r.ex.retrying, 0)
    } finally {
      ac.abort()
      await r.cleanup()
    }
  })

  it('gives up after the policy`s tries; a refusal (not an unreached peer) is not retried', async () => {
    const ac = new AbortController()
    const r = await exchange(100, 'E_CONNECT', ac.signal)
    const refused = await exchange(100, 'E_NOT_ALLOWED', ac.signal)
    try {
      await until(() => r.ex.retrying === 0 && r.pulls() >= 1 + fast.retries, r.work)
      await Promise.all(r.work)
      assert.equal(r.pulls(), 1 + fast.retries)
      assert.equal(r.ex.retrying, 0)
      assert.equal(refused.pulls(), 1)
      assert.equal(refused.ex.retrying, 0)
    } finally {
      ac.abort()
      await r.cleanup()
      await refused.cleanup()
    }
  })

  it('a pull that reached the peer but did not finish (a file changed there, a grant ran out) is tried again', async () => {
    for (const code of ['E_ACCESS', 'E_HASH_MISMATCH', 'E_NOT_FOUND']) {
      const ac = new AbortController()
      const r = await exchange(1, code, ac.signal)
      try {
        await until(() => r.pushed.length > 0, r.work)
        assert.equal(r.pulls(), 2, code)
        assert.equal(r.ex.retrying, 0, code)
      } finally {
        ac.abort()
        await r.cleanup()
      }
    }
  })

  it('a one-shot node (no signal) does not retry, and aborting the signal cancels a waiting retry', async () => {
    const once = await exchange(1, 'E_TIMEOUT', undefined)
    const ac = new AbortController()
    const stopped = await exchange(1, 'E_TIMEOUT', ac.signal, {retries: 4, baseMs: 60_000, maxMs: 60_000})
    try {
      assert.equal(once.ex.retrying, 0)
      assert.equal(stopped.ex.retrying, 1)
      ac.abort()
      assert.equal(stopped.ex.retrying, 0)
      assert.equal(stopped.pulls(), 1)
    } finally {
      await once.cleanup()
      await stopped.cleanup()
    }
  })
})
