// @fpeer/plugin-http: the HTTP transfer plugin (read-only node:http server with Range, undici client).
export {createHttpTransport, httpTransport} from './transport.js'
export {connectHttp, HttpTransferClient} from './client.js'
export {serveHttp, HttpTransportServer, SERVER_LIMITS, SERVER_TIMEOUTS, parseRange, type RangeRequest} from './server.js'
export {encodeSegment, filePath, parseTarget} from './url.js'
