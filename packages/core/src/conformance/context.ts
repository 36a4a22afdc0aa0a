// What every group of the conformance suite shares: the transport under test, the fixture, and assertion helpers.
import assert from 'node:assert/strict'
import {createServer} from 'node:net'
import path from 'node:path'
import type {Readable} from 'node:stream'
import {it} from 'node:test'
import {FpeerError, isFpeerError, type ErrorCode} from '../errors.js'
import {PART_PREFIX} from '../fs/safe-path.js'
import type {ConnectOptions, TransferClient, Transport, TransportSupports} from '../transport.js'
import {FOLDER, listTree, type Fixture, type FixtureEntry} from './fixture.js'
import {withPeer, type Peer, type PeerSetup} from './peer.js'

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

/** One run of the suite: the transport, its declared support, the settings, and the fixture once `before()` built it. */
export interface Suite {
  transport: Transport
  sup: TransportSupports
  opts: ConformanceOptions
  largeBytes: number
  manyFiles: number
  concurrency: number
  timeoutMs: number
  /** The served tree; set by the suite's `before()`, so only read it inside a case. */
  readonly fx: Fixture
  /** The fixture's entry for `p` (size, sha256). */
  entry(p: string): FixtureEntry
  /** Where `p` is in the served folder on disk. */
  source(p: string): string
  /** `transport.connect`, which a transport that fetches must have. */
  connect(options: ConnectOptions): Promise<TransferClient>
  /** Runs `fn` with a fresh server over the fixture and a client connected to it. */
  peer<T>(setup: PeerSetup, fn: (peer: Peer) => Promise<T>): Promise<T>
  /** Registers a case, honouring `opts.skip` by title; `skip` is the reason a declared capability is missing. */
  test(title: string, options: {skip?: string | false; timeout?: number}, fn: (t: TestContext) => Promise<void>): void
}

/** The part of node:test's TestContext a case uses: skipping at run time, when only a connected client can tell. */
export interface TestContext {
  skip(message?: string): void
}

export function createSuite(opts: ConformanceOptions, fixture: () => Fixture): Suite {
  const {transport} = opts
  const suite: Suite = {
    transport,
    sup: transport.supports,
    opts,
    largeBytes: opts.largeFileBytes ?? 64 * (1 << 20),
    manyFiles: opts.manyFiles ?? 2000,
    concurrency: opts.concurrency ?? 8,
    timeoutMs: opts.timeoutMs ?? 20_000,
    get fx() {
      return fixture()
    },
    entry(p) {
      const e = fixture().entries.get(p)
      assert.ok(e, `fixture has no ${p}`)
      return e
    },
    connect(options) {
      assert.ok(transport.connect, 'supports.fetch but no connect()')
      return transport.connect(options)
    },
    source: (p) => path.join(fixture().root, ...p.split('/')),
    peer: (setup, fn) => withPeer(transport, fixture(), suite.timeoutMs, setup, fn),
    test(title, options, fn) {
      // node:test awaits the case, so nothing is returned to float.
      it(title, {skip: opts.skip?.[title] ?? options.skip ?? false, timeout: options.timeout ?? 60_000}, (t) => fn(t))
    },
  }
  return suite
}

/** Codes a request for a path outside the folder may end with: refused, or simply not there. */
export const LEAVES_FOLDER: readonly ErrorCode[] = ['E_PATH_UNSAFE', 'E_NOT_FOUND', 'E_ACCESS']

export {FOLDER}

export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** Asserts that `promise` rejects with a FpeerError whose code is one of `codes`. */
export async function rejectsWith(promise: Promise<unknown> | (() => Promise<unknown>), codes: ErrorCode | readonly ErrorCode[]): Promise<FpeerError> {
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

/** Asserts that no part file is left under `dest` and that none of `absent` was landed. */
export async function assertNoLeftovers(dest: string, absent: string[] = []): Promise<void> {
  const tree = await listTree(dest)
  assert.deepEqual(
    tree.filter((p) => path.posix.basename(p).startsWith(PART_PREFIX)),
    [],
    'a part file was left behind',
  )
  for (const p of absent) assert.ok(!tree.includes(p), `${p} was landed although its fetch failed`)
}

/** A test title for a name: non-ASCII escaped (so the NFC and NFD spellings read differently), long names shortened. */
export function label(name: string): string {
  const short = name.length > 60 ? `${name.slice(0, 20)}…(${Buffer.byteLength(name)} bytes)` : name
  return `"${short.replace(/[^\x20-\x7e…]/gu, (c) => `\\u{${(c.codePointAt(0) ?? 0).toString(16)}}`)}"`
}

/** `list[i]`, which the case knows is there: fails the case, not with a TypeError, when it is not. */
export function at<T>(list: readonly T[], i: number): T {
  const v = list[i]
  assert.ok(v !== undefined, `no item ${i} (of ${list.length})`)
  return v
}

/** A port on 127.0.0.1 that nobody listens on (it was free a moment ago). */
export async function closedPort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as {port: number}).port
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

/**
 * Waits until `cond()` holds, looking every 10 ms, and fails naming `what` after `limitMs`:
 * a bound so that a broken transport fails the case instead of hanging it, not a measure of speed.
 */
export async function until(cond: () => boolean, what: string, limitMs = 15_000): Promise<void> {
  for (let waited = 0; !cond(); waited += 10) {
    assert.ok(waited < limitMs, `${what}: still not so after ${limitMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
