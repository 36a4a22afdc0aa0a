// Runs core's transfer conformance suite against the SFTP transport (its own server and client).
import {runTransportConformance} from '@fpeer/core/conformance'
import {sftpTransport} from './index.js'

runTransportConformance({name: 'sftp', transport: sftpTransport})
