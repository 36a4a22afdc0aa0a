// `fpeer demo`'s service: a host and a requester on loopback, the real handshake between them, and a clean-up that always runs.
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {type Logger, Home, PeerNode, type TransportRegistry, defaultTimeouts, folderPeers, requestAndRecord, shareFolder} from '@fpeer/core'

/** The sample folder the demo shares: small, but with a subdirectory, a space and an empty file. */
export const DEMO_FOLDER = '00-MainDocuments'
const SAMPLE: Record<string, string> = {
  'readme.txt': 'Hello from the fpeer demo host.\n',
  'notes/plan.txt': 'share a folder, become a peer of it\n',
  'a file with spaces.txt': 'spaces are fine\n',
  'empty.txt': '',
}

export interface DemoMessage {
  type: string
  from: 'host' | 'requester'
  to: 'host' | 'requester'
  /** Milliseconds since the handshake began. */
  ms: number
  /** The message as it crossed the wire (raw: escape it before it reaches a terminal). */
  text: string
}

export interface DemoPeer {
  id: string
  address: string
}

export interface DemoResult {
  folder: string
  /** Where the homes and folders were; removed unless kept. */
  dir: string
  kept: boolean
  host: DemoPeer & {control: number; ports: Record<string, number>}
  requester: DemoPeer
  messages: DemoMessage[]
  /** Each side's peerlist of the folder once confirmed. */
  peers: {host: Array<{id: string; address: string; role: string}>; requester: Array<{id: string; address: string; role: string}>}
  files: number
  timings: {setupMs: number; handshakeMs: number; totalMs: number}
}

export interface DemoOptions {
  registry: TransportRegistry
  log: Logger
  /** Keep the homes and folders here instead of a temporary directory that is removed. */
  keep?: string
  hostAddress?: string
  requesterAddress?: string
  /** Stops the demo (Ctrl-C); clean-up still runs. */
  signal?: AbortSignal
  /** Called with each message as it crosses the wire, for live display. */
  onMessage?(m: DemoMessage): void
}

/** How long the clean-up waits for an interrupted step to give up before removing its files anyway. */
const CLEANUP_WAIT_MS = 15_000

/** Whether this machine can bind `address` (127.0.0.2 is loopback on Linux, not on every system). */
async function canBind(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(0, address, () => s.close(() => resolve(true)))
  })
}

/** Rejects once `signal` aborts, so that an interrupted step still reaches the clean-up. */
function aborted(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    if (!signal) return
    const stop = () => reject(signal.reason ?? new Error('aborted'))
    if (signal.aborted) stop()
    else signal.addEventListener('abort', stop, {once: true})
  })
}

export async function runDemo(opts: DemoOptions): Promise<DemoResult> {
  const t0 = Date.now()
  const kept = opts.keep !== undefined
  const dir = kept ? path.resolve(opts.keep!) : await mkdtemp(path.join(os.tmpdir(), 'fpeer-demo-'))
  if (kept) await mkdir(dir, {recursive: true})
  const hostAddress = opts.hostAddress ?? '127.0.0.1'
  // Two addresses make two distinct peers; where only 127.0.0.1 exists, both share it.
  const requesterAddress = opts.requesterAddress ?? ((await canBind('127.0.0.2')) ? '127.0.0.2' : hostAddress)
  let node: PeerNode | undefined
  const interrupted = aborted(opts.signal)
  interrupted.catch(() => {})
  // Steps an interruption left running: they still write into the homes, so the clean-up waits for them.
  const running: Array<Promise<unknown>> = []
  try {
    const step = <T>(p: Promise<T>) => {
      running.push(p)
      return Promise.race([p, interrupted])
    }
    const hostHome = new Home(path.join(dir, 'host-home'))
    const requesterHome = new Home(path.join(dir, 'requester-home'))
    const shared = path.join(dir, 'host', DEMO_FOLDER)
    const into = path.join(dir, 'requester', DEMO_FOLDER)
    for (const [rel, content] of Object.entries(SAMPLE)) {
      await mkdir(path.dirname(path.join(shared, rel)), {recursive: true})
      await writeFile(path.join(shared, rel), content)
    }
    const hostId = await hostHome.identity()
    const requesterId = await requesterHome.identity()
    await shareFolder({home: hostHome, dir: shared, name: DEMO_FOLDER, open: true})
    // Every port free: the demo never collides with a real `fpeer serve` on 7734.
    const ports = Object.fromEntries(opts.registry.protocols().map((p) => [p, 0]))
    node = new PeerNode({home: hostHome, identity: hostId, registry: opts.registry, log: opts.log, host: hostAddress, controlPort: 0, ports, sync: false})
    await step(node.start())
    const setupMs = Date.now() - t0

    const messages: DemoMessage[] = []
    const t1 = Date.now()
    const result = await step(
      requestAndRecord(requesterHome, {
        host: hostAddress,
        port: node.controlPort,
        folder: DEMO_FOLDER,
        into,
        bind: requesterAddress,
        expectedHost: hostId.id,
        identity: requesterId,
        registry: opts.registry,
        concurrency: 4,
        timeouts: defaultTimeouts(),
        log: opts.log,
        // The demo shows the seed's four messages: no progress messages (protocol 4.9) in between.
        early: false,
        onWire: (direction, text) => {
          const type = text.slice(0, text.indexOf('\n')).split('\t')[0] ?? ''
          const m: DemoMessage = {
            type,
            from: direction === 'sent' ? 'requester' : 'host',
            to: direction === 'sent' ? 'host' : 'requester',
            ms: Date.now() - t1,
            text,
          }
          messages.push(m)
          opts.onMessage?.(m)
        },
      }),
    )
    const handshakeMs = Date.now() - t1
    const list = async (home: Home) => (await folderPeers(home, DEMO_FOLDER)).map((p) => ({id: p.id, address: p.address, role: p.role}))
    const peers = {host: await list(hostHome), requester: await list(requesterHome)}
    return {
      folder: DEMO_FOLDER,
      dir,
      kept,
      host: {id: hostId.id.toString(), address: hostAddress, control: node.controlPort, ports: node.ports},
      requester: {id: requesterId.id.toString(), address: requesterAddress},
      messages,
      peers,
      files: result.files.length,
      timings: {setupMs, handshakeMs, totalMs: Date.now() - t0},
    }
  } finally {
    // Stopping the host makes a request still in flight fail at once (its connections close).
    await node?.stop().catch(() => {})
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.allSettled(running), new Promise((resolve) => (timer = setTimeout(resolve, CLEANUP_WAIT_MS)))])
    clearTimeout(timer)
    if (!kept) await rm(dir, {recursive: true, force: true, maxRetries: 5})
  }
}
