// Runs core's transfer conformance suite against the MANUAL transport (it neither serves nor fetches, so most cases are skipped by `supports`).
import {runTransportConformance} from '@fpeer/core/conformance'
import {manualTransport} from './index.js'

runTransportConformance({name: 'manual', transport: manualTransport})
