// fpeer's SFTP server driven by the real OpenSSH `sftp` client: host key pinning, downloads of hostile names, listings, and refused writes and keys.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {existsSync} from 'node:fs'
import {chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Identity, LocalFileSource, generateKeyPair, type AccessContext, type TransportServer} from '@fpeer/core'
import {knownHostsLine, privateKeyPem} from './keys.js'
import {sftpTransport} from './index.js'

const SFTP = '/usr/bin/sftp'
const FOLDER = 'share'
/** Names that trip shell quoting, sftp's own argument parsing and globbing, and Unicode. */
const NAMES = [
  'with space.txt',
  "it's.txt",
  'say "hi".txt',
  '-leading-dash.txt',
  '100%.txt',
  '#hash.txt',
  'caf\u00e9.txt',
  'cafe\u0301.txt',
  'emoji-\u{1F600}.txt',
  'sub dir/nested #1/file %41.txt',
]
const CONTENT = (name: string) => `content of ${name}\n`.repeat(1000)

/** Quotes one argument for sftp's batch parser: double quotes, with `\` escaping `"`, `\` and glob characters. */
function q(arg: string): string {
  return `"${arg.replace(/[\\"*?[\]]/g, (c) => `\\${c}`)}"`
}

interface Run {
  code: number
  stdout: string
  stderr: string
}

function run(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(SFTP, args, {timeout: 20_000, encoding: 'utf8'}, (err, stdout, stderr) => {
      const code = err ? (typeof (err as {code?: unknown}).code === 'number' ? (err as {code: number}).code : -1) : 0
      resolve({code, stdout, stderr})
    })
  })
}

describe('OpenSSH sftp against the fpeer SFTP server', {skip: !existsSync(SFTP) && `${SFTP} not installed`, timeout: 600_000}, () => {
  let base: string
  let root: string
  let server: TransportServer
  const serverId = new Identity(generateKeyPair())
  const clientId = new Identity(generateKeyPair())
  const strangerId = new Identity(generateKeyPair())
  const whos: AccessContext[] = []
  let keyFile: string
  let strangerKey: string
  let knownHosts: string

  before(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'fpeer-sftp-openssh-'))
    root = path.join(base, FOLDER)
    for (const name of NAMES) {
      await mkdir(path.dirname(path.join(root, name)), {recursive: true})
      await writeFile(path.join(root, name), CONTENT(name))
    }
    const files = new LocalFileSource({root: (f) => (f === FOLDER ? root : undefined), mayRead: (_f, who) => (whos.push(who), true)}, () => [FOLDER])
    server = await sftpTransport.serve!({
      host: '127.0.0.1',
      port: 0,
      files,
      identity: serverId,
      admit: (who) => who.peer?.equals(clientId.id) === true,
    })
    keyFile = path.join(base, 'id_fpeer')
    strangerKey = path.join(base, 'id_stranger')
    knownHosts = path.join(base, 'known_hosts')
    await writeFile(keyFile, privateKeyPem(clientId), {mode: 0o600})
    await writeFile(strangerKey, privateKeyPem(strangerId), {mode: 0o600})
    await chmod(keyFile, 0o600)
    await chmod(strangerKey, 0o600)
    await writeFile(knownHosts, knownHostsLine('127.0.0.1', server.port, serverId.publicKey) + '\n')
  })

  after(async () => {
    await server?.close()
    await rm(base, {recursive: true, force: true})
  })

  const sftp = async (commands: string[], key = keyFile, hosts = knownHosts): Promise<Run> => {
    const batch = path.join(base, `batch-${Math.random().toString(36).slice(2)}`)
    await writeFile(batch, commands.join('\n') + '\n')
    return run([
      '-F',
      '/dev/null',
      '-b',
      batch,
      '-i',
      key,
      '-P',
      String(server.port),
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      `UserKnownHostsFile=${hosts}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'IdentityAgent=none',
      '-o',
      'BatchMode=yes',
      '-o',
      'ConnectTimeout=10',
      'fpeer@127.0.0.1',
    ])
  }

  it('downloads every hostile name byte for byte', async () => {
    const dest = path.join(base, 'dest')
    await mkdir(dest)
    const cmds = NAMES.map((name, i) => `get ${q(`/${FOLDER}/${name}`)} ${q(path.join(dest, String(i)))}`)
    const r = await sftp(cmds)
    assert.equal(r.code, 0, r.stderr)
    for (const [i, name] of NAMES.entries()) {
      assert.equal(await readFile(path.join(dest, String(i)), 'utf8'), CONTENT(name), name)
    }
    assert.ok(whos.length > 0 && whos.every((w) => w.address === '127.0.0.1' && w.peer?.equals(clientId.id)), 'the FileSource saw the wrong peer')
  })

  it('resumes a download with reget', async () => {
    const name = NAMES[0]!
    const local = path.join(base, 'partial')
    await writeFile(local, CONTENT(name).slice(0, 1234))
    const r = await sftp([`reget ${q(`/${FOLDER}/${name}`)} ${q(local)}`])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(await readFile(local, 'utf8'), CONTENT(name))
  })

  it('lists the folders at / and a folder with ls -l', async () => {
    const r = await sftp(['ls -1 /', `ls -1a ${q(`/${FOLDER}`)}`, `ls -l ${q(`/${FOLDER}/sub dir/nested #1`)}`, 'cd /share/../share/./sub\\ dir', 'pwd'])
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.split('\n').map((l) => l.trim())
    assert.ok(lines.includes(`/${FOLDER}`) || lines.includes(FOLDER), r.stdout)
    for (const name of NAMES.filter((n) => !n.includes('/')))
      assert.ok(
        lines.some((l) => l.endsWith(name)),
        `${name} not listed:\n${r.stdout}`,
      )
    assert.ok(
      lines.some((l) => /^-r--r--r-- .* file %41\.txt$/.test(l)),
      `no ls -l line:\n${r.stdout}`,
    )
    assert.ok(r.stdout.includes(`Remote working directory: /${FOLDER}/sub dir`), r.stdout)
  })

  it('refuses every write and leaves the folder as it was', async () => {
    const before = (await readdir(root, {recursive: true})).sort()
    const local = path.join(base, 'upload.txt')
    await writeFile(local, 'upload')
    for (const cmd of [
      `put ${q(local)} /${FOLDER}/upload.txt`,
      `put ${q(local)} ${q(`/${FOLDER}/${NAMES[0]}`)}`,
      `mkdir /${FOLDER}/newdir`,
      `rm ${q(`/${FOLDER}/${NAMES[0]}`)}`,
      `rename ${q(`/${FOLDER}/${NAMES[0]}`)} /${FOLDER}/renamed.txt`,
      `rmdir ${q(`/${FOLDER}/sub dir/nested #1`)}`,
      `chmod 777 ${q(`/${FOLDER}/${NAMES[0]}`)}`,
      `ln -s /etc/passwd /${FOLDER}/link`,
      'put /etc/hostname /upload.txt',
    ]) {
      const r = await sftp([cmd])
      assert.notEqual(r.code, 0, `${cmd} succeeded`)
    }
    assert.deepEqual((await readdir(root, {recursive: true})).sort(), before)
    assert.equal(await readFile(path.join(root, NAMES[0]!), 'utf8'), CONTENT(NAMES[0]!))
  })

  it('never serves a path outside the folder', async () => {
    const dest = path.join(base, 'escape')
    for (const p of ['/../../../../etc/passwd', `/${FOLDER}/../../etc/passwd`, '/etc/passwd']) {
      const r = await sftp([`get ${q(p)} ${q(dest)}`])
      assert.notEqual(r.code, 0, `${p} was served`)
      assert.ok(!existsSync(dest), `${p} was served`)
    }
  })

  it('refuses a key it does not admit', async () => {
    const r = await sftp(['ls /'], strangerKey)
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /Permission denied \(publickey\)/)
  })

  it("is refused by the client when the pinned host key is another peer's", async () => {
    const wrong = path.join(base, 'wrong_known_hosts')
    await writeFile(wrong, knownHostsLine('127.0.0.1', server.port, strangerId.publicKey) + '\n')
    const r = await sftp(['ls /'], keyFile, wrong)
    assert.notEqual(r.code, 0)
    assert.match(r.stderr, /HOST IDENTIFICATION HAS CHANGED|Host key verification failed/)
  })
})
