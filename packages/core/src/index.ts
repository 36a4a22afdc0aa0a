// @fpeer/core: the wire protocol, identity, stores, the transfer plugin contract and the session logic.
export * from './errors.js'
export * from './identity.js'
export * from './transport.js'
export * from './wire/index.js'
export {checkRelativePath, prepareForWrite, resolveForRead, PART_PREFIX} from './fs/safe-path.js'
export {scanFolder, sha256File, isIgnoredName, type IndexedFile} from './fs/scan.js'
export {LocalFileSource, type FolderAccess} from './fs/local-source.js'
export {fetchFiles, type FetchEvent, type FetchOptions, type FetchResult} from './transfer/fetch.js'
