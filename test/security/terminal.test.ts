// Terminal injection, the MANUAL hand-over and the one decoder, attacked through the built binary by a scripted hostile host.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdir, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FrameDecoder, Identity, type Message, formatMessage, generateKeyPair, parseLines, signMessage} from '@fpeer/core'
import {FPEER, Peer, exists, tempDir, treeHashes} from '../src/harness.js'

const sha = (s: string) => createHash('sha256').update(s).digest('hex')

/** Any character a terminal may act on, but the TAB and LF of fpeer's own layout. */
// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/

function assertNoRawControl(text: string, what: string): void {
  const m = RAW_CONTROL.exec(text)
  assert.equal(
    m,
    null,
    `${what} has a raw U+${m?.[0].charCodeAt(0).toString(16).padStart(4, '0')}: ${JSON.stringify(text.slice(Math.max(0, (m?.index ?? 0) - 60), (m?.index ?? 0) + 60))}`,
  )
}

/** How the hostile host answers a BePeerRequest: raw wire bytes, or a file list it signs and serves over HTTP. */
type Answer = {raw: string} | {protocol: 'HTTP' | 'MANUAL'; files: Record<string, string>}

/** A hostile host: a raw TCP control port (the wire is written here, not by fpeer), plus an HTTP server for the bytes it offers. */
async function hostileHost(identity: Identity, answer: Answer) {
  const files = 'files' in answer ? answer.files : {}
  const web = http.createServer((req, res) => {
    const rel = (req.url ?? '').split('/').slice(2).map(decodeURIComponent).join('/')
    const body = files[rel]
    if (body === undefined) return res.writeHead(404).end()
    res.writeHead(200, {'content-length': Buffer.byteLength(body)}).end(body)
  })
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r))
  const webPort = (web.address() as net.AddressInfo).port
  const sockets = new Set<net.Socket>()
  const control = net.createServer((socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    const dec = new FrameDecoder()
    const send = (m: Message) => socket.write(formatMessage(signMessage(m, identity)))
    socket.on('data', (d) => {
      for (const lines of dec.push(d)) {
        const msg = parseLines(lines)
        if (msg.type === 'BePeerRequest') {
          if ('raw' in answer) {
            socket.end(answer.raw)
            return
          }
          const list = Object.entries(files).map(([p, body]) => ({path: p, size: Buffer.byteLength(body), sha256: sha(body)}))
          send({
            type: 'FilesToGet',
            folder: msg.folder,
            port: webPort,
            protocol: answer.protocol,
            meta: {nonce: 'host-nonce', re: msg.meta.nonce!, ...(answer.protocol === 'MANUAL' ? {via: 'HTTP'} : {})},
            files: list,
          })
        } else if (msg.type === 'FilesUpdated') {
          send({
            type: 'TrustedPeerConfirm',
            folder: msg.folder,
            port: webPort,
            protocol: msg.protocol,
            files: msg.files,
            meta: {nonce: 'host-nonce-2', re: msg.meta.nonce!},
          })
        }
      }
    })
  })
  await new Promise<void>((r) => control.listen(0, '127.0.0.1', r))
  return {
    port: (control.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy()
      web.closeAllConnections()
      await new Promise((r) => web.close(r))
      await new Promise((r) => control.close(r))
    },
  }
}

/** Runs a shell pipeline in `cwd` with `input` on stdin, bounded; resolves once the shell has exited. */
function sh(script: string, input: string, cwd: string): Promise<{code: number | null; stdout: string; stderr: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], {cwd, stdio: ['pipe', 'pipe', 'pipe']})
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
    child.stdin.end(input)
  })
}

/** One request/reply on a control port, as raw bytes (no fpeer code on the sending side). */
function exchange(port: number, host: string, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({port, host, localAddress: '127.0.0.3'})
    let got = ''
    const t = setTimeout(() => {
      s.destroy()
      reject(new Error(`no reply from ${host}:${port}; got ${JSON.stringify(got)}`))
    }, 20_000)
    s.on('data', (d) => {
      got += d.toString()
      if (got.includes('\n\n')) {
        clearTimeout(t)
        s.destroy()
        resolve(got)
      }
    })
    s.on('error', (err) => {
      clearTimeout(t)
      reject(err)
    })
    s.write(bytes)
  })
}

describe('terminal injection: nothing a peer or the disk names reaches a terminal raw', () => {
  let work: string
  let requester: Peer
  const hostIdentity = new Identity(generateKeyPair())
  const TITLE = '\x1b]0;pwned\x07\x1b[2J reason'

  before(async () => {
    work = await tempDir()
    requester = await Peer.create('127.0.0.2')
  })
  after(async () => {
    await requester.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it("a PeerError reason with OSC and CSI sequences is escaped in `fpeer request`'s error, exact in --json", async () => {
    const host = await hostileHost(hostIdentity, {raw: `PeerError\n*\nE_NOT_ALLOWED\n${TITLE}\n\n`})
    try {
      const args = ['request', `127.0.0.1:${host.port}`, 'docs', '--into', path.join(work, 'refused'), '--bind', '127.0.0.2']
      // --debug: the stack trace, which quotes the message, is escaped too.
      const text = await requester.run([...args, '--debug'])
      assert.equal(text.code, 3, text.stdout + text.stderr)
      assertNoRawControl(text.stdout, 'stdout')
      assertNoRawControl(text.stderr, 'stderr')
      assert.match(text.stderr, /^Error \[E_NOT_ALLOWED\]: .*E_NOT_ALLOWED: \\u001b\]0;pwned\\u0007\\u001b\[2J reason$/m)

      const json = await requester.run([...args, '--json'])
      assert.equal(json.code, 3, json.stdout + json.stderr)
      assertNoRawControl(json.stderr, 'stderr with --json')
      const doc = JSON.parse(json.stdout)
      assert.equal(doc.error.code, 'E_NOT_ALLOWED')
      assert.equal(doc.error.details.peerCode, 'E_NOT_ALLOWED')
      assert.equal(doc.error.details.peerReason, TITLE)
      assert.ok(doc.error.message.endsWith(TITLE), doc.error.message)
    } finally {
      await host.close()
    }
  })

  it('a reason as long as a line may be is clipped, and still typed', async () => {
    const host = await hostileHost(hostIdentity, {raw: `PeerError\n*\nE_BUSY\n${'\u009b'.repeat(4000)}\n\n`})
    try {
      const r = await requester.run(['request', `127.0.0.1:${host.port}`, 'docs', '--into', path.join(work, 'long'), '--bind', '127.0.0.2'])
      assert.equal(r.code, 3, r.stdout + r.stderr)
      assertNoRawControl(r.stderr, 'stderr')
      assert.match(r.stderr, /^Error \[E_PEER_ERROR\]: /m)
      assert.ok(r.stderr.length < 8000, `stderr is ${r.stderr.length} characters`)
    } finally {
      await host.close()
    }
  })

  it('file names with ESC, BEL, LF, C1 and a bidi override: request output, logs and `fpeer files` escape them; --json is exact', async () => {
    const names = ['evil\x1b]0;pwned\x07\nline.txt', 'csi\u009b2J.txt', '\u202egnp.exe', 'plain.txt']
    const files = Object.fromEntries(names.map((n, i) => [n, `content ${i}\n`]))
    const host = await hostileHost(hostIdentity, {protocol: 'HTTP', files})
    const into = path.join(work, 'names')
    try {
      const r = await requester.run(['request', `127.0.0.1:${host.port}`, 'names', '--into', into, '--bind', '127.0.0.2', '--progress', 'bar', '--debug'])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      assertNoRawControl(r.stdout, 'request stdout')
      assertNoRawControl(r.stderr, 'request stderr (progress bar and debug log)')
    } finally {
      await host.close()
    }
    // The names really are on disk, byte for byte: the escaping is only in what is shown.
    assert.deepEqual((await readdir(into)).sort(), [...names].sort())

    const shown = await requester.run(['files', 'names'])
    assert.equal(shown.code, 0, shown.stderr)
    assertNoRawControl(shown.stdout, 'files stdout')
    const lines = shown.stdout.trimEnd().split('\n')
    assert.equal(lines.length, names.length, 'one line per file: a name cannot add one')
    assert.ok(
      lines.some((l) => l.endsWith('\tevil\\u001b]0;pwned\\u0007\\nline.txt')),
      shown.stdout,
    )
    assert.ok(
      lines.some((l) => l.endsWith('\tcsi\\u009b2J.txt')),
      shown.stdout,
    )
    assert.ok(
      lines.some((l) => l.endsWith('\t\\u202egnp.exe')),
      shown.stdout,
    )
    const json = await requester.json(['files', 'names'])
    assert.deepEqual(json.files.map((f: {path: string}) => f.path).sort(), [...names].sort())

    for (const cmd of [['status'], ['peers', 'names'], ['conflicts', 'names']]) {
      const out = await requester.run(cmd)
      assert.equal(out.code, 0, out.stderr)
      assertNoRawControl(out.stdout + out.stderr, cmd.join(' '))
    }
  })

  it("a hostile requester cannot write raw control characters into `fpeer serve`'s log, and serve keeps serving", async () => {
    const host = await Peer.create('127.0.0.1')
    const shared = path.join(work, 'served')
    await mkdir(shared, {recursive: true})
    await writeFile(path.join(shared, 'a.txt'), 'a\n')
    try {
      assert.equal((await host.run(['share', shared, '--name', 'served', '--open'])).code, 0)
      const ready = await host.serve()
      const reply = await exchange(
        ready.control,
        '127.0.0.1',
        Buffer.from(`BePeerRequest\tnote=${encodeURIComponent('\x1b]0;pwned\x07')}\tid=\x1b[2J\n\u009b2J\u202efolder\n\n`),
      )
      assert.match(reply, /^PeerError\n/)
      const unknown = await exchange(ready.control, '127.0.0.1', Buffer.from('BePeerRequest\n\u009b]0;pwned\u0007\n\n'))
      assert.match(unknown, /^PeerError\n/)
      // Still serving: a plain request for the open folder gets its file list.
      const ok = await exchange(ready.control, '127.0.0.1', Buffer.from('BePeerRequest\nserved\n\n'))
      assert.match(ok, /^FilesToGet/)
      assertNoRawControl(host.serveStderr, 'serve stderr')
      // The hostile name did reach the log, escaped.
      assert.ok(host.serveStderr.includes('folder="\\u009b2J\\u202efolder"'), host.serveStderr)
    } finally {
      await host.destroy()
    }
  })
})

describe('the MANUAL hand-over: no name turns the documented recipe into an injection', () => {
  let work: string
  let requester: Peer
  const hostIdentity = new Identity(generateKeyPair())

  before(async () => {
    work = await tempDir()
    requester = await Peer.create('127.0.0.2')
  })
  after(async () => {
    await requester.destroy()
    await rm(work, {recursive: true, force: true})
  })

  /** Names a line-splitting recipe mistakes for arguments; the last one is `-o <sibling>/owned` once split on LF. */
  function hostileNames(sibling: string): Record<string, string> {
    return {
      'a\nb.txt': 'line feed\n',
      '-o x': 'dash o\n',
      '--leading': 'leading dashes\n',
      '$(touch pwned)': 'command substitution\n',
      '`touch pwned2`': 'backticks\n',
      'sp ace': 'space\n',
      'q\'uo"te': 'quotes\n',
      'tab\there': 'tab\n',
      'esc\x1b[2J.txt': 'escape\n',
      [`x\n-o\n${sibling}/owned`]: 'attacker bytes\n',
    }
  }

  it('text output: one percent-encoded URL per line, nothing raw, control characters marked on stderr', async () => {
    const sibling = path.join(work, 'text-sibling')
    await mkdir(sibling, {recursive: true})
    const files = hostileNames(sibling)
    const host = await hostileHost(hostIdentity, {protocol: 'MANUAL', files})
    try {
      const r = await requester.run([
        'request',
        `127.0.0.1:${host.port}`,
        'manual-text',
        '--into',
        path.join(work, 'text-into'),
        '--bind',
        '127.0.0.2',
        '--protocol',
        'manual',
      ])
      assert.equal(r.code, 75, r.stdout + r.stderr)
      assertNoRawControl(r.stdout, 'stdout')
      assertNoRawControl(r.stderr, 'stderr')
      const lines = r.stdout.trimEnd().split('\n')
      assert.equal(lines.length, Object.keys(files).length, r.stdout)
      for (const l of lines) assert.match(l, /^http:\/\/127\.0\.0\.1:\d+\/manual-text\/[A-Za-z0-9%._~!'()*/-]+$/)
      assert.equal(r.stderr.match(/control characters in the name/g)?.length, 4, r.stderr)
    } finally {
      await host.close()
    }
  })

  it('the NUL-separated recipe of docs/scripting.md places every file inside the folder and nothing outside', async () => {
    const base = path.join(work, 'recipe')
    const into = path.join(base, 'into')
    const sibling = path.join(base, 'sibling')
    const cwd = path.join(base, 'cwd')
    for (const d of [into, sibling, cwd]) await mkdir(d, {recursive: true})
    await writeFile(path.join(sibling, 'keep.txt'), "the user's\n")
    const files = hostileNames(sibling)
    const host = await hostileHost(hostIdentity, {protocol: 'MANUAL', files})
    try {
      const r = await requester.run([
        'request',
        `127.0.0.1:${host.port}`,
        'manual-json',
        '--into',
        into,
        '--bind',
        '127.0.0.2',
        '--protocol',
        'manual',
        '--json',
      ])
      assert.equal(r.code, 75, r.stdout + r.stderr)
      assertNoRawControl(r.stderr, 'stderr')
      const doc = JSON.parse(r.stdout)
      assert.deepEqual(doc.files.map((f: {path: string}) => f.path).sort(), Object.keys(files).sort(), 'the --json document is exact')

      // The attack is real: the line-splitting recipe this replaces writes the host's bytes outside.
      const oldBase = path.join(base, 'old')
      const oldSibling = path.join(oldBase, 'sibling')
      await mkdir(oldSibling, {recursive: true})
      const oldDoc = r.stdout
        .replaceAll(JSON.stringify(sibling).slice(1, -1), JSON.stringify(oldSibling).slice(1, -1))
        .replaceAll(JSON.stringify(into).slice(1, -1), JSON.stringify(path.join(oldBase, 'into')).slice(1, -1))
      await sh(`jq -r '.files[] | "-o", .target, .url' | xargs -d '\\n' curl -sS --create-dirs --interface 127.0.0.2`, oldDoc, oldBase)
      assert.equal(await exists(path.join(oldSibling, 'owned')), true, 'the old recipe should have been fooled by the hostile names')

      const before = await treeHashes(base)
      const recipe = `jq -j '.files[] | .url, "\\u0000", .target, "\\u0000"' | xargs -0 -r -n 2 sh -c 'curl -fsS --create-dirs --interface 127.0.0.2 -o "$2" -- "$1"' _`
      const ran = await sh(recipe, r.stdout, cwd)
      assert.equal(ran.code, 0, ran.stderr)
      const afterRun = await treeHashes(base)
      // Outside the folder: exactly what was there before.
      const outside = (m: Map<string, string>) => [...m].filter(([k]) => !k.startsWith('into/'))
      assert.deepEqual(outside(afterRun), outside(before))
      assert.deepEqual(await readdir(sibling), ['keep.txt'])
      assert.deepEqual(await readdir(cwd), [])
      // Inside: every file under its exact name, with the host's bytes.
      for (const [name, body] of Object.entries(files)) assert.equal(await readFile(path.join(into, ...name.split('/')), 'utf8'), body, JSON.stringify(name))

      // fpeer checks what was placed and goes on.
      const resumed = await requester.run(['request', '--resume', 'manual-json', '--json'])
      assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr)
      assert.equal(JSON.parse(resumed.stdout).state, 'confirmed')
    } finally {
      await host.close()
    }
  })

  it('a name with a NUL, which no recipe can carry, is refused with E_PATH_UNSAFE', async () => {
    const host = await hostileHost(hostIdentity, {protocol: 'MANUAL', files: {'a\0-o /tmp/x': 'nul\n', 'ok.txt': 'ok\n'}})
    const into = path.join(work, 'nul-into')
    try {
      const r = await requester.run([
        'request',
        `127.0.0.1:${host.port}`,
        'manual-nul',
        '--into',
        into,
        '--bind',
        '127.0.0.2',
        '--protocol',
        'manual',
        '--json',
      ])
      assert.equal(r.code, 5, r.stdout + r.stderr)
      assert.equal(JSON.parse(r.stdout).error.code, 'E_PATH_UNSAFE')
      // Nothing was written: the --into the refused request created is gone again (issue 12).
      assert.equal(
        await readdir(into).then(
          () => 'exists',
          (e: NodeJS.ErrnoException) => e.code,
        ),
        'ENOENT',
      )
    } finally {
      await host.close()
    }
  })
})

/** `fpeer message parse --json` with exactly these bytes on stdin (the harness writes strings as UTF-8). */
function parseBytes(peer: Peer, bytes: Buffer): Promise<{code: number | null; stdout: string; stderr: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FPEER, 'message', 'parse', '--json'], {env: peer.env, stdio: ['pipe', 'pipe', 'pipe']})
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
    child.stdin.end(bytes)
  })
}

describe('one decoder: `fpeer serve` and `fpeer message parse` accept the same bytes', () => {
  let host: Peer
  let port: number

  before(async () => {
    host = await Peer.create('127.0.0.1')
    port = (await host.serve()).control
  })
  after(async () => {
    await host.destroy()
  })

  // [name, wire bytes, the code both give]: E_UNKNOWN_FOLDER from serve means it read a BePeerRequest, as parse did.
  const table: Array<[string, Buffer, string]> = [
    ['a BOM before Line 1 is ignored', Buffer.from('\ufeffBePeerRequest\nno-such\n\n'), 'E_UNKNOWN_FOLDER'],
    ['a BOM in the folder name is kept', Buffer.from('BePeerRequest\n\ufeffno-such\n\n'), 'E_UNKNOWN_FOLDER'],
    ['two BOMs are text', Buffer.from('\ufeff\ufeffBePeerRequest\nno-such\n\n'), 'E_MSG_UNKNOWN_TYPE'],
    ['invalid UTF-8', Buffer.from([...Buffer.from('BePeerRequest\nno'), 0xff, 0x0a, 0x0a]), 'E_MSG_BAD_ENCODING'],
    ['a lone CR inside a line', Buffer.from('BePeerRequest\nno\rsuch\n\n'), 'E_MSG_BAD_FIELD'],
  ]
  for (const [name, wire, code] of table) {
    it(name, async () => {
      const reply = await exchange(port, '127.0.0.1', wire)
      assert.equal(reply.split('\n')[2], code, JSON.stringify(reply))
      const parsed = await parseBytes(host, wire)
      if (code === 'E_UNKNOWN_FOLDER') {
        assert.equal(parsed.code, 0, parsed.stdout + parsed.stderr)
        assert.equal(JSON.parse(parsed.stdout)[0].type, 'BePeerRequest')
      } else {
        assert.equal(JSON.parse(parsed.stdout).error.code, code)
      }
      // serve read it and is still serving.
      assert.match(await exchange(port, '127.0.0.1', Buffer.from('BePeerRequest\nno-such\n\n')), /^PeerError[^\n]*\n[^\n]*\nE_UNKNOWN_FOLDER\n/)
    })
  }
})
