// Protocol tests for fpeer's FTP server over a raw control connection: confinement, refusals, passive rules, aborts, limits.
import assert from 'node:assert/strict'
import {readdir, readFile} from 'node:fs/promises'
import {connect} from 'node:net'
import path from 'node:path'
import {Readable} from 'node:stream'
import {after, before, describe, it} from 'node:test'
import type {AccessContext, FileSource, TransportServer} from '@fpeer/core'
import {FaultySource} from '@fpeer/core/conformance'
import {
  BIG_BYTES,
  BIG_FILE,
  FOLDER,
  FTP_HOSTILE_NAMES,
  OUTSIDE_SECRET,
  RawFtp,
  UNSENDABLE_NAMES,
  connectData,
  drain,
  localSource,
  makeTree,
  parseBlocks,
  serve,
  type Reply,
  type Tree,
} from './fixtures.js'

/** Records every path the server hands the FileSource, so a test can prove none climbs out. */
class RecordingSource implements FileSource {
  readonly paths: string[] = []
  constructor(readonly base: FileSource) {}
  folders(who: AccessContext) {
    return this.base.folders(who)
  }
  stat(folder: string, p: string, who: AccessContext) {
    this.paths.push(`${folder}:${p}`)
    return this.base.stat(folder, p, who)
  }
  list(folder: string, p: string, who: AccessContext) {
    this.paths.push(`${folder}:${p}`)
    return this.base.list(folder, p, who)
  }
  open(folder: string, p: string, who: AccessContext, range?: {start?: number; end?: number}) {
    this.paths.push(`${folder}:${p}`)
    return this.base.open(folder, p, who, range)
  }
}

/** A source whose every file is endless (1 TiB announced): a transfer stays in flight until someone stops it. */
class EndlessSource extends RecordingSource {
  override async open(folder: string, p: string, who: AccessContext, range?: {start?: number; end?: number}) {
    const opened = await this.base.open(folder, p, who, range)
    opened.stream.destroy()
    const chunk = Buffer.alloc(1 << 16, 7)
    const stream = new Readable({
      read() {
        this.push(chunk)
      },
    })
    return {...opened, size: 2 ** 40, stream}
  }
}

/** A source whose file stream ends early without an error, as a file truncated while being read looks. */
class ShortSource extends RecordingSource {
  override async open(folder: string, p: string, who: AccessContext, range?: {start?: number; end?: number}) {
    const opened = await this.base.open(folder, p, who, range)
    opened.stream.destroy()
    return {...opened, stream: Readable.from([Buffer.alloc(100, 1)])}
  }
}

describe('fpeer FTP server', {timeout: 600_000}, () => {
  let tree: Tree
  let source: RecordingSource
  let server: TransportServer
  const sessions: RawFtp[] = []
  const login = async (options: {localAddress?: string} = {}) => {
    const s = await RawFtp.login(server.port, options)
    sessions.push(s)
    return s
  }
  const retr = async (ftp: RawFtp, arg: string): Promise<{first: Reply; last?: Reply; data: Buffer; error?: string}> => {
    const data = await ftp.epsv()
    const done = drain(data)
    ftp.send(`RETR ${arg}`)
    const first = await ftp.next()
    if (first.code !== 150) {
      data.destroy()
      return {first, data: Buffer.alloc(0)}
    }
    const got = await done
    const last = await ftp.next()
    return {first, last, ...got}
  }
  const listing = async (ftp: RawFtp, line: string) => {
    const data = await ftp.epsv()
    const done = drain(data)
    ftp.send(line)
    const first = await ftp.next()
    if (first.code !== 150) {
      data.destroy()
      return {first, text: ''}
    }
    const {data: body} = await done
    await ftp.expect(226)
    return {first, text: body.toString()}
  }

  before(async () => {
    tree = await makeTree()
    source = new RecordingSource(localSource(tree))
    server = await serve(source)
  })
  after(async () => {
    for (const s of sessions) await s.close()
    await server.close()
    await tree.dispose()
  })

  it('greets, refuses commands before login and accepts any user', async () => {
    const ftp = await RawFtp.open(server.port)
    sessions.push(ftp)
    await ftp.expect(220)
    await ftp.cmd('PWD', 530)
    await ftp.cmd('RETR share/empty.bin', 530)
    await ftp.cmd('PASS x', 503)
    await ftp.cmd('USER whoever', 331)
    await ftp.cmd('PASS anything', 230)
    await ftp.cmd('PWD', 257)
    await ftp.cmd('QUIT', 221)
  })

  it('announces its features and system type', async () => {
    const ftp = await login()
    assert.match((await ftp.cmd('SYST', 215)).text, /UNIX/)
    const feat = (await ftp.cmd('FEAT', 211)).text.split('\n').map((l) => l.trim())
    for (const f of ['UTF8', 'SIZE', 'MDTM', 'REST STREAM', 'EPSV', 'MLST type*;size*;modify*;']) assert.ok(feat.includes(f), `FEAT lacks ${f}`)
    await ftp.cmd('OPTS UTF8 ON', 200)
    assert.match((await ftp.cmd('OPTS MLST type;size;', 200)).text, /MLST OPTS type;size;/)
    for (const [c, code] of [
      ['TYPE I', 200],
      ['TYPE A', 200],
      ['TYPE E', 504],
      ['MODE B', 200],
      ['MODE C', 504],
      ['MODE S', 200],
      ['STRU F', 200],
      ['STRU R', 504],
      ['NOOP', 200],
      ['XYZZY', 500],
    ] as const) {
      await ftp.cmd(c, code)
    }
  })

  it('moves around with CWD/CDUP and never above /', async () => {
    const ftp = await login()
    await ftp.cmd(`CWD ${FOLDER}`, 250)
    assert.equal((await ftp.cmd('PWD', 257)).text, '257 "/share" is the current directory')
    await ftp.cmd('CWD sub dir/nested #1', 250)
    await ftp.cmd('CDUP', 250)
    assert.equal((await ftp.cmd('PWD', 257)).text, '257 "/share/sub dir" is the current directory')
    await ftp.cmd('CWD ../../../../..', 250)
    assert.equal((await ftp.cmd('PWD', 257)).text, '257 "/" is the current directory')
    await ftp.cmd('CDUP', 250)
    await ftp.cmd('CWD nope', 550)
    await ftp.cmd(`CWD /${FOLDER}/empty.bin`, 550)
    assert.equal((await ftp.cmd('PWD', 257)).text, '257 "/" is the current directory')
  })

  it('serves exact bytes for every hostile name, with SIZE and MDTM', async () => {
    const ftp = await login()
    await ftp.cmd(`CWD ${FOLDER}`, 250)
    for (const name of FTP_HOSTILE_NAMES) {
      const want = await readFile(path.join(tree.root, ...name.split('/')))
      assert.equal((await ftp.cmd(`SIZE ${name}`, 213)).text, `213 ${want.length}`)
      assert.match((await ftp.cmd(`MDTM ${name}`, 213)).text, /^213 \d{14}$/)
      const r = await retr(ftp, name)
      assert.equal(r.first.code, 150, `${name}: ${r.first.text}`)
      assert.equal(r.last?.code, 226, name)
      assert.ok(r.data.equals(want), `${name} bytes differ`)
    }
    await ftp.cmd('SIZE sub dir', 550)
    await ftp.cmd('SIZE missing', 550)
  })

  it('lists folders at the root and entries with exact names, leaving out names FTP cannot carry', async () => {
    const ftp = await login()
    const root = await listing(ftp, 'MLSD')
    assert.match(root.text, /^type=dir;modify=\d{14}; share\r\n$/)
    assert.match((await listing(ftp, 'LIST')).text, /^drwxr-xr-x 1 fpeer fpeer +0 .* share\r\n$/)
    const names = (await listing(ftp, `NLST /${FOLDER}`)).text.split('\r\n').filter(Boolean).sort()
    const expected = (await readdir(tree.root)).filter((n) => !UNSENDABLE_NAMES.includes(n) && n !== 'escape.txt').sort()
    assert.deepEqual(names, expected)
    const mlsd = (await listing(ftp, `MLSD /${FOLDER}`)).text.split('\r\n').filter(Boolean)
    const big = mlsd.find((l) => l.endsWith(` ${BIG_FILE}`))
    assert.match(big!, new RegExp(`^type=file;size=${BIG_BYTES};modify=\\d{14}; big.bin$`))
    assert.ok(
      mlsd.some((l) => l.endsWith(';  one leading space.txt')),
      'leading space lost',
    )
    assert.ok(!mlsd.some((l) => /line|carriage/.test(l)))
    assert.equal(mlsd.length, expected.length)
    assert.match((await listing(ftp, `LIST -la /${FOLDER}/empty.bin`)).text, /^-r--r--r-- 1 fpeer fpeer +0 .* empty\.bin\r\n$/)
    await ftp.epsv().then((d) => d.destroy())
    await ftp.cmd(`MLSD /${FOLDER}/empty.bin`, 501)
    const mlst = await ftp.cmd(`MLST /${FOLDER}/empty.bin`, 250)
    assert.match(mlst.text, /^250-Listing \/share\/empty\.bin\n type=file;size=0;modify=\d{14}; \/share\/empty\.bin\n250 End$/)
  })

  it('confines every path to the shared folders', async () => {
    const ftp = await login()
    await ftp.cmd(`CWD ${FOLDER}`, 250)
    for (const bad of [
      '../../../etc/passwd',
      '/etc/passwd',
      `/${FOLDER}/../../outside/secret`,
      '../outside/secret',
      'escape.txt',
      '%2e%2e/etc/passwd',
      `/${FOLDER}/sub dir/../../../../etc/shadow`,
    ]) {
      await ftp.cmd(`SIZE ${bad}`, 550)
      const r = await retr(ftp, bad)
      assert.equal(r.first.code, 550, `${bad}: ${r.first.text}`)
    }
    assert.ok(
      source.paths.every((p) => !p.split(/[:/]/).includes('..')),
      `a path with .. reached the FileSource: ${source.paths.find((p) => p.includes('..'))}`,
    )
    // What the server hands out is never the outside file, whatever the spelling.
    const all = await listing(ftp, `NLST /${FOLDER}`)
    assert.ok(!all.text.includes('escape.txt'))
    assert.ok(!all.text.includes(OUTSIDE_SECRET.trim()))
  })

  it('refuses every write command and active mode, and changes nothing on disk', async () => {
    const before = (await readdir(tree.root, {recursive: true})).sort()
    const ftp = await login()
    await ftp.cmd(`CWD ${FOLDER}`, 250)
    for (const c of [
      'STOR up.txt',
      'STOU',
      'APPE empty.bin',
      'DELE empty.bin',
      'RMD sub dir',
      'XRMD sub dir',
      'MKD new',
      'XMKD new',
      'RNFR empty.bin',
      'RNTO x',
      'ALLO 100',
      'MFMT 20200101000000 empty.bin',
    ]) {
      assert.equal((await ftp.cmd(c)).code, 550, c)
    }
    await ftp.cmd('SITE CHMOD 777 empty.bin', 502)
    await ftp.cmd('PORT 127,0,0,1,4,1', 502)
    await ftp.cmd('EPRT |1|127.0.0.1|1025|', 502)
    // STOR after EPSV: refused, and the prepared data connection is closed, not read.
    const data = await ftp.epsv()
    const got = drain(data)
    data.write('uploaded bytes')
    await ftp.cmd('STOR up.txt', 550)
    await got
    assert.deepEqual((await readdir(tree.root, {recursive: true})).sort(), before)
  })

  it('accepts a data connection only from the control peer', async () => {
    const ftp = await login()
    const r = await ftp.cmd('EPSV', 229)
    const port = Number(/\|\|\|(\d+)\|/.exec(r.text)![1])
    // 127.0.0.2 is another address on the loopback: a stranger racing for the data port.
    const stranger = await connectData(port, '127.0.0.2')
    const strangerGot = await drain(stranger)
    assert.equal(strangerGot.data.length, 0)
    const data = await connectData(port, '127.0.0.1')
    const done = drain(data)
    ftp.send(`RETR /${FOLDER}/${FTP_HOSTILE_NAMES[0]}`)
    await ftp.expect(150)
    assert.equal((await done).data.toString(), `file 0: ${FTP_HOSTILE_NAMES[0]}\n`)
    await ftp.expect(226)
  })

  it('PASV names the control connection address; RETR without a passive port is 425', async () => {
    const ftp = await login()
    assert.match((await ftp.cmd('PASV', 227)).text, /\(127,0,0,1,\d+,\d+\)/)
    await ftp.cmd('EPSV 2', 522)
    await ftp.cmd('ABOR', 225)
    await ftp.cmd(`RETR /${FOLDER}/empty.bin`, 425)
    await ftp.cmd(`LIST /${FOLDER}`, 425)
  })

  it('one passive port serves a session’s transfers; a slot that ends without its connection takes it along, so a late connection is refused', async () => {
    const whole = await readFile(path.join(tree.root, BIG_FILE))
    const ftp = await login()
    const epsvPort = async () => Number(/\(\|\|\|(\d+)\|\)/.exec((await ftp.cmd('EPSV', 229)).text)![1])
    const fetch = async (port: number) => {
      const got = drain(await connectData(port))
      ftp.send(`RETR /${FOLDER}/${BIG_FILE}`)
      await ftp.expect(150)
      assert.ok((await got).data.equals(whole))
      await ftp.expect(226)
    }
    const first = await epsvPort()
    await fetch(first)
    // The next transfer reuses the listener: no new port (and no kernel port search) per file.
    assert.equal(await epsvPort(), first)
    await fetch(first)
    // A slot refused before its connection came (550): a client that connects now, late, must
    // not get the next slot's file; the listener went with the slot.
    assert.equal(await epsvPort(), first)
    await ftp.cmd(`RETR /${FOLDER}/no-such-file.bin`, 550)
    await assert.rejects(connectData(first), /ECONNREFUSED/)
    // The next PASV/EPSV listens anew and serves.
    await fetch(await epsvPort())
  })

  it('MODE B: one data connection carries the session’s files, each as blocks ended by EOF; a 550 leaves it to the next; MODE S closes it', async () => {
    const ftp = await login()
    await ftp.cmd('MODE B', 200)
    // Not before a data connection is asked for.
    await ftp.cmd(`RETR /${FOLDER}/empty.bin`, 425)
    const data = await ftp.epsv()
    const got = drain(data)
    const small = tree.files.filter((f) => f !== BIG_FILE).slice(0, 3)
    // A refusal before the connection was taken leaves it for the next file.
    await ftp.cmd(`RETR /${FOLDER}/no-such-file.bin`, 550)
    const asked = [...small, BIG_FILE, 'empty.bin', small[0]!]
    for (const [i, name] of asked.entries()) {
      ftp.send(`RETR /${FOLDER}/${name}`)
      // The first transfer opens the connection (150); the rest find it open (125).
      await ftp.expect(i === 0 ? 150 : 125)
      await ftp.expect(250)
      if (i === 1) await ftp.cmd(`RETR /${FOLDER}/missing-too.bin`, 550)
    }
    // Stream-mode byte offsets do not apply to block mode.
    await ftp.cmd('REST 5', 504)
    await ftp.cmd('MODE S', 200)
    const {data: body} = await got
    const {files, descriptors, unfinished} = parseBlocks(body)
    assert.equal(unfinished, undefined)
    assert.deepEqual([...descriptors].sort(), [0, 64])
    assert.equal(files.length, asked.length)
    for (const [i, name] of asked.entries()) assert.ok(files[i]!.equals(await readFile(path.join(tree.root, name))), name)
    // Back in stream mode: a data connection per transfer, ended by closing it.
    const again = await retr(ftp, `/${FOLDER}/${small[1]!}`)
    assert.equal(again.last?.code, 226)
    assert.ok(again.data.equals(await readFile(path.join(tree.root, small[1]!))))
  })

  it('MODE B: a new EPSV replaces the kept connection; a listing is framed too', async () => {
    const ftp = await login()
    await ftp.cmd('MODE B', 200)
    const first = await ftp.epsv()
    const firstGot = drain(first)
    await ftp.cmd(`RETR /${FOLDER}/${tree.files[0]!}`, 150)
    await ftp.expect(250)
    const second = await ftp.epsv()
    // The kept connection closed when the next was asked for, with the one file it carried.
    assert.equal(parseBlocks((await firstGot).data).files.length, 1)
    const got = drain(second)
    await ftp.cmd(`NLST /${FOLDER}`, 150)
    await ftp.expect(250)
    await ftp.cmd('QUIT', 221)
    const names = parseBlocks((await got).data)
      .files[0]!.toString()
      .split('\r\n')
      .filter(Boolean)
    assert.ok(names.includes(BIG_FILE))
  })

  it('REST resumes at the offset; a bad or too large offset is refused', async () => {
    const whole = await readFile(path.join(tree.root, BIG_FILE))
    const ftp = await login()
    for (const offset of [1, 1 << 20, BIG_BYTES - 1, BIG_BYTES]) {
      await ftp.cmd(`REST ${offset}`, 350)
      const r = await retr(ftp, `/${FOLDER}/${BIG_FILE}`)
      assert.equal(r.last?.code, 226)
      assert.ok(r.data.equals(whole.subarray(offset)), `offset ${offset}`)
    }
    await ftp.cmd('REST -1', 501)
    await ftp.cmd('REST abc', 501)
    await ftp.cmd(`REST ${BIG_BYTES + 1}`, 350)
    const r = await retr(ftp, `/${FOLDER}/${BIG_FILE}`)
    assert.equal(r.first.code, 554)
    // REST applies to one transfer only.
    const again = await retr(ftp, `/${FOLDER}/${BIG_FILE}`)
    assert.equal(again.data.length, BIG_BYTES)
  })

  it('a client that reads a few bytes and hangs up gets 426, and the server carries on', async () => {
    const ftp = await login()
    const data = await ftp.epsv()
    ftp.send(`RETR /${FOLDER}/${BIG_FILE}`)
    await ftp.expect(150)
    await new Promise<void>((resolve) => data.once('data', () => resolve()))
    data.destroy()
    await ftp.expect(426)
    const r = await retr(ftp, `/${FOLDER}/empty.bin`)
    assert.equal(r.last?.code, 226)
  })

  it('garbage, bad UTF-8 and abrupt disconnects do not hurt the server', async () => {
    const ftp = await login()
    await ftp.cmd('\u0000\u0001\u0002', 500)
    ftp.send(Buffer.from([0x43, 0x57, 0x44, 0x20, 0xc3, 0x28, 0x0d, 0x0a]))
    await ftp.expect(501)
    const raw = connect({host: '127.0.0.1', port: server.port})
    raw.on('error', () => {})
    raw.write(Buffer.alloc(3000, 0xff))
    raw.destroy()
    const half = await login()
    half.send('EPSV')
    half.send(`RETR /${FOLDER}/${BIG_FILE}`)
    await half.close()
    const again = await login()
    assert.equal((await retr(again, `/${FOLDER}/empty.bin`)).last?.code, 226)
  })
})

describe('fpeer FTP server under faults and limits', {timeout: 600_000}, () => {
  let tree: Tree
  before(async () => {
    tree = await makeTree()
  })
  after(async () => {
    await tree.dispose()
  })

  it('a read error mid-file closes the data connection and replies 451, never 226', async () => {
    const faulty = new FaultySource(localSource(tree), {drop: new Map([[BIG_FILE, {times: 1, afterBytes: 1 << 20}]])})
    const server = await serve(faulty)
    const ftp = await RawFtp.login(server.port)
    try {
      const data = await ftp.epsv()
      const got = drain(data)
      ftp.send(`RETR /${FOLDER}/${BIG_FILE}`)
      await ftp.expect(150)
      const {data: body} = await got
      assert.equal((await ftp.next()).code, 451)
      assert.ok(body.length <= 1 << 20, `sent ${body.length} bytes`)
      // The data connection just ends: the 451 on the control connection is what a client must trust.
    } finally {
      await ftp.close()
      await server.close()
    }
  })

  it('MODE B: a read error or a short file mid-transfer is 451 and drops the kept connection, so no later file is framed wrongly', async () => {
    // The short source makes every file 100 bytes, the empty one too: only the faulty one serves a next file.
    for (const [source, next] of [
      [new FaultySource(localSource(tree), {drop: new Map([[BIG_FILE, {times: 1, afterBytes: 1 << 20}]])}), true],
      [new ShortSource(localSource(tree)), false],
    ] as const) {
      const server = await serve(source)
      const ftp = await RawFtp.login(server.port)
      try {
        await ftp.cmd('MODE B', 200)
        const data = await ftp.epsv()
        const got = drain(data)
        ftp.send(`RETR /${FOLDER}/${BIG_FILE}`)
        await ftp.expect(150)
        assert.equal((await ftp.next()).code, 451)
        const {files, unfinished} = parseBlocks((await got).data)
        // Never an EOF block for the cut file.
        assert.equal(files.length, 0)
        assert.ok((unfinished?.length ?? 0) < BIG_BYTES)
        // The next transfer needs a new data connection.
        await ftp.cmd(`RETR /${FOLDER}/empty.bin`, 425)
        if (!next) continue
        const again = drain(await ftp.epsv())
        await ftp.cmd(`RETR /${FOLDER}/empty.bin`, 150)
        await ftp.expect(250)
        await ftp.cmd('MODE S', 200)
        assert.deepEqual(parseBlocks((await again).data).files, [Buffer.alloc(0)])
      } finally {
        await ftp.close()
        await server.close()
      }
    }
  })

  it('MODE B: ABOR stops a transfer (426, 226) and drops the kept connection; the session goes on', async () => {
    const server = await serve(new EndlessSource(localSource(tree)))
    const ftp = await RawFtp.login(server.port)
    try {
      await ftp.cmd('MODE B', 200)
      const data = await ftp.epsv()
      data.pause()
      ftp.send(`RETR /${FOLDER}/${BIG_FILE}`)
      await ftp.expect(150)
      ftp.send(Buffer.from([0xff, 0xf4, 0xff, 0xf2, ...Buffer.from('ABOR\r\n')]))
      await ftp.expect(426)
      await ftp.expect(226)
      data.resume()
      await drain(data)
      await ftp.cmd(`RETR /${FOLDER}/empty.bin`, 425)
      await ftp.cmd('NOOP', 200)
    } finally {
      await ftp.close()
      await server.close()
    }
  })

  it('ABOR during a transfer stops it: 426 then 226, and the session goes on', async () => {
    const server = await serve(new EndlessSource(localSource(tree)))
    const ftp = await RawFtp.login(server.port)
    try {
      const data = await ftp.epsv()
      data.pause() // do not read: the server blocks on backpressure mid-file
      ftp.send(`RETR /${FOLDER}/${BIG_FILE}`)
      await ftp.expect(150)
      await new Promise((r) => setTimeout(r, 100))
      ftp.send(Buffer.from([0xff, 0xf4, 0xff, 0xf2, ...Buffer.from('ABOR\r\n')]))
      await ftp.expect(426)
      await ftp.expect(226)
      data.resume()
      await drain(data)
      await ftp.cmd('NOOP', 200)
    } finally {
      await ftp.close()
      await server.close()
    }
  })

  it('a file that ends short without an error is 451, never 226', async () => {
    const server = await serve(new ShortSource(localSource(tree)))
    const ftp = await RawFtp.login(server.port)
    try {
      const data = await ftp.epsv()
      const got = drain(data)
      ftp.send(`RETR /${FOLDER}/${BIG_FILE}`)
      await ftp.expect(150)
      await got
      assert.equal((await ftp.next()).code, 451)
    } finally {
      await ftp.close()
      await server.close()
    }
  })

  it('drops a too-long line, an idle client and a passive port nobody uses', async () => {
    const server = await serve(localSource(tree), {idleTimeoutMs: 300, dataTimeoutMs: 300, maxLineBytes: 1024})
    try {
      const long = await RawFtp.login(server.port)
      long.send(`RETR ${'x'.repeat(2000)}`)
      await long.expect(500)
      await waitClosed(long)

      const idle = await RawFtp.login(server.port)
      await idle.expect(421, 3000)
      await waitClosed(idle)

      const lazy = await RawFtp.login(server.port)
      await lazy.cmd('EPSV', 229)
      lazy.send(`RETR /${FOLDER}/empty.bin`)
      await lazy.expect(425, 3000)
      await lazy.close()
    } finally {
      await server.close()
    }
  })

  it('limits connections in all and per address, sharing them fairly between addresses', async () => {
    const server = await serve(localSource(tree), {maxConnections: 3, maxConnectionsPerAddress: 2})
    const open: RawFtp[] = []
    try {
      open.push(await RawFtp.login(server.port), await RawFtp.login(server.port))
      const third = await RawFtp.open(server.port)
      open.push(third)
      await third.expect(421)
      open.push(await RawFtp.login(server.port, {localAddress: '127.0.0.2'}))
      // Full, but 127.0.0.1 holds two idle connections: a newcomer from 127.0.0.3 takes the oldest one's place.
      const fourth = await RawFtp.login(server.port, {localAddress: '127.0.0.3'})
      open.push(fourth)
      await open[0]!.expect(421)
      await waitClosed(open[0]!)
      // Now every address holds one: a newcomer from 127.0.0.4 cannot fairly evict anyone.
      const fifth = await RawFtp.open(server.port, {localAddress: '127.0.0.4'})
      open.push(fifth)
      await fifth.expect(421)
      // A slot freed is a slot reusable.
      await open[1]!.close()
      await new Promise((r) => setTimeout(r, 50))
      open.push(await RawFtp.login(server.port))
    } finally {
      for (const s of open) await s.close()
      await server.close()
    }
  })

  it('close() ends idle and transferring sessions and resolves', async () => {
    const server = await serve(new EndlessSource(localSource(tree)))
    const idle = await RawFtp.login(server.port)
    const busy = await RawFtp.login(server.port)
    const data = await busy.epsv()
    data.pause()
    busy.send(`RETR /${FOLDER}/${BIG_FILE}`)
    await busy.expect(150)
    const started = Date.now()
    await server.close()
    assert.ok(Date.now() - started < 3000, 'close() took too long')
    await waitClosed(idle)
    await waitClosed(busy)
    data.resume()
    await drain(data)
    await assert.rejects(RawFtp.open(server.port))
  })
})

async function waitClosed(ftp: RawFtp): Promise<void> {
  for (let i = 0; i < 100 && !ftp.closed; i++) await new Promise((r) => setTimeout(r, 30))
  assert.ok(ftp.closed, 'the server did not close the control connection')
}
