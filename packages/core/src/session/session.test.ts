// In-process tests of the "Becoming a Peer" handshake: host and requester in one process, over a loopback control socket and the in-memory transport.
import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import {mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import {Readable} from 'node:stream'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {GrantTable} from '../access/grants.js'
import {ReplayGuard, formatDestination} from '../access/replay-guard.js'
import {FpeerError, isFpeerError} from '../errors.js'
import {LocalFileSource} from '../fs/local-source.js'
import {Identity, type PeerId, generateKeyPair} from '../identity.js'
import {MessageChannel, connectChannel} from '../net/channel.js'
import {TransportRegistry} from '../registry.js'
import type {PeerRecord} from '../store/peerfile.js'
import {createMemoryTransport} from '../testing/memory-transport.js'
import {fileTree as tree} from '../testing/checks.js'
import {type AccessContext, type FileSource, silentLogger, type TransportServer} from '../transport.js'
import {signMessage} from '../wire/signing.js'
import type {BePeerRequest, FileEntry, FilesUpdated} from '../wire/types.js'
import {defaultTimeouts, type HostContext} from './context.js'
import type {FetchEvent} from '../transfer/fetch.js'
import {randomNonce, refusedBy} from './handshake.js'
import {serveConnection} from './host.js'
import {requestFolder, type RequestOptions} from './requester.js'

const FOLDER = 'share'
type Opened = Awaited<ReturnType<FileSource['open']>>
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex')
const TIMEOUTS = defaultTimeouts({reply: 20_000, transfer: 60_000, stall: 20_000, io: 20_000, message: 20_000})
const FILES: Record<string, string> = {'a.txt': 'hello\n', 'dir/b.txt': 'b'.repeat(5000), 'dir/deeper/c.bin': 'c'.repeat(300_000)}

/** A host in this process: a control server on 127.0.0.1 running serveConnection, and a memory transport server for its folder. */
interface Host {
  identity: Identity
  port: number
  confirmed: PeerRecord[]
  /** What the host's list says, before it is sent: a test may spoil it. */
  list: (entries: FileEntry[]) => FileEntry[]
  mayJoin: (sender: PeerId | undefined) => boolean
  /** Which senders the host counts as confirmed peers. */
  isPeer: (id: PeerId) => boolean
  /** The peer a busy host hands requests to (seed step 8); undefined: not busy. */
  delegate: HostContext['delegateFor']
  /** Every control connection's serveConnection, to await before the host stops. */
  sessions: Set<Promise<void>>
  /** Offers early=1 (protocol 4.9). */
  early: boolean
  /** Sees the host's fetch-back events. */
  onFetchEvent: (ev: FetchEvent) => void
  /** Holds the host's server from opening a file until the returned promise settles (undefined: at once). */
  gate: (path: string) => Promise<void> | undefined
  /** Reshapes what the host's server sends of a file (a stream held back or cut). */
  shape: (path: string, opened: Opened) => Opened
  /** The fields of each `verified peer copy` the host logged. */
  verifiedLogs: Array<Record<string, unknown>>
  /** Told each handshake failure's code, as the host logs it. */
  onFailed: (code: string) => void
  /** The host's calls of its transport's prepare() and connect(), in order. */
  transportCalls: string[]
  close(): Promise<void>
}

describe('the handshake in process (host.ts and requester.ts)', () => {
  let work: string
  let hostDir: string
  const transport = createMemoryTransport()
  const registry = new TransportRegistry()
  registry.add(transport, 'memory')
  let host: Host
  let n = 0

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'fpeer-session-'))
    hostDir = path.join(work, 'host')
    for (const [p, c] of Object.entries(FILES)) {
      await mkdir(path.dirname(path.join(hostDir, p)), {recursive: true})
      await writeFile(path.join(hostDir, p), c)
    }
    host = await startHost()
  })
  after(async () => {
    await host?.close()
    await rm(work, {recursive: true, force: true})
  })

  async function startHost(): Promise<Host> {
    const identity = new Identity(generateKeyPair())
    const grants = new GrantTable()
    const local = new LocalFileSource({root: (f) => (f === FOLDER ? hostDir : undefined), mayRead: (f, who) => grants.allows(f, who)}, () => [FOLDER])
    const source: FileSource = {
      folders: (who) => local.folders(who),
      stat: (folder, p, who) => local.stat(folder, p, who),
      list: (folder, p, who) => local.list(folder, p, who),
      open: async (folder, p, who: AccessContext, range) => {
        await h.gate(p)
        return h.shape(p, await local.open(folder, p, who, range))
      },
    }
    const served: TransportServer = await transport.serve({host: '127.0.0.1', port: 0, files: source, identity})
    // The host's own registry: the same transport, with its prepare() and connect() recorded.
    const hostRegistry = new TransportRegistry()
    hostRegistry.add(
      {
        ...transport,
        prepare: async () => void h.transportCalls.push('prepare'),
        connect: async (options) => {
          h.transportCalls.push('connect')
          return transport.connect!(options)
        },
      },
      'memory',
    )
    const sessions = new Set<Promise<void>>()
    const h: Host = {
      identity,
      port: 0,
      confirmed: [],
      list: (e) => e,
      mayJoin: () => true,
      isPeer: () => false,
      delegate: () => undefined,
      sessions,
      early: true,
      onFetchEvent: () => {},
      gate: () => undefined,
      shape: (_p, o) => o,
      verifiedLogs: [],
      onFailed: () => {},
      transportCalls: [],
      close: async () => {},
    }
    const ctx: HostContext = {
      identity,
      registry: hostRegistry,
      log: {
        ...silentLogger,
        info: (msg, fields) => (msg === 'verified peer copy' ? h.verifiedLogs.push(fields ?? {}) : undefined),
        warn: (msg, fields) => (msg === 'handshake failed' ? h.onFailed(String(fields?.code)) : undefined),
      },
      timeouts: TIMEOUTS,
      concurrency: 2,
      get early() {
        return h.early
      },
      onFetchEvent: (ev) => h.onFetchEvent(ev),
      folder: async (name) => (name === FOLDER ? {open: false} : undefined),
      mayJoin: async (_folder, sender) => h.mayJoin(sender),
      fileList: async () => h.list(Object.entries(FILES).map(([p, c]) => ({path: p, size: Buffer.byteLength(c), sha256: sha(c), mtimeMs: 1_700_000_000_000}))),
      isPeer: (_folder, id) => h.isPeer(id),
      delegateFor: (folder, requester) => h.delegate?.(folder, requester),
      servedPort: (protocol) => (protocol === transport.protocol ? served.port : undefined),
      grant: (folder, peer) => grants.issue(folder, peer),
      replay: new ReplayGuard(),
      confirmPeer: async (_folder, record) => {
        h.confirmed.push(record)
      },
    }
    const control = net.createServer((socket) => {
      const s = serveConnection(new MessageChannel(socket), ctx)
      sessions.add(s)
      void s.finally(() => sessions.delete(s))
    })
    await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve))
    h.port = (control.address() as net.AddressInfo).port
    h.close = async () => {
      await new Promise((r) => control.close(r))
      await Promise.allSettled([...sessions])
      await served.close()
    }
    return h
  }

  const request = (over: Partial<RequestOptions> = {}): Promise<Awaited<ReturnType<typeof requestFolder>>> =>
    requestFolder({
      host: '127.0.0.1',
      port: host.port,
      folder: FOLDER,
      into: path.join(work, `into-${++n}`),
      bind: '127.0.0.2',
      identity: new Identity(generateKeyPair()),
      registry,
      concurrency: 2,
      timeouts: TIMEOUTS,
      log: silentLogger,
      ...over,
    })

  const reset = () => {
    host.list = (e) => e
    host.mayJoin = () => true
    host.isPeer = () => false
    host.delegate = () => undefined
    host.early = true
    host.onFetchEvent = () => {}
    host.gate = () => undefined
    host.shape = (_p, o) => o
    host.onFailed = () => {}
  }

  /** Captures the Line 1 of each message a request sends or receives. */
  const wireLog = () => {
    const lines: Array<{direction: string; line1: string}> = []
    return {lines, onWire: (direction: 'sent' | 'received', text: string) => lines.push({direction, line1: text.split('\n')[0]!})}
  }

  it('lands the folder, the host checks the copy back and confirms the requester', async () => {
    reset()
    const me = new Identity(generateKeyPair())
    const before = host.confirmed.length
    const r = await request({identity: me, expectedHost: host.identity.id})
    assert.equal(r.protocol, 'MEMORY')
    assert.equal(r.host.id, host.identity.id.toString())
    assert.equal(r.transfer.fetched, 3)
    assert.deepEqual(await tree(r.into), Object.keys(FILES).sort())
    for (const [p, c] of Object.entries(FILES)) assert.equal(await readFile(path.join(r.into, p), 'utf8'), c)
    assert.equal(host.confirmed.length, before + 1)
    assert.equal(host.confirmed.at(-1)?.id, me.id.toString())
    assert.equal(host.confirmed.at(-1)?.address, '127.0.0.2')
  })

  it('loads the likely transport’s client while the host answers: prepare() runs before connect(), once per request', async () => {
    reset()
    const calls: string[] = []
    const mine = new TransportRegistry()
    mine.add(
      {
        ...transport,
        prepare: async () => void calls.push('prepare'),
        connect: async (options) => {
          calls.push('connect')
          return transport.connect!(options)
        },
      },
      'memory',
    )
    const r = await request({registry: mine})
    assert.equal(r.transfer.fetched, 3)
    assert.deepEqual(calls, ['prepare', 'connect'])
    // A prepare() that fails costs the request nothing: connect() decides.
    const failing = new TransportRegistry()
    failing.add({...transport, prepare: () => Promise.reject(new Error('cannot load'))}, 'memory')
    assert.equal((await request({registry: failing})).transfer.fetched, 3)
  })

  it('the host loads its fetch-back client once the FilesToGet is sent to a new peer: prepare() before its first connect(), early or not', async () => {
    for (const early of [true, false]) {
      reset()
      host.early = early
      host.transportCalls.length = 0
      const r = await request()
      assert.equal(r.transfer.fetched, 3)
      assert.equal(host.transportCalls[0], 'prepare', `early=${early}: ${host.transportCalls.join(', ')}`)
      assert.ok(host.transportCalls.includes('connect'), 'the host read the copy back')
    }
    // A confirmed peer catching up may fetch nothing to read back: no client is loaded ahead for it.
    reset()
    host.isPeer = () => true
    host.transportCalls.length = 0
    await request()
    assert.ok(!host.transportCalls.includes('prepare'), host.transportCalls.join(', '))
  })

  it('an unknown folder is refused with E_UNKNOWN_FOLDER, the peer’s code, and nothing is created', async () => {
    reset()
    const into = path.join(work, 'never')
    await assert.rejects(
      request({folder: 'nope', into}),
      (e: unknown) => isFpeerError(e, 'E_UNKNOWN_FOLDER') && (e.details as {peerCode: string}).peerCode === 'E_UNKNOWN_FOLDER',
    )
    await assert.rejects(readdir(into), {code: 'ENOENT'})
  })

  it('a requester the folder does not allow is E_NOT_ALLOWED', async () => {
    reset()
    host.mayJoin = () => false
    const before = host.confirmed.length
    await assert.rejects(request(), {code: 'E_NOT_ALLOWED'})
    assert.equal(host.confirmed.length, before)
  })

  it('a refusal of a signed request is signed for its sender: with the host expected, it carries refusedBy (10.6)', async () => {
    reset()
    host.mayJoin = () => false
    const me = new Identity(generateKeyPair())
    await assert.rejects(
      request({identity: me, expectedHost: host.identity.id}),
      (e: unknown) => isFpeerError(e, 'E_NOT_ALLOWED') && refusedBy(e) === host.identity.id.toString(),
    )
    // Without knowing the host's ID, a refusal cannot be told from anybody's: it ends no trust.
    await assert.rejects(request({identity: me}), (e: unknown) => isFpeerError(e, 'E_NOT_ALLOWED') && refusedBy(e) === undefined)
  })

  it('a busy host hands a newcomer to another peer, but answers a confirmed peer catching up itself (10.5, 10.6)', async () => {
    reset()
    const other = new Identity(generateKeyPair())
    host.delegate = () => ({id: other.id, address: '127.0.0.9', controlPort: 9})
    const newcomer = new Identity(generateKeyPair())
    await assert.rejects(
      request({identity: newcomer, expectedHost: host.identity.id, followDelegation: false}),
      (e: unknown) => isFpeerError(e, 'E_PEER_ERROR') && (e.details as {peerCode: string}).peerCode === 'E_DELEGATED',
    )
    const member = new Identity(generateKeyPair())
    host.isPeer = (id) => id.equals(member.id)
    const before = host.confirmed.length
    const r = await request({identity: member, expectedHost: host.identity.id, followDelegation: false})
    assert.equal(r.host.id, host.identity.id.toString())
    assert.equal(host.confirmed.length, before + 1)
    assert.equal(host.confirmed.at(-1)?.id, member.id.toString())
  })

  it('a host whose list does not match its content is E_HASH_MISMATCH, nothing of that file lands and nobody is confirmed', async () => {
    reset()
    host.list = (entries) => entries.map((e) => (e.path === 'a.txt' ? {...e, sha256: sha('something else\n')} : e))
    const before = host.confirmed.length
    const into = path.join(work, 'spoiled')
    await assert.rejects(request({into}), {code: 'E_HASH_MISMATCH'})
    assert.equal((await tree(into).catch((): string[] => [])).includes('a.txt'), false)
    assert.equal(host.confirmed.length, before)
  })

  it('a host of another identity than expected is refused (E_PEER_ID_MISMATCH) before any byte moves', async () => {
    reset()
    const into = path.join(work, 'other-host')
    await assert.rejects(request({into, expectedHost: new Identity(generateKeyPair()).id}), {code: 'E_PEER_ID_MISMATCH'})
    assert.deepEqual(await tree(into).catch((): string[] => []), [])
  })

  it('a host that drops the control connection is E_CONNECTION_LOST', async () => {
    const dropper = net.createServer((s) => s.destroy())
    await new Promise<void>((resolve) => dropper.listen(0, '127.0.0.1', resolve))
    try {
      await assert.rejects(request({port: (dropper.address() as net.AddressInfo).port}), {code: 'E_CONNECTION_LOST'})
    } finally {
      await new Promise((r) => dropper.close(r))
    }
  })

  it('an abort stops the request with the signal’s reason, and the host is still serving', async () => {
    reset()
    const ac = new AbortController()
    await assert.rejects(
      request({
        signal: ac.signal,
        onEvent: (ev) => {
          if (ev.event === 'files-to-get') ac.abort(new FpeerError('E_INTERRUPTED', 'stopped by the test'))
        },
      }),
      {code: 'E_INTERRUPTED'},
    )
    // The host took the loss of that connection in its stride.
    const again = await request()
    assert.equal(again.transfer.fetched, 3)
  })
  describe('overlapping the two transfers (early=1, protocol 4.9)', () => {
    it('the host checks a landed file back while the requester still fetches the rest, then confirms', async () => {
      reset()
      // The big file is held on the host until the host has checked a.txt back from the
      // requester, which it can only do early: without 4.9 it would check after FilesUpdated,
      // which cannot come before the big file lands. The bound only turns a hang into a failure.
      let checkedEarly = false
      const aChecked = new Promise<void>((resolve) => {
        host.onFetchEvent = (ev) => {
          if (ev.event === 'file-done' && ev.path === 'a.txt') {
            checkedEarly = true
            resolve()
          }
        }
      })
      const bound = new Promise<void>((resolve) => setTimeout(resolve, 15_000).unref())
      host.gate = (p) => (p === 'dir/deeper/c.bin' ? Promise.race([aChecked, bound]) : undefined)
      const wire = wireLog()
      const logs = host.verifiedLogs.length
      const before = host.confirmed.length
      const r = await request({onWire: wire.onWire})
      assert.equal(checkedEarly, true)
      assert.equal(r.transfer.fetched, 3)
      for (const [p, c] of Object.entries(FILES)) assert.equal(await readFile(path.join(r.into, p), 'utf8'), c)
      assert.equal(host.confirmed.length, before + 1)
      const sent = wire.lines.filter((l) => l.direction === 'sent').map((l) => l.line1)
      assert.match(sent[0]!, /\tearly=1/)
      assert.ok(
        sent.some((l) => l.startsWith('FilesUpdated') && /\tpart=1/.test(l)),
        'a progress FilesUpdated was sent',
      )
      assert.ok(/\tpart=1/.test(sent.at(-1)!) === false, 'the last message is the final FilesUpdated')
      const v = host.verifiedLogs.slice(logs)
      assert.equal(v.length, 1)
      assert.ok((v[0]!.early as number) >= 1)
      assert.equal(v[0]!.files, 3)
    })

    it('a copy that differs once announced ends the handshake at once: the requester, still fetching, reports the host’s E_HASH_MISMATCH', async () => {
      reset()
      // The big file is held until the host has failed the handshake, so the requester is
      // still fetching when the host stops; the bound only turns a hang into a failure.
      const failed = new Promise<string>((resolve) => (host.onFailed = resolve))
      const bound = new Promise<void>((resolve) => setTimeout(resolve, 15_000).unref())
      host.gate = (p) => (p === 'dir/deeper/c.bin' ? Promise.race([failed.then(() => {}), bound]) : undefined)
      const into = path.join(work, 'tampered')
      const before = host.confirmed.length
      await assert.rejects(
        request({
          into,
          // Spoils the landed a.txt (same size) before it is announced: what the host then reads back is wrong.
          onEvent: (ev) => {
            if (ev.event === 'file-done' && ev.path === 'a.txt') writeFileSync(path.join(into, 'a.txt'), 'HELLO\n')
          },
        }),
        (e: unknown) => isFpeerError(e, 'E_PEER_ERROR') && (e.details as {peerCode: string}).peerCode === 'E_HASH_MISMATCH',
      )
      assert.equal(await failed, 'E_HASH_MISMATCH')
      assert.equal(host.confirmed.length, before)
    })

    it('a requester that does not offer early=1 (as before 4.9) gets no early=1 and sends no progress message', async () => {
      reset()
      const wire = wireLog()
      const before = host.confirmed.length
      const r = await request({early: false, onWire: wire.onWire})
      assert.equal(r.transfer.fetched, 3)
      assert.equal(host.confirmed.length, before + 1)
      assert.equal(
        wire.lines.some((l) => /\t(early|part)=1/.test(l.line1)),
        false,
      )
    })

    it('a host that does not offer early=1 gets no progress message from a requester that can send them', async () => {
      reset()
      host.early = false
      const wire = wireLog()
      const before = host.confirmed.length
      const r = await request({onWire: wire.onWire})
      assert.equal(r.transfer.fetched, 3)
      assert.equal(host.confirmed.length, before + 1)
      const sent = wire.lines.filter((l) => l.direction === 'sent').map((l) => l.line1)
      const received = wire.lines.filter((l) => l.direction === 'received').map((l) => l.line1)
      assert.match(sent[0]!, /\tearly=1/)
      assert.equal(
        received.some((l) => /\tearly=1/.test(l)),
        false,
      )
      assert.equal(
        sent.some((l) => /\tpart=1/.test(l)),
        false,
      )
    })
  })

  describe('serving a large file while it is still fetched (follow=1, protocol 4.10)', () => {
    const BIG = 6 << 20
    const big = Buffer.alloc(BIG)
    for (let i = 0; i < BIG; i++) big[i] = (i * 31 + (i >> 12)) & 0xff
    const bigEntry = {path: 'big.bin', size: BIG, sha256: sha(big), mtimeMs: 1_700_000_000_000}
    /** Lists big.bin beside the other files for the length of `work`. */
    const withBig = async <T>(work: () => Promise<T>): Promise<T> => {
      await writeFile(path.join(hostDir, 'big.bin'), big)
      host.list = (e) => [...e, bigEntry]
      try {
        return await work()
      } finally {
        await rm(path.join(hostDir, 'big.bin'), {force: true})
      }
    }
    /** `source`'s bytes, with those from `at` on held back until `until` settles. */
    async function* holdBack(source: Readable, at: number, until: Promise<unknown>): AsyncGenerator<Buffer> {
      let sent = 0
      for await (const chunk of source) {
        const c = chunk as Buffer
        if (sent + c.length > at && sent < at) {
          yield c.subarray(0, at - sent)
          await until
          yield c.subarray(at - sent)
        } else {
          if (sent >= at) await until
          yield c
        }
        sent += c.length
      }
    }
    /** Every text a request sends, whole. */
    const sentTexts = () => {
      const texts: string[] = []
      return {texts, onWire: (direction: 'sent' | 'received', text: string) => (direction === 'sent' ? texts.push(text) : undefined)}
    }

    it('the host reads a large file back as it lands, before the requester has all of it, then confirms', async () => {
      reset()
      await withBig(async () => {
        // The host's server holds back big.bin's last MiB until the host has read bytes of big.bin
        // back from the requester: only possible while the requester still fetches it (4.10).
        // Without it the host reads it back after FilesUpdated, which cannot come before the
        // last MiB; the bound only turns that hang into a failure.
        const readBack = new Promise<string>((resolve) => {
          host.onFetchEvent = (ev) => {
            if (ev.event === 'bytes' && ev.path === 'big.bin') resolve('while fetched')
          }
        })
        const bound = new Promise<string>((resolve) => setTimeout(() => resolve('bound'), 15_000).unref())
        const released = Promise.race([readBack, bound])
        host.shape = (p, o) => (p === 'big.bin' ? {...o, stream: Readable.from(holdBack(o.stream, BIG - (1 << 20), released))} : o)
        const wire = sentTexts()
        const logs = host.verifiedLogs.length
        const before = host.confirmed.length
        const r = await request({followFrom: 1 << 20, onWire: wire.onWire})
        assert.equal(await released, 'while fetched')
        assert.equal(r.transfer.fetched, 4)
        assert.deepEqual(await readFile(path.join(r.into, 'big.bin')), big)
        for (const [p, c] of Object.entries(FILES)) assert.equal(await readFile(path.join(r.into, p), 'utf8'), c)
        assert.equal(host.confirmed.length, before + 1)
        assert.match(wire.texts[0]!.split('\n')[0]!, /\tfollow=1/)
        const growing = wire.texts.filter((t) => /\tpart=1/.test(t.split('\n')[0]!) && /\nbig\.bin\t(?:[^\n]*\t)?grow=1(?:\t|\n)/.test(t))
        assert.equal(growing.length, 1, 'big.bin is announced once, as growing')
        assert.equal(wire.texts.filter((t) => /\tpart=1/.test(t.split('\n')[0]!) && /\nbig\.bin\t/.test(t)).length, 1, 'and not again when it lands')
        const v = host.verifiedLogs.slice(logs)
        assert.equal(v.length, 1)
        assert.equal(v[0]!.files, 4)
        assert.equal(v[0]!.bytes, BIG + Object.values(FILES).reduce((n, c) => n + c.length, 0))
      })
    })

    it('when the requester’s fetch of it is cut and resumed, the host reads the new attempt and still confirms', async () => {
      reset()
      await withBig(async () => {
        // The first time the host serves big.bin, the stream fails after 5 MiB: the requester
        // resumes, while the host's read of the first attempt fails and is asked again.
        let cut = false
        host.shape = (p, o) => {
          if (p !== 'big.bin' || cut) return o
          cut = true
          return {
            ...o,
            stream: Readable.from(
              (async function* () {
                let sent = 0
                for await (const chunk of o.stream) {
                  yield chunk as Buffer
                  sent += (chunk as Buffer).length
                  if (sent >= 5 << 20) {
                    o.stream.destroy()
                    throw new FpeerError('E_CONNECTION_LOST', 'cut by the test')
                  }
                }
              })(),
            ),
          }
        }
        const before = host.confirmed.length
        const retries: string[] = []
        const r = await request({
          followFrom: 1 << 20,
          onEvent: (ev) => {
            if (ev.event === 'retry') retries.push(ev.path)
          },
        })
        assert.equal(cut, true)
        assert.deepEqual(retries, ['big.bin'])
        assert.deepEqual(await readFile(path.join(r.into, 'big.bin')), big)
        assert.equal(host.confirmed.length, before + 1)
      })
    })

    it('a requester that does not offer follow=1 announces no growing file; its large file is checked once it landed', async () => {
      reset()
      await withBig(async () => {
        const wire = sentTexts()
        const before = host.confirmed.length
        const r = await request({followFrom: 1 << 20, follow: false, onWire: wire.onWire})
        assert.deepEqual(await readFile(path.join(r.into, 'big.bin')), big)
        assert.equal(host.confirmed.length, before + 1)
        assert.doesNotMatch(wire.texts[0]!.split('\n')[0]!, /\tfollow=1/)
        assert.match(wire.texts[0]!.split('\n')[0]!, /\tearly=1/)
        assert.equal(
          wire.texts.some((t) => /\tgrow=1/.test(t)),
          false,
        )
      })
    })
  })

  describe('a hostile requester using early=1', () => {
    /**
     * Runs the requester's side by hand: a signed BePeerRequest with early=1, then the
     * progress message `part` builds from the FilesToGet, served from `dir`; returns the
     * host's next message (never sending a final FilesUpdated).
     */
    async function hostile(
      dir: string,
      part: (ftg: {nonce: string; files: FileEntry[]}, port: number) => FilesUpdated,
      meta: Record<string, string> = {early: '1'},
    ) {
      const me = new Identity(generateKeyPair())
      const served = await transport.serve({
        host: '127.0.0.2',
        port: 0,
        files: new LocalFileSource({root: (f) => (f === FOLDER ? dir : undefined), mayRead: () => true}, () => [FOLDER]),
        identity: me,
      })
      const channel = await connectChannel('127.0.0.1', host.port, {localAddress: '127.0.0.2', timeoutMs: 20_000})
      try {
        const nonce = randomNonce()
        const bpr: BePeerRequest = signMessage(
          {
            type: 'BePeerRequest',
            folder: FOLDER,
            meta: {nonce, ts: String(Date.now()), dst: formatDestination(channel.remoteAddress, channel.remotePort), protocols: 'MEMORY', ...meta},
          },
          me,
        )
        await channel.send(bpr)
        const ftg = await channel.next(20_000)
        assert.equal(ftg.type, 'FilesToGet')
        if (ftg.type !== 'FilesToGet') throw new Error('unreachable')
        await channel.send(signMessage(part({nonce: ftg.meta.nonce!, files: ftg.files}, served.port), me))
        return {reply: await channel.next(20_000), early: ftg.meta.early}
      } finally {
        await channel.close()
        await served.close()
      }
    }
    const partOf = (files: FileEntry[], port: number, re: string): FilesUpdated => ({
      type: 'FilesUpdated',
      folder: FOLDER,
      port,
      protocol: 'MEMORY',
      files,
      meta: {part: '1', nonce: randomNonce(), re, grant: 'g'.repeat(43)},
    })

    it('announces a file early and serves other bytes: E_HASH_MISMATCH before any final FilesUpdated, nobody confirmed, the host still serves', async () => {
      reset()
      const dir = path.join(work, 'hostile-copy')
      await mkdir(dir, {recursive: true})
      // Same size as the host's a.txt, other content.
      await writeFile(path.join(dir, 'a.txt'), 'HELLO\n')
      const before = host.confirmed.length
      const {reply, early} = await hostile(dir, (ftg, port) =>
        partOf(
          ftg.files.filter((f) => f.path === 'a.txt'),
          port,
          ftg.nonce,
        ),
      )
      assert.equal(early, '1')
      assert.equal(reply.type, 'PeerError')
      assert.equal(reply.type === 'PeerError' && reply.code, 'E_HASH_MISMATCH')
      assert.equal(host.confirmed.length, before)
      const again = await request()
      assert.equal(again.transfer.fetched, 3)
      assert.equal(host.confirmed.length, before + 1)
    })

    it('a file announced as growing (grow=1) whose bytes differ is E_HASH_MISMATCH, nobody confirmed', async () => {
      reset()
      const dir = path.join(work, 'hostile-grow')
      await mkdir(path.join(dir, 'dir', 'deeper'), {recursive: true})
      // Same size as the host's c.bin, other content.
      await writeFile(path.join(dir, 'dir', 'deeper', 'c.bin'), 'C'.repeat(300_000))
      const before = host.confirmed.length
      const {reply} = await hostile(
        dir,
        (ftg, port) =>
          partOf(
            ftg.files.filter((f) => f.path === 'dir/deeper/c.bin').map((f) => ({...f, ext: {...f.ext, grow: '1'}})),
            port,
            ftg.nonce,
          ),
        {early: '1', follow: '1'},
      )
      assert.equal(reply.type === 'PeerError' && reply.code, 'E_HASH_MISMATCH')
      assert.equal(host.confirmed.length, before)
    })

    it('grow=1 in a handshake without follow=1, or grow with another value, is E_MSG_BAD_FIELD', async () => {
      reset()
      const dir = path.join(work, 'hostile-grow-unasked')
      await mkdir(dir, {recursive: true})
      const before = host.confirmed.length
      for (const [meta, grow] of [
        [{early: '1'}, '1'],
        [{early: '1', follow: '1'}, 'yes'],
      ] as const) {
        const {reply} = await hostile(
          dir,
          (ftg, port) =>
            partOf(
              ftg.files.filter((f) => f.path === 'a.txt').map((f) => ({...f, ext: {...f.ext, grow}})),
              port,
              ftg.nonce,
            ),
          meta,
        )
        assert.equal(reply.type === 'PeerError' && reply.code, 'E_MSG_BAD_FIELD', JSON.stringify(meta))
      }
      assert.equal(host.confirmed.length, before)
    })

    it('a progress message naming a file not in the FilesToGet is E_MSG_BAD_FIELD', async () => {
      reset()
      const dir = path.join(work, 'hostile-empty')
      await mkdir(dir, {recursive: true})
      const before = host.confirmed.length
      const {reply} = await hostile(dir, (ftg, port) => partOf([{path: 'not-offered.txt', size: 1, sha256: sha('x')}], port, ftg.nonce))
      assert.equal(reply.type === 'PeerError' && reply.code, 'E_MSG_BAD_FIELD')
      assert.equal(host.confirmed.length, before)
    })

    it('a progress message in a handshake without early=1 is E_MSG_UNEXPECTED', async () => {
      reset()
      const dir = path.join(work, 'hostile-unasked')
      await mkdir(dir, {recursive: true})
      const before = host.confirmed.length
      const {reply, early} = await hostile(
        dir,
        (ftg, port) =>
          partOf(
            ftg.files.filter((f) => f.path === 'a.txt'),
            port,
            ftg.nonce,
          ),
        {},
      )
      assert.equal(early, undefined)
      assert.equal(reply.type === 'PeerError' && reply.code, 'E_MSG_UNEXPECTED')
      assert.equal(host.confirmed.length, before)
    })
  })
})
