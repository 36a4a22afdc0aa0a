// What an rsync or Syncthing user expects of a copy, through the built binary: modes, empty directories, symlinks, conflicts, dry runs, ignore rules, fixed ports, unshare/disallow/forget.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {chmod, lstat, mkdir, readFile, readdir, readlink, rm, stat, symlink, writeFile} from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Peer, exists, tempDir, waitFor} from './harness.js'
import {freePort} from '@fpeer/core/testing'

/** Every entry under `dir` (files, directories, links) with its kind and, for a file, its content: a before/after listing. */
async function listing(dir: string, rel = ''): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  let ents
  try {
    ents = await readdir(path.join(dir, rel), {withFileTypes: true})
  } catch {
    return out
  }
  for (const e of ents) {
    const r = rel ? `${rel}/${e.name}` : e.name
    const abs = path.join(dir, r)
    if (e.isSymbolicLink()) out[r] = `link:${await readlink(abs)}`
    else if (e.isDirectory()) Object.assign(out, {[`${r}/`]: 'dir'}, await listing(dir, r))
    else out[r] = `file:${(await stat(abs)).mode & 0o777}:${await readFile(abs, 'utf8')}`
  }
  return out
}

function curlStatus(url: string): Promise<string> {
  return new Promise((resolve) =>
    execFile('/usr/bin/curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', url], {timeout: 30_000}, (_err, stdout) => resolve(stdout)),
  )
}

/** The code of a failed command's --json error: the peer's own code when a refusal wraps it. */
function errorCode(stdout: string): string {
  const doc = JSON.parse(stdout) as {error: {code: string; details?: {peerCode?: string}}}
  return doc.error.details?.peerCode ?? doc.error.code
}

function alive(peer: Peer): boolean {
  return peer.ready !== undefined && !peer.serveStderr.includes('stopping')
}

describe('copying keeps what rsync keeps and overwrites nothing unseen', {timeout: 600_000}, () => {
  let work: string
  let host: Peer
  let src: string

  before(async () => {
    work = await tempDir()
    src = path.join(work, 'src')
    host = await Peer.create('127.0.77.1')
    await mkdir(path.join(src, 'notes'), {recursive: true})
    await mkdir(path.join(src, 'empty/inner'), {recursive: true})
    await mkdir(path.join(src, '.git'), {recursive: true})
    await writeFile(path.join(src, 'run.sh'), '#!/bin/sh\necho hi\n')
    await chmod(path.join(src, 'run.sh'), 0o755)
    await writeFile(path.join(src, 'data.txt'), 'the host data\n')
    await writeFile(path.join(src, 'notes/a.txt'), 'note a\n')
    await writeFile(path.join(src, 'server.log'), 'a log\n')
    await writeFile(path.join(src, '.git/config'), '[core]\n')
    await writeFile(path.join(src, '.env'), 'SECRET=1\n')
    await writeFile(path.join(src, '.fpeerignore'), '.git/\n.env\n')
    await symlink('data.txt', path.join(src, 'link-to-data'))
    await symlink('/etc/hostname', path.join(src, 'link-out'))
    const r = await host.run(['share', src, '--name', 'docs', '--open', '--json'])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(JSON.parse(r.stdout).skipped.symlinks.sort(), ['link-out', 'link-to-data'])
    await host.serve()
  })

  after(async () => {
    await host.destroy()
    await rm(work, {recursive: true, force: true})
  })

  it('the exec bit and empty directories arrive; symlinks and ignored files do not, and nothing differing is lost', async () => {
    const me = await Peer.create('127.0.77.2')
    const into = path.join(work, 'into1')
    // The requester's own state: a differing data.txt, its own rules keeping *.log out.
    await mkdir(into, {recursive: true})
    await writeFile(path.join(into, 'data.txt'), 'my local edit\n')
    await writeFile(path.join(into, '.fpeerignore'), '*.log\n')
    const fetchPort = await freePort(me.address)
    try {
      const r = await me.run(['request', host.control, 'docs', '--into', into, '--bind', me.address, '--fetch-port', String(fetchPort), '--json'])
      assert.equal(r.code, 0, `${r.stdout} ${r.stderr}`)
      const doc = JSON.parse(r.stdout)
      const after = await listing(into)
      // Exec bit kept (under the umask), the plain file not made executable.
      assert.equal((await stat(path.join(into, 'run.sh'))).mode & 0o100, 0o100)
      assert.equal((await stat(path.join(into, 'notes/a.txt'))).mode & 0o111, 0)
      // The empty leaf directory and its parent exist.
      assert.ok((await lstat(path.join(into, 'empty/inner'))).isDirectory())
      // Symlinks are not shared: neither the one inside nor the one pointing out; the host said so.
      assert.equal(await exists(path.join(into, 'link-to-data')), false)
      assert.equal(await exists(path.join(into, 'link-out')), false)
      await waitFor('the host to warn about the symlinks', () => host.serveStderr.includes('symlink not shared'))
      // The host's ignore rules: never offered.
      assert.equal(await exists(path.join(into, '.env')), false)
      assert.equal(await exists(path.join(into, '.git')), false)
      // Ours: never accepted.
      assert.equal(await exists(path.join(into, 'server.log')), false)
      assert.deepEqual(doc.ignored, ['server.log'])
      // The differing local file is kept as a conflict copy; the host's content is at the path.
      assert.equal(await readFile(path.join(into, 'data.txt'), 'utf8'), 'the host data\n')
      assert.equal(doc.transfer.conflicts.length, 1)
      assert.match(doc.transfer.conflicts[0], /^data\.sync-conflict-[A-Z2-7]{7}-[0-9a-f]{8}\.txt$/)
      assert.equal(await readFile(path.join(into, doc.transfer.conflicts[0]), 'utf8'), 'my local edit\n')
      // Our own rules file stays ours.
      assert.equal(await readFile(path.join(into, '.fpeerignore'), 'utf8'), '*.log\n')
      assert.ok(after['run.sh'] && after['empty/inner/'])
      // The host checked our copy on the port we fixed.
      await waitFor('the host to log the fetch-back', () => host.serveStderr.includes(`from=${me.address}:${fetchPort}`))
      assert.ok(alive(host))
    } finally {
      await me.destroy()
    }
  })

  it('a busy --fetch-port stops the request before any file lands', async () => {
    const me = await Peer.create('127.0.77.4')
    const into = path.join(work, 'into-busy')
    const blocker = net.createServer()
    await new Promise<void>((resolve) => blocker.listen(0, me.address, resolve))
    try {
      const port = (blocker.address() as net.AddressInfo).port
      const r = await me.run(['request', host.control, 'docs', '--into', into, '--bind', me.address, '--fetch-port', String(port), '--json'])
      assert.equal(r.code, 2, r.stdout)
      assert.equal(errorCode(r.stdout), 'E_BAD_ADDRESS')
      assert.match(JSON.parse(r.stdout).error.hint, /--fetch-port/)
      assert.deepEqual(await listing(into), {})
      assert.ok(alive(host))
    } finally {
      await new Promise((resolve) => blocker.close(resolve))
      await me.destroy()
    }
  })

  it('the served folder refuses ignored files by name (curl), and serves the rest', async () => {
    const base = `http://${host.address}:${host.ready!.ports.HTTP}/docs`
    assert.equal(await curlStatus(`${base}/data.txt`), '200')
    assert.equal(await curlStatus(`${base}/.env`), '404')
    assert.equal(await curlStatus(`${base}/.git/config`), '404')
    assert.equal(await curlStatus(`${base}/.fpeerignore`), '404')
    // Through a symlink inside the folder, the target's rules apply too.
    await symlink('.env', path.join(src, 'env-link'))
    assert.equal(await curlStatus(`${base}/env-link`), '404')
    assert.ok(alive(host))
  })

  it('request --dry-run prints the plan (text and JSON) and changes nothing, records nothing', async () => {
    const me = await Peer.create('127.0.77.3')
    const into = path.join(work, 'into-dry')
    await mkdir(into, {recursive: true})
    await writeFile(path.join(into, 'data.txt'), 'differs\n')
    await writeFile(path.join(into, 'notes-same.txt'), 'x')
    await mkdir(path.join(into, 'notes'))
    await writeFile(path.join(into, 'notes/a.txt'), 'note a\n')
    const before = await listing(into)
    try {
      const text = await me.run(['request', host.control, 'docs', '--into', into, '--bind', me.address, '--dry-run'])
      assert.equal(text.code, 0, text.stderr)
      const lines = text.stdout.trim().split('\n').sort()
      assert.ok(lines.includes('fetch\trun.sh'), text.stdout)
      assert.ok(lines.includes('same\tnotes/a.txt'), text.stdout)
      assert.ok(
        lines.some((l) => /^conflict\tdata\.txt\tdata\.sync-conflict-[A-Z2-7]{7}-[0-9a-f]{8}\.txt$/.test(l)),
        text.stdout,
      )
      const json = await me.run(['request', host.control, 'docs', '--into', into, '--bind', me.address, '--dry-run', '--json'])
      assert.equal(json.code, 0, json.stderr)
      const doc = JSON.parse(json.stdout)
      assert.equal(doc.state, 'dry-run')
      const byPath = Object.fromEntries(doc.plan.map((p: {path: string; action: string}) => [p.path, p.action]))
      assert.deepEqual(byPath, {'data.txt': 'conflict', 'notes/a.txt': 'same', 'run.sh': 'fetch', 'server.log': 'fetch'})
      assert.deepEqual(await listing(into), before)
      // Nothing recorded: no share, no peerlist, nothing under folders/.
      const status = await me.json(['status'])
      assert.equal(JSON.stringify(status).includes('"docs"'), false, JSON.stringify(status))
      assert.equal(
        Object.keys(await listing(me.home)).some((k) => k.startsWith('folders/')),
        false,
      )
      // A directory that does not exist is not created by a dry run.
      const missing = path.join(work, 'never-made')
      const r = await me.run(['request', host.control, 'docs', '--into', missing, '--bind', me.address, '--dry-run', '--json'])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(await exists(missing), false)
      assert.ok(alive(host))
    } finally {
      await me.destroy()
    }
  })
})

describe('push --dry-run and --push-port', {timeout: 600_000}, () => {
  it('a dry run lists what a push would send and records nothing; a bad --push-port is a usage error', async () => {
    const work = await tempDir()
    const me = await Peer.create('127.0.77.9')
    try {
      const dir = path.join(work, 'p')
      await mkdir(dir)
      await writeFile(path.join(dir, 'keep.txt'), 'same\n')
      await writeFile(path.join(dir, 'edit.txt'), 'old\n')
      await writeFile(path.join(dir, 'gone.txt'), 'bye\n')
      assert.equal((await me.run(['share', dir, '--name', 'p'])).code, 0)
      const before = await me.json(['files', 'p'])
      await writeFile(path.join(dir, 'edit.txt'), 'new content\n')
      await writeFile(path.join(dir, 'added.txt'), 'added\n')
      await rm(path.join(dir, 'gone.txt'))
      const text = await me.run(['push', 'p', '--dry-run'])
      assert.equal(text.code, 0, text.stderr)
      assert.deepEqual(text.stdout.trim().split('\n').sort(), ['delete\tgone.txt', 'send\tadded.txt', 'send\tedit.txt'])
      const doc = await me.json(['push', 'p', '--dry-run'])
      assert.equal(doc.versions, 3)
      assert.equal(doc.dryRun, true)
      // Nothing recorded: the structure is what it was, so the same changes are still pending.
      assert.deepEqual(await me.json(['files', 'p']), before)
      const bad = await me.run(['push', 'p', '--push-port', 'GOPHER=1', '--json'])
      assert.equal(bad.code, 2)
      assert.equal(errorCode(bad.stdout), 'E_USAGE')
    } finally {
      await me.destroy()
      await rm(work, {recursive: true, force: true})
    }
  })
})

describe('unshare, disallow and forget take effect on a running serve', {timeout: 600_000}, () => {
  let work: string
  let host: Peer
  let me: Peer
  let dir: string

  before(async () => {
    work = await tempDir()
    dir = path.join(work, 'a')
    await mkdir(dir)
    await writeFile(path.join(dir, 'f.txt'), 'content\n')
    host = await Peer.create('127.0.78.1')
    me = await Peer.create('127.0.78.2')
    assert.equal((await host.run(['share', dir, '--name', 'a'])).code, 0)
    await host.serve()
  })

  after(async () => {
    await host.destroy()
    await me.destroy()
    await rm(work, {recursive: true, force: true})
  })

  const request = (into: string) => me.run(['request', host.control, 'a', '--into', path.join(work, into), '--bind', me.address, '--json'])

  it('the same directory cannot be shared under a second name', async () => {
    const r = await host.run(['share', dir, '--name', 'b', '--json'])
    assert.equal(r.code, 2)
    assert.equal(errorCode(r.stdout), 'E_USAGE')
    assert.equal((await host.json(['status'])).folders.length, 1)
  })

  it('disallow refuses the next request; forget removes a confirmed peer, which is then refused', async () => {
    const id = await me.id()
    assert.equal((await host.run(['allow', 'a', id])).code, 0)
    assert.equal((await host.run(['disallow', 'a', id])).code, 0)
    const refused = await request('r1')
    assert.equal(refused.code, 3, refused.stdout)
    assert.equal(errorCode(refused.stdout), 'E_NOT_ALLOWED')
    // Disallowing an ID that is not allowed is an error that names it.
    const again = await host.run(['disallow', 'a', id, '--json'])
    assert.equal(errorCode(again.stdout), 'E_NOT_FOUND')

    assert.equal((await host.run(['allow', 'a', id])).code, 0)
    const joined = await request('r2')
    assert.equal(joined.code, 0, joined.stderr)
    // Still allowed or a peer: disallow alone leaves a confirmed peer in.
    assert.equal((await host.run(['disallow', 'a', id])).code, 0)
    assert.ok((await host.json(['peers', 'a'])).peers.some((p: {id: string}) => p.id === id))
    const f = await host.run(['forget', 'a', id, '--json'])
    assert.equal(f.code, 0, f.stderr)
    assert.equal(JSON.parse(f.stdout).peers, 0)
    assert.deepEqual((await host.json(['peers', 'a'])).peers, [])
    const after = await request('r2')
    assert.equal(after.code, 3, after.stdout)
    assert.equal(errorCode(after.stdout), 'E_NOT_ALLOWED')
    assert.ok(alive(host))
  })

  it('unshare stops serving the folder and keeps its files', async () => {
    const base = `http://${host.address}:${host.ready!.ports.HTTP}/a/f.txt`
    assert.equal((await host.run(['allow', 'a', await me.id()])).code, 0)
    const r = await host.run(['unshare', 'a', '--json'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(JSON.parse(r.stdout).stateRemoved, true)
    assert.equal(await readFile(path.join(dir, 'f.txt'), 'utf8'), 'content\n')
    const refused = await request('r2')
    assert.equal(refused.code, 3, refused.stdout)
    assert.equal(errorCode(refused.stdout), 'E_UNKNOWN_FOLDER')
    await waitFor('the HTTP server to stop serving a', async () => (await curlStatus(base)) !== '200')
    await waitFor('serve to log the unshare', () => host.serveStderr.includes('folder no longer shared'))
    assert.equal((await host.json(['status'])).folders.length, 0)
    // Unsharing it again names the mistake.
    assert.equal(errorCode((await host.run(['unshare', 'a', '--json'])).stdout), 'E_NO_SUCH_FOLDER')
    // Now it can be shared under another name.
    assert.equal((await host.run(['share', dir, '--name', 'b'])).code, 0)
    assert.ok(alive(host))
  })
})
