// `--help` on a bench script prints its usage (the script's leading comment) and starts nothing: a soak runs for 30 minutes.
import assert from 'node:assert/strict'
import {execFile} from 'node:child_process'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, it} from 'node:test'
import {ROOT} from './harness.js'

describe('bench scripts: --help', {timeout: 60_000}, () => {
  for (const [script, flag] of [
    ['run.js', '--help'],
    ['soak.js', '--help'],
    ['scale.js', '-h'],
    ['fuzz.js', '--help'],
  ] as const) {
    it(`node bench/${script} ${flag} prints the usage and exits 0 at once`, async () => {
      const file = path.join(ROOT, 'bench', script)
      // The usage is the comment under the shebang, without its `// `.
      const first = readFileSync(file, 'utf8')
        .split('\n')[1]!
        .replace(/^\/\/ ?/, '')
      const {code, stdout} = await new Promise<{code: number | null; stdout: string}>((resolve) => {
        // 20 s: more than any usage takes, far less than any bench or soak.
        execFile(process.execPath, [file, flag], {cwd: ROOT, timeout: 20_000, killSignal: 'SIGKILL'}, (err, out) =>
          resolve({code: err ? ((err as {code?: number}).code ?? null) : 0, stdout: out}),
        )
      })
      assert.equal(code, 0, `exit ${code}; stdout: ${stdout.slice(0, 300)}`)
      assert.equal(stdout.split('\n')[0], first)
    })
  }
})
