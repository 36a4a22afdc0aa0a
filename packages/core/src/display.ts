// Text for a terminal: characters that can drive one (escape sequences, line breaks, bidi overrides) shown as visible escapes.

/**
 * What a terminal may act on instead of printing: C0 controls (ESC, BEL, BS, CR, LF, TAB …),
 * DEL, C1 controls (U+0080-U+009F: a UTF-8 terminal may take U+009B as CSI) and the bidi
 * embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) that reorder what
 * follows them, so `\u202egnp.exe` would read as `exe.png`.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g

const SHORT: Record<string, string> = {'\t': '\\t', '\n': '\\n', '\r': '\\r'}

/**
 * The escape of one unsafe character. The escapes are JSON's (`\n`, `\u001b`), so a JSON
 * text passed through `escapeForTerminal` (keeping TAB and LF) is the same document.
 */
function escapeChar(c: string): string {
  return SHORT[c] ?? '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0')
}

/** True when `text` holds a character `escapeForTerminal` would escape. */
export function needsTerminalEscape(text: string): boolean {
  UNSAFE.lastIndex = 0
  return UNSAFE.test(text)
}

/**
 * `text` with every terminal-driving character as a visible escape (ESC → `\u001b`,
 * LF → `\n`, U+202E → `\u202e`). `keep` lists characters the caller's own layout uses
 * (TAB between columns, LF between lines) and that are to stay raw; a value from a peer or
 * the disk is escaped whole, with no `keep`. A backslash is not escaped: the output is for
 * reading, `--json` is the exact form.
 */
export function escapeForTerminal(text: string, options: {keep?: string} = {}): string {
  const keep = options.keep ?? ''
  return text.replace(UNSAFE, (c) => (keep.includes(c) ? c : escapeChar(c)))
}

/**
 * A template tag for a line of human output: the literal parts are the caller's layout and
 * stay as written; every interpolated value is escaped whole (TAB and LF included), so a
 * name cannot add a column or a line.
 */
export function tty(strings: TemplateStringsArray, ...values: unknown[]): string {
  let out = strings[0]!
  for (let i = 0; i < values.length; i++) out += escapeForTerminal(String(values[i])) + strings[i + 1]!
  return out
}
