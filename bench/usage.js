// Imported first by each bench script: `--help` or `-h` prints the script's own leading comment (its usage) and exits, before anything starts.
import {readFileSync} from 'node:fs'

if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
  const lines = readFileSync(process.argv[1], 'utf8').split('\n')
  const usage = []
  for (const line of lines.slice(lines[0]?.startsWith('#!') ? 1 : 0)) {
    if (!line.startsWith('//')) break
    usage.push(line.replace(/^\/\/ ?/, ''))
  }
  process.stdout.write(usage.join('\n') + '\n')
  process.exit(0)
}
