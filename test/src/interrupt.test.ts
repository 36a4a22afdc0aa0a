// Long transfers: Ctrl-C in a real terminal (exit 130, terminal restored, resumable), keep-alives that let a slow copy finish, a stall that fails it.
import assert from 'node:assert/strict'
import {type ChildProcess, spawn, spawnSync} from 'node:child_process'
import {mkdir, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FPEER, Peer, pseudoRandom, tempDir, treeHashes, waitFor} from './harness.js'
import {freePort} from '@fpeer/core/testing'

const HAVE_SCRIPT = spawnSync('script', ['--version']).status === 0

/**
 * A TCP relay from `listen` to `target`, connecting out from `from` (so the host sees the
 * requester's own address), that forwards the target's bytes at `rate` bytes per second
 * (Infinity: as fast as they come; 0: not at all past `stallAfter` bytes). Counts them.
 */
class Relay {
  bytes = 0
  rate: number
  stallAfter = Infinity
  readonly #server: net.Server
  readonly #sockets = new Set<net.Socket>()

  constructor(rate: number) {
    this.rate = rate
    this.#server = net.createServer((client) => this.#relay(client))
  }

  target = {host: '', port: 0, from: ''}

  async listen(host: string, port: number, target: {host: string; port: number; from: string}): Promise<void> {
    this.target = target
    await new Promise<void>((resolve) => this.#server.listen(port, host, resolve))
  }

  #relay(client: net.Socket): void {
    const up = net.connect({host: this.target.host, port: this.target.port, localAddress: this.target.from})
    for (const s of [client, up]) {
      this.#sockets.add(s)
      s.on('error', () => {})
      s.once('close', () => {
        this.#sockets.delete(s)
        client.destroy()
        up.destroy()
      })
    }
    client.pipe(up)
    up.on('data', (chunk: Buffer) => {
      this.bytes += chunk.length
      client.write(chunk)
      if (this.bytes >= this.stallAfter) {
        up.pause()
        return
      }
      if (this.rate === Infinity) return
      up.pause()
      setTimeout(() => up.resume(), Math.ceil((chunk.length / this.rate) * 1000)).unref()
    })
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy()
    await new Promise((r) => this.#server.close(r))
  }
}

describe('long transfers', () => {
  const RELAY = '127.0.0.5'
  const BIG = 8 * 1024 * 1024
  let work: string
  let shared: string
  let host: Peer
  let ctlPort: number
  let httpPort: number
  const relays: Relay[] = []
  const peers: Peer[] = []

  /** Relays the host's control and HTTP ports on RELAY (same port numbers), the HTTP one at `rate`. */
  async function relay(rate: number, from: string): Promise<Relay> {
    const ctl = new Relay(Infinity)
    await ctl.listen(RELAY, ctlPort, {host: '127.0.0.1', port: ctlPort, from})
    const dataRelay = new Relay(rate)
    await dataRelay.listen(RELAY, httpPort, {host: '127.0.0.1', port: httpPort, from})
    relays.push(ctl, dataRelay)
    return dataRelay
  }

  async function closeRelays(): Promise<void> {
    for (const r of relays.splice(0)) await r.close()
  }

  async function peer(address: string, env: NodeJS.ProcessEnv = {}): Promise<Peer> {
    const p = await Peer.create(address, env)
    peers.push(p)
    return p
  }

  before(async () => {
    work = await tempDir('fpeer-interrupt-')
    shared = path.join(work, 'shared')
    await mkdir(shared)
    await writeFile(path.join(shared, 'big.bin'), pseudoRandom(BIG, 7))
    await writeFile(path.join(shared, 'small.txt'), 'small\n')
    ctlPort = await freePort('127.0.0.1')
    httpPort = await freePort('127.0.0.1')
    // Short host timeouts: a host that did not wait on keep-alives would cut every slow copy below.
    host = await Peer.create('127.0.0.1', {FPEER_STALL_TIMEOUT_MS: '1500', FPEER_TRANSFER_TIMEOUT_MS: '1500'})
    await host.serve(
      [shared, '--name', 'Big', '--open', '--no-sync', '--port', String(ctlPort), '--data-port', `HTTP=${httpPort}`, '--public-address', `${RELAY}:${ctlPort}`],
      {},
      {ports: 'default'},
    )
  })

  after(async () => {
    await closeRelays()
    await host.destroy()
    for (const p of peers) await p.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('a slow first copy that keeps making progress is not cut off by the host (keep-alives)', async () => {
    // ~4 s of transfer against a host that waits 1.5 s at most without a byte, and 1.5 s in all for peers without keep-alives.
    const data = await relay(2 * 1024 * 1024, '127.0.0.2')
    try {
      const me = await peer('127.0.0.2')
      const into = path.join(work, 'slow-copy')
      const r = await me.run(['request', `${RELAY}:${ctlPort}`, 'Big', '--into', into, '--bind', '127.0.0.2', '--json'])
      assert.equal(r.code, 0, r.stdout + r.stderr + host.serveStderr)
      assert.ok(data.bytes >= BIG, `the copy went through the slow relay (${data.bytes} bytes)`)
      assert.deepEqual(await treeHashes(into), await treeHashes(shared))
    } finally {
      await closeRelays()
    }
  })

  it('a transfer that stops making progress fails with E_TIMEOUT after --stall-timeout, and the host keeps serving', async () => {
    const data = await relay(Infinity, '127.0.0.3')
    data.stallAfter = 1024 * 1024
    try {
      const me = await peer('127.0.0.3')
      const r = await me.run([
        'request',
        `${RELAY}:${ctlPort}`,
        'Big',
        '--into',
        path.join(work, 'stalled'),
        '--bind',
        '127.0.0.3',
        '--stall-timeout',
        '2',
        '--json',
      ])
      assert.equal(r.code, 4, r.stdout + r.stderr)
      assert.equal(JSON.parse(r.stdout).error.code, 'E_TIMEOUT', r.stdout)
    } finally {
      await closeRelays()
    }
    // The host keeps serving. Its stall timeout here is 1.5 s, so on a starved machine a requester
    // that got no CPU for that long is cut (E_TIMEOUT) like the stalled one above: that is the
    // host working, not failing. A few tries, each from scratch; any other failure fails at once.
    const other = await peer('127.0.0.4')
    const tries: string[] = []
    for (let i = 0; i < 3; i++) {
      const ok = await other.run(['request', host.control, 'Big', '--into', path.join(work, `after-stall-${i}`), '--bind', '127.0.0.4', '--json'])
      if (ok.code === 0) break
      assert.equal(JSON.parse(ok.stdout).error?.code, 'E_TIMEOUT', ok.stdout + ok.stderr)
      tries.push(ok.stdout)
    }
    assert.ok(tries.length < 3, `the host served no request after the stall: ${tries.join('\n')}`)
  })

  it('--timeout bounds the whole request: E_TIMEOUT, exit 4, and it is resumable', async () => {
    await relay(512 * 1024, '127.0.0.6')
    try {
      const me = await peer('127.0.0.6')
      const r = await me.run([
        'request',
        `${RELAY}:${ctlPort}`,
        'Big',
        '--into',
        path.join(work, 'timed-out'),
        '--bind',
        '127.0.0.6',
        '--timeout',
        '2',
        '--json',
      ])
      assert.equal(r.code, 4, r.stdout + r.stderr)
      const doc = JSON.parse(r.stdout)
      assert.equal(doc.error.code, 'E_TIMEOUT')
      assert.equal(doc.error.details.resume, 'fpeer request --resume Big')
    } finally {
      await closeRelays()
    }
  })

  it(
    'Ctrl-C at a terminal mid-transfer: exit 130, the terminal restored, the error document; --resume finishes from the part file',
    {skip: !HAVE_SCRIPT && '`script` (util-linux) is not installed'},
    async () => {
      const data = await relay(1024 * 1024, '127.0.0.7')
      const me = await peer('127.0.0.7')
      const into = path.join(work, 'interrupted')
      const log = path.join(work, 'typescript')
      let child: ChildProcess | undefined
      try {
        const cmd = `'${process.execPath}' '${FPEER}' request ${RELAY}:${ctlPort} Big --into '${into}' --bind 127.0.0.7 --json --progress=bar`
        // script(1) gives fpeer a real terminal; a Ctrl-C typed into it reaches fpeer as SIGINT through the terminal, as at a keyboard.
        child = spawn('script', ['-q', '-e', '-f', '-c', cmd, log], {env: me.env, stdio: ['pipe', 'ignore', 'pipe']})
        const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)))
        await waitFor('bytes moving', () => data.bytes > 1024 * 1024, 60_000, 50)
        child.stdin!.write('\x03')
        const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 30_000).unref())])
        const screen = await readFile(log, 'latin1')
        assert.equal(code, 130, `exit ${code}: ${JSON.stringify(screen.slice(-2000))}`)
        assert.ok(data.bytes < BIG, 'interrupted mid-transfer')
        // The bar hid the cursor and turned line wrap off; both are back on after it.
        const hidden = screen.indexOf('\x1b[?25l')
        assert.ok(hidden >= 0, 'the bar was drawn')
        assert.ok(screen.indexOf('\x1b[?25h', hidden) > hidden, 'cursor shown again')
        assert.ok(screen.indexOf('\x1b[?7h', hidden) > hidden, 'line wrap on again')
        const line = screen.split(/\r?\n/).find((l) => l.includes('{"error"'))
        assert.ok(line, screen)
        const doc = JSON.parse(line.slice(line.indexOf('{"error"')))
        assert.equal(doc.error.code, 'E_INTERRUPTED')
        assert.equal(doc.error.details.resume, 'fpeer request --resume Big')
        assert.equal(doc.error.details.into, into)
        const parts = (await readdir(into, {recursive: true})).filter((f) => String(f).includes('part'))
        assert.ok(parts.length > 0, `the part file is kept: ${await readdir(into)}`)
      } finally {
        if (child && child.exitCode === null) child.kill('SIGKILL')
      }
      const before = data.bytes
      try {
        const r = await me.run(['request', '--resume', 'Big', '--json'])
        assert.equal(r.code, 0, r.stdout + r.stderr)
        assert.ok(data.bytes - before < BIG, `resumed, not restarted: ${data.bytes - before} bytes the second time`)
        assert.deepEqual(await treeHashes(into), await treeHashes(shared))
        const again = await me.run(['request', '--resume', 'Big', '--json'])
        assert.equal(JSON.parse(again.stdout).error.code, 'E_STATE', 'nothing pending once confirmed')
      } finally {
        await closeRelays()
      }
    },
  )
})
