// Every command driven with bad input (paths, hosts, ports, flags, environment): each failure has its own code and exit code, never E_INTERNAL.
import assert from 'node:assert/strict'
import {spawn, spawnSync} from 'node:child_process'
import {chmod, chown, mkdir, readdir, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FPEER, Peer, type RunResult, exists, oclifDirs, tempDir} from './harness.js'

/** Root ignores file modes: permission cases then run as `nobody` through setpriv, when it exists. */
const IS_ROOT = process.getuid?.() === 0
const HAVE_SETPRIV = spawnSync('setpriv', ['--version']).status === 0
const AS_NOBODY = IS_ROOT ? (HAVE_SETPRIV ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] : undefined) : []

interface Case {
  name: string
  args: string[] | (() => string[])
  env?: NodeJS.ProcessEnv
  /** Runs as an unprivileged user (permission cases). */
  unprivileged?: boolean
  code: string
  exit: number
  /** More checks on the error document. */
  check?(error: {code: string; message: string; hint?: string; details?: Record<string, unknown>}): void | Promise<void>
}

/** Listens and accepts, and never says a word: a peer that hangs. */
async function silentServer(host: string): Promise<net.Server> {
  const sockets = new Set<net.Socket>()
  const server = net.createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
    s.once('close', () => sockets.delete(s))
  })
  server.on('close', () => sockets.forEach((s) => s.destroy()))
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  const close = server.close.bind(server)
  server.close = ((cb?: (err?: Error) => void) => {
    for (const s of sockets) s.destroy()
    return close(cb)
  }) as typeof server.close
  return server
}

/** Runs fpeer under `prefix` (setpriv …), as runFpeer does, bounded. */
function runAs(prefix: string[], args: string[], env: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(prefix[0]!, [...prefix.slice(1), process.execPath, FPEER, ...args], {env, stdio: ['ignore', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const t = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(t)
      resolve({code, stdout, stderr})
    })
  })
}

const portOf = (s: net.Server) => (s.address() as net.AddressInfo).port

describe('errors tell the truth: every command with bad input', () => {
  let work: string
  let host: Peer
  let me: Peer
  let silent: net.Server
  let busy: net.Server
  let file: string
  let readOnly: string
  let hostId: string
  /** The home of the unprivileged runs: theirs, as a user's own home is. */
  let nobodyHome: string

  before(async () => {
    work = await tempDir('fpeer-errors-')
    await mkdir(path.join(work, 'shared'))
    await writeFile(path.join(work, 'shared', 'a.txt'), 'a\n')
    file = path.join(work, 'a-file')
    await writeFile(file, 'not a directory\n')
    readOnly = path.join(work, 'read-only')
    await mkdir(readOnly)
    await chmod(readOnly, 0o555)
    // `nobody` must reach the work directory (mkdtemp makes it 0700).
    await chmod(work, 0o755)
    nobodyHome = path.join(work, 'nobody-home')
    await mkdir(nobodyHome, {mode: 0o700})
    if (IS_ROOT) await chown(nobodyHome, 65534, 65534)
    host = await Peer.create('127.0.0.1')
    hostId = await host.id()
    await host.serve([path.join(work, 'shared'), '--name', 'shared', '--open'])
    me = await Peer.create('127.0.0.2', {...oclifDirs(path.join(work, 'oclif')), HOME: work})
    await chmod(me.home, 0o777)
    silent = await silentServer('127.0.0.3')
    busy = await silentServer('127.0.0.2')
  })

  after(async () => {
    await host.destroy()
    await me.destroy()
    await new Promise((r) => silent.close(r))
    await new Promise((r) => busy.close(r))
    await chmod(readOnly, 0o755).catch(() => {})
    await rm(work, {recursive: true, force: true})
  })

  const cases: Case[] = [
    // paths
    {
      name: 'share: a missing directory',
      args: () => ['share', path.join(work, 'no-such-dir')],
      code: 'E_NOT_A_DIRECTORY',
      exit: 2,
      check: (e) => assert.equal(e.details?.path, path.join(work, 'no-such-dir')),
    },
    {name: 'share: a file', args: () => ['share', file], code: 'E_NOT_A_DIRECTORY', exit: 2},
    {
      name: 'serve: a missing directory',
      args: () => ['serve', path.join(work, 'no-such-dir'), '--host', '127.0.0.2', '--port', '0', '--data-port', 'HTTP=0'],
      code: 'E_NOT_A_DIRECTORY',
      exit: 2,
    },
    {
      name: 'request: --into is a file',
      args: () => ['request', host.control, 'shared', '--into', file],
      code: 'E_NOT_A_DIRECTORY',
      exit: 2,
      check: (e) => assert.equal(e.details?.path, file),
    },
    {
      name: 'request: --into under a file',
      args: () => ['request', host.control, 'shared', '--into', path.join(file, 'sub')],
      code: 'E_NOT_A_DIRECTORY',
      exit: 2,
    },
    {
      name: 'request: a read-only --into is local, not a refusal',
      args: () => ['request', host.control, 'shared', '--into', readOnly, '--bind', '127.0.0.2'],
      unprivileged: true,
      code: 'E_LOCAL_ACCESS',
      exit: 8,
      check: (e) => assert.equal(e.details?.path, readOnly),
    },
    {
      name: 'request: --into that cannot be created',
      args: () => ['request', host.control, 'shared', '--into', path.join(readOnly, 'new'), '--bind', '127.0.0.2'],
      unprivileged: true,
      code: 'E_LOCAL_ACCESS',
      exit: 8,
    },
    {
      name: 'id: FPEER_HOME is a file',
      args: ['id'],
      env: {FPEER_HOME: '<file>'},
      code: 'E_NOT_A_DIRECTORY',
      exit: 2,
      check: (e) => assert.equal(e.details?.env, 'FPEER_HOME'),
    },
    {
      name: 'share: FPEER_HOME not writable',
      args: () => ['share', path.join(work, 'shared'), '--name', 'x'],
      env: {FPEER_HOME: '<read-only>/home'},
      unprivileged: true,
      code: 'E_LOCAL_ACCESS',
      exit: 8,
    },
    // hosts and ports
    {
      name: 'request: a host name that does not resolve',
      args: () => ['request', 'no-such-host.invalid', 'shared', '--into', path.join(work, 'x1')],
      code: 'E_CONNECT',
      exit: 4,
    },
    {
      name: 'request: nobody listens',
      args: () => ['request', '127.0.0.4:1', 'shared', '--into', path.join(work, 'x2')],
      code: 'E_CONNECT',
      exit: 4,
      check: (e) => assert.equal(e.details?.address, '127.0.0.4:1'),
    },
    {
      name: 'request: a peer that accepts and never answers',
      args: () => ['request', `127.0.0.3:${portOf(silent)}`, 'shared', '--into', path.join(work, 'x3'), '--bind', '127.0.0.2'],
      env: {FPEER_REPLY_TIMEOUT_MS: '1500'},
      code: 'E_TIMEOUT',
      exit: 4,
      check: (e) => assert.match(String(e.details?.address), /^127\.0\.0\.3:\d+$/),
    },
    {name: 'request: not host[:port]', args: ['request', '127.0.0.1:99999', 'shared'], code: 'E_BAD_ADDRESS', exit: 2},
    {
      name: 'request: a folder the host does not share',
      args: () => ['request', host.control, 'no-such-folder', '--into', path.join(work, 'x4'), '--bind', '127.0.0.2'],
      code: 'E_UNKNOWN_FOLDER',
      exit: 3,
      check: async (e) => {
        assert.ok(e.hint)
        assert.equal(await exists(path.join(work, 'x4')), false, 'a failed request leaves no --into it created')
      },
    },
    {name: 'request: --resume with nothing pending', args: ['request', '--resume'], code: 'E_STATE', exit: 2},
    {
      name: 'serve: control port busy',
      args: () => ['serve', '--host', '127.0.0.2', '--port', String(portOf(busy)), '--data-port', 'HTTP=0'],
      code: 'E_USAGE',
      exit: 2,
      check: (e) => assert.match(e.hint ?? '', /--port/),
    },
    {
      name: 'serve: data port busy',
      args: () => ['serve', '--host', '127.0.0.2', '--port', '0', '--data-port', `HTTP=${portOf(busy)}`],
      code: 'E_USAGE',
      exit: 2,
      check: (e) => assert.match(e.hint ?? '', /--data-port HTTP=/),
    },
    {
      name: 'serve: --data-port for a protocol nothing serves',
      args: ['serve', '--host', '127.0.0.2', '--port', '0', '--data-port', 'GOPHER=1'],
      code: 'E_USAGE',
      exit: 2,
      check: (e) => assert.equal(e.details?.protocol, 'GOPHER'),
    },
    {name: 'serve: --data-port not PROTOCOL=PORT', args: ['serve', '--host', '127.0.0.2', '--port', '0', '--data-port', 'HTTP'], code: 'E_USAGE', exit: 2},
    {
      name: 'serve: an address not on this machine',
      args: ['serve', '--host', '192.0.2.1', '--port', '0', '--data-port', 'HTTP=0'],
      code: 'E_BAD_ADDRESS',
      exit: 2,
    },
    {name: 'message send: a host name that does not resolve', args: ['message', 'send', 'no-such-host.invalid'], code: 'E_CONNECT', exit: 4},
    // folders, IDs, flags
    {name: 'peers: an unknown folder', args: ['peers', 'nope'], code: 'E_NO_SUCH_FOLDER', exit: 2},
    {name: 'files: an unknown folder', args: ['files', 'nope'], code: 'E_NO_SUCH_FOLDER', exit: 2},
    {name: 'conflicts: an unknown folder', args: ['conflicts', 'nope'], code: 'E_NO_SUCH_FOLDER', exit: 2},
    {name: 'push: an unknown folder', args: ['push', 'nope'], code: 'E_NO_SUCH_FOLDER', exit: 2},
    {name: 'allow: an unknown folder', args: () => ['allow', 'nope', hostId], code: 'E_NO_SUCH_FOLDER', exit: 2},
    {name: 'allow: not a peer ID', args: () => ['allow', 'nope', 'AAAA'], code: 'E_BAD_PEER_ID', exit: 2},
    {name: 'request: an unknown flag', args: ['request', '127.0.0.1', 'x', '--frobnicate'], code: 'E_USAGE', exit: 2},
    {name: 'request: --timeout 0', args: ['request', '127.0.0.1', 'x', '--timeout', '0'], code: 'E_USAGE', exit: 2},
    {name: 'message parse: not a message', args: ['message', 'parse'], code: 'E_MSG_UNKNOWN_TYPE', exit: 7},
    // environment
    {
      name: 'env: a timeout that is not a number',
      args: ['status'],
      env: {FPEER_REPLY_TIMEOUT_MS: 'soon'},
      code: 'E_USAGE',
      exit: 2,
      check: (e) => assert.equal(e.details?.env, 'FPEER_REPLY_TIMEOUT_MS'),
    },
    {
      name: 'env: a negative interval',
      args: ['status'],
      env: {FPEER_SYNC_INTERVAL_MS: '-5'},
      code: 'E_USAGE',
      exit: 2,
      check: (e) => assert.equal(e.details?.env, 'FPEER_SYNC_INTERVAL_MS'),
    },
    {name: 'env: a zero stall timeout', args: ['status'], env: {FPEER_STALL_TIMEOUT_MS: '0'}, code: 'E_USAGE', exit: 2},
    {
      name: 'env: an unknown log level',
      args: ['status'],
      env: {FPEER_LOG_LEVEL: 'loud'},
      code: 'E_USAGE',
      exit: 2,
      check: (e) => assert.equal(e.details?.env, 'FPEER_LOG_LEVEL'),
    },
  ]

  for (const c of cases) {
    const skip = c.unprivileged && AS_NOBODY === undefined ? 'running as root without setpriv: file modes do not apply' : false
    it(`${c.name} → ${c.code}, exit ${c.exit}`, {skip}, async () => {
      const args = typeof c.args === 'function' ? c.args() : c.args
      const env: NodeJS.ProcessEnv = {}
      for (const [k, v] of Object.entries(c.env ?? {})) env[k] = v?.replace('<file>', file).replace('<read-only>', readOnly)
      const input = args[0] === 'message' ? (args[1] === 'parse' ? 'Hello\nthere\n\n' : 'BePeerRequest\nshared\n\n') : ''
      const r =
        c.unprivileged && AS_NOBODY!.length
          ? await runAs(AS_NOBODY!, [...args, '--json'], {...me.env, FPEER_HOME: nobodyHome, ...env})
          : await me.run([...args, '--json'], {env, input})
      const out = r.stdout.trim()
      let doc: {error?: {code: string; kind: string; message: string; hint?: string; details?: Record<string, unknown>}}
      try {
        doc = JSON.parse(out)
      } catch {
        assert.fail(`stdout is not one JSON document: ${out} / ${r.stderr}`)
      }
      assert.ok(doc.error, `expected an error document, got ${out}`)
      assert.notEqual(doc.error.code, 'E_INTERNAL', `${doc.error.message} ${r.stderr}`)
      assert.equal(doc.error.code, c.code, `${doc.error.message} ${r.stderr}`)
      assert.equal(r.code, c.exit, r.stderr)
      assert.equal(typeof doc.error.message, 'string')
      await c.check?.(doc.error)
    })
  }

  it('the host is still alive and serving after all of that', async () => {
    const r = await me.run(['request', host.control, 'shared', '--into', path.join(work, 'ok'), '--bind', '127.0.0.2', '--json'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
  })

  it('status, peers and files create nothing: no home, no key pair', async () => {
    const fresh = path.join(os.tmpdir(), `fpeer-nohome-${process.pid}`)
    await rm(fresh, {recursive: true, force: true})
    const r = await me.run(['status', '--json'], {env: {FPEER_HOME: fresh}})
    assert.equal(r.code, 0, r.stderr)
    assert.equal(JSON.parse(r.stdout).id, null)
    await me.run(['peers', 'x', '--json'], {env: {FPEER_HOME: fresh}})
    assert.equal(await exists(fresh), false, `${fresh} was created: ${await readdir(fresh).catch(() => [])}`)
  })
})
