#!/usr/bin/env node
// The fpeer entry point: hands the command line to oclif, then lets stdout drain however slow its reader is.
import {handle, run} from '@oclif/core'

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
  while (!stdoutGone && process.stdout.writableLength > 0) {
    await new Promise((resolve) => {
      process.stdout.once('drain', resolve)
      process.stdout.once('close', resolve)
    })
  }
}

// oclif's execute() flushes stdout with a 10 s timeout whose failure nobody awaits (an
// unhandled rejection: exit 1, the output cut at the pipe's 64 KiB), and its error handler
// calls process.exit at once, which drops output still queued. So: run, note the exit code
// the handler asks for, wait for stdout without a limit, then exit with that code.
let exitCode
try {
  await run(process.argv.slice(2), import.meta.url)
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
await drained()
if (exitCode !== undefined) process.exit(exitCode)
