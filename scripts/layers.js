#!/usr/bin/env node
// Part of `npm run lint`: core's import graph runs one way (docs/ARCHITECTURE.md, "Layers inside core") and core holds no module-global mutable state.
//
// Reads the TypeScript sources (type-only imports count: a type is a dependency too) and
// fails, naming file and import, when a module imports one of a higher layer, when modules
// import each other in a cycle, or when a module keeps mutable state at its top level.
import {readFileSync, readdirSync, statSync} from 'node:fs'
import path from 'node:path'

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')
// `--src DIR` checks another copy of core's sources (the test of this script does).
const at = process.argv.indexOf('--src')
const src = at > 0 && process.argv[at + 1] ? path.resolve(process.argv[at + 1]) : path.join(root, 'packages/core/src')

/**
 * Lowest first. A module may import its own layer and the layers before it. A directory
 * entry ("wire/") holds every file under it. Same-layer imports are allowed, cycles are not.
 */
export const LAYERS = [
  ['errors.ts', 'display.ts', 'lifecycle.ts', 'memory.ts'],
  ['identity.ts'],
  ['wire/'],
  ['transport.ts', 'log.ts', 'oclif-hooks.ts'],
  ['fs/', 'net/', 'access/', 'store/', 'plugins.ts', 'registry.ts'],
  ['transfer/'],
  ['session/'],
  ['sync/'],
  ['node.ts', 'services.ts'],
  // The package's entries: they gather from every layer and nothing imports them.
  ['index.ts', 'startup.ts', 'plugin.ts', 'conformance/', 'testing/'],
]

/**
 * Module-level values computed once that are facts of the process, not state of a home or a
 * folder: `file: name`. Anything else mutable at top level belongs to an owner (a Home, a
 * FolderSync, a PeerNode) so two nodes in one process share nothing. A memo of a pure
 * function (identity.ts: a public key's parsed form, made from its bytes alone) is such a
 * fact too: what it holds cannot differ between nodes.
 */
export const PROCESS_FACTS = new Set(['fs/folder-dirs.ts: viaFd', 'fs/folder-dirs.ts: fileMode', 'fs/folder-dirs.ts: execFileMode', 'identity.ts: publicKeys'])

export function layerOf(rel) {
  const i = LAYERS.findIndex((l) => l.some((e) => (e.endsWith('/') ? rel.startsWith(e) : rel === e)))
  return i
}

function sources(dir, out = []) {
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name)
    if (statSync(p).isDirectory()) sources(p, out)
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) out.push(p)
  }
  return out
}

/** The relative specifiers `text` imports or re-exports (static and dynamic), resolved to source paths under `src`. */
export function importsOf(file, text) {
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'"`;]*?\bfrom\s*'(\.[^']+)'|\bimport\(\s*'(\.[^']+)'\s*\)|(?:^|\n)\s*import\s*'(\.[^']+)'/g)].map((m) => m[1] ?? m[2] ?? m[3])
  return specs.map((s) => path.relative(src, path.resolve(path.dirname(file), s)).replace(/\.js$/, '.ts').split(path.sep).join('/'))
}

/**
 * Top-level `let`/`var`, and top-level `const` starting out as an EMPTY Map, Set, array or
 * object: something fills it as the process runs. (A Set built from a literal list is a
 * lookup table, not state.)
 */
export function moduleStateOf(text) {
  const names = []
  for (const m of text.matchAll(/^(?:export\s+)?(let|var)\s+([A-Za-z_$][\w$]*)/gm)) names.push(m[2])
  for (const m of text.matchAll(/^(?:export\s+)?const\s+([A-Za-z_$][\w$]*)\s*(?::[^=]+)?=\s*(?:new\s+(?:Map|Set|WeakMap|WeakSet)\s*(?:<[^>]*(?:<[^>]*>[^>]*)*>)?\s*\(\s*\)|\[\s*\]|\{\s*\})/gm)) names.push(m[1])
  return names
}

export function check() {
  const problems = []
  const graph = new Map()
  for (const file of sources(src)) {
    const rel = path.relative(src, file).split(path.sep).join('/')
    const text = readFileSync(file, 'utf8')
    const from = layerOf(rel)
    if (from < 0) problems.push(`${rel}: in no layer: add it to LAYERS in scripts/layers.js and to docs/ARCHITECTURE.md`)
    const deps = importsOf(file, text)
    graph.set(rel, deps)
    for (const dep of deps) {
      const to = layerOf(dep)
      if (from >= 0 && to > from) problems.push(`${rel} imports ${dep}: layer ${LAYERS[from].join(' ')} may not import the higher layer ${LAYERS[to].join(' ')}`)
    }
    for (const name of moduleStateOf(text)) if (!PROCESS_FACTS.has(`${rel}: ${name}`)) problems.push(`${rel}: module-level mutable state \`${name}\`: give it an owner (an instance field)`)
  }
  for (const cycle of cycles(graph)) problems.push(`import cycle: ${cycle.join(' -> ')}`)
  return problems
}

/** Every strongly connected group of more than one module (Tarjan), each as a path through it. */
function cycles(graph) {
  const index = new Map()
  const low = new Map()
  const stack = []
  const on = new Set()
  const out = []
  let n = 0
  const visit = (v) => {
    index.set(v, n)
    low.set(v, n)
    n++
    stack.push(v)
    on.add(v)
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v), low.get(w)))
      } else if (on.has(w)) low.set(v, Math.min(low.get(v), index.get(w)))
    }
    if (low.get(v) === index.get(v)) {
      const group = []
      let w
      do {
        w = stack.pop()
        on.delete(w)
        group.push(w)
      } while (w !== v)
      if (group.length > 1) out.push([...group.reverse(), group[0]])
    }
  }
  for (const v of graph.keys()) if (!index.has(v)) visit(v)
  return out
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const problems = check()
  for (const p of problems) process.stderr.write(`layers: ${p}\n`)
  if (problems.length) process.exit(1)
  process.stderr.write(`layers: core's imports run one way (${LAYERS.length} layers), no cycles, no module-global state\n`)
}
