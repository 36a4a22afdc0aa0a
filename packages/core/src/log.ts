// A line-per-event logger for stderr: `time level message key=value…`; secrets never reach it.
import {escapeForTerminal} from './display.js'
import type {Logger} from './transport.js'

const LEVELS = {debug: 10, info: 20, warn: 30, error: 40} as const
export type LogLevel = keyof typeof LEVELS

/** A field value: bare when it is a plain token, else quoted; never a raw control or bidi character (a name may come from a peer). */
function fmt(value: unknown): string {
  const s = typeof value === 'string' ? value : JSON.stringify(value)
  return /^[\w.:/@+-]+$/.test(s ?? '') ? s! : escapeForTerminal(JSON.stringify(s) ?? 'undefined')
}

export function createLogger(options: {level?: LogLevel; json?: boolean; write?: (line: string) => void} = {}): Logger {
  const min = LEVELS[options.level ?? 'info'] ?? LEVELS.info
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'))
  const emit = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (LEVELS[level] < min) return
    const time = new Date().toISOString()
    if (options.json) {
      write(JSON.stringify({time, level, msg, ...fields}))
      return
    }
    const extra = fields
      ? Object.entries(fields)
          .map(([k, v]) => ` ${k}=${fmt(v)}`)
          .join('')
      : ''
    write(`${time} ${level.padEnd(5)} ${escapeForTerminal(msg)}${extra}`)
  }
  return {debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error')}
}
