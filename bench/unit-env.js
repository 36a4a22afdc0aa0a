// The environment docs/fpeer.service gives `fpeer serve` (its Environment= lines), which the soak runs every serve with.

/**
 * The variables the unit's `Environment=` lines set, but FPEER_HOME (the soak gives each peer a
 * home of its own). A line may set several (`Environment=A=1 B=2`). A value the soak cannot give
 * as written (quoted, or with a systemd specifier such as %h) is an error, not a setting left out:
 * the soak would otherwise measure serve without it and say nothing.
 */
export function unitEnvironment(text) {
  const env = {}
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim()
    if (!line.startsWith('Environment=')) continue
    for (const kv of line.slice('Environment='.length).split(/\s+/).filter(Boolean)) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(kv)
      if (!m) throw new Error(`docs/fpeer.service line ${i + 1}: ${JSON.stringify(kv)} is not NAME=VALUE`)
      if (m[1] === 'FPEER_HOME') continue
      if (/["'%\\]/.test(m[2])) throw new Error(`docs/fpeer.service line ${i + 1}: ${m[1]}'s value ${JSON.stringify(m[2])} needs systemd to expand it; the soak takes plain values only`)
      env[m[1]] = m[2]
    }
  }
  return env
}
