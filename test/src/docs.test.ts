// The docs run: README's main job, every recipe of docs/scripting.md and every command's examples, against real peers on loopback.
// One file, so that its uses of the default ports (127.0.0.1:7734/7735) never overlap.
import assert from 'node:assert/strict'
import {spawnSync} from 'node:child_process'
import {cp, mkdir, readFile, rm} from 'node:fs/promises'
import path from 'node:path'
import {after, before, describe, it} from 'node:test'
import {Config} from '@oclif/core'
import {DOCS, DocWorld, extractBlocks, runDocument} from './doc-runner.js'
import {ROOT, exists, treeHashes} from './harness.js'

const CLI = path.join(ROOT, 'packages/cli')

const MAIN_DOCUMENTS = {'notes/plan.txt': 'the plan\n', 'a b.txt': 'spaces\n', 'empty.bin': '', '100% #1.txt': 'percent\n'}
const PHOTOS = {'p1.jpg': 'not really a jpeg\n'.repeat(5000), 'trip/p2.jpg': 'second\n'}

describe('the README and docs/scripting.md, run as written', () => {
  it('every sh block of the tested documents says peer=… or norun', async () => {
    for (const file of ['README.md', 'docs/scripting.md']) {
      const blocks = extractBlocks(await readFile(path.join(ROOT, file), 'utf8'))
      assert.ok(blocks.length > 0, file)
      for (const b of blocks) assert.ok(b.norun || b.peer, `${file}:${b.line}: mark the block peer=NAME or norun`)
    }
  })

  it('README: the main job (serve on one side, request on the other)', async () => {
    const world = await DocWorld.create()
    try {
      await world.fixture('00-MainDocuments', MAIN_DOCUMENTS)
      const results = await runDocument(world, 'README.md', await readFile(path.join(ROOT, 'README.md'), 'utf8'))
      const ran = results.filter((r) => !r.block.bg)
      // The demo showed the four messages and both peerlists.
      const demo = ran.find((r) => r.block.peer === 'demo')!
      for (const type of ['BePeerRequest', 'FilesToGet', 'FilesUpdated', 'TrustedPeerConfirm']) assert.match(demo.stdout, new RegExp(`: ${type} `))
      assert.match(demo.stdout, /peers of 00-MainDocuments on the requester[^\n]*\n[^\n]*127\.0\.0\.1/)
      assert.deepEqual(await treeHashes(path.join(world.work, 'copy')), await treeHashes(path.join(world.work, '00-MainDocuments')))
      // `fpeer peers` on the other side printed the host; the change made later arrived.
      const request = ran.find((r) => r.block.code.includes('fpeer peers'))!
      assert.match(request.stdout, /127\.0\.0\.1/)
      assert.equal(ran.at(-1)!.stdout, 'more news\n')
      // The README's homes were used (each side its own), not the ones the runner set.
      assert.ok(await exists(path.join(world.work, '.fpeer/host/identity.json')))
      assert.ok(await exists(path.join(world.work, '.fpeer/other/identity.json')))
    } finally {
      await world.destroy()
    }
  })

  it('docs/scripting.md: every recipe', async () => {
    const world = await DocWorld.create()
    try {
      await world.fixture('00-MainDocuments', MAIN_DOCUMENTS)
      await world.fixture('Photos', PHOTOS)
      const results = await runDocument(world, 'docs/scripting.md', await readFile(path.join(DOCS, 'scripting.md'), 'utf8'))
      const out = results.map((r) => r.stdout).join('')
      // A few outcomes the recipes print, checked here so a recipe cannot pass by printing nothing.
      assert.match(out, /"fetched": 4/)
      assert.match(out, /refused: E_(NOT_ALLOWED|UNKNOWN_FOLDER)/)
      assert.match(out, /^E_UNKNOWN_FOLDER$/m)
      assert.match(out, /^E_NOT_ALLOWED$/m)
      assert.deepEqual(await treeHashes(path.join(world.work, 'photos-by-hand')), await treeHashes(path.join(world.work, 'Photos')))
    } finally {
      await world.destroy()
    }
  })

  it("docs/scripting.md's exit-code table is core's", async () => {
    const {exitCodeTable} = (await import(path.join(CLI, 'dist/exit-codes.js'))) as {exitCodeTable(): Array<{code: number; kind: string}>}
    const text = await readFile(path.join(DOCS, 'scripting.md'), 'utf8')
    const table = text.slice(text.indexOf('## Exit codes'))
    const rows = [...table.matchAll(/^\| (\d+) \| (\w*) \|/gm)].map((m) => ({code: Number(m[1]), kind: m[2] || 'ok'}))
    assert.deepEqual(
      rows,
      exitCodeTable().map(({code, kind}) => ({code, kind})),
    )
  })

  it('docs/commands.md is what `npm run docs` generates from the commands', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts/docs.js'), '--check'], {encoding: 'utf8'})
    assert.equal(r.status, 0, r.stderr)
  })
})

/**
 * Every example of every fpeer command (and of `fpeer --help`) runs, with `fpeer` on PATH, in a
 * directory holding ./docs, against a host at 127.0.0.1:7734 that shares 00-MainDocuments to anyone.
 * Examples may use $HOST_ID (that host's ID) and $PEER_ID (another peer's). Each example gets a
 * fresh home in which ./docs is shared as 00-MainDocuments (except for commands that need no
 * share, and `request`, which makes it itself); an example with --resume goes on from the one before it.
 */
describe('command examples, run as written', () => {
  let world: DocWorld
  let template: string
  let seedHome: string
  /** The seed home with ./docs of `exampleDir` shared as 00-MainDocuments: copied, not made again by an `fpeer share` per example. */
  let sharedHome: string
  /** Where every example runs, laid anew from the template for each: one path, so that one shared home fits them all. */
  let exampleDir: string
  let env: NodeJS.ProcessEnv
  let examples: Array<{id: string; text: string}>

  before(async () => {
    world = await DocWorld.create()
    await world.fixture('host-docs', MAIN_DOCUMENTS)
    template = path.join(world.dir, 'template')
    await mkdir(template, {recursive: true})
    await cp(path.join(world.work, 'host-docs'), path.join(template, 'docs'), {recursive: true})
    const hostId = (await world.run('fpeer id', 'host')).stdout.trim()
    const peerId = (await world.run('fpeer id', 'stranger')).stdout.trim()
    env = {HOST_ID: hostId, PEER_ID: peerId}
    await world.run('fpeer serve ./host-docs --name 00-MainDocuments --open --host 127.0.0.1 --data-port HTTP=0 --json', 'host', {bg: true})
    seedHome = world.home('seed')
    await world.run('fpeer id >/dev/null', 'seed')
    exampleDir = path.join(world.dir, 'example')
    sharedHome = path.join(world.dir, 'seed-shared')
    await cp(template, exampleDir, {recursive: true, preserveTimestamps: true})
    await cp(seedHome, sharedHome, {recursive: true})
    const s = await world.run('fpeer share ./docs --name 00-MainDocuments', 'seed', {cwd: exampleDir, home: sharedHome})
    assert.equal(s.code, 0, s.stderr)
    const config = await Config.load({root: CLI, userPlugins: false, devPlugins: false})
    const {ROOT_EXAMPLES} = (await import(path.join(CLI, 'dist/help.js'))) as {ROOT_EXAMPLES: string[]}
    examples = [
      ...ROOT_EXAMPLES.map((text) => ({id: '', text})),
      ...config.commands
        .filter((c) => c.pluginName?.startsWith('@fpeer/') && !c.hidden)
        .sort((a, b) => (a.id < b.id ? -1 : 1))
        .flatMap((c) => (c.examples ?? []).map((e) => ({id: c.id, text: typeof e === 'string' ? e : e.command}))),
    ].map((e) => ({...e, text: e.text.replaceAll('<%= config.bin %>', 'fpeer')}))
  })

  after(async () => {
    await world?.destroy()
  })

  it('every fpeer command has examples', async () => {
    const config = await Config.load({root: CLI, userPlugins: false, devPlugins: false})
    for (const c of config.commands.filter((c) => c.pluginName?.startsWith('@fpeer/') && !c.hidden))
      assert.ok((c.examples ?? []).length > 0, `${c.id} has no examples`)
  })

  it('each example exits 0 (75 for a MANUAL request, which leaves files to place)', async () => {
    let n = 0
    let cwd = ''
    let home = ''
    const failures: string[] = []
    for (const ex of examples) {
      const command = ex.text.split(/\s+/)[1] ?? ''
      if (!ex.text.includes('--resume')) {
        n++
        // The example before has exited (and a serve was stopped with its process group): its directory can go.
        cwd = exampleDir
        await rm(cwd, {recursive: true, force: true})
        await cp(template, cwd, {recursive: true, preserveTimestamps: true})
        home = path.join(world.dir, `ex-${n}-home`)
        // `request` makes the share itself; these need none.
        const shared = !['request', 'share', 'id', 'protocols', 'message', 'status'].includes(command)
        await cp(shared ? sharedHome : seedHome, home, {recursive: true})
      }
      const bg = command === 'serve'
      const r = await world.run(ex.text, 'seed', {cwd, home, env, bg, timeoutMs: 60_000})
      if (bg) {
        await world.stopAll()
        await world.run('fpeer serve ./host-docs --name 00-MainDocuments --open --host 127.0.0.1 --data-port HTTP=0 --json', 'host', {bg: true})
        continue
      }
      const ok = r.code === 0 || (r.code === 75 && ex.text.includes('--protocol manual'))
      if (!ok) failures.push(`${ex.id || '(root)'}: \`${ex.text}\` exited ${r.code}\n${r.stdout}\n${r.stderr}`)
    }
    assert.deepEqual(failures, [])
    assert.ok(n >= 10, `only ${n} examples ran`)
  })
})
