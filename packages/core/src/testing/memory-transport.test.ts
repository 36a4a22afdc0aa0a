// The transfer conformance suite run against the in-memory transports, so the contract is proven without sockets too.
import {runTransportConformance} from '../conformance/index.js'
import {createHandOverTransport, createMemoryTransport} from './memory-transport.js'

runTransportConformance({name: 'memory', transport: createMemoryTransport(), largeFileBytes: 8 << 20, manyFiles: 300})
runTransportConformance({
  name: 'memory, peers by key, no batching',
  transport: createMemoryTransport({peerAuth: true, batch: false}),
  largeFileBytes: 4 << 20,
  manyFiles: 100,
})
runTransportConformance({name: 'memory hand-over', transport: createHandOverTransport()})
