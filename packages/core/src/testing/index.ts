// @fpeer/core/testing: what tests of core, the plugins and the CLI share: an in-memory transport and channel pair, in-process sync peers, ports and processes.
export {createMemoryTransport, createHandOverTransport, type MemoryTransportOptions, type HandOverTransportOptions} from './memory-transport.js'
export {channelPair, socketPair, type PairAddresses} from './channel-pair.js'
export {freePort, waitForPort, runTool, startProcess, OwnedProcess, type ToolResult} from './process.js'
export {makeSyncPeer, peerRecord, type SyncPeer, type SyncPeerOptions, type ServeOverride} from './sync-peer.js'
export {until, fileTree, readReleasing} from './checks.js'
