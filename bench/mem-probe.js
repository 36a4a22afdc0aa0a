// Loaded into `fpeer serve` by `FUZZ_MEM_LOG=file node bench/fuzz.js` (NODE_OPTIONS=--import), or into every fpeer process of a bench by `FUZZ_MEM_LOG=file BENCH_NODE_FLAGS=--import=…/mem-probe.js`: appends serve's memory figures to that file every 250 ms, to tell retained objects from buffers from GC lag.
import {appendFileSync, readFileSync} from 'node:fs'
import v8 from 'node:v8'
import vm from 'node:vm'

const file = process.env.FUZZ_MEM_LOG
// FUZZ_MEM_GC=1 also records the figures after a full collection every 5 s: what is left then is retained, the rest was GC lag.
v8.setFlagsFromString('--expose-gc')
const gc = process.env.FUZZ_MEM_GC === '1' ? vm.runInNewContext('gc') : undefined
const mb = (n) => Math.round(n / 1048576)
let k = 0
const timer = setInterval(() => {
  const m = process.memoryUsage()
  const row = {t: Date.now(), who: process.argv[2] ?? 'serve', pid: process.pid, rss: mb(m.rss), heapUsed: mb(m.heapUsed), heapTotal: mb(m.heapTotal), external: mb(m.external), arrayBuffers: mb(m.arrayBuffers)}
  // Linux: anonymous memory (heaps, buffers, malloc) apart from mapped files (the node binary's pages), and the thread count.
  try {
    const st = readFileSync('/proc/self/status', 'utf8')
    const kb = (k) => Number(st.match(new RegExp(`^${k}:\\s+(\\d+)`, 'm'))?.[1])
    Object.assign(row, {rssAnon: Math.round(kb('RssAnon') / 1024), rssFile: Math.round(kb('RssFile') / 1024), threads: kb('Threads')})
  } catch {
    // not Linux
  }
  if (gc && ++k % 20 === 0) {
    gc()
    const a = process.memoryUsage()
    Object.assign(row, {gcRss: mb(a.rss), gcHeapUsed: mb(a.heapUsed), gcExternal: mb(a.external), gcArrayBuffers: mb(a.arrayBuffers)})
  }
  if (file) appendFileSync(file, JSON.stringify(row) + '\n')
}, 250)
timer.unref()
