// In-process tests of fetchFiles over the in-memory transport: lands and verifies, and fails with typed codes on bad content, dropped connections and aborts.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {closeSync, openSync, writeSync} from 'node:fs'
import {mkdtemp, readFile, readdir, rename, rm, stat, symlink, writeFile, mkdir} from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import {PassThrough, Readable} from 'node:stream'
import {after, before, describe, it} from 'node:test'
import {isFpeerError} from '../errors.js'
import {FaultySource, type FaultPlan} from '../conformance/faults.js'
import type {LandedStat} from '../fs/lander.js'
import {LocalFileSource} from '../fs/local-source.js'
import {PART_PREFIX} from '../fs/safe-path.js'
import {SMALL_FILE_BYTES} from '../fs/scan.js'
import {Identity, generateKeyPair} from '../identity.js'
import {createMemoryTransport, type MemoryTransportOptions} from '../testing/memory-transport.js'
import type {TransferClient} from '../transport.js'
import type {FileEntry} from '../wire/types.js'
import {FolderDirs, partPrefix} from '../fs/folder-dirs.js'
import {type FetchEvent, fetchFiles, openPartReader, writevFully} from './fetch.js'
import {FollowedFiles} from './follow.js'

const FOLDER = 'share'
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex')
/** Content that is not all one byte, so an offset error shows. */
const content = (n: number, seed = 1) => Buffer.from(Array.from({length: n}, (_, i) => (i * 31 + seed) & 0xff))

/** Every file under `dir`, relative, sorted: the before/after listing. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = []
  for (const e of await readdir(dir, {withFileTypes: true, recursive: true}))
    if (!e.isDirectory()) out.push(path.relative(dir, path.join(e.parentPath, e.name)))
  return out.sort()
}

describe('fetchFiles over the in-memory transport', () => {
  let work: string
  let src: string
  const files = new Map<string, Buffer>([
    ['a.txt', Buffer.from('hello\n')],
    ['dir/b.bin', content(3000)],
    ['empty', Buffer.alloc(0)],
    ['large.bin', content(SMALL_FILE_BYTES * 3 + 17, 7)],
  ])
  const bytes = (p: string): Buffer => {
    const b = files.get(p)
    if (!b) throw new Error(`no fixture ${p}`)
    return b
  }
  const entry = (p: string): FileEntry => ({path: p, size: bytes(p).length, sha256: sha(bytes(p))})
  let n = 0
  const dest = async () => {
    const d = path.join(work, `dest-${++n}`)
    await mkdir(d)
    return d
  }

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-fetch-'))
    src = path.join(work, 'src')
    for (const [p, b] of files) {
      await mkdir(path.dirname(path.join(src, p)), {recursive: true})
      await writeFile(path.join(src, p), b)
    }
  })
  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  /** Serves `src` over a fresh memory transport with `plan`'s faults, and hands `fn` a client. */
  async function withClient<T>(
    fn: (client: TransferClient, source: FaultySource) => Promise<T>,
    plan: FaultPlan = {},
    options: MemoryTransportOptions = {},
  ): Promise<T> {
    const transport = createMemoryTransport(options)
    const source = new FaultySource(new LocalFileSource({root: (f) => (f === FOLDER ? src : undefined), mayRead: () => true}, () => [FOLDER]), plan)
    const identity = new Identity(generateKeyPair())
    const server = await transport.serve({host: '127.0.0.1', port: 0, files: source, identity})
    const client = await transport.connect({
      host: '127.0.0.1',
      port: server.port,
      identity: new Identity(generateKeyPair()),
      expectedPeer: identity.id,
      concurrency: 4,
      timeoutMs: 10_000,
    })
    try {
      return await fn(client, source)
    } finally {
      await client.close()
      await server.close()
    }
  }

  for (const batch of [true, false, 'refused'] as const) {
    it(`lands every file byte for byte (batch: ${batch})`, async () => {
      const d = await dest()
      let calls = 0
      const list = [...files.keys()].map(entry)
      const done: FileEntry[] = []
      const result = await withClient(
        (client) =>
          fetchFiles({
            client: client.getMany ? {...client, getMany: (...args) => (calls++, client.getMany!(...args))} : client,
            // What the transport declares (supports.batch), as every caller passes it.
            batch: batch !== false,
            folder: FOLDER,
            files: list,
            mode: 'land',
            root: d,
            concurrency: 3,
            onFileDone: (f) => done.push(f),
          }),
        {},
        {batch},
      )
      assert.equal(calls > 0, batch !== false, `${calls} getMany() calls`)
      assert.deepEqual(
        {fetched: result.fetched, skipped: result.skipped, bytes: result.bytes},
        {fetched: 4, skipped: 0, bytes: [...files.values()].reduce((a, b) => a + b.length, 0)},
      )
      assert.deepEqual(await tree(d), [...files.keys()].sort())
      for (const [p, b] of files) assert.ok((await readFile(path.join(d, p))).equals(b), p)
      // onFileDone hands over the list's own entries (the requester keeps no map from path to entry), each once.
      assert.equal(done.length, list.length)
      for (const f of list) assert.ok(done.includes(f), f.path)
    })
  }

  for (const thread of [true, false]) {
    it(`a batch landed ${thread ? 'by the landing thread' : 'on the main thread'}: bytes, mtime and mode kept, no part left; a directory put at a target meanwhile is E_PATH_UNSAFE`, async () => {
      const d = await dest()
      const small = ['a.txt', 'dir/b.bin', 'empty']
      const landed = small.map((p, i) => ({...entry(p), mtimeMs: 1_600_000_000_000 + i * 1000, ...(p === 'a.txt' ? {ext: {mode: '755'}} : {})}))
      const stats = new Map<FileEntry, LandedStat | undefined>()
      await withClient((client) =>
        fetchFiles({
          client,
          batch: true,
          folder: FOLDER,
          files: landed,
          mode: 'land',
          root: d,
          concurrency: 2,
          landerFrom: thread ? 1 : 1e9,
          onFileDone: (f, st) => stats.set(f, st),
        }),
      )
      assert.deepEqual(await tree(d), [...small].sort())
      for (const f of landed) {
        assert.ok((await readFile(path.join(d, f.path))).equals(bytes(f.path)), f.path)
        const st = await stat(path.join(d, f.path))
        assert.equal(Math.trunc(st.mtimeMs), f.mtimeMs, `mtime of ${f.path}`)
        assert.equal((st.mode & 0o100) !== 0, f.path === 'a.txt', `mode of ${f.path}`)
        // Each is reported with the landed file's own stat (what the folder's record keeps).
        assert.deepEqual(stats.get(f), {size: st.size, mtimeMs: f.mtimeMs, ino: st.ino}, `stat of ${f.path}`)
      }
      // A directory appears at a target after the landing was prepared (its directory is new: no look there).
      const e = await dest()
      const done: string[] = []
      await withClient(async (client) => {
        const racing: TransferClient = {
          ...client,
          getMany: async function* (folder, items, o) {
            await mkdir(path.join(e, 'dir', 'b.bin', 'sub'), {recursive: true})
            yield* client.getMany!(folder, items, o)
          },
        }
        await assert.rejects(
          fetchFiles({
            client: racing,
            batch: true,
            folder: FOLDER,
            files: [entry('dir/b.bin')],
            mode: 'land',
            root: e,
            concurrency: 1,
            landerFrom: thread ? 1 : 1e9,
            onEvent: (ev) => void (ev.event === 'file-done' && done.push(ev.path)),
          }),
          {code: 'E_PATH_UNSAFE'},
        )
      })
      assert.deepEqual(done, [])
      assert.deepEqual(await readdir(path.join(e, 'dir')), ['b.bin'])
      assert.deepEqual(await readdir(path.join(e, 'dir', 'b.bin')), ['sub'])
    })
  }

  it('skips files already in place, and verify mode writes nothing', async () => {
    const d = await dest()
    await withClient(async (client, source) => {
      await fetchFiles({client, folder: FOLDER, files: [...files.keys()].map(entry), mode: 'land', root: d, concurrency: 2})
      const opens = source.opens.length
      const done: string[] = []
      const again = await fetchFiles({
        client,
        folder: FOLDER,
        files: [...files.keys()].map(entry),
        mode: 'land',
        root: d,
        concurrency: 2,
        onFileDone: (f) => done.push(f.path),
      })
      assert.equal(again.skipped, 4)
      assert.deepEqual(done.sort(), [...files.keys()].sort(), 'a file found in place is done too')
      assert.equal(source.opens.length, opens, 'a file in place was fetched again')
      const v = await dest()
      const verified = await fetchFiles({client, folder: FOLDER, files: [...files.keys()].map(entry), mode: 'verify', concurrency: 2})
      assert.equal(verified.fetched, 4)
      assert.deepEqual(await tree(v), [])
    })
  })

  for (const name of ['a.txt', 'large.bin']) {
    it(`a wrong sha256 is E_HASH_MISMATCH and lands nothing (${name})`, async () => {
      const d = await dest()
      await withClient(async (client) => {
        await assert.rejects(fetchFiles({client, folder: FOLDER, files: [{...entry(name), sha256: sha('other')}], mode: 'land', root: d, concurrency: 1}), {
          code: 'E_HASH_MISMATCH',
        })
      })
      assert.deepEqual(await tree(d), [])
    })

    it(`more bytes than announced is E_SIZE_MISMATCH and lands nothing (${name})`, async () => {
      const d = await dest()
      await withClient(async (client) => {
        await assert.rejects(
          fetchFiles({client, folder: FOLDER, files: [{...entry(name), size: bytes(name).length - 1}], mode: 'land', root: d, concurrency: 1}),
          {code: 'E_SIZE_MISMATCH'},
        )
      })
      assert.deepEqual(await tree(d), [])
    })

    it(`fewer bytes than announced is a lost connection, retried, then E_CONNECTION_LOST (${name})`, async () => {
      const d = await dest()
      const events: FetchEvent[] = []
      await withClient(async (client, source) => {
        await assert.rejects(
          fetchFiles({
            client,
            folder: FOLDER,
            files: [{...entry(name), size: bytes(name).length + 1}],
            mode: 'land',
            root: d,
            concurrency: 1,
            retries: 2,
            onEvent: (e) => events.push(e),
          }),
          {code: 'E_CONNECTION_LOST'},
        )
        assert.equal(source.opens.length, 3)
      })
      assert.deepEqual(
        events.filter((e) => e.event === 'retry').map((e) => (e as {attempt: number}).attempt),
        [1, 2],
      )
      assert.deepEqual(await tree(d), [])
    })
  }

  it('a connection dropped mid-file is retried and the file lands intact, with no part file left', async () => {
    const d = await dest()
    await withClient(
      async (client, source) => {
        const r = await fetchFiles({client, folder: FOLDER, files: [entry('large.bin')], mode: 'land', root: d, concurrency: 1, resume: true})
        assert.equal(r.fetched, 1)
        assert.equal(source.opens.length, 2)
      },
      {drop: new Map([['large.bin', {times: 1, afterBytes: SMALL_FILE_BYTES}]])},
    )
    assert.ok((await readFile(path.join(d, 'large.bin'))).equals(bytes('large.bin')))
    assert.deepEqual(
      (await tree(d)).filter((p) => path.basename(p).startsWith(PART_PREFIX)),
      [],
    )
  })

  it('a connection that keeps dropping is E_CONNECTION_LOST; with resume the part is kept and a later run starts after it', async () => {
    const d = await dest()
    const plan = {drop: new Map([['large.bin', {times: 2, afterBytes: SMALL_FILE_BYTES}]])}
    await withClient(async (client, source) => {
      await assert.rejects(fetchFiles({client, folder: FOLDER, files: [entry('large.bin')], mode: 'land', root: d, concurrency: 1, retries: 1, resume: true}), {
        code: 'E_CONNECTION_LOST',
      })
      assert.equal((await tree(d)).filter((p) => path.basename(p).startsWith(PART_PREFIX)).length, 1)
      const before = source.opens.length
      await fetchFiles({client, folder: FOLDER, files: [entry('large.bin')], mode: 'land', root: d, concurrency: 1, resume: true})
      assert.ok((source.opens[before]?.range?.start ?? 0) > 0, 'the later run started from zero')
    }, plan)
    assert.ok((await readFile(path.join(d, 'large.bin'))).equals(bytes('large.bin')))
    assert.deepEqual(await tree(d), ['large.bin'])
  })

  it('a missing file is E_NOT_FOUND, not retried', async () => {
    const d = await dest()
    await withClient(async (client, source) => {
      await assert.rejects(fetchFiles({client, folder: FOLDER, files: [{path: 'nope', size: 3, sha256: sha('abc')}], mode: 'land', root: d, concurrency: 1}), {
        code: 'E_NOT_FOUND',
      })
      assert.equal(source.opens.length, 1)
    })
    assert.deepEqual(await tree(d), [])
  })

  it('the server closing mid-transfer is E_CONNECT once retries find nobody there', async () => {
    const d = await dest()
    const transport = createMemoryTransport()
    const identity = new Identity(generateKeyPair())
    // A source whose large file never ends until the server closes.
    const stalled = new FaultySource(new LocalFileSource({root: () => src, mayRead: () => true}, () => [FOLDER]))
    const server = await transport.serve({host: '127.0.0.1', port: 0, files: stalled, identity})
    const client = await transport.connect({host: '127.0.0.1', port: server.port, identity, concurrency: 1, timeoutMs: 10_000})
    try {
      let closed = false
      const run = fetchFiles({
        client,
        folder: FOLDER,
        files: [entry('large.bin')],
        mode: 'land',
        root: d,
        concurrency: 1,
        retries: 1,
        // The first bytes in: the server goes away.
        onEvent: (e) => {
          if (e.event === 'bytes' && !closed) {
            closed = true
            void server.close()
          }
        },
      })
      await assert.rejects(run, {code: 'E_CONNECT'})
    } finally {
      await client.close()
      await server.close()
    }
    assert.deepEqual(await tree(d), [])
  })

  it('an abort stops the fetch with no retry and leaves no partial target', async () => {
    const d = await dest()
    const ac = new AbortController()
    const events: FetchEvent[] = []
    await withClient(async (client) => {
      const run = fetchFiles({
        client,
        folder: FOLDER,
        files: [entry('large.bin')],
        mode: 'land',
        root: d,
        concurrency: 1,
        signal: ac.signal,
        onEvent: (e) => {
          events.push(e)
          if (e.event === 'bytes') ac.abort()
        },
      })
      await assert.rejects(run, {code: 'E_TRANSFER'})
    })
    assert.equal(events.filter((e) => e.event === 'retry').length, 0)
    assert.deepEqual(
      (await tree(d)).filter((p) => !path.basename(p).startsWith(PART_PREFIX)),
      [],
    )
  })

  it('an abort ends a batch whose file the server holds open, with no retry, and lands nothing partial', {timeout: 60_000}, async () => {
    const d = await dest()
    const ac = new AbortController()
    const retries: FetchEvent[] = []
    const plan: FaultPlan = {stall: new Map([['dir/b.bin', 100]])}
    await withClient(async (client, source) => {
      const run = fetchFiles({
        client,
        batch: true,
        folder: FOLDER,
        files: [entry('a.txt'), entry('dir/b.bin')],
        mode: 'land',
        root: d,
        concurrency: 1,
        signal: ac.signal,
        onEvent: (e) => void (e.event === 'retry' && retries.push(e)),
      })
      for (let i = 0; i < 6000 && source.stalls.held === 0; i++) await new Promise((r) => setTimeout(r, 10))
      assert.equal(source.stalls.held, 1, 'the server never held the file')
      ac.abort()
      await assert.rejects(run, {code: 'E_TRANSFER'})
      for (let i = 0; i < 6000 && source.stalls.open > 0; i++) await new Promise((r) => setTimeout(r, 10))
      assert.equal(source.stalls.open, 0, 'the server still holds the aborted file')
      assert.deepEqual(retries, [])
    }, plan)
    assert.ok(!(await tree(d)).includes('dir/b.bin'))
  })

  it('a directory moved away (and swapped for a link out) after a batch landed in it: E_PATH_UNSAFE, no file of it reported landed, nothing outside', async () => {
    const d = await dest()
    const outside = path.join(work, `outside-${n}`)
    await mkdir(outside)
    const done: string[] = []
    await withClient(async (client) => {
      // The move falls after the batch's last rename and before fetchFiles reports the batch.
      const moving: TransferClient = {
        ...client,
        getMany: async function* (folder, items, o) {
          yield* client.getMany!(folder, items, o)
          await rename(path.join(d, 'dir'), path.join(d, 'dir-moved'))
          await symlink(outside, path.join(d, 'dir'))
        },
      }
      const run = fetchFiles({
        client: moving,
        batch: true,
        folder: FOLDER,
        files: [entry('a.txt'), entry('dir/b.bin')],
        mode: 'land',
        root: d,
        concurrency: 1,
        onEvent: (e) => void (e.event === 'file-done' && done.push(e.path)),
      })
      await assert.rejects(run, {code: 'E_PATH_UNSAFE'})
    })
    assert.ok(!done.includes('dir/b.bin'), 'a file in the moved directory was reported landed')
    assert.deepEqual(await readdir(outside), [])
    assert.deepEqual(await readdir(path.join(d, 'dir-moved')), ['b.bin'])
  })

  it('core goes by the declared supports.batch: a client with getMany() is not batched unless declared, one declared without it is E_PLUGIN', async () => {
    const d = await dest()
    const all = [...files.keys()].map(entry)
    await withClient(async (client, source) => {
      let calls = 0
      const probed = {...client, getMany: (...args: Parameters<NonNullable<TransferClient['getMany']>>) => (calls++, client.getMany!(...args))}
      const r = await fetchFiles({client: probed, batch: false, folder: FOLDER, files: all, mode: 'land', root: d, concurrency: 2})
      assert.equal(r.fetched, 4)
      assert.equal(calls, 0, 'core batched on a getMany() the transport did not declare')
      const opens = source.opens.length
      const {getMany: _, ...bare} = client
      await assert.rejects(fetchFiles({client: bare, batch: true, folder: FOLDER, files: all, mode: 'verify', concurrency: 2}), {code: 'E_PLUGIN'})
      assert.equal(source.opens.length, opens, 'a fetch with a malformed client opened a file')
    })
  })

  it('a transport that reuses released chunks gets each back once, only after it is hashed and written: what lands is intact', async () => {
    // Larger than two write batches, so chunks are released while later ones are still read.
    const data = content((9 << 20) + 5, 3)
    await writeFile(path.join(src, 'reused.bin'), data)
    try {
      const file: FileEntry = {path: 'reused.bin', size: data.length, sha256: sha(data)}
      for (const mode of ['land', 'verify'] as const) {
        const d = await dest()
        await withClient(async (client) => {
          const yielded = new Set<Buffer>()
          let released = 0
          const scribbling: TransferClient = {
            ...client,
            get: async (folder, p, options) => {
              const {stream, size} = await client.get(folder, p, options)
              async function* copies() {
                for await (const chunk of stream) {
                  const own = Buffer.from(chunk as Buffer)
                  yielded.add(own)
                  yield own
                }
              }
              return {
                stream: Readable.from(copies()),
                ...(size === undefined ? {} : {size}),
                // What a reusing transport does: the memory is overwritten by later reads at once.
                release: (chunk: Buffer) => {
                  assert.ok(yielded.delete(chunk), 'a chunk was released twice, or was not one the stream yielded')
                  released++
                  chunk.fill(0xee)
                },
              }
            },
          }
          const r = await fetchFiles({client: scribbling, folder: FOLDER, files: [file], mode, root: d, concurrency: 1})
          assert.equal(r.fetched, 1)
          assert.equal(yielded.size, 0, `${mode}: every chunk is released once the fetch succeeded`)
          assert.ok(released > 2, `${mode}: the file came in several chunks (${released})`)
        })
        if (mode === 'land') assert.ok((await readFile(path.join(d, 'reused.bin'))).equals(data), 'the landed bytes are the ones hashed')
      }
    } finally {
      await rm(path.join(src, 'reused.bin'))
    }
  })

  /** A client whose get(), stream or getMany() fails the way some libraries abort: a bare AbortError, no FpeerError. */
  const bareAbort = (client: TransferClient, where: 'get' | 'stream' | 'getMany'): TransferClient => {
    const abortError = () =>
      where === 'stream'
        ? Object.assign(new Error('The operation was aborted'), {name: 'AbortError', code: 'ABORT_ERR'})
        : new DOMException('This operation was aborted', 'AbortError')
    return {
      ...client,
      get: async (folder, p, options) => {
        if (where === 'get') throw abortError()
        const {stream, size} = await client.get(folder, p, options)
        if (where !== 'stream') return {stream, size}
        // Some bytes, then the abort.
        const cut = new PassThrough()
        stream.once('data', (chunk: Buffer) => {
          stream.destroy()
          cut.write(chunk)
          setImmediate(() => cut.destroy(abortError()))
        })
        return {stream: cut, ...(size === undefined ? {} : {size})}
      },
      getMany: async function* () {
        throw abortError()
      },
    }
  }

  for (const where of ['get', 'stream', 'getMany'] as const) {
    it(`a plugin's bare AbortError (${where}) is the transports' abort code, E_TRANSFER, never E_INTERNAL; nothing lands`, async () => {
      const d = await dest()
      // getMany() carries the small files; get() and its stream the large one.
      const wanted = where === 'getMany' ? [entry('a.txt'), entry('dir/b.bin')] : [entry('large.bin')]
      await withClient(async (client) => {
        await assert.rejects(
          fetchFiles({
            client: bareAbort(client, where),
            batch: where === 'getMany',
            folder: FOLDER,
            files: wanted,
            mode: 'land',
            root: d,
            concurrency: 1,
            retries: 0,
          }),
          (err: unknown) => isFpeerError(err, 'E_TRANSFER'),
        )
      })
      assert.deepEqual(await tree(d), [])
    })
  }

  it('refuses a list with an unsafe path or a file without a hash before any byte moves', async () => {
    const d = await dest()
    await withClient(async (client, source) => {
      await assert.rejects(
        fetchFiles({client, folder: FOLDER, files: [entry('a.txt'), {path: '../x', size: 1, sha256: sha('x')}], mode: 'land', root: d, concurrency: 1}),
        {code: 'E_PATH_UNSAFE'},
      )
      await assert.rejects(fetchFiles({client, folder: FOLDER, files: [{path: 'a.txt', size: 6}], mode: 'land', root: d, concurrency: 1}), {code: 'E_UNSIGNED'})
      assert.equal(source.opens.length, 0)
    })
    assert.deepEqual(await tree(d), [])
  })
})

describe('following a large file as it lands (protocol 4.10)', () => {
  let work: string
  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-fetch-follow-'))
  })
  after(async () => {
    await rm(work, {recursive: true, force: true})
  })

  it('fetchFiles announces a file of at least followFrom bytes once, reads of it follow the part, and after it lands they go to the folder', async () => {
    const src = path.join(work, 'src')
    const dst = path.join(work, 'dst')
    await mkdir(src, {recursive: true})
    await mkdir(dst, {recursive: true})
    const big = content(3 << 20, 3)
    const small = content(1 << 20, 4)
    await writeFile(path.join(src, 'big.bin'), big)
    await writeFile(path.join(src, 'small.bin'), small)
    const transport = createMemoryTransport()
    const identity = new Identity(generateKeyPair())
    const server = await transport.serve({
      host: '127.0.0.1',
      port: 0,
      files: new LocalFileSource({root: (f) => (f === FOLDER ? src : undefined), mayRead: () => true}, () => [FOLDER]),
      identity,
    })
    const client = await transport.connect({host: '127.0.0.1', port: server.port, identity: new Identity(generateKeyPair()), concurrency: 2, timeoutMs: 10_000})
    const announced: string[] = []
    let readBack: Promise<Buffer> | undefined
    const followed = new FollowedFiles((f) => {
      announced.push(f.path)
      // What the requester's server would send the host, read while the fetch goes on.
      readBack = followed.open(f.path).then(async (o) => {
        assert.ok(o, 'a followed file is served from its part')
        const chunks: Buffer[] = []
        for await (const c of o.stream) chunks.push(c as Buffer)
        return Buffer.concat(chunks)
      })
    })
    try {
      await fetchFiles({
        client,
        folder: FOLDER,
        files: [
          {path: 'big.bin', size: big.length, sha256: sha(big)},
          {path: 'small.bin', size: small.length, sha256: sha(small)},
        ],
        mode: 'land',
        root: dst,
        concurrency: 2,
        follow: followed,
        followFrom: 2 << 20,
      })
    } finally {
      followed.end()
      await client.close()
      await server.close()
    }
    assert.deepEqual(announced, ['big.bin'], 'only the file of at least followFrom bytes')
    assert.ok(readBack)
    assert.deepEqual(await readBack, big)
    assert.deepEqual(await readFile(path.join(dst, 'big.bin')), big)
    assert.equal(await followed.open('big.bin'), undefined, 'landed: read from the folder')
  })

  it('a followed file that comes slowly is written every FOLLOW_FLUSH_MS, not once a whole batch has gathered: its reader gets bytes long before the last one is sent', async () => {
    const size = 3 << 20
    const body = content(size, 5)
    const dst = path.join(work, 'slow-dst')
    await mkdir(dst, {recursive: true})
    // A slow link: 32 KiB at a time, a few ms apart (3 MiB in all, below one 4 MiB write batch).
    let sent = 0
    const source = {
      folders: async () => [FOLDER],
      stat: async () => ({type: 'file' as const, size, mtimeMs: 0}),
      list: async () => [],
      open: async () => ({
        stream: Readable.from(
          (async function* () {
            for (let at = 0; at < size; at += 32 << 10) {
              await new Promise((r) => setTimeout(r, 5))
              sent = Math.min(size, at + (32 << 10))
              yield body.subarray(at, sent)
            }
          })(),
        ),
        size,
        mtimeMs: 0,
      }),
    }
    const transport = createMemoryTransport({batch: false})
    const server = await transport.serve({host: '127.0.0.1', port: 0, files: source, identity: new Identity(generateKeyPair())})
    const client = await transport.connect({host: '127.0.0.1', port: server.port, identity: new Identity(generateKeyPair()), concurrency: 1, timeoutMs: 10_000})
    let sentAtFirstByte: number | undefined
    let readBack: Promise<Buffer> | undefined
    const followed = new FollowedFiles((f) => {
      readBack = followed.open(f.path).then(async (o) => {
        assert.ok(o)
        const chunks: Buffer[] = []
        for await (const c of o.stream) {
          sentAtFirstByte ??= sent
          chunks.push(c as Buffer)
        }
        return Buffer.concat(chunks)
      })
    })
    try {
      await fetchFiles({
        client,
        folder: FOLDER,
        files: [{path: 'slow.bin', size, sha256: sha(body)}],
        mode: 'land',
        root: dst,
        concurrency: 1,
        follow: followed,
        followFrom: 1 << 20,
      })
    } finally {
      followed.end()
      await client.close()
      await server.close()
    }
    assert.ok(readBack)
    assert.deepEqual(await readBack, body)
    assert.ok(sentAtFirstByte !== undefined && sentAtFirstByte < size, `the reader's first bytes came when ${sentAtFirstByte} of ${size} were sent`)
  })

  it('a part whose name was swapped for another file before it is reopened is not followed', async () => {
    const root = path.join(work, 'swap')
    await mkdir(root, {recursive: true})
    const dirs = new FolderDirs(root)
    const dir = dirs.need([])
    try {
      const landing = {dir, name: 'big.bin', prefix: partPrefix('big.bin')}
      const {fd, name} = dir.createExclusive(landing.prefix)
      try {
        const same = openPartReader(landing, name, fd)
        assert.ok(same !== undefined, 'the part itself is followed')
        closeSync(same)
        // Another file under the part's name: never served in its place.
        await rename(path.join(root, name), path.join(root, 'moved-away'))
        await writeFile(path.join(root, name), 'planted')
        assert.equal(openPartReader(landing, name, fd), undefined)
        // A link there is not followed either.
        await rm(path.join(root, name))
        await symlink(path.join(root, 'moved-away'), path.join(root, name))
        assert.equal(openPartReader(landing, name, fd), undefined)
      } finally {
        closeSync(fd)
      }
    } finally {
      dir.release()
      dirs.close()
    }
  })
})

describe('writevFully', () => {
  it('writes every byte when writev(2) writes fewer than asked, at the right offsets; a write of nothing is E_IO', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'fpeer-writev-'))
    try {
      const file = path.join(dir, 'part')
      await writeFile(file, Buffer.alloc(5, 0x2e))
      const fd = openSync(file, 'r+')
      try {
        const parts = [content(3000, 1), Buffer.alloc(0), content(10, 2), content(7000, 3)]
        let calls = 0
        // A writer that never writes more than 1,234 bytes per call, as a filling disk might.
        const short = async (f: number, bufs: Buffer[], at: number) => {
          calls++
          const all = Buffer.concat(bufs).subarray(0, 1234)
          return writeSync(f, all, 0, all.length, at)
        }
        await writevFully(fd, parts, 5, short)
        const want = Buffer.concat([Buffer.alloc(5, 0x2e), ...parts])
        assert.ok((await readFile(file)).equals(want), 'every byte, after the 5 already there')
        assert.equal(calls, Math.ceil(10_010 / 1234))
        await assert.rejects(
          writevFully(fd, [content(10)], 0, async () => 0),
          (err: unknown) => isFpeerError(err, 'E_IO'),
        )
        // The real writev(2): one call, everything written.
        await writevFully(fd, [content(100, 4), content(50, 5)], 0)
        assert.ok((await readFile(file)).subarray(0, 150).equals(Buffer.concat([content(100, 4), content(50, 5)])))
      } finally {
        closeSync(fd)
      }
    } finally {
      await rm(dir, {recursive: true, force: true})
    }
  })
})
