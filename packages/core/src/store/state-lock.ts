// The lock every fpeer process of a home takes before changing a state file: a directory that records its holder's pid.
import {readFileSync} from 'node:fs'
import {mkdir, readFile, rename, rm, stat, writeFile} from 'node:fs/promises'
import {FpeerError, fromSystemError} from '../errors.js'

/**
 * How long a lock directory without a holder file may be young: its holder is between
 * mkdir and writing the file. Older, its holder died in between.
 */
const UNNAMED_GRACE_MS = 2_000

/** The kernel's start time of `pid` (clock ticks since boot), which tells a reused pid apart; undefined without /proc. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces and parentheses: count fields after its closing one.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

const SELF = `${process.pid} ${startTimeOf(process.pid) ?? ''}\n`

/** Whether a process with this pid exists (EPERM: it does, another user's). */
export function pidRuns(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Whether the process that wrote `holder` ("pid starttime") still runs. */
function holderAlive(holder: string): boolean {
  const [pidText, start] = holder.trim().split(' ')
  const pid = Number(pidText)
  if (!Number.isInteger(pid) || pid <= 0 || !pidRuns(pid)) return false
  // The pid runs: the same process unless /proc says it started at another time (pid reused).
  const now = startTimeOf(pid)
  return !start || now === undefined || now === start
}

/**
 * Whether the lock at `lockDir` belongs to a process that is gone (killed with -9, crashed):
 * such a lock is taken over at once instead of waiting for it to age.
 */
async function isStale(lockDir: string): Promise<boolean> {
  const holder = await readFile(`${lockDir}/pid`, 'utf8').catch(() => undefined)
  if (holder !== undefined && holder.trim() !== '') return !holderAlive(holder)
  const st = await stat(lockDir).catch(() => undefined)
  return st !== undefined && Date.now() - st.mtimeMs > UNNAMED_GRACE_MS
}

/**
 * Runs `fn` holding the lock directory `lockDir` (for `file`). A lock whose holder is dead
 * is removed and taken; a live holder is waited for, up to `waitMs`, then E_LOCKED.
 * Removal goes through a rename to a unique name, so two processes that both find the
 * same dead lock cannot remove each other's new one.
 */
export async function lockState<R>(file: string, lockDir: string, lockedMessage: string, fn: () => Promise<R>, waitMs = 60_000): Promise<R> {
  const end = Date.now() + waitMs
  for (let attempt = 0; ; attempt++) {
    try {
      await mkdir(lockDir)
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, `locking ${file}`, {path: lockDir})
    }
    if (await isStale(lockDir)) {
      const aside = `${lockDir}.stale-${process.pid}-${attempt}`
      if (
        await rename(lockDir, aside).then(
          () => true,
          () => false,
        )
      ) {
        // Between our check and the rename a live process may have taken it over: give it back.
        const holder = await readFile(`${aside}/pid`, 'utf8').catch(() => undefined)
        if (holder !== undefined && holderAlive(holder)) await rename(aside, lockDir).catch(() => {})
        else await rm(aside, {recursive: true, force: true}).catch(() => {})
      }
      continue
    }
    if (Date.now() > end)
      throw new FpeerError('E_LOCKED', lockedMessage, {
        hint: 'another fpeer command on this home is still running; try again when it is done',
        details: {path: lockDir},
      })
    await new Promise((r) => setTimeout(r, Math.min(200, 5 * 2 ** Math.min(attempt, 6))))
  }
  try {
    try {
      await writeFile(`${lockDir}/pid`, SELF)
    } catch (err) {
      throw fromSystemError(err, `locking ${file}`, {path: lockDir})
    }
    return await fn()
  } finally {
    await rm(lockDir, {recursive: true, force: true}).catch(() => {})
  }
}
