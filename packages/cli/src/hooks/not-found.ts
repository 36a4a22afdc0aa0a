// `fpeer reqest`, `fpeer mesage parse`: names the closest command; offers to run it only at a terminal, never in a script.
import {createInterface} from 'node:readline/promises'
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

/** How far a typo may be from a name and still be a suggestion. */
function tolerance(typed: string): number {
  return Math.max(2, Math.floor(typed.length / 3))
}

/** The visible command ids (and aliases) closest to `id`, best first. */
export function closestCommands(id: string, ids: string[]): string[] {
  const scored = ids.map((c) => ({c, d: distance(id, c)}))
  scored.sort((a, b) => a.d - b.d || (a.c < b.c ? -1 : 1))
  return scored.filter((s) => s.d <= tolerance(id)).map((s) => s.c)
}

/**
 * The best reading of mistyped words (`words` is oclif's id split on ':'): the command or
 * topic closest to some leading words, and how many words it took. Commands beat topics and
 * more words beat fewer at equal distance, so `mesage parse` is `message parse`, not `message`.
 */
export function suggest(words: string[], commands: string[], topics: string[]): {suggestion: string; words: number; topic: boolean} | undefined {
  let best: {suggestion: string; words: number; topic: boolean; d: number} | undefined
  for (let n = 1; n <= words.length; n++) {
    const typed = words.slice(0, n).join(':')
    for (const [names, topic] of [
      [commands, false],
      [topics, true],
    ] as const) {
      const [c] = closestCommands(typed, names)
      if (c === undefined) continue
      const d = distance(typed, c)
      // A topic typed right is not the typo (`message prase`): the command under it is.
      if (topic && d === 0) continue
      if (!best || d < best.d || (d === best.d && ((best.topic && !topic) || (best.topic === topic && n > best.words))))
        best = {suggestion: c, words: n, topic, d}
    }
  }
  return best && {suggestion: best.suggestion, words: best.words, topic: best.topic}
}

/** Asks a yes/no question on the terminal; anything but y/yes (or the end of input) is no. */
async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({input: process.stdin, output: process.stderr})
  try {
    const closed = new Promise<string>((resolve) => rl.once('close', () => resolve('')))
    const answer = await Promise.race([rl.question(question), closed])
    return /^y(es)?$/i.test(answer.trim())
  } finally {
    rl.close()
  }
}

const hook: Hook<'command_not_found'> = async function (opts) {
  const hidden = new Set(opts.config.commands.filter((c) => c.hidden).map((c) => c.id))
  const ids = [...opts.config.commandIDs, ...opts.config.commands.flatMap((c) => c.aliases)].filter((c) => !hidden.has(c))
  const topics = opts.config.topics.filter((t) => !t.hidden).map((t) => t.name)
  const spaced = (id: string) => id.replaceAll(':', ' ')
  // `fpeer reqest x` arrives as id "reqest:x": the words after the first that is not a topic are arguments.
  const words = opts.id.split(':')
  let n = 1
  while (n < words.length && opts.config.findTopic(words.slice(0, n).join(':'))) n++
  const typed = words.slice(0, n).join(':')
  const best = suggest(words, ids, topics)
  const suggestion = best?.suggestion
  const argv = process.argv.slice(2)
  // At a terminal, ask whether to run the suggested command (a topic cannot be run).
  if (best && !best.topic && process.stdin.isTTY && process.stderr.isTTY && !argv.includes('--json')) {
    process.stderr.write(tty`unknown command: ${spaced(typed)}` + '\n')
    if (await confirm(tty`Did you mean ${spaced(best.suggestion)}? [y/N] `).catch(() => false)) {
      return opts.config.runCommand(best.suggestion, [...words.slice(best.words), ...(opts.argv ?? [])])
    }
  }
  const run = suggestion && (best.topic ? `${opts.config.bin} ${spaced(suggestion)} --help` : `${opts.config.bin} ${spaced(suggestion)}`)
  const e = new FpeerError('E_USAGE', `unknown command: ${spaced(typed)}`, {
    hint: run ? `did you mean \`${run}\`? \`${opts.config.bin} help\` lists every command` : `\`${opts.config.bin} help\` lists every command`,
    ...(suggestion ? {details: {suggestion: spaced(suggestion)}} : {}),
  })
  if (argv.includes('--json')) process.stdout.write(JSON.stringify({error: e.toJSON()}) + '\n')
  else process.stderr.write(errorText(e))
  this.exit(EXIT_CODES.usage)
}

export default hook
