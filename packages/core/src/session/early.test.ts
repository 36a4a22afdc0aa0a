// Unit tests of the early fetch-back's parts (protocol 4.9): what a progress message may name, the announcer's batching, the host's queue.
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'
import {FpeerError, isFpeerError} from '../errors.js'
import type {TransferClient} from '../transport.js'
import type {FileEntry, FilesUpdated} from '../wire/types.js'
import {type CheckFile, FetchBack, LandedAnnouncer, isProgress, progressFiles, sameEndpoint} from './early.js'

const H = (c: string) => c.repeat(64)
const OURS: FileEntry[] = [
  {path: 'a.txt', size: 6, sha256: H('a')},
  {path: 'dir/b.bin', size: 5000, sha256: H('b')},
]
const fu = (files: FileEntry[], meta: Record<string, string> = {part: '1', grant: 'G'}, port = 4000): FilesUpdated => ({
  type: 'FilesUpdated',
  folder: 'f',
  port,
  protocol: 'HTTP',
  files,
  meta,
})

describe('progressFiles: what a progress FilesUpdated may name', () => {
  /** The host's files not announced yet: all of them, at the start of a handshake. */
  const unannounced = () => new Map(OURS.map((f) => [f.path, f]))
  const cases: Array<{name: string; lines: FileEntry[]; code?: string; want?: CheckFile[]}> = [
    {
      name: 'a file of the FilesToGet, with the host’s hash and size',
      lines: [{path: 'a.txt', size: 6, sha256: H('a')}],
      want: [{path: 'a.txt', size: 6, sha256: H('a')}],
    },
    {name: 'a bare path (the host’s own hash is what is checked)', lines: [{path: 'dir/b.bin'}], want: [{path: 'dir/b.bin', size: 5000, sha256: H('b')}]},
    {name: 'a file the FilesToGet does not name', lines: [{path: 'other.txt', size: 1, sha256: H('c')}], code: 'E_MSG_BAD_FIELD'},
    {name: 'another hash', lines: [{path: 'a.txt', size: 6, sha256: H('c')}], code: 'E_MSG_BAD_FIELD'},
    {name: 'another size', lines: [{path: 'a.txt', size: 7, sha256: H('a')}], code: 'E_MSG_BAD_FIELD'},
    {name: 'one path twice in one message', lines: [{path: 'a.txt'}, {path: 'a.txt'}], code: 'E_MSG_BAD_FIELD'},
  ]
  for (const c of cases) {
    it(c.name, () => {
      const left = unannounced()
      if (c.code)
        assert.throws(
          () => progressFiles(fu(c.lines), left),
          (e: unknown) => isFpeerError(e, c.code as 'E_MSG_BAD_FIELD'),
        )
      else assert.deepEqual(progressFiles(fu(c.lines), left), c.want)
    })
  }

  it('a path announced by an earlier progress message is E_MSG_BAD_FIELD; what is named leaves the files to check, as the host’s own entry', () => {
    const left = unannounced()
    const [got] = progressFiles(fu([{path: 'a.txt'}]), left)
    assert.equal(got, OURS[0], 'the host’s own entry, not a copy')
    assert.deepEqual([...left.keys()], ['dir/b.bin'])
    assert.throws(
      () => progressFiles(fu([{path: 'a.txt'}]), left),
      (e: unknown) => isFpeerError(e, 'E_MSG_BAD_FIELD'),
    )
  })

  it('a host line without hash or size is E_INTERNAL, not checked', () => {
    assert.throws(
      () => progressFiles(fu([{path: 'c'}]), new Map([['c', {path: 'c', size: 1}]])),
      (e: unknown) => isFpeerError(e, 'E_INTERNAL'),
    )
  })

  it('isProgress and sameEndpoint read part=1 and the port, protocol and grant', () => {
    assert.equal(isProgress(fu([])), true)
    assert.equal(isProgress(fu([], {grant: 'G'})), false)
    const first = {protocol: 'HTTP', port: 4000, grant: 'G'}
    assert.equal(sameEndpoint(first, fu([], {grant: 'G'})), true)
    assert.equal(sameEndpoint(first, fu([], {grant: 'H'})), false)
    assert.equal(sameEndpoint(first, fu([], {grant: 'G'}, 4001)), false)
  })
})

describe('LandedAnnouncer: batching the requester’s progress messages', () => {
  it('sends a full batch at once, the rest when its timer fires, in order', async () => {
    const sent: string[][] = []
    let timerSent!: () => void
    const second = new Promise<void>((resolve) => (timerSent = resolve))
    const a = new LandedAnnouncer(
      async (files) => {
        sent.push(files.map((f) => f.path))
        if (sent.length === 2) timerSent()
      },
      {firstMs: 10, everyMs: 10, maxFiles: 2},
    )
    a.landed({path: 'x'})
    a.landed({path: 'y'})
    a.landed({path: 'z'})
    await second
    await a.stop()
    assert.deepEqual(sent, [['x', 'y'], ['z']])
  })

  it('stop() drops what is pending (the final FilesUpdated names it) and waits for the send under way', async () => {
    const sent: string[][] = []
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    let finished = false
    const a = new LandedAnnouncer(
      async (files) => {
        sent.push(files.map((f) => f.path))
        await gate
        finished = true
      },
      {firstMs: 60_000, everyMs: 60_000, maxFiles: 2},
    )
    a.landed({path: 'x'})
    a.landed({path: 'y'})
    a.landed({path: 'pending'})
    const stopped = a.stop()
    release()
    await stopped
    assert.equal(finished, true)
    assert.deepEqual(sent, [['x', 'y']])
  })

  it('a failed send stops announcing without throwing', async () => {
    let calls = 0
    const a = new LandedAnnouncer(
      async () => {
        calls++
        throw new FpeerError('E_CONNECTION_LOST', 'gone')
      },
      {firstMs: 60_000, everyMs: 60_000, maxFiles: 1},
    )
    a.landed({path: 'x'})
    await a.stop()
    a.landed({path: 'y'})
    await a.stop()
    assert.equal(calls, 1)
  })
})

describe('FetchBack: the host’s queue of files to check', () => {
  const client = {} as TransferClient
  const connect = async <T>(work: (c: TransferClient) => Promise<T>): Promise<T> => work(client)

  it('checks every file added, before and after finish(), and sums what it checked', async () => {
    const checked: string[] = []
    const fb = new FetchBack(connect, async (_c, files) => {
      checked.push(...files.map((f) => f.path))
      return {files: files.length, fetched: files.length, skipped: 0, bytes: files.reduce((n, f) => n + f.size, 0)}
    })
    fb.add([{path: 'a', sha256: H('a'), size: 1}])
    fb.add([{path: 'b', sha256: H('b'), size: 2}])
    await new Promise((r) => setImmediate(r))
    fb.add([{path: 'c', sha256: H('c'), size: 3}])
    assert.deepEqual(await fb.finish(), {files: 3, bytes: 6})
    assert.deepEqual(checked.sort(), ['a', 'b', 'c'])
  })

  it('the first failure rejects `failed` at once and finish()', async () => {
    const fb = new FetchBack(connect, async () => {
      throw new FpeerError('E_HASH_MISMATCH', 'bad copy')
    })
    fb.add([{path: 'a', sha256: H('a'), size: 1}])
    await assert.rejects(fb.failed, {code: 'E_HASH_MISMATCH'})
    await assert.rejects(fb.finish(), {code: 'E_HASH_MISMATCH'})
  })

  it('cancel() aborts the check under way and closes', async () => {
    let closed = false
    let sawAbort = false
    const fb = new FetchBack(
      async (work) => {
        try {
          return await work(client)
        } finally {
          closed = true
        }
      },
      (_c, _files, signal) =>
        new Promise((_resolve, reject) =>
          signal.addEventListener('abort', () => {
            sawAbort = true
            reject(signal.reason as Error)
          }),
        ),
    )
    fb.add([{path: 'a', sha256: H('a'), size: 1}])
    await new Promise((r) => setImmediate(r))
    await fb.cancel()
    assert.equal(sawAbort, true)
    assert.equal(closed, true)
  })

  it('follow(): each growing file on a connection of its own, at most `lanes` at once, beside the queue; finish() waits for all', async () => {
    let open = 0
    let most = 0
    let connections = 0
    const release = new Map<string, () => void>()
    const checked: string[] = []
    const fb = new FetchBack(
      async (work) => {
        connections++
        return work(client)
      },
      async (_c, files) => {
        const one = files.length === 1 && files[0]!.path.startsWith('g') ? files[0]! : undefined
        if (one) {
          open++
          most = Math.max(most, open)
          await new Promise<void>((r) => release.set(one.path, r))
          open--
        }
        checked.push(...files.map((f) => f.path))
        return {files: files.length, fetched: files.length, skipped: 0, bytes: files.reduce((n, f) => n + f.size, 0)}
      },
      {lanes: 2},
    )
    fb.follow([1, 2, 3].map((i) => ({path: `g${i}`, sha256: H(`g${i}`), size: 10})))
    fb.add([{path: 'a', sha256: H('a'), size: 1}])
    // The queue is not held up by the growing files it sits beside.
    while (!checked.includes('a')) await new Promise((r) => setImmediate(r))
    assert.equal(open, 2)
    let finished = false
    const done = fb.finish().then((r) => {
      finished = true
      return r
    })
    for (const g of ['g1', 'g2', 'g3']) {
      while (!release.has(g)) await new Promise((r) => setImmediate(r))
      assert.equal(finished, false)
      release.get(g)!()
    }
    assert.deepEqual(await done, {files: 4, bytes: 31})
    assert.equal(most, 2)
    // One for the queue, one per growing file.
    assert.equal(connections, 4)
  })

  it('a growing file that fails rejects `failed` and finish(); cancel() stops the lanes', async () => {
    const fb = new FetchBack(connect, async (_c, files, signal) => {
      if (files[0]!.path === 'bad') throw new FpeerError('E_HASH_MISMATCH', 'bad copy')
      return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error)))
    })
    fb.follow([
      {path: 'slow', sha256: H('s'), size: 1},
      {path: 'bad', sha256: H('b'), size: 1},
    ])
    await assert.rejects(fb.failed, {code: 'E_HASH_MISMATCH'})
    await assert.rejects(fb.finish(), {code: 'E_HASH_MISMATCH'})
    await fb.cancel()
  })
})
