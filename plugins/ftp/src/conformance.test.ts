// Runs core's transfer conformance suite against the FTP transport (its own server and its basic-ftp client).
import {runTransportConformance} from '@fpeer/core/conformance'
import {ftpTransport} from './index.js'

runTransportConformance({name: 'ftp', transport: ftpTransport})
