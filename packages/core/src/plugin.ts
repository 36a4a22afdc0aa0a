// @fpeer/core/plugin: the plugin SDK, exactly what a transfer plugin's own code uses (the conformance suite is @fpeer/core/conformance).
//
// A plugin imports from here, never from '@fpeer/core': this entry loads no stores (lowdb,
// proper-lockfile) and no session logic, and core is the plugin's peer dependency, so the
// CLI's one copy of it serves every plugin.
export type {
  AccessContext,
  BatchItem,
  ConnectOptions,
  FileSource,
  FileStat,
  HandOverIO,
  Logger,
  ManualFile,
  ManualListing,
  ManualRequest,
  PlacedState,
  ServeOptions,
  TransferClient,
  Transport,
  TransportHookResult,
  TransportServer,
  TransportSupports,
} from './transport.js'
export {silentLogger} from './transport.js'
export type {TransportHook} from './oclif-hooks.js'
export {ERROR_CODES, FpeerError, fromSystemError, isFpeerError, type ErrorCode, type ErrorKind} from './errors.js'
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
export {checkRelativePath} from './fs/safe-path.js'
export {positionalReader} from './fs/local-source.js'
export {ByteBudget, ConnectionGuard, GuardedConnection, type ConnectionLimits, type GuardOptions} from './net/limits.js'
export {ConnectionPool, DEFAULT_POOL_IDLE_TIMEOUT_MS, type ConnectionPoolOptions, type Lease} from './net/pool.js'
export {SlabStream, type SlabSocket} from './net/slab-stream.js'
export {Identity, PeerId, generateKeyPair, keyPairFromSecretKey, verifySignature, type KeyPair} from './identity.js'
export {checkTransport, loadOnUse} from './registry.js'
