#!/usr/bin/env node
// The fpeer entry point: settles oclif's settings and directories, hands the command line to oclif, then lets stdout drain however slow its reader is.
import {existsSync, lstatSync, mkdirSync} from 'node:fs'
import module from 'node:module'
import os from 'node:os'
import path from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'
import {manifestIsStale} from './manifest.js'

// Node 22.1 and later can keep V8's compiled code of the modules a command loads between runs:
// `fpeer files --json` starts in 0.31 s instead of 0.33 on Node 26 (node -e 0: 0.08). The cache
// lives in fpeer's cache directory (FPEER_CACHE_DIR, else $XDG_CACHE_HOME/fpeer or ~/.cache/fpeer),
// in a directory made 0700, and is used only when that directory and the one holding it are real
// directories of this user that no one else may write: V8 trusts the code it reads from there,
// and whoever may write the parent could swap the directory after this check. Node 20 has no
// such cache; NODE_COMPILE_CACHE (node's own) wins, NODE_DISABLE_COMPILE_CACHE=1 turns it off.
if (typeof module.enableCompileCache === 'function' && !process.env.NODE_COMPILE_CACHE) {
  try {
    const base = path.resolve(process.env.FPEER_CACHE_DIR || path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'fpeer'))
    const dir = path.join(base, 'node-compile-cache')
    mkdirSync(dir, {recursive: true, mode: 0o700})
    const onlyMine = (p) => {
      const st = lstatSync(p)
      return st.isDirectory() && st.uid === process.getuid?.() && (st.mode & 0o022) === 0
    }
    if (onlyMine(base) && onlyMine(dir)) module.enableCompileCache(dir)
  } catch {
    // No cache (read-only home, no home): the command runs as it would on Node 20.
  }
}

const cliRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

// @fpeer/core is imported through its bundle (packages/core/bundle.js). In a source tree, a bare
// `tsc -b` leaves that bundle older than the code: it is rewritten here once, before anything
// imports core, so fpeer never runs code older than its build. (Two stats; an installed core
// has no tsbuildinfo and is taken as it is.)
const coreSource = path.join(cliRoot, '..', 'core')
if (existsSync(path.join(coreSource, 'bundle.js'))) {
  const {bundleIsStale, writeBundle} = await import(pathToFileURL(path.join(coreSource, 'bundle.js')).href)
  if (bundleIsStale(coreSource)) {
    try {
      await writeBundle(coreSource)
    } catch (err) {
      process.stderr.write(`fpeer: could not rebuild @fpeer/core's bundle (${err.message}); run \`npm run build\`\n`)
    }
  }
}

// The CLI's own modules and @oclif/core come bundled (bundle.js): rebuilt here the same way.
if (existsSync(path.join(cliRoot, 'bundle.js'))) {
  const {cliBundleIsStale, writeCliBundle} = await import(pathToFileURL(path.join(cliRoot, 'bundle.js')).href)
  if (cliBundleIsStale(cliRoot)) {
    try {
      await writeCliBundle(cliRoot)
    } catch (err) {
      process.stderr.write(`fpeer: could not rebuild the CLI's bundle (${err.message}); run \`npm run build\`\n`)
    }
  }
}

// fast.js loads no oclif; cli.js (below) shares its chunks, so both see one --json writer.
const {fastPath, jsonWritten} = await import('../dist/bundle/fast.js')

// `fpeer -V` and `fpeer --version` are the `version` command, so that `--json` works with them.
const argv = process.argv.slice(2)
if (argv[0] === '-V' || argv[0] === '--version') argv[0] = 'version'

// A reader that goes away (`fpeer … | head`) is not the work's failure: output stops, the
// exit code stays the work's, and no EPIPE stack is printed.
let stdoutGone = false
process.stdout.on('error', (err) => {
  stdoutGone = true
  if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') process.stderr.write(`fpeer: stdout: ${err.message}\n`)
})
process.stdout.once('close', () => (stdoutGone = true))

/** Resolves once everything written to stdout has reached its reader (or the reader is gone), with no time limit. */
async function drained() {
  // Polled, not told: 'drain' comes only after a write that returned false, and the last ones
  // may all have returned true with bytes still queued. The timer also keeps the process up
  // (stdout's handle is unref'd), where waiting on an event alone ended it with 13 mid-document.
  while (!stdoutGone && process.stdout.writableLength > 0) await new Promise((resolve) => setTimeout(resolve, 20))
}

/** Runs the command line through oclif; resolves with the exit code its error handler asked for, if any. */
async function runOclif() {
  // V8 lets a heap that allocates fast grow to up to 4× what is live before it collects it
  // whole. A request of 100,000 files allocates fast (per-file records, socket chunks) around a
  // live heap of about 45 MiB: its requester peaked near 295 MiB, its host near 270. Growth
  // fixed at 100 % (2×) cut the requester's peak by about 45 MiB and the host's by about 20, at
  // the same speed; 50 % cut more but cost the 10,000-file request a tenth of its time (bench
  // 100k, small). V8 reads it at each collection, so setting it here works; the fast path
  // (above) never grows a heap and skips it. On Node 20 a worker thread's start puts V8's flags
  // back as the process began: setting it again then was slower and saved nothing (measured),
  // so it is not. A value given to node itself (`node --heap-growing-percent=N`) is kept.
  if (!process.execArgv.some((a) => a.startsWith('--heap-growing-percent'))) (await import('node:v8')).setFlagsFromString('--heap-growing-percent=100')

  // On import, oclif checks node against its own engines range (older than fpeer's >=20.18.1),
  // loading semver's 48 modules on every start to do so: 7 % of a command's start-up CPU.
  process.env.OCLIF_DISABLE_ENGINE_WARNING ??= '1'
  const {handle, run, settings} = await import('../dist/bundle/cli.js')

  // fpeer and its plugins ship compiled JavaScript: never look for TypeScript sources, so a
  // linked plugin does not print oclif's "cannot be auto-transpiled" warning on every start.
  settings.enableAutoTranspile = false

  // Plugins belong to a home: with FPEER_HOME set, oclif's data directory (where `fpeer plugins
  // install` puts them) is inside it, unless FPEER_DATA_DIR says otherwise.
  if (process.env.FPEER_HOME && !process.env.FPEER_DATA_DIR) process.env.FPEER_DATA_DIR = path.join(path.resolve(process.env.FPEER_HOME), 'plugins')

  // The manifest lets oclif find a command without importing all of them. `npm run build` writes
  // it; after a bare `tsc -b` it is rewritten here once, so it never describes older code.
  if (manifestIsStale(cliRoot)) {
    try {
      await (await import('./manifest.js')).writeManifest(cliRoot)
    } catch (err) {
      process.stderr.write(`fpeer: could not write oclif.manifest.json (${err.message}); starting without it\n`)
    }
  }

  // oclif's execute() flushes stdout with a 10 s timeout whose failure nobody awaits (an
  // unhandled rejection: exit 1, the output cut at the pipe's 64 KiB), and its error handler
  // calls process.exit at once, which drops output still queued. So: run, note the exit code
  // the handler asks for, wait for stdout without a limit, then exit with that code.
  let exitCode
  try {
    await run(argv, import.meta.url)
  } catch (error) {
    const real = process.exit
    process.exit = (code) => {
      exitCode ??= code ?? 0
    }
    try {
      await handle(error)
    } finally {
      process.exit = real
    }
  }
  return exitCode
}

// `fpeer --version` and `fpeer id` skip oclif (src/fast-path.ts): loading it costs more than node's own start.
const exitCode = (await fastPath(argv, cliRoot)) ? undefined : await runOclif()
// A --json document goes out as its reader takes it (src/json-out.ts).
await jsonWritten()
await drained()
if (exitCode !== undefined) process.exit(exitCode)
