// The seed's plain form on the wire: a plain TCP client (nc) and curl against `fpeer serve`, and malformed input.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {createHash} from 'node:crypto'
import net from 'node:net'
import path from 'node:path'
import {promisify} from 'node:util'
import {rm} from 'node:fs/promises'
import {after, before, describe, it} from 'node:test'
import {Peer, makeTree, tempDir, treeHashes} from './harness.js'

const exec = promisify(execFile)

/** Sends raw bytes on a fresh connection and collects everything the daemon answers until it closes. */
function converse(port: number, chunks: Array<string | Buffer>, options: {gapMs?: number; timeoutMs?: number; until?: RegExp} = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({host: '127.0.0.1', port})
    let got = ''
    const t = setTimeout(() => {
      s.destroy()
      reject(new Error(`no close within ${options.timeoutMs ?? 10_000} ms; got ${JSON.stringify(got)}`))
    }, options.timeoutMs ?? 10_000)
    s.on('data', (d) => {
      got += d.toString()
      if (options.until?.test(got)) s.destroy()
    })
    s.on('close', () => {
      clearTimeout(t)
      resolve(got)
    })
    s.on('error', () => {})
    s.on('connect', async () => {
      for (const c of chunks) {
        if (s.destroyed) break
        s.write(c)
        if (options.gapMs) await new Promise((r) => setTimeout(r, options.gapMs))
      }
    })
  })
}

describe('seed form and malformed input against fpeer serve', () => {
  let work: string
  let shared: string
  let host: Peer

  before(async () => {
    work = await tempDir()
    shared = path.join(work, 'seed')
    await makeTree(shared, 1024 * 1024)
    host = await Peer.create('127.0.0.1', {FPEER_MESSAGE_TIMEOUT_MS: '1500', FPEER_TRANSFER_TIMEOUT_MS: '5000'})
    await host.serve([shared, '--open'])
  })

  after(async () => {
    await host.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('nc sends a seed-form BePeerRequest and gets a seed-form FilesToGet; curl fetches every file at the documented URL', async () => {
    const {stdout} = await exec('sh', ['-c', `printf 'BePeerRequest\\nseed\\n\\n' | nc -q 2 127.0.0.1 ${host.ready!.control}`], {timeout: 15_000})
    const end = stdout.indexOf('\n\n')
    assert.ok(end > 0, `no complete message in ${JSON.stringify(stdout)}`)
    const lines = stdout.slice(0, end).split('\n')
    assert.equal(lines[0], 'FilesToGet')
    assert.equal(lines[1], 'seed')
    assert.equal(lines[2], String(host.ready!.ports.HTTP))
    assert.equal(lines[3], 'HTTP')
    assert.ok(!stdout.slice(0, end).includes('\t'), 'a seed-form request gets an answer without fpeer attributes')
    const expected = await treeHashes(shared)
    assert.deepEqual(lines.slice(4).sort(), [...expected.keys()].sort())
    for (const file of lines.slice(4)) {
      const url = `http://127.0.0.1:${lines[2]}/seed/${file.split('/').map(encodeURIComponent).join('/')}`
      const {stdout: body} = await exec('curl', ['-sSf', '--output', '-', url], {encoding: 'buffer', maxBuffer: 64 << 20})
      assert.equal(createHash('sha256').update(body).digest('hex'), expected.get(file), file)
    }
  })

  const bad: Array<{name: string; send: Array<string | Buffer>; code: string; gapMs?: number}> = [
    {name: 'garbage', send: ['hello there\n\n'], code: 'E_MSG_UNKNOWN_TYPE'},
    {name: 'an unknown type', send: ['GimmeFiles\nseed\n\n'], code: 'E_MSG_UNKNOWN_TYPE'},
    {name: 'a missing empty line', send: ['BePeerRequest\nseed\n'], code: 'E_MSG_TIMEOUT'},
    {name: 'an over-long line', send: [`BePeerRequest\n${'x'.repeat(20_000)}\n\n`], code: 'E_MSG_LINE_TOO_LONG'},
    {name: 'invalid UTF-8', send: [Buffer.from([0x42, 0x65, 0xff, 0x0a, 0x0a])], code: 'E_MSG_BAD_ENCODING'},
    {name: 'an unknown folder', send: ['BePeerRequest\nnope\n\n'], code: 'E_UNKNOWN_FOLDER'},
    {name: 'a message out of turn', send: ['TrustedPeerConfirm\nseed\n1\nHTTP\n\n'], code: 'E_MSG_UNEXPECTED'},
    {name: 'a slow sender', send: 'BePeerRequest\nseed\n\n'.split(''), gapMs: 400, code: 'E_MSG_TIMEOUT'},
  ]
  for (const c of bad) {
    it(`${c.name} gets a PeerError with ${c.code}, and the daemon keeps serving others`, async () => {
      const pending = converse(host.ready!.control, c.send, {...(c.gapMs ? {gapMs: c.gapMs} : {})})
      // While the bad client is connected, a good one is answered.
      const good = await converse(host.ready!.control, ['BePeerRequest\nseed\n\n'], {timeoutMs: 15_000, until: /\n\n/})
      assert.match(good, /^FilesToGet\nseed\n/)
      const reply = await pending
      const lines = reply.split('\n')
      assert.equal(lines[0], 'PeerError', reply)
      assert.equal(lines[2], c.code, reply)
    })
  }
})
