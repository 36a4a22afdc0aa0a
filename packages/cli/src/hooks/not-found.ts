// `fpeer reqest`: names the closest command; asks to run it only at a terminal, never in a script.
import type {Hook} from '@oclif/core'
import {EXIT_CODES, FpeerError, tty} from '@fpeer/core'
import {errorText} from '../base.js'

/** Edit distance (insertions, deletions, substitutions), small strings only. */
function distance(a: string, b: string): number {
  let prev = Array.from({length: b.length + 1}, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    prev = cur
  }
  return prev[b.length]!
}

/** The visible command ids (and aliases) closest to `id`, best first. */
export function closestCommands(id: string, ids: string[]): string[] {
  const scored = ids.map((c) => ({c, d: distance(id, c)}))
  scored.sort((a, b) => a.d - b.d || (a.c < b.c ? -1 : 1))
  return scored.filter((s) => s.d <= Math.max(2, Math.floor(id.length / 3))).map((s) => s.c)
}

const hook: Hook<'command_not_found'> = async function (opts) {
  const hidden = new Set(opts.config.commands.filter((c) => c.hidden).map((c) => c.id))
  const ids = [...opts.config.commandIDs, ...opts.config.commands.flatMap((c) => c.aliases)].filter((c) => !hidden.has(c))
  const spaced = (id: string) => id.replaceAll(':', ' ')
  // `fpeer reqest x` arrives as id "reqest:x": the words after the first that is not a topic are arguments.
  const words = opts.id.split(':')
  let n = 1
  while (n < words.length && opts.config.findTopic(words.slice(0, n).join(':'))) n++
  const typed = words.slice(0, n).join(':')
  const [suggestion] = closestCommands(typed, ids)
  const argv = process.argv.slice(2)
  // At a terminal, oclif's not-found plugin asks "Did you mean …?" and runs the answer.
  if (suggestion && process.stdin.isTTY && process.stderr.isTTY && !argv.includes('--json')) {
    const {default: utils} = (await import('@oclif/plugin-not-found/lib/utils.js' as string)) as {default: {getConfirmation(s: string): Promise<boolean>}}
    process.stderr.write(tty`unknown command: ${spaced(typed)}` + '\n')
    if (await utils.getConfirmation(spaced(suggestion)).catch(() => false)) {
      const rest = opts.argv?.length ? opts.argv : words.slice(n)
      return opts.config.runCommand(suggestion, rest)
    }
  }
  const e = new FpeerError('E_USAGE', `unknown command: ${spaced(typed)}`, {
    hint: suggestion ? `did you mean \`${opts.config.bin} ${spaced(suggestion)}\`? \`${opts.config.bin} help\` lists every command` : `\`${opts.config.bin} help\` lists every command`,
    ...(suggestion ? {details: {suggestion: spaced(suggestion)}} : {}),
  })
  if (argv.includes('--json')) process.stdout.write(JSON.stringify({error: e.toJSON()}) + '\n')
  else process.stderr.write(errorText(e))
  this.exit(EXIT_CODES.usage)
}

export default hook
