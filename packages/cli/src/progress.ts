// Transfer progress for long-running commands: a bar on a terminal's stderr, NDJSON events for scripts, or nothing.
import {Flags} from '@oclif/core'
import cliProgress from 'cli-progress'
import type {FetchEvent} from '@fpeer/core'
import {formatBytes} from './util.js'

/** Every event a transfer reports: the fetcher's, plus the requester's phases and the host's file list. */
export type TransferEvent =
  | FetchEvent
  | {event: 'files-to-get'; host?: string; files: number; bytes: number; protocol: string}
  | {event: 'phase'; phase: string}

/**
 * `auto`: a bar when stderr is a terminal and --json is off, else nothing. `bar`: always the bar.
 * `json`: one JSON object per line on stderr (stdout keeps the one result document). `none`: nothing.
 */
export type ProgressMode = 'auto' | 'bar' | 'json' | 'none'

/** The `--progress` flag of long-running commands. */
export function progressFlag(description = 'progress on stderr: auto (a bar on a terminal), bar, json (one JSON event per line), none') {
  return Flags.string({description, options: ['auto', 'bar', 'json', 'none'], default: 'auto'})
}

export interface ProgressReporter {
  onEvent(ev: TransferEvent): void
  /** Draws the final state and releases the terminal; call it on success and on failure. */
  stop(): void
}

/** How often `--progress=json` reports accumulated bytes: chunk-level events would be thousands of lines. */
const JSON_PROGRESS_INTERVAL_MS = 250

export function createProgress(options: {mode: ProgressMode; json: boolean; stream?: NodeJS.WriteStream; now?: () => number}): ProgressReporter {
  const stream = options.stream ?? process.stderr
  const mode = options.mode === 'auto' ? (stream.isTTY && !options.json ? 'bar' : 'none') : options.mode
  if (mode === 'none') return {onEvent() {}, stop() {}}
  return mode === 'json' ? jsonProgress(stream, options.now ?? Date.now) : barProgress(stream)
}

/** Running totals shared by both renderers; bytes of a retried file are counted once. */
class Totals {
  files = 0
  bytes = 0
  filesDone = 0
  bytesDone = 0
  readonly #perFile = new Map<string, number>()

  apply(ev: TransferEvent): void {
    switch (ev.event) {
      case 'files-to-get':
        this.files = ev.files
        this.bytes = ev.bytes
        break
      case 'bytes': {
        this.#perFile.set(ev.path, (this.#perFile.get(ev.path) ?? 0) + ev.bytes)
        this.bytesDone += ev.bytes
        break
      }
      case 'retry': {
        // The next attempt reports its bytes again (from the resume offset at most), so forget this one's.
        this.bytesDone -= this.#perFile.get(ev.path) ?? 0
        this.#perFile.delete(ev.path)
        break
      }
      case 'file-done': {
        // A skipped file (already here) moved no bytes but is done all the same.
        this.bytesDone += ev.size - (this.#perFile.get(ev.path) ?? 0)
        this.#perFile.delete(ev.path)
        this.filesDone++
        break
      }
      default:
        break
    }
  }
}

/** Event lines gathered before one write to stderr (a pipe: each write is a system call, three per file). */
const JSON_FLUSH_BYTES = 64 << 10

function jsonProgress(stream: NodeJS.WritableStream, now: () => number): ProgressReporter {
  const totals = new Totals()
  let last = 0
  let dirty = false
  // Lines are written once per turn of the event loop (or every JSON_FLUSH_BYTES), each
  // stamped when its event happened: a reader sees the same lines, a few milliseconds later.
  let pending = ''
  let scheduled: NodeJS.Immediate | undefined
  const flush = () => {
    if (scheduled) clearImmediate(scheduled)
    scheduled = undefined
    if (pending === '') return
    const out = pending
    pending = ''
    stream.write(out)
  }
  // The time stamp's text is made once per millisecond: events come in bursts (three per file).
  let stampMs = NaN
  let stamp = ''
  const write = (doc: Record<string, unknown>) => {
    const t = now()
    if (t !== stampMs) {
      stampMs = t
      stamp = JSON.stringify(new Date(t).toISOString())
    }
    // `{"time":…,` and then the event's own fields: the same text as stringifying {time, ...doc}, without the copy.
    const body = JSON.stringify(doc)
    pending += body === '{}' ? `{"time":${stamp}}\n` : `{"time":${stamp},${body.slice(1)}\n`
    if (pending.length >= JSON_FLUSH_BYTES) flush()
    else scheduled ??= setImmediate(flush)
  }
  const progress = () => {
    dirty = false
    last = now()
    write({event: 'progress', files: totals.filesDone, totalFiles: totals.files, bytes: totals.bytesDone, totalBytes: totals.bytes})
  }
  return {
    onEvent(ev) {
      totals.apply(ev)
      if (ev.event === 'bytes') {
        dirty = true
        if (now() - last >= JSON_PROGRESS_INTERVAL_MS) progress()
        return
      }
      write({...ev})
      // A progress line per finished file doubled the lines of a 10,000-file request for
      // totals nobody reads at that rate: like bytes, at most one per interval (the last
      // file's, and stop()'s, always), and at once for the list.
      if (ev.event === 'files-to-get') progress()
      else if (ev.event === 'file-done') {
        dirty = true
        if (totals.filesDone === totals.files || now() - last >= JSON_PROGRESS_INTERVAL_MS) progress()
      }
    },
    stop() {
      if (dirty) progress()
      flush()
    },
  }
}

function barProgress(stream: NodeJS.WriteStream): ProgressReporter {
  const totals = new Totals()
  let started = 0
  let bar: cliProgress.SingleBar | undefined
  const payload = () => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001)
    return {
      files: `${totals.filesDone}/${totals.files} files`,
      bytes: `${formatBytes(totals.bytesDone)}/${formatBytes(totals.bytes)}`,
      speed: `${formatBytes(Math.round(totals.bytesDone / secs))}/s`,
    }
  }
  return {
    onEvent(ev) {
      totals.apply(ev)
      if (ev.event === 'files-to-get') {
        // MANUAL moves no bytes through fpeer: there is nothing to draw.
        if (ev.protocol === 'MANUAL' || bar) return
        started = Date.now()
        bar = new cliProgress.SingleBar(
          {
            stream,
            format: '{bar} {percentage}% | {files} | {bytes} | {speed} | ETA {eta_formatted}',
            barsize: 24,
            hideCursor: true,
            clearOnComplete: false,
            stopOnComplete: false,
            fps: 10,
            etaBuffer: 50,
            // Only reached off a terminal when --progress=bar asked for it: then write plain lines.
            noTTYOutput: !stream.isTTY,
            notTTYSchedule: 1000,
          },
          cliProgress.Presets.shades_classic,
        )
        bar.start(Math.max(totals.bytes, 1), 0, payload())
        return
      }
      if (!bar || ev.event === 'phase') return
      bar.update(Math.min(totals.bytesDone, Math.max(totals.bytes, 1)), payload())
      // Done moving bytes: draw the final state now, before the handshake's next steps log anything.
      if (ev.event === 'file-done' && totals.filesDone === totals.files) this.stop()
    },
    stop() {
      if (!bar) return
      if (totals.filesDone === totals.files) bar.update(Math.max(totals.bytes, 1), payload())
      bar.stop()
      bar = undefined
    },
  }
}
