// Churn: 12 peers in a random graph, edited while peers are killed with -9 and restarted, end with one tree and nothing lost.
import assert from 'node:assert/strict'
import {after, describe, it} from 'node:test'
import {Churn} from './churn.js'

/**
 * How often every peer catches up with its peers (FPEER_SYNC_INTERVAL_MS): off. A restarted
 * peer exchanges state with its peers at start and passes on its durable owed forwards, so
 * convergence must not depend on a periodic catch-up.
 */
const CATCH_UP_MS = 0

const SEED = Number(process.env.FPEER_CHURN_SEED) || Date.now() % 1_000_000
/** Peers in the graph (FPEER_CHURN_PEERS to try another size). */
const PEERS = Math.max(3, Math.min(20, Number(process.env.FPEER_CHURN_PEERS) || 12))

describe(`churn (seed ${SEED}; FPEER_CHURN_SEED=${SEED} repeats it)`, () => {
  const churn = new Churn({
    peers: PEERS,
    // Another prefix for runs beside a suite that holds this one (two checkouts on one machine).
    prefix: process.env.FPEER_CHURN_PREFIX ?? '127.0.92',
    seed: SEED,
    extraEdges: 3,
    sharedFiles: 2,
    // Each serve's stderr, kept across restarts, to tell why a peer lagged.
    ...(process.env.FPEER_CHURN_LOG_DIR ? {logDir: process.env.FPEER_CHURN_LOG_DIR} : {}),
    env: {
      FPEER_SYNC_INTERVAL_MS: String(CATCH_UP_MS),
      FPEER_RESCAN_INTERVAL_MS: '10000',
      FPEER_STALL_TIMEOUT_MS: '5000',
      FPEER_LOG_LEVEL: process.env.FPEER_CHURN_LOG_LEVEL ?? 'warn',
    },
  })
  after(() => churn.destroy())

  it('every peer ends with the same tree: every edit kept (concurrent ones as winner or conflict copy), nothing else, no leftovers', async () => {
    const t0 = Date.now()
    await churn.build()
    const built = Date.now() - t0
    // 12 peers, as issue #10 asks. Under load 45-55 the build is most of the time (about 110-130 s:
    // a dozen serves and 14 joins, each a node process); convergence after every peer was up took 13-19 s.
    await churn.run(25_000, 400, 3000)
    await churn.allUp()
    assert.ok(churn.kills > 0, 'no peer was killed')
    const ms = await churn.converge(60_000)
    // A peer killed between landing an update and recording it once took the landed files for
    // its own edits after the restart: conflict copies of files only their owner wrote, or an
    // older content winning. The apply's durable intent (sync/folder.ts) rules that out.
    assert.deepEqual([...churn.spurious], [], `seed ${SEED}: conflict copies or wrong winners of files only their owner wrote`)
    console.log(
      `seed ${SEED}, ${PEERS} peers: built in ${built} ms; ${churn.changes} changes, ${churn.kills} kills, converged ${ms} ms after every peer was up; graph ${churn.edges.map(([h, j]) => `${h}-${j}`).join(' ')}`,
    )
    console.log(`  still differing while converging: ${churn.lagging.slice(-8).join('; ')}`)
  })
})
