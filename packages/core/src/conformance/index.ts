// The transfer conformance suite: every transport plugin runs it against itself to prove it honours the contract.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {readFile} from 'node:fs/promises'
import {createServer} from 'node:net'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {after, before, describe, it} from 'node:test'
import {FpeerError, isFpeerError, type ErrorCode} from '../errors.js'
import {Identity, generateKeyPair} from '../identity.js'
import {PART_PREFIX} from '../fs/safe-path.js'
import {fetchFiles, type FetchEvent} from '../transfer/fetch.js'
import type {Transport} from '../transport.js'
import type {FileEntry} from '../wire/types.js'
import {
  EMPTY_FILE,
  ESCAPE_LINK,
  FLAKY_FILE,
  FOLDER,
  HOSTILE_NAMES,
  LARGE_FILE,
  MANY_DIR,
  OUTSIDE_CONTENT,
  RESUME_FILE,
  SECRET_FILE,
  createFixture,
  listTree,
  sameBytes,
  type Fixture,
} from './fixture.js'
import {connectOptions, serveFixture, withPeer, type Peer, type PeerSetup} from './peer.js'

export {FaultySource, type FaultPlan, type OpenCall} from './faults.js'
export {HOSTILE_NAMES, createFixture, listTree, pseudoRandom, sameBytes, type Fixture} from './fixture.js'

export interface ConformanceOptions {
  /** Shown in the suite's title, e.g. `http`. */
  name: string
  transport: Transport
  /** Size of the large-file case; default 64 MiB. */
  largeFileBytes?: number
  /** Number of files in the many-files case; default 2,000. */
  manyFiles?: number
  /** Concurrency of the many-files case; default 8. */
  concurrency?: number
  /** The client's connect/idle timeout; default 20 s. */
  timeoutMs?: number
  /**
   * Cases to skip, by test title, with the reason shown in the report. For known gaps
   * only: what a transport cannot do belongs in `transport.supports`.
   */
  skip?: Record<string, string>
}

const LEAVES_FOLDER: readonly ErrorCode[] = ['E_PATH_UNSAFE', 'E_NOT_FOUND', 'E_ACCESS']

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** Asserts that `promise` rejects with a FpeerError whose code is one of `codes`. */
async function rejectsWith(promise: Promise<unknown> | (() => Promise<unknown>), codes: ErrorCode | readonly ErrorCode[]): Promise<FpeerError> {
  const allowed = typeof codes === 'string' ? [codes] : codes
  let caught: unknown
  try {
    await (typeof promise === 'function' ? promise() : promise)
  } catch (err) {
    caught = err
  }
  assert.ok(caught !== undefined, `expected a rejection with ${allowed.join(' or ')}, but it succeeded`)
  assert.ok(isFpeerError(caught), `expected a FpeerError (${allowed.join(' or ')}), got ${String(caught)}`)
  assert.ok(allowed.includes(caught.code), `expected ${allowed.join(' or ')}, got ${caught.code}: ${caught.message}`)
  return caught
}

async function assertNoLeftovers(dest: string, absent: string[] = []): Promise<void> {
  const tree = await listTree(dest)
  assert.deepEqual(
    tree.filter((p) => path.posix.basename(p).startsWith(PART_PREFIX)),
    [],
    'a part file was left behind',
  )
  for (const p of absent) assert.ok(!tree.includes(p), `${p} was landed although its fetch failed`)
}

/** A test title for a name: non-ASCII escaped (so the NFC and NFD spellings read differently), long names shortened. */
function label(name: string): string {
  const short = name.length > 60 ? `${name.slice(0, 20)}…(${Buffer.byteLength(name)} bytes)` : name
  return `"${short.replace(/[^\x20-\x7e…]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`)}"`
}

/** A port on 127.0.0.1 that nobody listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as {port: number}).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

/**
 * Registers the conformance suite (node:test `describe`/`it`). It serves a temp folder of
 * hostile names, empty, large and many files with `transport.serve`, fetches it back with
 * `transport.connect` and core's `fetchFiles`, and checks bytes, error codes and cleanup.
 * Cases the transport declares unsupported are registered as skipped, so they show.
 */
export function runTransportConformance(opts: ConformanceOptions): void {
  const {transport} = opts
  const sup = transport.supports
  const largeBytes = opts.largeFileBytes ?? 64 * (1 << 20)
  const manyFiles = opts.manyFiles ?? 2000
  const concurrency = opts.concurrency ?? 8
  const timeoutMs = opts.timeoutMs ?? 20_000

  describe(`transport conformance: ${opts.name}`, {timeout: 600_000}, () => {
    it('declares its protocol, description and what it supports', () => {
      assert.match(transport.protocol, /^[A-Z][A-Z0-9_-]*$/)
      assert.ok(transport.description.trim().length > 0)
      for (const key of ['serve', 'fetch', 'resume', 'peerAuth', 'serverAuth'] as const) assert.equal(typeof sup[key], 'boolean', `supports.${key}`)
      if (sup.serve) assert.equal(typeof transport.serve, 'function', 'supports.serve but no serve()')
      if (sup.fetch) assert.equal(typeof transport.connect, 'function', 'supports.fetch but no connect()')
      // A transport that cannot fetch leaves the bytes to a person; it must say how (MANUAL).
      else assert.equal(typeof transport.handOver, 'function', 'supports.fetch false but no handOver()')
    })

    if (!sup.serve || !sup.fetch) {
      it('serves and fetches files', {skip: 'transport does not both serve and fetch (supports.serve/fetch false)'}, () => {})
      return
    }

    let fx: Fixture
    before(async () => {
      fx = await createFixture({largeBytes, manyFiles})
    })
    after(async () => {
      await fx?.dispose()
    })

    const entry = (p: string): FileEntry => {
      const e = fx.entries.get(p)
      assert.ok(e, `fixture has no ${p}`)
      return e
    }
    const source = (p: string) => path.join(fx.root, ...p.split('/'))
    const peer = <T>(setup: PeerSetup, fn: (peer: Peer) => Promise<T>) => withPeer(transport, fx, timeoutMs, setup, fn)
    // Registers a case; node:test awaits it, so nothing is returned to float.
    const test = (title: string, options: {skip?: string | false; timeout?: number}, fn: () => Promise<void>): void => {
      it(title, {skip: opts.skip?.[title] ?? options.skip ?? false, timeout: options.timeout ?? 60_000}, fn)
    }

    test('serves on the requested host at a free port, and close() is safe twice', {}, async () => {
      const {server} = await serveFixture(transport, fx)
      try {
        assert.equal(server.host, '127.0.0.1')
        assert.ok(Number.isInteger(server.port) && server.port > 0, `port ${server.port}`)
      } finally {
        await server.close()
        await server.close()
      }
    })

    describe('hostile names', () => {
      for (const name of HOSTILE_NAMES) {
        test(`get() returns the exact bytes of ${label(name)}`, {}, async () => {
          await peer({}, async ({client}) => {
            const {stream} = await client.get(FOLDER, name)
            assert.ok((await readAll(stream)).equals(await readFile(source(name))))
          })
        })
      }

      test('fetchFiles lands them all and the trees match byte for byte', {}, async () => {
        const dest = await fx.makeDest()
        await peer({}, async ({client}) => {
          const result = await fetchFiles({
            client,
            folder: FOLDER,
            files: HOSTILE_NAMES.map(entry),
            mode: 'land',
            root: dest,
            concurrency: 4,
            resume: sup.resume,
          })
          assert.equal(result.fetched, HOSTILE_NAMES.length)
        })
        assert.deepEqual(await listTree(dest), [...HOSTILE_NAMES].sort())
        for (const name of HOSTILE_NAMES) assert.ok(await sameBytes(source(name), path.join(dest, ...name.split('/'))), `${name} differs`)
      })

      test('fetchFiles verifies them all without writing anything', {}, async () => {
        await peer({}, async ({client}) => {
          const result = await fetchFiles({client, folder: FOLDER, files: HOSTILE_NAMES.map(entry), mode: 'verify', concurrency: 4})
          assert.equal(result.fetched, HOSTILE_NAMES.length)
          assert.equal(
            result.bytes,
            HOSTILE_NAMES.reduce((n, p) => n + entry(p).size!, 0),
          )
        })
      })
    })

    test('lands an empty file', {}, async () => {
      const dest = await fx.makeDest()
      await peer({}, async ({client}) => {
        const {stream} = await client.get(FOLDER, EMPTY_FILE)
        assert.equal((await readAll(stream)).length, 0)
        await fetchFiles({client, folder: FOLDER, files: [entry(EMPTY_FILE)], mode: 'land', root: dest, concurrency: 1})
      })
      assert.deepEqual(await listTree(dest), [EMPTY_FILE])
      assert.equal((await readFile(path.join(dest, EMPTY_FILE))).length, 0)
    })

    test(`lands a large file (${Math.round(largeBytes / (1 << 20))} MiB) and verifies it`, {timeout: 300_000}, async () => {
      const dest = await fx.makeDest()
      await peer({}, async ({client}) => {
        const result = await fetchFiles({client, folder: FOLDER, files: [entry(LARGE_FILE)], mode: 'land', root: dest, concurrency: 1, resume: sup.resume})
        assert.equal(result.bytes, largeBytes)
        await fetchFiles({client, folder: FOLDER, files: [entry(LARGE_FILE)], mode: 'verify', concurrency: 1})
      })
      assert.ok(await sameBytes(source(LARGE_FILE), path.join(dest, LARGE_FILE)))
      await assertNoLeftovers(dest)
    })

    test(`lands ${manyFiles} small files with concurrency ${concurrency}`, {timeout: 300_000}, async () => {
      const dest = await fx.makeDest()
      const files = [...fx.entries.values()].filter((e) => e.path.startsWith(`${MANY_DIR}/`))
      assert.equal(files.length, manyFiles)
      await peer({concurrency}, async ({client}) => {
        const result = await fetchFiles({client, folder: FOLDER, files, mode: 'land', root: dest, concurrency})
        assert.equal(result.fetched, manyFiles)
      })
      assert.deepEqual(await listTree(dest), files.map((f) => f.path).sort())
      for (const f of files) assert.ok(await sameBytes(source(f.path), path.join(dest, f.path)), `${f.path} differs`)
    })

    test('a missing file is E_NOT_FOUND and nothing is landed', {}, async () => {
      const dest = await fx.makeDest()
      await peer({}, async ({client}) => {
        await rejectsWith(client.get(FOLDER, 'no such file.txt'), 'E_NOT_FOUND')
        const files = [{path: 'missing/nope.txt', size: 3, sha256: 'a'.repeat(64)}]
        await rejectsWith(fetchFiles({client, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 1, retries: 1, resume: sup.resume}), 'E_NOT_FOUND')
      })
      await assertNoLeftovers(dest, ['missing/nope.txt'])
    })

    test('an unknown folder is E_NOT_FOUND', {}, async () => {
      await peer({}, async ({client}) => {
        await rejectsWith(client.get('no-such-folder', HOSTILE_NAMES[0]!), 'E_NOT_FOUND')
      })
    })

    test('an unreadable file is E_ACCESS and nothing is landed', {}, async () => {
      const dest = await fx.makeDest()
      await peer({plan: {unreadable: new Set([SECRET_FILE])}}, async ({client}) => {
        await rejectsWith(client.get(FOLDER, SECRET_FILE), 'E_ACCESS')
        await rejectsWith(fetchFiles({client, folder: FOLDER, files: [entry(SECRET_FILE)], mode: 'land', root: dest, concurrency: 1, retries: 1}), 'E_ACCESS')
      })
      await assertNoLeftovers(dest, [SECRET_FILE])
    })

    test('a read failing mid-file reaches the client as E_CONNECTION_LOST, not a clean short end', {}, async () => {
      await peer({plan: {drop: new Map([[FLAKY_FILE, {times: 1, afterBytes: 1 << 20}]])}}, async ({client}) => {
        await rejectsWith(async () => {
          const {stream} = await client.get(FOLDER, FLAKY_FILE)
          await readAll(stream)
        }, 'E_CONNECTION_LOST')
        // The client must still work after a dropped transfer.
        const {stream} = await client.get(FOLDER, FLAKY_FILE)
        assert.ok((await readAll(stream)).equals(await readFile(source(FLAKY_FILE))))
      })
    })

    test('fetchFiles retries a dropped file and lands it intact, leaving no part file', {}, async () => {
      const dest = await fx.makeDest()
      const events: FetchEvent[] = []
      await peer({plan: {drop: new Map([[FLAKY_FILE, {times: 2, afterBytes: 1 << 20}]])}}, async ({client}) => {
        await fetchFiles({
          client,
          folder: FOLDER,
          files: [entry(FLAKY_FILE)],
          mode: 'land',
          root: dest,
          concurrency: 1,
          retries: 3,
          resume: sup.resume,
          onEvent: (e) => events.push(e),
        })
      })
      assert.equal(events.filter((e) => e.event === 'retry').length, 2, 'expected two retries')
      assert.ok(await sameBytes(source(FLAKY_FILE), path.join(dest, FLAKY_FILE)))
      await assertNoLeftovers(dest)
    })

    test('a fetch that keeps failing leaves no partial target (and no part file unless resuming)', {}, async () => {
      const dest = await fx.makeDest()
      await peer({plan: {drop: new Map([[FLAKY_FILE, {times: 1000, afterBytes: 1 << 20}]])}}, async ({client}) => {
        await rejectsWith(
          fetchFiles({client, folder: FOLDER, files: [entry(FLAKY_FILE)], mode: 'land', root: dest, concurrency: 1, retries: 1, resume: false}),
          'E_CONNECTION_LOST',
        )
        await assertNoLeftovers(dest, [FLAKY_FILE])
        if (sup.resume) {
          // With resume on, core keeps the part file on purpose so that the next run continues it.
          await rejectsWith(
            fetchFiles({client, folder: FOLDER, files: [entry(FLAKY_FILE)], mode: 'land', root: dest, concurrency: 1, retries: 1, resume: true}),
            'E_CONNECTION_LOST',
          )
          assert.ok(!(await listTree(dest)).includes(FLAKY_FILE), 'a partial target was landed')
        }
      })
    })

    test('a wrong sha256 is E_HASH_MISMATCH and nothing is landed', {}, async () => {
      const dest = await fx.makeDest()
      const name = HOSTILE_NAMES[0]!
      await peer({}, async ({client}) => {
        const files = [{...entry(name), sha256: 'f'.repeat(64)}]
        await rejectsWith(fetchFiles({client, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 1, resume: sup.resume}), 'E_HASH_MISMATCH')
        await rejectsWith(fetchFiles({client, folder: FOLDER, files, mode: 'verify', concurrency: 1}), 'E_HASH_MISMATCH')
      })
      assert.deepEqual(await listTree(dest), [])
    })

    test('unsafe paths in a file list are E_PATH_UNSAFE before any byte moves', {}, async () => {
      const dest = await fx.makeDest()
      await peer({}, async ({client, source: served}) => {
        for (const bad of ['../x', '/etc/passwd', 'a/../../x', 'a//b', './x', 'x\0y']) {
          const files = [entry(HOSTILE_NAMES[0]!), {path: bad, size: 1, sha256: 'a'.repeat(64)}]
          await rejectsWith(fetchFiles({client, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 2}), 'E_PATH_UNSAFE')
        }
        assert.equal(served.opens.length, 0, 'the server opened a file although the list was refused')
      })
      assert.deepEqual(await listTree(dest), [])
    })

    test('get() never serves a path that leaves the folder', {}, async () => {
      await peer({}, async ({client}) => {
        for (const bad of ['../outside/secret', '../../etc/passwd', '/etc/passwd', 'a/../../outside/secret']) {
          await rejectsWith(async () => {
            const {stream} = await client.get(FOLDER, bad)
            const got = await readAll(stream)
            assert.ok(!got.toString().includes(OUTSIDE_CONTENT.trim()), `served ${bad}`)
          }, LEAVES_FOLDER)
        }
      })
    })

    test('a symlink inside the folder pointing outside it is not served', {}, async () => {
      const dest = await fx.makeDest()
      assert.ok(!fx.entries.has(ESCAPE_LINK), 'core scans symlinks as files')
      const files = [{path: ESCAPE_LINK, size: OUTSIDE_CONTENT.length, sha256: createHash('sha256').update(OUTSIDE_CONTENT).digest('hex')}]
      await peer({}, async ({client}) => {
        await rejectsWith(async () => {
          const {stream} = await client.get(FOLDER, ESCAPE_LINK)
          await readAll(stream)
        }, ['E_NOT_FOUND', 'E_PATH_UNSAFE', 'E_ACCESS'])
        await rejectsWith(fetchFiles({client, folder: FOLDER, files, mode: 'land', root: dest, concurrency: 1, retries: 1}), [
          'E_NOT_FOUND',
          'E_PATH_UNSAFE',
          'E_ACCESS',
        ])
      })
      assert.deepEqual(await listTree(dest), [])
    })

    test('a peer the folder does not allow is refused with E_ACCESS', {}, async () => {
      await peer({mayRead: () => false}, async ({client}) => {
        await rejectsWith(async () => {
          const {stream} = await client.get(FOLDER, HOSTILE_NAMES[0]!)
          await readAll(stream)
        }, 'E_ACCESS')
      })
    })

    test('the FileSource learns who is asking', {}, async () => {
      await peer({}, async ({client, source: served, clientIdentity}) => {
        await readAll((await client.get(FOLDER, HOSTILE_NAMES[0]!)).stream)
        assert.ok(served.whos.length > 0, 'the server never consulted the FileSource')
        for (const who of served.whos) {
          assert.equal(who.address, '127.0.0.1', 'IPv4-mapped addresses must be given as IPv4')
          if (sup.peerAuth) assert.equal(who.peer?.toString(), clientIdentity.id.toString())
        }
      })
    })

    test(
      'the grant secret the client was given reaches the FileSource on every request',
      {skip: sup.peerAuth && 'transport authenticates peers by key (supports.peerAuth)'},
      async () => {
        const grant = 'G'.repeat(43)
        await peer({grant, mayRead: (_f, who) => who.grant === grant}, async ({client, source: served}) => {
          await readAll((await client.get(FOLDER, HOSTILE_NAMES[0]!)).stream)
          if (client.getMany)
            for await (const item of client.getMany(FOLDER, [{path: HOSTILE_NAMES[0]!, size: 1 << 20}]))
              assert.ok(!('error' in item), `batch item refused: ${'error' in item ? item.error.code : ''}`)
          assert.ok(served.whos.length > 0, 'the server never consulted the FileSource')
          for (const who of served.whos) assert.equal(who.grant, grant)
        })
      },
    )

    test('a wrong grant secret opens nothing (E_ACCESS)', {skip: sup.peerAuth && 'transport authenticates peers by key (supports.peerAuth)'}, async () => {
      const grant = 'G'.repeat(43)
      await peer({grant: 'W'.repeat(43), mayRead: (_f, who) => who.grant === grant}, async ({client}) => {
        await rejectsWith(async () => {
          const {stream} = await client.get(FOLDER, HOSTILE_NAMES[0]!)
          await readAll(stream)
        }, 'E_ACCESS')
      })
    })

    test(
      'admit() returning false refuses the peer with E_ACCESS',
      {skip: !sup.peerAuth && 'transport does not authenticate peers (supports.peerAuth false)'},
      async () => {
        const served = await serveFixture(transport, fx, {admit: () => false})
        try {
          await rejectsWith(async () => {
            const client = await transport.connect!(connectOptions(served, new Identity(generateKeyPair()), {}, timeoutMs))
            try {
              await readAll((await client.get(FOLDER, HOSTILE_NAMES[0]!)).stream)
            } finally {
              await client.close()
            }
          }, 'E_ACCESS')
        } finally {
          await served.server.close()
        }
      },
    )

    test(
      'a server that is not the expected peer is refused with E_HOST_KEY_MISMATCH',
      {skip: !sup.serverAuth && 'transport does not authenticate servers (supports.serverAuth false)'},
      async () => {
        const served = await serveFixture(transport, fx)
        try {
          const someoneElse = new Identity(generateKeyPair()).id
          await rejectsWith(async () => {
            const client = await transport.connect!(connectOptions(served, new Identity(generateKeyPair()), {expectedPeer: someoneElse}, timeoutMs))
            try {
              await readAll((await client.get(FOLDER, HOSTILE_NAMES[0]!)).stream)
            } finally {
              await client.close()
            }
          }, 'E_HOST_KEY_MISMATCH')
        } finally {
          await served.server.close()
        }
      },
    )

    test(
      'get() with an offset returns exactly the bytes from that offset',
      {skip: !sup.resume && 'transport cannot resume (supports.resume false)'},
      async () => {
        const whole = await readFile(source(RESUME_FILE))
        await peer({}, async ({client}) => {
          for (const offset of [0, 1, 65_536, 700_001, whole.length - 1, whole.length]) {
            const {stream} = await client.get(FOLDER, RESUME_FILE, {offset})
            const got = await readAll(stream)
            assert.equal(got.length, whole.length - offset, `length at offset ${offset}`)
            assert.ok(got.equals(whole.subarray(offset)), `bytes at offset ${offset}`)
          }
        })
      },
    )

    test('fetchFiles resumes a part file left by an earlier attempt', {skip: !sup.resume && 'transport cannot resume (supports.resume false)'}, async () => {
      const dest = await fx.makeDest()
      // Let the first run fail for good (resume on keeps the part), then a second run completes it.
      await peer({plan: {drop: new Map([[FLAKY_FILE, {times: 2, afterBytes: 1 << 20}]])}}, async ({client, source: served}) => {
        await rejectsWith(
          fetchFiles({client, folder: FOLDER, files: [entry(FLAKY_FILE)], mode: 'land', root: dest, concurrency: 1, retries: 1, resume: true}),
          'E_CONNECTION_LOST',
        )
        const parts = (await listTree(dest)).filter((p) => p.startsWith(PART_PREFIX))
        const before = served.opens.length
        await fetchFiles({client, folder: FOLDER, files: [entry(FLAKY_FILE)], mode: 'land', root: dest, concurrency: 1, resume: true})
        const resumed = served.opens.slice(before)
        assert.equal(resumed.length, 1)
        // Only when the first attempt got bytes onto disk is there something to resume from.
        if (parts.length > 0) assert.ok((resumed[0]!.range?.start ?? 0) > 0, 'the second run started from zero although a part file was there')
      })
      assert.ok(await sameBytes(source(FLAKY_FILE), path.join(dest, FLAKY_FILE)))
      await assertNoLeftovers(dest)
    })

    test('connecting to a port nobody listens on is E_CONNECT', {}, async () => {
      const port = await closedPort()
      await rejectsWith(async () => {
        const client = await transport.connect!({host: '127.0.0.1', port, identity: new Identity(generateKeyPair()), concurrency: 1, timeoutMs})
        try {
          await client.get(FOLDER, HOSTILE_NAMES[0]!)
        } finally {
          await client.close()
        }
      }, 'E_CONNECT')
    })

    test('server.close() ends a transfer in flight and resolves; the client sees the loss', {}, async () => {
      const served = await serveFixture(transport, fx)
      const client = await transport.connect!(connectOptions(served, new Identity(generateKeyPair()), {}, timeoutMs))
      try {
        const {stream} = await client.get(FOLDER, LARGE_FILE)
        const it = stream[Symbol.asyncIterator]()
        await it.next()
        let timer: NodeJS.Timeout | undefined
        const closed = await Promise.race([
          served.server.close().then(() => true),
          new Promise<boolean>((resolve) => {
            timer = setTimeout(() => resolve(false), 10_000)
          }),
        ])
        clearTimeout(timer)
        assert.ok(closed, 'server.close() did not resolve within 10 s while a transfer was open')
        await rejectsWith(async () => {
          for (let r = await it.next(); !r.done; r = await it.next());
          throw new Error('the stream ended cleanly although the server closed mid-file')
        }, ['E_CONNECTION_LOST', 'E_TIMEOUT'])
      } finally {
        await client.close()
        await client.close()
        await served.server.close()
      }
    })
  })
}
