// The wire protocol's public surface.
export * from './types.js'
export * from './limits.js'
export {FrameDecoder, formatLine, messageLines, parseLine, pctDecode, pctEncode, splitMessages, type Line} from './frame.js'
export {checkFolderName, parseProtocol} from './fields.js'
export {formatMessage, messageTypeOf, parseLines, parseMessage, parseMessages} from './codec.js'
export {FPEER_WIRE_VERSION, claimedSender, isPlain, signMessage, signedBytes, verifyMessage} from './signing.js'
