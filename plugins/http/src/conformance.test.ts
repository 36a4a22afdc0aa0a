// Runs core's transfer conformance suite against the HTTP transport.
import {runTransportConformance} from '@fpeer/core/conformance'
import {httpTransport} from './index.js'

runTransportConformance({name: 'http', transport: httpTransport})
