// Size and time limits of the wire protocol (docs/protocol.md, "Limits").

/** Longest line, in bytes, without its line break. */
export const MAX_LINE_BYTES = 8192
/** Most attributes on one line (`TAB key=value`); more is E_MSG_BAD_FIELD. */
export const MAX_LINE_ATTRS = 32
/** Most file lines in one message. */
export const MAX_FILES = 1_000_000
/** Largest message, in bytes, including line breaks. */
export const MAX_MESSAGE_BYTES = 256 * 1024 * 1024
/** Longest folder name (Line 2), in bytes. */
export const MAX_FOLDER_BYTES = 255
/** A message must be complete this long after its first byte arrives. */
export const DEFAULT_MESSAGE_TIMEOUT_MS = 30_000
/** Longest PeerError reason (Line 4) a peer sends or a receiver keeps, in UTF-16 units. */
export const MAX_REASON_CHARS = 1024
/** From accept to the first complete line on a server's control connection; then closed with E_MSG_TIMEOUT. */
export const DEFAULT_FIRST_LINE_TIMEOUT_MS = 10_000
/** Control connections open at once, and from one address (docs/protocol.md §7). */
export const CONTROL_MAX_CONNECTIONS = 256
export const CONTROL_MAX_PER_ADDRESS = 32
/**
 * Bytes of messages received and not yet handled, across all of a server's control
 * connections. A message costs serve about 2.5 times its bytes while it is decoded, parsed
 * and handled (the bytes until the next collection, its strings, its objects), and serve
 * starts at about 130 MB: 32 MiB keeps it under 256 MB (docs/security.md).
 */
export const CONTROL_BUFFER_BYTES = 32 * 1024 * 1024
/**
 * Bytes of replies to our own file lists (a FilesUpdated answering the FilesToGet we sent)
 * held beyond CONTROL_BUFFER_BYTES, across all of a server's control connections. Each
 * connection may use it only for as many bytes as its reply can hold (REPLY_ALLOWANCE):
 * a 1,000,000-file FilesUpdated (about 110 MB) fits; anything unasked-for still meets the
 * shared budget (docs/security.md).
 */
export const CONTROL_REPLY_BYTES = 256 * 1024 * 1024
/** Bytes a reply may add to each file line of the list it answers (`\tgot=1`, `\tign=1`, with room to spare). */
export const REPLY_BYTES_PER_FILE = 16
/** Bytes a reply may add once: Line 1's attributes (id, nonce, grant, signature) and the port and protocol lines. */
export const REPLY_HEAD_BYTES = 64 * 1024
/**
 * Most versions in one update (a FilesToGet with `update=1`); more is E_MSG_TOO_MANY_FILES.
 * Each version costs a signature check and disk work on the receiver: the cap bounds what
 * one message can make a peer do, and a sender splits a larger change into several updates.
 */
export const MAX_UPDATE_VERSIONS = 10_000
