// fpeer's SFTP client against a real OpenSSH sshd (internal-sftp, chrooted) whose host key is an fpeer identity: fetches, resume, host key pinning, refused keys.
import assert from 'node:assert/strict'
import {spawn, type ChildProcess} from 'node:child_process'
import {existsSync} from 'node:fs'
import {chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {userInfo} from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {FpeerError, Identity, fetchFiles, generateKeyPair, isFpeerError, scanFolder, type ConnectOptions, type ErrorCode, type FileEntry} from '@fpeer/core'
import {privateKeyPem, publicKeyLine} from './keys.js'
import {createSftpTransport} from './index.js'
import {freePort, waitForPort} from '@fpeer/core/testing'

const SSHD = '/usr/sbin/sshd'
const FOLDER = 'share'
const NAMES = [
  'with space.txt',
  "it's.txt",
  'say "hi".txt',
  '-leading-dash.txt',
  '100%.txt',
  'what?.txt',
  '#hash.txt',
  'a+b&c=d;e.txt',
  'caf\u00e9.txt',
  'cafe\u0301.txt',
  'emoji-\u{1F600}.txt',
  `${'n'.repeat(251)}.txt`,
  'sub dir/nested #1/file %41.txt',
  'empty.bin',
  'big.bin',
]

function contentOf(name: string): Buffer {
  if (name === 'empty.bin') return Buffer.alloc(0)
  if (name === 'big.bin') return Buffer.from(Array.from({length: 5 << 20}, (_, i) => (i * 31 + (i >> 11)) & 0xff))
  return Buffer.from(`content of ${name}\n`.repeat(300))
}

/** Why this test cannot run here, or undefined. sshd with ChrootDirectory needs root. */
function cannotRun(): string | undefined {
  if (!existsSync(SSHD)) return `${SSHD} not installed`
  if (process.getuid?.() !== 0) return 'sshd with ChrootDirectory needs root'
  return undefined
}

async function rejectsWith(fn: () => Promise<unknown>, code: ErrorCode): Promise<FpeerError> {
  let caught: unknown
  try {
    await fn()
  } catch (err) {
    caught = err
  }
  assert.ok(isFpeerError(caught), `expected ${code}, got ${String(caught)}`)
  assert.equal(caught.code, code, caught.message)
  return caught
}

describe('the fpeer SFTP client against OpenSSH sshd', {skip: cannotRun(), timeout: 600_000}, () => {
  let base: string
  let chroot: string
  let sshd: ChildProcess
  let stderr = ''
  let port: number
  const hostId = new Identity(generateKeyPair())
  const clientId = new Identity(generateKeyPair())
  let entries: FileEntry[]
  // sshd needs a real account: log in as the user running the test (root, for the chroot).
  const transport = createSftpTransport({client: {username: userInfo().username}})
  const options = (extra: Partial<ConnectOptions> = {}): ConnectOptions => ({
    host: '127.0.0.1',
    port,
    identity: clientId,
    expectedPeer: hostId.id,
    concurrency: 4,
    timeoutMs: 10_000,
    ...extra,
  })

  before(async () => {
    // Every component of a ChrootDirectory must be root-owned and not writable by others,
    // which rules out /tmp; /run is root's 0755 tmpfs.
    await mkdir('/run/sshd', {recursive: true, mode: 0o755})
    base = await mkdtemp('/run/fpeer-sftp-sshd-')
    await chmod(base, 0o755)
    chroot = path.join(base, 'root')
    await mkdir(chroot, {mode: 0o755})
    await chmod(chroot, 0o755)
    const folder = path.join(chroot, FOLDER)
    for (const name of NAMES) {
      await mkdir(path.dirname(path.join(folder, name)), {recursive: true})
      await writeFile(path.join(folder, name), contentOf(name))
    }
    entries = (await scanFolder(folder)).map(({path: p, size, sha256, mtimeMs}) => ({path: p, size, sha256, mtimeMs}))
    assert.equal(entries.length, NAMES.length)

    const hostKey = path.join(base, 'host_key')
    await writeFile(hostKey, privateKeyPem(hostId), {mode: 0o600})
    const authorized = path.join(base, 'authorized_keys')
    await writeFile(authorized, publicKeyLine(clientId.publicKey, 'fpeer test client') + '\n', {mode: 0o644})
    port = await freePort()
    const config = path.join(base, 'sshd_config')
    await writeFile(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        `PidFile ${path.join(base, 'sshd.pid')}`,
        `AuthorizedKeysFile ${authorized}`,
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin prohibit-password',
        'UsePAM no',
        'StrictModes no',
        'Subsystem sftp internal-sftp',
        `ChrootDirectory ${chroot}`,
        'ForceCommand internal-sftp',
        'AllowTcpForwarding no',
        'X11Forwarding no',
        'LogLevel ERROR',
        '',
      ].join('\n'),
    )
    sshd = spawn(SSHD, ['-D', '-e', '-f', config], {stdio: ['ignore', 'ignore', 'pipe']})
    sshd.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString()
    })
    await waitForPort(port, {child: sshd, timeoutMs: 10_000, name: 'sshd'}).catch((err: Error) => {
      throw new Error(`${err.message}\n${stderr}`)
    })
  })

  after(async () => {
    if (sshd && sshd.exitCode === null) {
      const exited = new Promise((r) => sshd.once('exit', r))
      sshd.kill('SIGTERM')
      await exited
    }
    if (base) await rm(base, {recursive: true, force: true})
  })

  it('fetches a tree of hostile names with fetchFiles and every hash checks out', async () => {
    const dest = await mkdtemp(path.join(base, 'dest-'))
    const client = await transport.connect!(options())
    try {
      const result = await fetchFiles({client, folder: FOLDER, files: entries, mode: 'land', root: dest, concurrency: 4, resume: true})
      assert.equal(result.fetched, NAMES.length, stderr)
    } finally {
      await client.close()
    }
    for (const name of NAMES) assert.ok((await readFile(path.join(dest, name))).equals(contentOf(name)), name)
    // fetchFiles checked each sha256 while streaming; the landed tree scans to the same list.
    const landed = (await scanFolder(dest)).map(({path: p, size, sha256}) => ({path: p, size, sha256}))
    assert.deepEqual(
      landed,
      entries.map(({path: p, size, sha256}) => ({path: p, size, sha256})),
    )
  })

  it('getMany answers in the order asked: bytes, a missing file alone as E_NOT_FOUND, a file larger than announced as E_SIZE_MISMATCH', async () => {
    const client = await transport.connect!(options({concurrency: 1}))
    try {
      const small = NAMES.filter((n) => n !== 'big.bin')
      const items = [...small.slice(0, 4), 'no such file', ...small.slice(4)].map((p) => ({path: p, size: p === 'no such file' ? 5 : contentOf(p).length}))
      const got: string[] = []
      for await (const item of client.getMany!(FOLDER, items)) {
        got.push(item.path)
        if (item.path === 'no such file') {
          assert.ok('error' in item && item.error.code === 'E_NOT_FOUND', 'the missing file is its own E_NOT_FOUND')
          continue
        }
        assert.ok('data' in item && item.data.equals(contentOf(item.path)), `${item.path} differs`)
      }
      assert.deepEqual(
        got,
        items.map((i) => i.path),
      )
      // Announced one byte short: the read past the announced end finds data, not EOF.
      const name = small[0]!
      const short = []
      for await (const item of client.getMany!(FOLDER, [{path: name, size: contentOf(name).length - 1}])) short.push(item)
      assert.equal(short.length, 1)
      assert.ok('error' in short[0]! && short[0].error.code === 'E_SIZE_MISMATCH', 'a body larger than announced is E_SIZE_MISMATCH')
    } finally {
      await client.close()
    }
  })

  it('get() from an offset returns the rest of the file (resume)', async () => {
    const whole = contentOf('big.bin')
    const client = await transport.connect!(options({concurrency: 1}))
    try {
      for (const offset of [0, 1, 1_000_003, whole.length - 1, whole.length]) {
        const {stream, size} = await client.get(FOLDER, 'big.bin', {offset})
        const chunks: Buffer[] = []
        for await (const c of stream) chunks.push(c as Buffer)
        assert.equal(size, whole.length)
        assert.ok(Buffer.concat(chunks).equals(whole.subarray(offset)), `offset ${offset}`)
      }
      await rejectsWith(() => client.get(FOLDER, 'no such file'), 'E_NOT_FOUND')
    } finally {
      await client.close()
    }
  })

  it('refuses a server whose host key is not the expected peer with E_HOST_KEY_MISMATCH', async () => {
    const someoneElse = new Identity(generateKeyPair()).id
    await rejectsWith(() => transport.connect!(options({expectedPeer: someoneElse})), 'E_HOST_KEY_MISMATCH')
  })

  it('a key the server does not authorize is E_ACCESS', async () => {
    await rejectsWith(() => transport.connect!(options({identity: new Identity(generateKeyPair())})), 'E_ACCESS')
  })

  it('the host key file written from the identity is what sshd serves', async () => {
    // sshd refuses to start on a malformed key; reaching here with the pinned peer proves it parsed ours.
    const st = await stat(path.join(base, 'host_key'))
    assert.equal(st.mode & 0o777, 0o600)
    const client = await transport.connect!(options())
    await client.close()
  })
})
