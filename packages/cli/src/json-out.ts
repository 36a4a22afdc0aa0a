// The --json document written in slices as it is made: the text JSON.stringify(value, undefined, 2) gives, never built whole.

/** Arrays longer than this are written element by element; shorter ones (and everything else) in one JSON.stringify. */
const STREAMED_FROM = 64
/** About this many characters go to the writer at a time. */
const SLICE_CHARS = 64 * 1024
/** Elements of a long array stringified in one call. */
const BATCH = 256

/**
 * The pieces of `JSON.stringify(value, undefined, 2)`, in order. Long arrays, and plain
 * objects holding one, are walked, so `fpeer files --json` of 100,000 files holds one file's text at a
 * time instead of the whole document (tens of MB) and its copy for the pipe.
 */
export function jsonPieces(value: unknown): Generator<string> {
  return pieces(withToJson(value, ''), '')
}

/** jsonPieces of a value whose toJSON (if any) was applied already, at a nesting shown by `indent`. */
function* pieces(value: unknown, indent: string): Generator<string> {
  if (Array.isArray(value) && value.length > STREAMED_FROM) {
    const inner = indent + '  '
    yield '['
    for (let i = 0; i < value.length; i += BATCH) {
      const batch = value.slice(i, i + BATCH) as unknown[]
      // Elements are stringified a batch at a time (one call per element costs twice as much);
      // one that needs its index (toJSON) or a walk of its own goes alone.
      if (batch.every((e) => !hasToJson(e) && !needsWalk(e))) {
        // `[\n  e1,\n  e2\n]` at no indent: its elements, each on its line, as this array's are.
        const body = JSON.stringify(batch, undefined, 2).slice(2, -2)
        yield `${i === 0 ? '' : ','}\n${indent}${indent === '' ? body : body.replaceAll('\n', `\n${indent}`)}`
        continue
      }
      for (let j = i; j < i + batch.length; j++) {
        yield `${j === 0 ? '' : ','}\n${inner}`
        const v = withToJson(value[j] as unknown, String(j))
        // An array keeps a place for what JSON cannot say (undefined, a function): null.
        if (v === undefined || typeof v === 'function' || typeof v === 'symbol') yield 'null'
        else yield* pieces(v, inner)
      }
    }
    yield `\n${indent}]`
    return
  }
  // Walked only where a long array is among its values: everything else is one JSON.stringify (fast).
  if (isPlainObject(value) && needsWalk(value)) {
    const inner = indent + '  '
    let first = true
    for (const k of Object.keys(value)) {
      const v = withToJson(value[k], k)
      if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue
      yield `${first ? '{' : ','}\n${inner}${JSON.stringify(k)}: `
      first = false
      yield* pieces(v, inner)
    }
    yield first ? '{}' : `\n${indent}}`
    return
  }
  const text = JSON.stringify(value, undefined, 2) as string | undefined
  if (text !== undefined) yield indent === '' ? text : text.replaceAll('\n', `\n${indent}`)
}

/** Writes `value` as jsonPieces makes it, in slices of about SLICE_CHARS, then a line break. */
export function writeJson(value: unknown, write: (text: string) => void): void {
  let slice = ''
  for (const piece of jsonPieces(value)) {
    slice += piece
    if (slice.length >= SLICE_CHARS) {
      write(slice)
      slice = ''
    }
  }
  write(slice + '\n')
}

/** Every streamJson under way: the entry point awaits it before it lets the process end. */
let streaming: Promise<void> = Promise.resolve()

/**
 * writeJson to a stream, each slice once the stream has taken the last: a pipe whose reader
 * is slower than us queues a slice, not the whole document. Stops when the stream goes away
 * (a reader that closed: `fpeer files --json | head`).
 */
export function streamJson(value: unknown, stream: NodeJS.WritableStream & {destroyed?: boolean}): Promise<void> {
  const run = (async () => {
    let slice = ''
    for (const piece of jsonPieces(value)) {
      slice += piece
      if (slice.length < SLICE_CHARS) continue
      if (stream.destroyed) return
      if (!stream.write(slice)) await drainOf(stream)
      slice = ''
    }
    if (!stream.destroyed) stream.write(slice + '\n')
  })()
  streaming = streaming.then(() => run)
  return run
}

/** Resolves once every document streamJson was given is written (or its stream is gone). */
export function jsonWritten(): Promise<void> {
  return streaming
}

function drainOf(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    // stdout's handle is unref'd by Node: a write waiting on a full pipe may not keep the
    // process up, which would then end with 13 (a top-level await never settled) mid-document.
    const alive = setInterval(() => {}, 1000)
    const done = () => {
      clearInterval(alive)
      stream.off('drain', done)
      stream.off('close', done)
      resolve()
    }
    stream.on('drain', done)
    stream.on('close', done)
  })
}

/** A long array, or a plain object holding one among its values. */
function needsWalk(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > STREAMED_FROM
  return isPlainObject(value) && Object.values(value).some((v) => Array.isArray(v) && v.length > STREAMED_FROM)
}

function hasToJson(value: unknown): boolean {
  return typeof (value as {toJSON?: unknown} | null | undefined)?.toJSON === 'function'
}

function withToJson(value: unknown, key: string): unknown {
  const toJSON = (value as {toJSON?: unknown} | null | undefined)?.toJSON
  return typeof toJSON === 'function' ? (toJSON as (key: string) => unknown).call(value, key) : value
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}
