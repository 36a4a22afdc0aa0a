// Churn: 8 peers in a random graph, edited while peers are killed with -9 and restarted, end with one tree and nothing lost.
import assert from 'node:assert/strict'
import {after, describe, it} from 'node:test'
import {Churn} from './churn.js'

/**
 * How often every peer catches up with its peers (FPEER_SYNC_INTERVAL_MS). A peer killed
 * right after it took a change forwards it nowhere, so until a restarted peer exchanges
 * state at start (and owed forwards are durable), only this brings the others what it held.
 * Goes to '0' (off) once that exchange lands.
 */
const CATCH_UP_MS = 4000

const SEED = Number(process.env.FPEER_CHURN_SEED) || Date.now() % 1_000_000

describe(`churn (seed ${SEED}; FPEER_CHURN_SEED=${SEED} repeats it)`, () => {
  const churn = new Churn({
    peers: 8,
    prefix: '127.0.92',
    seed: SEED,
    extraEdges: 3,
    sharedFiles: 2,
    env: {FPEER_SYNC_INTERVAL_MS: String(CATCH_UP_MS), FPEER_RESCAN_INTERVAL_MS: '10000', FPEER_STALL_TIMEOUT_MS: '5000', FPEER_LOG_LEVEL: 'warn'},
  })
  after(() => churn.destroy())

  it('every peer ends with the same tree: every edit kept (concurrent ones as winner or conflict copy), nothing else, no leftovers', async () => {
    await churn.build()
    await churn.run(25_000, 400, 3000)
    await churn.allUp()
    assert.ok(churn.kills > 0, 'no peer was killed')
    const ms = await churn.converge(60_000)
    // Known, not a loss: a peer's rescan may take a file its own apply is landing for a local edit (see the report of h/stall).
    if (churn.spurious.size) console.log(`seed ${SEED}: conflict copies of files only their owner wrote: ${[...churn.spurious].join(', ')}`)
    console.log(`seed ${SEED}: ${churn.changes} changes, ${churn.kills} kills, converged ${ms} ms after every peer was up; graph ${churn.edges.map(([h, j]) => `${h}-${j}`).join(' ')}`)
  })
})
