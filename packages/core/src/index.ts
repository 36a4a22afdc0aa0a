// @fpeer/core: the wire protocol, identity, stores, the transfer plugin contract and the session logic.
export * from './errors.js'
export * from './identity.js'
export * from './transport.js'
export * from './wire/index.js'
export {checkRelativePath, prepareForWrite, resolveForRead, isReservedName, MAX_PATH_DEPTH, PART_PREFIX} from './fs/safe-path.js'
export {scanFolder, sha256File, isIgnoredName, type IndexedFile} from './fs/scan.js'
export {LocalFileSource, type FolderAccess} from './fs/local-source.js'
export {fetchFiles, type FetchEvent, type FetchOptions, type FetchResult} from './transfer/fetch.js'
export {createLogger, type LogLevel} from './log.js'
export {escapeForTerminal, needsTerminalEscape, tty} from './display.js'
export {TransportRegistry, type RegisteredTransport} from './registry.js'
export {
  KNOWN_PLUGINS,
  type KnownPlugin,
  type PluginInstallTarget,
  knownPlugin,
  knownPluginForInstall,
  pluginInstallAllowed,
  pluginShortName,
  resolvePluginInstall,
} from './plugins.js'
export {
  errorCodeOf,
  isAbortError,
  isRetryable,
  isUnsupported,
  mapNetworkError,
  type ExtraCodes,
  type MapNetworkOptions,
  type NetPhase,
} from './net/errors-map.js'
export {FETCH_RETRY, backoffMs, pause, retry, shouldRetry, type RetryOptions, type RetryPolicy} from './net/retry.js'
export {MessageChannel, connectChannel, normalizeAddress, type ChannelOptions} from './net/channel.js'
export {ConnectionGuard, GuardedConnection, ByteBudget, FAREWELL_MS, addressKey, type ConnectionLimits, type Farewell, type GuardOptions} from './net/limits.js'
export {Home, resolveHome, ensureHome, loadIdentity, readIdentity} from './store/home.js'
export {ConfigStore, type FolderConfig} from './store/config.js'
export {Peerfile, folderStateDir, type PeerRecord} from './store/peerfile.js'
export {PendingStore, type PendingRequest} from './store/pending.js'
export {type HandshakeTimeouts, type HostContext, DEFAULT_TIMEOUTS, defaultTimeouts} from './session/context.js'
export {serveConnection, chooseProtocol, replyError} from './session/host.js'
export {requestFolder, type RequestOptions, type RequestResult} from './session/requester.js'
export {PeerNode, DEFAULT_CONTROL_PORT, DEFAULT_PORTS, type PeerNodeOptions} from './node.js'
export * from './services.js'
export {type FileRecord, isLive} from './store/peerfile.js'
export {FolderSync, type ApplyResult} from './sync/folder.js'
export {OwedForwards} from './sync/owed.js'
export {
  type FileVersion,
  compareVectors,
  conflictPath,
  decide,
  entryToVersion,
  isConflictPath,
  signVersion,
  verifyVersion,
  versionToEntry,
} from './sync/version.js'
export {pushUpdate, receiveUpdate, type SyncContext} from './sync/update.js'
export {type SyncStats, recordToEntry} from './node.js'
export {GrantTable, newGrantToken, type Grant} from './access/grants.js'
export {ReplayGuard, checkDestination, formatDestination, MESSAGE_WINDOW_MS} from './access/replay-guard.js'
export {checkTicket, issueTicket, TICKET_TTL_MS} from './session/delegation.js'
