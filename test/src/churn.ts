// Churn: many real peers in a random graph, edited at several places while peers are killed with -9 and restarted; shared by the churn test and `npm run soak`.
import {type Dirent, lstatSync, readFileSync, readdirSync, readlinkSync} from 'node:fs'
import {appendFile, mkdir, readFile, readdir, rename, rm, unlink, writeFile} from 'node:fs/promises'
import path from 'node:path'
import {Peer, tempDir} from './harness.js'

/** A small seeded generator (mulberry32): the same seed gives the same graph, edits and kills. */
export class Rng {
  #s: number
  constructor(seed: number) {
    this.#s = seed >>> 0
  }

  next(): number {
    this.#s = (this.#s + 0x6d2b79f5) >>> 0
    let t = this.#s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  int(n: number): number {
    return Math.floor(this.next() * n)
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!
  }
}

export interface ChurnOptions {
  /** Peers, each on `${prefix}.${i + 1}` with the default ports. */
  peers: number
  prefix: string
  seed: number
  /** Edges beyond the random spanning tree. */
  extraEdges: number
  /** Shared files edited concurrently at 2-3 peers, once each. */
  sharedFiles: number
  /** Settings of every serve (stall timeout, catch-up interval, log level). */
  env: NodeJS.ProcessEnv
  /** Peers never killed (the soak measures their RSS and fds over the whole run). */
  stable?: number
  /**
   * Once a peer owns this many live files, its every edit is a modification: the tree, and
   * what each peer records of it, stop growing (the soak then tells a leak from data the
   * peers are asked to keep). A modification then rewrites the file's edit line instead of
   * appending one, so no file grows either. Unset: creations, deletions and renames go on
   * all run long, and each modification appends a line.
   */
  maxOwnFiles?: number
  /** Extra environment of the stable peers' serves only (the soak's diagnostic node flags, e.g. NODE_OPTIONS). */
  stableEnv?: NodeJS.ProcessEnv
  log?: (line: string) => void
  /** Where each serve's stderr is kept (peer<i>.log, appended across restarts), to tell afterwards why a peer lagged. */
  logDir?: string
}

/** What one owned file should hold at the end: its content, or undefined once deleted or renamed away. */
interface Owned {
  owner: number
  content: string | undefined
}

export interface Proc {
  peer: number
  pid: number
  rssKiB: number
  /** Of rssKiB: private memory (heap, malloc), and pages of mapped files (the node binary's code, shared and clean). */
  anonKiB: number
  fileKiB: number
  fds: number
}

/** A restart that never said it listens: what the soak reports instead of stopping. */
export interface StartFailure {
  peer: number
  /** ms since the run began. */
  at: number
  attempts: number
  error: string
  /** The last lines the peer logged: its previous process's, then each failed attempt's. */
  logTail: string[]
}

/** Sums a peer's counters across its restarts (stats.json starts again at 0 with each process). */
interface Counted {
  base: number
  last: number
}

const FOLDER = 'churn'

/** How long a serve may take to say it listens before it is ended and started again (a bound for a hung start, not an expected time). */
export const START_WAIT_MS = 120_000

export class Churn {
  readonly options: ChurnOptions
  readonly rng: Rng
  readonly peers: Peer[] = []
  readonly dirs: string[] = []
  edges: Array<[number, number]> = []
  work = ''
  readonly up: boolean[] = []
  readonly owned = new Map<string, Owned>()
  /** Shared file → the contents written to it at once by different peers. */
  readonly concurrent = new Map<string, string[]>()
  readonly base = new Map<string, string>()
  /** Every content ever written to an owned path (a conflict copy of one of them is spurious, not a loss). */
  readonly written = new Map<string, Set<string>>()
  /** Conflict copies of files only their owner ever wrote: not a loss, but not a real conflict either. */
  readonly spurious = new Set<string>()
  changes = 0
  kills = 0
  /** What was done, in order (ms since the run began): the history a failure prints for the paths it names. */
  readonly journal: string[] = []
  readonly #t0 = Date.now()
  #n = 0
  readonly #restarts = new Set<Promise<void>>()
  readonly #bytes: Counted[] = []
  /** Error codes the serves logged (`code=E_…` at warn and error), across restarts: how often pushes and pulls stalled or failed. */
  readonly codes = new Map<string, number>()
  /** While converging: each change in what still differs (count, first problem), with the time since convergence began. */
  readonly lagging: string[] = []
  /** How much of each serve's stderr capture was counted into `codes`. */
  readonly #tallied: number[] = []
  /** How long each start took to say it listens (ms), for the report. */
  readonly startMs: number[] = []
  /** Starts that failed every attempt, in order. */
  readonly startFailures: StartFailure[] = []
  /** What each peer logged last (its last process, then failed starts): the tail a start failure shows. */
  readonly #recent: string[][] = []

  constructor(options: ChurnOptions) {
    this.options = options
    this.rng = new Rng(options.seed)
  }

  #log(line: string): void {
    this.#note(line)
    this.options.log?.(line)
  }

  #wrote(rel: string, content: string): void {
    const set = this.written.get(rel) ?? new Set<string>()
    set.add(content)
    this.written.set(rel, set)
  }

  #note(line: string): void {
    this.journal.push(`${Date.now() - this.#t0} ${line}`)
  }

  /** A random connected graph: a random spanning tree (each new peer joins one already in), then extra edges. */
  #graph(): Array<[number, number]> {
    const n = this.options.peers
    const edges: Array<[number, number]> = []
    for (let j = 1; j < n; j++) edges.push([this.rng.int(j), j])
    const has = (a: number, b: number) => edges.some(([h, j]) => (h === a && j === b) || (h === b && j === a))
    for (let k = 0, tries = 0; k < this.options.extraEdges && tries < 100; tries++) {
      const a = this.rng.int(n)
      const b = this.rng.int(n)
      if (a === b || has(a, b)) continue
      edges.push([Math.min(a, b), Math.max(a, b)])
      k++
    }
    return edges
  }

  /** Peer 0 shares the folder; each edge [host, joiner] is a real `fpeer request`, wave by wave (joins of one wave run side by side). */
  async build(): Promise<void> {
    this.work = await tempDir('fpeer-churn-')
    for (let i = 0; i < this.options.peers; i++) {
      this.peers.push(await Peer.create(`${this.options.prefix}.${i + 1}`, this.options.env))
      this.dirs.push(path.join(this.work, `peer${i}`))
      this.up.push(false)
      this.#bytes.push({base: 0, last: 0})
    }
    await mkdir(path.join(this.dirs[0]!, 'base'), {recursive: true})
    await mkdir(path.join(this.dirs[0]!, 'shared'), {recursive: true})
    for (let k = 0; k < 4; k++) this.base.set(`base/b${k}.txt`, `base ${k}\n`)
    for (let k = 0; k < this.options.sharedFiles; k++) this.base.set(`shared/s${k}.txt`, `shared ${k}\n`)
    for (const [rel, content] of this.base) await writeFile(path.join(this.dirs[0]!, rel), content)
    const shared = await this.peers[0]!.run(['share', this.dirs[0]!, '--name', FOLDER])
    if (shared.code !== 0) throw new Error(`share: ${shared.stderr}`)
    // A few at a time: a dozen node processes starting at once on two busy cores miss serve's start deadline.
    for (let i = 0; i < this.peers.length; i += 3) await settled(this.peers.slice(i, i + 3).map((_, k) => this.start(i + k)))
    // Each serve said its ID when it started: no `fpeer id` process per peer (seconds each on a busy machine).
    const ids = this.peers.map((p) => p.ready!.id)
    this.edges = this.#graph()
    const joined = new Set([0])
    let todo = [...this.edges]
    for (let wave = 0; todo.length > 0 && wave < this.options.peers + todo.length; wave++) {
      // One join per joiner per wave: a peer's home takes one request at a time. A host serves
      // several joiners at once; only its `allow`s (writes to its configuration) go one by one.
      const busy = new Set<number>()
      const hosts = new Set<number>()
      const now = todo.filter(([h, j]) => {
        if (!joined.has(h) || busy.has(j) || busy.has(h) || hosts.has(j)) return false
        busy.add(j)
        hosts.add(h)
        return true
      })
      todo = todo.filter((e) => !now.includes(e))
      const allows = new Map<number, Promise<unknown>>()
      await settled(
        now.map(async ([h, j]) => {
          const host = this.peers[h]!
          const joiner = this.peers[j]!
          const turn = (allows.get(h) ?? Promise.resolve()).then(() => host.run(['allow', FOLDER, ids[j]!]))
          allows.set(
            h,
            turn.catch(() => {}),
          )
          const allowed = await turn
          if (allowed.code !== 0) throw new Error(`allow on peer${h}: ${allowed.stderr}`)
          // A join that stalled on a busy machine (the serves run with a short stall timeout) is tried again; anything else fails the build.
          for (let attempt = 1; ; attempt++) {
            const r = await joiner.run(['request', `${host.address}:7734`, FOLDER, '--into', this.dirs[j]!, '--bind', joiner.address, '--json'], {
              timeoutMs: 120_000,
            })
            if (r.code === 0) break
            const code = /"code":"(E_[A-Z_]+)"/.exec(r.stdout)?.[1]
            if (attempt >= 3 || !['E_TIMEOUT', 'E_CONNECT', 'E_CONNECTION_LOST'].includes(code ?? ''))
              throw new Error(`peer${j} joining from peer${h}: ${r.stdout} ${r.stderr}`)
            this.#log(`peer${j} joining from peer${h} failed with ${code} (try ${attempt}); again`)
          }
        }),
      )
      for (const [, j] of now) joined.add(j)
    }
    this.#log(`graph: ${this.edges.map(([h, j]) => `${h}-${j}`).join(' ')}`)
  }

  async start(i: number): Promise<void> {
    // A port of the process just killed may take a moment to be free: a few tries. A start that
    // is merely slow is waited for, not ended and begun again: on a loaded machine a fresh node
    // process takes 7-10 s (load 45) or more to say it listens, and a retry only starts from zero.
    let hung = 0
    for (let attempt = 0; ; attempt++) {
      const began = Date.now()
      try {
        await this.peers[i]!.serve([], i < (this.options.stable ?? 0) ? (this.options.stableEnv ?? {}) : {}, {
          ports: 'default',
          readyTimeoutMs: START_WAIT_MS,
          ...this.#diagnosable(),
        })
        this.startMs.push(Date.now() - began)
        this.#tallied[i] = 0
        this.up[i] = true
        this.#note(`peer${i} up`)
        return
      } catch (err) {
        // One that did not say it listens within START_WAIT_MS is ended (its state shown) before the next try takes its ports.
        const child = this.peers[i]!.serveProcess
        let diag = ''
        if (child && child.exitCode === null && child.signalCode === null) {
          const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
          // Only a start that said nothing is a hang to look into; one that reported its error is on its way out.
          if (/did not start/.test((err as Error).message)) {
            diag = await this.#diagnose(i, child.pid!)
            hung++
          }
          child.kill('SIGKILL')
          await exited
        }
        const why = `start of peer${i} failed (attempt ${attempt + 1}, after ${Date.now() - began} ms): ${(err as Error).message.split('\n')[0]!.slice(0, 300)}${diag ? `; ${diag}` : ''}`
        this.#log(why)
        this.#remember(i, `${this.peers[i]!.serveStderr}--- ${why}`)
        await this.#keepLog(i, why)
        // Two starts that hung are a finding already: five would hold the run for ten minutes.
        if (attempt >= 4 || hung >= 2) {
          this.startFailures.push({peer: i, at: Date.now() - this.#t0, attempts: attempt + 1, error: why, logTail: [...(this.#recent[i] ?? [])]})
          throw err
        }
        await new Promise((r) => setTimeout(r, 500))
      }
    }
  }

  /** With a log directory, each serve can write a Node diagnostic report (JS stack, handles) on SIGUSR2: why a start hangs. */
  #diagnosable(): {nodeArgs?: string[]} {
    const dir = this.options.logDir
    return dir ? {nodeArgs: ['--report-on-signal', '--report-signal=SIGUSR2', `--report-directory=${dir}`]} : {}
  }

  /** What a serve that did not say it listens was doing: CPU it used, its state and kernel wait, and (with a log directory) a Node report. */
  async #diagnose(i: number, pid: number): Promise<string> {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const wchan = await readFile(`/proc/${pid}/wchan`, 'utf8').catch(() => '?')
    const load = (await readFile('/proc/loadavg', 'utf8').catch(() => '?')).split(' ').slice(0, 3).join(' ')
    // Fields after the command: state is 0, utime 11, stime 12 (clock ticks, 100 a second).
    let out = `pid ${pid} state ${f[0]} cpu ${(Number(f[11]) + Number(f[12])) * 10} ms wchan ${wchan || '-'} load ${load}`
    if (this.options.logDir) {
      const before = new Set(await readdir(this.options.logDir).catch(() => []))
      try {
        process.kill(pid, 'SIGUSR2')
      } catch {
        // It exited meanwhile: nothing to report.
        return out
      }
      for (let k = 0; k < 50; k++) {
        const report = (await readdir(this.options.logDir).catch(() => [] as string[])).find(
          (n) => !before.has(n) && n.startsWith('report.') && n.includes(`.${pid}.`),
        )
        if (report) {
          // Written in one go, but give it a moment to be whole before the kill.
          await new Promise((r) => setTimeout(r, 300))
          const dest = `peer${i}-start-${pid}.report.json`
          await rename(path.join(this.options.logDir, report), path.join(this.options.logDir, dest)).catch(() => {})
          out += ` report ${dest}`
          break
        }
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    return out
  }

  async kill(i: number): Promise<void> {
    const child = this.peers[i]!.serveProcess
    this.up[i] = false
    this.#note(`kill peer${i}`)
    await this.#readBytes(i)
    const b = this.#bytes[i]!
    b.base += b.last
    b.last = 0
    if (!child || child.exitCode !== null) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    child.kill('SIGKILL')
    await exited
    this.kills++
    this.#tally(i)
    this.#recent[i] = []
    this.#remember(i, `${this.peers[i]!.serveStderr}--- killed`)
    await this.#keepLog(i, 'killed')
  }

  /** Keeps the last lines of `text` as what peer `i` logged last. */
  #remember(i: number, text: string): void {
    const lines = [...(this.#recent[i] ?? []), ...text.split('\n').filter((l) => l.trim() !== '')]
    this.#recent[i] = lines.slice(-30)
  }

  /** Counts the codes in what serve `i` logged since the last count. */
  #tally(i: number): void {
    const text = this.peers[i]!.serveStderr
    const from = Math.min(this.#tallied[i] ?? 0, text.length)
    for (const line of text.slice(from).split('\n')) {
      if (!/ (warn|error) /.test(line)) continue
      const code = / code=(E_[A-Z_]+)/.exec(line)?.[1]
      if (code) this.codes.set(code, (this.codes.get(code) ?? 0) + 1)
    }
    this.#tallied[i] = text.length
  }

  /** Counts into `codes` what every running serve logged so far. */
  tallyLogs(): void {
    for (let i = 0; i < this.peers.length; i++) if (this.up[i]) this.#tally(i)
  }

  /** Appends what serve `i` wrote to stderr so far to its log (the next start begins a new capture). */
  async #keepLog(i: number, why: string): Promise<void> {
    if (!this.options.logDir) return
    await mkdir(this.options.logDir, {recursive: true})
    await appendFile(path.join(this.options.logDir, `peer${i}.log`), `${this.peers[i]!.serveStderr}--- ${why} at ${new Date().toISOString()}\n`)
  }

  async #readBytes(i: number): Promise<void> {
    try {
      const s = JSON.parse(await readFile(path.join(this.peers[i]!.home, 'stats.json'), 'utf8')) as {bytesFetched: number; pid: number}
      if (s.pid === this.peers[i]!.serveProcess?.pid) this.#bytes[i]!.last = s.bytesFetched
    } catch {
      // Not written yet (a fresh process): nothing fetched.
    }
  }

  /** Bytes fetched by every peer since it was built, across restarts (as of each peer's last stats flush, once a second). */
  async bytesFetched(): Promise<number> {
    await Promise.all(this.peers.map((_, i) => (this.up[i] ? this.#readBytes(i) : undefined)))
    return this.#bytes.reduce((n, b) => n + b.base + b.last, 0)
  }

  /** One edit at a random peer, by its owner only (so the model knows what must survive). */
  async edit(): Promise<void> {
    const p = this.rng.int(this.options.peers)
    const dir = this.dirs[p]!
    const mine = [...this.owned].filter(([, o]) => o.owner === p && o.content !== undefined).map(([rel]) => rel)
    const full = this.options.maxOwnFiles !== undefined && mine.length >= this.options.maxOwnFiles
    const op = mine.length === 0 ? 0 : full ? 4 : this.rng.int(10)
    const n = this.#n++
    if (op < 4) {
      const rel = `own/p${p}/f${n}.txt`
      const content = `peer ${p} file ${n} seed ${this.options.seed}\n`
      await mkdir(path.join(dir, 'own', `p${p}`), {recursive: true})
      await writeFile(path.join(dir, rel), content)
      this.owned.set(rel, {owner: p, content})
      this.#wrote(rel, content)
      this.#note(`peer${p}${this.up[p] ? '' : ' (down)'} create ${rel}`)
    } else if (op < 7) {
      const rel = this.rng.pick(mine)
      const before = this.owned.get(rel)!.content!
      // Bounded (maxOwnFiles): the first line and the newest edit, so no file grows all run either.
      const content = `${this.options.maxOwnFiles !== undefined ? before.slice(0, before.indexOf('\n') + 1) : before}edit ${n}\n`
      await writeFile(path.join(dir, rel), content)
      this.owned.set(rel, {owner: p, content})
      this.#wrote(rel, content)
      this.#note(`peer${p}${this.up[p] ? '' : ' (down)'} modify ${rel}`)
    } else if (op < 8) {
      const rel = this.rng.pick(mine)
      await unlink(path.join(dir, rel))
      this.owned.set(rel, {owner: p, content: undefined})
      this.#note(`peer${p}${this.up[p] ? '' : ' (down)'} delete ${rel}`)
    } else {
      const rel = this.rng.pick(mine)
      const to = `own/p${p}/renamed${n}.txt`
      await rename(path.join(dir, rel), path.join(dir, to))
      this.owned.set(to, {owner: p, content: this.owned.get(rel)!.content})
      this.#wrote(to, this.owned.get(rel)!.content!)
      this.owned.set(rel, {owner: p, content: undefined})
      this.#note(`peer${p}${this.up[p] ? '' : ' (down)'} rename ${rel} ${to}`)
    }
    this.changes++
  }

  /** One shared file written at the same moment at 2-3 different peers: every write must survive, as winner or conflict copy. */
  async concurrentEdit(): Promise<boolean> {
    const k = [...Array(this.options.sharedFiles).keys()].find((i) => !this.concurrent.has(`shared/s${i}.txt`))
    if (k === undefined) return false
    const rel = `shared/s${k}.txt`
    const who = new Set<number>()
    const count = 2 + this.rng.int(2)
    for (let tries = 0; who.size < Math.min(count, this.options.peers) && tries < 50; tries++) who.add(this.rng.int(this.options.peers))
    const contents = [...who].map((p) => `shared ${k} edited at peer ${p} seed ${this.options.seed}\n`)
    await Promise.all([...who].map((p, i) => writeFile(path.join(this.dirs[p]!, rel), contents[i]!)))
    this.concurrent.set(rel, contents)
    this.#note(`concurrent ${rel} at ${[...who].map((p) => `peer${p}`).join(' ')}`)
    this.changes += who.size
    return true
  }

  /**
   * Edits (one every `editEveryMs`, with the concurrent edits spread over the run) while
   * peers are killed with -9 (one every `killEveryMs`, at most a third down at once) and
   * restarted 0.5-3 s later; stable peers are never killed. Bounded by `durationMs`.
   * `concurrentEdits` of the shared files not edited yet are made in this run (default: all).
   */
  async run(durationMs: number, editEveryMs: number, killEveryMs: number, concurrentEdits = this.options.sharedFiles): Promise<void> {
    const start = Date.now()
    const end = start + durationMs
    const maxDown = Math.max(1, Math.floor(this.options.peers / 3))
    let nextKill = start + killEveryMs
    const left = Math.min(concurrentEdits, this.options.sharedFiles - this.concurrent.size)
    const concurrentAt = [...Array(left).keys()].map((k) => start + ((k + 0.5) * durationMs) / left)
    const maxSteps = Math.ceil(durationMs / Math.max(1, editEveryMs)) + 10
    for (let step = 0; step < maxSteps && Date.now() < end; step++) {
      if (concurrentAt.length > 0 && Date.now() >= concurrentAt[0]!) {
        concurrentAt.shift()
        await this.concurrentEdit()
      } else await this.edit()
      if (Date.now() >= nextKill) {
        nextKill = Date.now() + killEveryMs
        const candidates = this.up.map((u, i) => (u && i >= (this.options.stable ?? 0) ? i : -1)).filter((i) => i >= 0)
        if (candidates.length > 0 && this.up.filter((u) => !u).length < maxDown) {
          const i = this.rng.pick(candidates)
          const downMs = 500 + this.rng.int(2500)
          await this.kill(i)
          this.#log(`killed peer${i}; back in ${downMs} ms`)
          const back: Promise<void> = new Promise<void>((r) => setTimeout(r, downMs)).then(() => this.start(i)).finally(() => this.#restarts.delete(back))
          this.#restarts.add(back)
          // Seen by allUp(); until then a failed restart is no unhandled rejection.
          back.catch(() => {})
        }
      }
      await new Promise((r) => setTimeout(r, editEveryMs))
    }
    // Whatever concurrent edits were not reached yet still happen, so each run checks them.
    while (concurrentAt.shift() !== undefined) await this.concurrentEdit()
  }

  /** Every peer up again (waits for the restarts under way). */
  async allUp(): Promise<void> {
    // A restart that failed (recorded in startFailures) does not keep the other down peers from being started.
    const restarts = await Promise.allSettled([...this.#restarts])
    await settled(this.up.map((u, i) => (u ? undefined : this.start(i))))
    const failed = restarts.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
  }

  /** The tree every peer should end with, as the test wrote it; undefined content: one of the concurrent contents. */
  async differences(options: {skipDown?: boolean} = {}): Promise<string[]> {
    const problems: string[] = []
    // What the final trees show, not a passing moment of an earlier look.
    this.spurious.clear()
    // A peer landing an update while we read its tree (a file renamed away, a staging folder
    // gone) is read again; one still moving after that is named as such, and the others are
    // compared anyway: the history then says who lagged, not only that some tree moved.
    const moving = new Set<number>()
    const read = async <T>(i: number, f: (d: string) => Promise<T>, empty: T): Promise<T> => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await f(this.dirs[i]!)
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
          if (attempt >= 2) {
            moving.add(i)
            return empty
          }
        }
      }
    }
    // Read at once (synchronously): promise-based reads of 20 trees, a few hundred files each,
    // took 15-25 s a look on a loaded machine, so a soak's convergence times were mostly the
    // checker's own latency (and its load on the peers). One read gives both: content is compared as is.
    const contents = await Promise.all(this.dirs.map((_, i) => read(i, async (d) => contentsSync(d), new Map<string, string>())))
    const trees = contents
    for (const i of moving) problems.push(`peer${i}: its tree changed while it was read (an update landing)`)
    if (moving.has(0)) return problems
    const skip = (i: number) => (options.skipDown === true && !this.up[i]) || moving.has(i)
    for (let i = 1; i < trees.length; i++) {
      if (skip(i)) continue
      const a = trees[0]!
      const b = trees[i]!
      const diff = [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k))
      if (diff.length) problems.push(`peer${i} differs from peer0 at ${diff.slice(0, 5).join(', ')}${diff.length > 5 ? ` (+${diff.length - 5})` : ''}`)
    }
    const got = contents[0]!
    const expected = new Map<string, string>()
    for (const [rel, c] of this.base) if (!this.concurrent.has(rel)) expected.set(rel, c)
    for (const [rel, o] of this.owned) if (o.content !== undefined) expected.set(rel, o.content)
    for (const [rel, c] of expected) {
      const held = got.get(rel)
      if (held === c) continue
      // An older content of the file won and the owner's edit is kept as a conflict copy: nothing
      // lost, but a wrong winner (same cause as the spurious copies: reported by the caller).
      const stem = rel.replace(/\.txt$/, '')
      const kept = [...got].some(([k, v]) => k.startsWith(`${stem}.sync-conflict-`) && v === c)
      if (held !== undefined && kept && this.written.get(rel)?.has(held)) {
        this.spurious.add(`${rel} (an older content won; the newer edit is a conflict copy)`)
        continue
      }
      problems.push(`${rel}: ${held !== undefined ? 'wrong content' : 'missing'} at peer0`)
    }
    for (const [rel, edits] of this.concurrent) {
      const stem = rel.replace(/\.txt$/, '')
      const held = [...got].filter(([k]) => k === rel || (k.startsWith(`${stem}.sync-conflict-`) && k.endsWith('.txt'))).map(([, c]) => c)
      const lost = edits.filter((e) => !held.includes(e))
      if (lost.length) problems.push(`${rel}: concurrent edits lost: ${lost.map((e) => JSON.stringify(e)).join(', ')}`)
      for (const c of held) if (!edits.includes(c)) problems.push(`${rel}: unexpected copy ${JSON.stringify(c)}`)
    }
    for (const [rel, c] of got) {
      const isCopy = [...this.concurrent.keys()].some((r) => rel.startsWith(`${r.replace(/\.txt$/, '')}.sync-conflict-`))
      if (expected.has(rel) || this.concurrent.has(rel) || isCopy) continue
      // A conflict copy of an owned file holding one of its past contents: nothing lost, but a
      // conflict where only one peer ever wrote (reported by the caller, not failed here).
      const of = /^(own\/p\d+\/\w+)\.sync-conflict-\w+-[0-9a-f]+\.txt$/.exec(rel)?.[1]
      if (of && this.written.get(`${of}.txt`)?.has(c)) {
        this.spurious.add(rel)
        continue
      }
      problems.push(`${rel}: unexpected file at peer0`)
    }
    for (let i = 0; i < this.dirs.length; i++)
      if (!skip(i)) for (const l of await read(i, async (d) => fpeerNames(d), [])) problems.push(`peer${i}: leftover ${l}`)
    return problems
  }

  /**
   * Waits until every peer holds the expected tree; returns how long that took (ms), or throws with what still differs.
   * `skipDown`: peers that are not up (a restart that failed) are left out rather than waited for.
   */
  async converge(timeoutMs: number, everyMs = 500, options: {skipDown?: boolean} = {}): Promise<number> {
    const start = Date.now()
    let problems: string[] = []
    for (let i = 0; i < Math.ceil(timeoutMs / everyMs) + 1; i++) {
      problems = await this.differences(options).catch((err: Error) => [`reading the trees: ${err.message}`])
      // What still differed when, to tell a slow straggler from a general lag.
      const was = this.lagging.at(-1)
      const now = `${problems.length} ${problems.slice(0, 3).join(' | ')}`
      if (was?.slice(was.indexOf(' ') + 1) !== now) this.lagging.push(`+${Date.now() - start} ms: ${now}`)
      if (problems.length === 0) return Date.now() - start
      if (Date.now() - start > timeoutMs) break
      await new Promise((r) => setTimeout(r, everyMs))
    }
    // The history of the paths named (and every kill and restart), to tell a lost change from a slow one.
    const named = new Set(problems.map((p) => /(own\/p\d+\/\w+|shared\/s\d+)\./.exec(p)?.[1]).filter(Boolean))
    const history = this.journal.filter((l) => !/(create|modify|delete|rename) /.test(l) || [...named].some((n) => l.includes(n!)))
    throw new Error(
      `no convergence within ${timeoutMs} ms (seed ${this.options.seed}):\n  ${problems.slice(0, 30).join('\n  ')}\nhistory:\n  ${history.slice(-60).join('\n  ')}`,
    )
  }

  /** RSS and open fds of every serve process, from /proc. */
  async procs(): Promise<Proc[]> {
    const out: Proc[] = []
    for (let i = 0; i < this.peers.length; i++) {
      const pid = this.peers[i]!.serveProcess?.pid
      if (!pid || !this.up[i]) continue
      try {
        const status = await readFile(`/proc/${pid}/status`, 'utf8')
        const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0)
        const anonKiB = Number(/RssAnon:\s+(\d+)/.exec(status)?.[1] ?? 0)
        const fileKiB = Number(/RssFile:\s+(\d+)/.exec(status)?.[1] ?? 0)
        const fds = (await readdir(`/proc/${pid}/fd`)).length
        out.push({peer: i, pid, rssKiB, anonKiB, fileKiB, fds})
      } catch {
        // Exited meanwhile.
      }
    }
    return out
  }

  /** Every serve stopped (SIGTERM, waited for), then the homes and folders removed. */
  async destroy(): Promise<void> {
    await Promise.allSettled([...this.#restarts])
    // Stopped first so the logs are whole; a crash one stop reports still fails the caller, after the clean-up.
    const stopped = await Promise.allSettled(this.peers.map((p) => p.stop()))
    await Promise.all(this.peers.map((_, i) => this.#keepLog(i, 'stopped')))
    await Promise.all(this.peers.map((p) => p.destroy()))
    if (this.work) {
      await rm(this.work, {recursive: true, force: true})
      for (const k of contentCache.keys()) if (k.startsWith(`${this.work}/`)) contentCache.delete(k)
    }
    const failed = stopped.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
  }
}

/** Waits for every promise, then throws the first failure: nothing started is left running unseen when one fails. */
async function settled(promises: Array<Promise<unknown> | undefined>): Promise<void> {
  const results = await Promise.allSettled(promises)
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason
}

/** Every regular file's content under `dir`, by relative path, read synchronously (see differences()). */
function contentsSync(dir: string, rel = '', out = new Map<string, string>()): Map<string, string> {
  for (const ent of readdirSync(path.join(dir, rel), {withFileTypes: true})) {
    const r = rel ? `${rel}/${ent.name}` : ent.name
    if (ent.isDirectory()) contentsSync(dir, r, out)
    else if (ent.isFile()) out.set(r, readCached(path.join(dir, r)))
  }
  return out
}

/** What readCached read, by absolute path, with the lstat it was read under. */
const contentCache = new Map<string, {ino: number; size: number; mtimeMs: number; ctimeMs: number; content: string}>()

/**
 * A file's content, read again only when its inode, size or times moved since the last look:
 * a look of a 30-minute soak (20 trees of 3,000 files) read every file and took 1.5-2.7 s,
 * most of a convergence time near its 10 s goal, on CPUs the peers it timed needed. A file
 * changed in the last second is not kept: a second write in the same clock tick leaves its times as they were.
 */
function readCached(p: string): string {
  const st = lstatSync(p)
  const c = contentCache.get(p)
  if (c && c.ino === st.ino && c.size === st.size && c.mtimeMs === st.mtimeMs && c.ctimeMs === st.ctimeMs) return c.content
  const content = readFileSync(p, 'utf8')
  if (Date.now() - st.ctimeMs > 1000) contentCache.set(p, {ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, content})
  else contentCache.delete(p)
  return content
}

/** Names fpeer reserves for itself (part files, staging folders) anywhere under `dir`: leftovers (read synchronously, as contentsSync). */
function fpeerNames(dir: string, rel = ''): string[] {
  const out: string[] = []
  const ents: Dirent[] = readdirSync(path.join(dir, rel), {withFileTypes: true})
  for (const ent of ents) {
    const r = rel ? `${rel}/${ent.name}` : ent.name
    if (ent.name.toLowerCase().startsWith('.fpeer')) out.push(ent.isSymbolicLink() ? `${r} -> ${readlinkSync(path.join(dir, r))}` : r)
    else if (ent.isDirectory()) out.push(...fpeerNames(dir, r))
  }
  return out
}
