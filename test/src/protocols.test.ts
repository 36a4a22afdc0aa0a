// End to end: a full `fpeer request` between two peers over HTTP, FTP, SFTP and MANUAL, through the fpeer binary.
import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import {copyFile, mkdir, rm, writeFile} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FrameDecoder, Identity, type Message, formatMessage, generateKeyPair, parseLines, signMessage} from '@fpeer/core'
import {FPEER, Peer, exists, linkPlugins, makeTree, oclifDirs, runFpeer, tempDir, treeHashes} from './harness.js'

const FOLDER = 'Shared Docs #1'

/** Runs a shell pipeline (real jq, xargs, curl) with `input` on stdin; bounded. */
function sh(script: string, input: string, timeoutMs = 60_000): Promise<{code: number | null; stdout: string; stderr: string}> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], {stdio: ['pipe', 'pipe', 'pipe']})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const t = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`sh timed out: ${script}`))
    }, timeoutMs)
    child.once('close', (code) => {
      clearTimeout(t)
      resolve({code, stdout, stderr})
    })
    child.stdin.end(input)
  })
}

const peerIds = async (p: Peer) => ((await p.json(['peers', FOLDER])).peers as Array<{id: string}>).map((x) => x.id)

describe('a full fpeer request over each transfer protocol, through the fpeer binary', () => {
  let work: string
  let shared: string
  let withPlugins: NodeJS.ProcessEnv
  let without: NodeJS.ProcessEnv
  let host: Peer
  let hostId: string
  const requesters: Peer[] = []

  /** A fresh requester on `address` (a new home: not a peer yet), allowed in on the host. */
  async function newRequester(address: string, env: NodeJS.ProcessEnv): Promise<{peer: Peer; id: string; into: string}> {
    const peer = await Peer.create(address, env)
    requesters.push(peer)
    const id = await peer.id()
    assert.equal((await host.run(['allow', FOLDER, id])).code, 0)
    return {peer, id, into: path.join(work, `copy-${requesters.length}`)}
  }

  before(async () => {
    work = await tempDir()
    shared = path.join(work, 'shared')
    await makeTree(shared, 4 * 1024 * 1024)
    withPlugins = oclifDirs(path.join(work, 'oclif-plugins'))
    without = oclifDirs(path.join(work, 'oclif-bare'))
    // FTP and SFTP are not core plugins: link the workspace packages (no npm install).
    await linkPlugins(withPlugins)
    host = await Peer.create('127.0.0.1', withPlugins)
    hostId = await host.id()
    const ready = await host.serve([shared, '--name', FOLDER])
    assert.deepEqual(Object.keys(ready.ports).sort(), ['FTP', 'HTTP', 'SFTP'])
  })

  after(async () => {
    for (const p of requesters) await p.destroy()
    await host?.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('fpeer protocols lists each protocol with its plugin: HTTP and MANUAL built in, FTP and SFTP once linked', async () => {
    const bare = await Peer.create('127.0.0.1', without)
    requesters.push(bare)
    const list = async (p: Peer) =>
      Object.fromEntries(((await p.json(['protocols'])).protocols as Array<{protocol: string; plugin: string}>).map((x) => [x.protocol, x.plugin]))
    assert.deepEqual(await list(bare), {HTTP: '@fpeer/plugin-http', MANUAL: '@fpeer/plugin-manual'})
    assert.deepEqual(await list(host), {FTP: '@fpeer/plugin-ftp', HTTP: '@fpeer/plugin-http', MANUAL: '@fpeer/plugin-manual', SFTP: '@fpeer/plugin-sftp'})
    const text = await bare.run(['protocols'])
    assert.deepEqual(
      text.stdout
        .trim()
        .split('\n')
        .map((l) => l.split('\t').slice(0, 2).join(' ')),
      ['HTTP @fpeer/plugin-http', 'MANUAL @fpeer/plugin-manual'],
    )
  })

  for (const [protocol, address] of [
    ['HTTP', '127.0.0.2'],
    ['FTP', '127.0.0.3'],
    ['SFTP', '127.0.0.4'],
  ] as const) {
    it(`over ${protocol}: confirmed, the trees are identical, each peerlist lists the other`, async () => {
      const {peer, id, into} = await newRequester(address, withPlugins)
      const r = await peer.run([
        'request',
        host.control,
        FOLDER,
        '--into',
        into,
        '--bind',
        address,
        '--protocol',
        protocol.toLowerCase(),
        '--peer-id',
        hostId,
        '--json',
      ])
      assert.equal(r.code, 0, r.stdout + r.stderr)
      const doc = JSON.parse(r.stdout)
      assert.equal(doc.state, 'confirmed')
      assert.equal(doc.protocol, protocol)
      assert.equal(doc.files.length, 8)
      assert.equal(doc.transfer.fetched, 8)
      assert.deepEqual(await treeHashes(into), await treeHashes(shared))
      assert.ok((await peerIds(host)).includes(id))
      assert.deepEqual(await peerIds(peer), [hostId])
      const mine = (await peer.json(['peers', FOLDER])).peers[0]
      assert.deepEqual(mine.protocols, [protocol])
    })
  }

  it('over MANUAL: exits 75 with the files to get, curl fetches them, a wrong file is E_HASH_MISMATCH, --resume confirms', async () => {
    const address = '127.0.0.5'
    const {peer, id, into} = await newRequester(address, without)
    const args = ['request', host.control, FOLDER, '--into', into, '--bind', address, '--protocol', 'manual']

    // Without --json: one URL per line on stdout, the explanation on stderr.
    const lines = await peer.run(args)
    assert.equal(lines.code, 75, lines.stderr)
    const urls = lines.stdout.trim().split('\n')
    assert.equal(urls.length, 8)
    const port = host.ready!.ports.HTTP
    // Each URL carries the grant secret of the signed FilesToGet: access is by secret, not by address.
    const done100 = urls.find((u) => u.startsWith(`http://127.0.0.1:${port}/Shared%20Docs%20%231/percent/100%25%20done%20%231.txt?grant=`))
    assert.ok(done100, urls.join('\n'))
    const withoutGrant = await sh(`curl -s -o /dev/null -w '%{http_code}' --interface ${address} '${done100.split('?')[0]}'`, '')
    assert.equal(withoutGrant.stdout, '403', "the requester's address alone opens nothing")
    const otherGrant = await sh(`curl -s -o /dev/null -w '%{http_code}' --interface ${address} '${done100.split('?')[0]}?grant=${'x'.repeat(43)}'`, '')
    assert.equal(otherGrant.stdout, '403', 'a made-up secret opens nothing')
    assert.match(lines.stderr, /fpeer request --resume/)

    // The same request again, with --json: still pending, one document.
    const r = await peer.run([...args, '--json'])
    assert.equal(r.code, 75, r.stderr)
    const doc = JSON.parse(r.stdout)
    assert.equal(doc.state, 'pending')
    assert.equal(doc.folder, FOLDER)
    assert.equal(doc.host.id, hostId)
    assert.equal(doc.host.address, '127.0.0.1')
    assert.equal(doc.into, into)
    assert.equal(doc.files.length, 8)
    for (const f of doc.files) {
      assert.match(f.sha256, /^[0-9a-f]{64}$/)
      assert.equal(typeof f.size, 'number')
      assert.ok(f.url.startsWith(`http://127.0.0.1:${port}/`))
      assert.equal(f.target, path.join(into, ...f.path.split('/')))
    }
    assert.deepEqual([...(await treeHashes(into)).keys()], [], 'nothing lands by itself')
    assert.deepEqual(await peerIds(host).then((ids) => ids.includes(id)), false)

    // Fetch by hand from the host's HTTP port with the URLs as given (the folder is not open; each URL carries the grant secret).
    const fetched = await sh(
      `jq -j '.files[] | .url, "\\u0000", .target, "\\u0000"' | xargs -0 -r -n 2 sh -c 'curl -fsS --create-dirs --interface ${address} -o "$2" -- "$1"' _`,
      r.stdout,
    )
    assert.equal(fetched.code, 0, fetched.stderr)
    assert.deepEqual(await treeHashes(into), await treeHashes(shared))

    // One file spoiled (same size): no confirmation.
    const readme = path.join(into, 'readme.txt')
    await writeFile(readme, 'HELLO PEERS\n')
    const bad = await peer.run(['request', '--resume', FOLDER, '--json'])
    assert.equal(bad.code, 5, bad.stdout + bad.stderr)
    assert.equal(JSON.parse(bad.stdout).error.code, 'E_HASH_MISMATCH')
    assert.deepEqual(JSON.parse(bad.stdout).error.details.files, ['readme.txt'])
    assert.equal((await peerIds(host)).includes(id), false)
    assert.deepEqual((await peer.json(['status'])).folders, [])

    // Put it right; resume goes on: verified, not fetched; FilesUpdated, fetch-back, TrustedPeerConfirm.
    await copyFile(path.join(shared, 'readme.txt'), readme)
    const ok = await peer.run(['request', '--resume', FOLDER, '--json'])
    assert.equal(ok.code, 0, ok.stdout + ok.stderr)
    const done = JSON.parse(ok.stdout)
    assert.equal(done.state, 'confirmed')
    assert.equal(done.protocol, 'MANUAL')
    assert.equal(done.transfer.fetched, 0)
    assert.equal(done.transfer.skipped, 8)
    assert.deepEqual(await treeHashes(into), await treeHashes(shared))
    assert.ok((await peerIds(host)).includes(id))
    assert.deepEqual(await peerIds(peer), [hostId])
    // Nothing is pending any more.
    const again = await peer.run(['request', '--resume', '--json'])
    assert.equal(again.code, 2)
    assert.equal(JSON.parse(again.stdout).error.code, 'E_STATE')
  })

  it('over MANUAL with --wait: it lists the files, waits while they are placed, then is confirmed', async () => {
    const address = '127.0.0.6'
    const {peer, id, into} = await newRequester(address, without)
    const child = spawn(
      process.execPath,
      [FPEER, 'request', host.control, FOLDER, '--into', into, '--bind', address, '--protocol', 'manual', '--wait', '--wait-timeout', '60'],
      {env: peer.env, stdio: ['ignore', 'pipe', 'pipe']},
    )
    let stdout = ''
    let stderr = ''
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve))
    const kill = setTimeout(() => child.kill('SIGKILL'), 90_000)
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          stdout += d.toString()
          if (stdout.split('\n').length > 8) resolve()
        })
        child.once('close', () => reject(new Error(`exited before listing: ${stderr}`)))
      })
      assert.equal(stdout.trim().split('\n').length, 8)
      // Place the files by hand, from the host's own tree, the big one last.
      for (const [rel] of [...(await treeHashes(shared))].sort(([a], [b]) => (a.startsWith('big/') ? 1 : b.startsWith('big/') ? -1 : 0))) {
        await mkdir(path.dirname(path.join(into, rel)), {recursive: true})
        await copyFile(path.join(shared, rel), path.join(into, rel))
      }
      assert.equal(await exited, 0, stderr)
    } finally {
      clearTimeout(kill)
      child.kill('SIGKILL')
    }
    assert.match(stderr, /confirmed: peer of/)
    assert.ok((await peerIds(host)).includes(id))
  })

  it('asking for a protocol with no plugin installed here is E_NO_TRANSPORT (exit 6), naming the plugin and how to install it', async () => {
    const {peer, into} = await newRequester('127.0.0.7', without)
    const r = await peer.run(['request', host.control, FOLDER, '--into', into, '--bind', '127.0.0.7', '--protocol', 'sftp', '--json'])
    assert.equal(r.code, 6, r.stdout + r.stderr)
    const err = JSON.parse(r.stdout).error
    assert.equal(err.code, 'E_NO_TRANSPORT')
    assert.equal(err.details.plugin, '@fpeer/plugin-sftp')
    assert.match(err.hint, /fpeer plugins:install sftp/)
    assert.equal(await exists(into), false, 'nothing was started')
  })

  it('asking a host that lacks the protocol is E_NO_COMMON_PROTOCOL', async () => {
    const bareHost = await Peer.create('127.0.0.8', without)
    requesters.push(bareHost)
    await bareHost.serve([shared, '--name', FOLDER, '--open'])
    const {peer, into} = await newRequester('127.0.0.9', withPlugins)
    const r = await peer.run(['request', bareHost.control, FOLDER, '--into', into, '--bind', '127.0.0.9', '--protocol', 'ftp', '--json'])
    assert.equal(r.code, 3, r.stdout + r.stderr)
    const err = JSON.parse(r.stdout).error
    assert.equal(err.code, 'E_PEER_ERROR')
    assert.equal(err.details.peerCode, 'E_NO_COMMON_PROTOCOL')
    await bareHost.stop()
  })

  it('over SFTP, a wrong --peer-id refuses the host before any file lands', async () => {
    const {peer, into} = await newRequester('127.0.0.10', withPlugins)
    const wrong = new Identity(generateKeyPair()).id.toString()
    const r = await peer.run(['request', host.control, FOLDER, '--into', into, '--bind', '127.0.0.10', '--protocol', 'sftp', '--peer-id', wrong, '--json'])
    assert.equal(r.code, 5, r.stdout + r.stderr)
    assert.equal(JSON.parse(r.stdout).error.code, 'E_PEER_ID_MISMATCH')
    assert.equal(await exists(into), false, 'nothing landed, and the --into the failed request created is gone')
  })

  it("over SFTP, an SSH server whose host key is not the signing host's is refused (E_HOST_KEY_MISMATCH)", async () => {
    // A control host that signs with its own key but names the real peer's SFTP port:
    // the SFTP host key is then not the key the FilesToGet was signed with.
    const impostor = new Identity(generateKeyPair())
    const sftpPort = host.ready!.ports.SFTP!
    const control = net.createServer((socket) => {
      const dec = new FrameDecoder()
      socket.on('data', (d) => {
        for (const lines of dec.push(d)) {
          const msg = parseLines(lines)
          if (msg.type !== 'BePeerRequest') continue
          const ftg: Message = {
            type: 'FilesToGet',
            folder: msg.folder,
            port: sftpPort,
            protocol: 'SFTP',
            meta: {nonce: 'impostor-nonce', re: msg.meta.nonce!},
            files: [{path: 'readme.txt', size: 12, sha256: '4bb0d4c6a2b3f17f4c0b0ae1bfd1b1d4c1b3c2d0e7d0b2e4d0a4f6c8b0d2e4f6'}],
          }
          socket.write(formatMessage(signMessage(ftg, impostor)))
        }
      })
      socket.on('error', () => {})
    })
    await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve))
    try {
      const {peer, into} = await newRequester('127.0.0.11', withPlugins)
      const port = (control.address() as net.AddressInfo).port
      const r = await peer.run(['request', `127.0.0.1:${port}`, FOLDER, '--into', into, '--bind', '127.0.0.11', '--protocol', 'sftp', '--json'])
      assert.equal(r.code, 5, r.stdout + r.stderr)
      assert.equal(JSON.parse(r.stdout).error.code, 'E_HOST_KEY_MISMATCH')
      assert.equal(await exists(into), false, 'nothing landed, and the --into the failed request created is gone')
    } finally {
      await new Promise((resolve) => control.close(resolve))
    }
  })
})
