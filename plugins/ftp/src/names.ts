// Which paths FTP can carry: asked by core before an exchange, without loading the client.
/** FTP has no way to put CR or LF in a path: RFC 959 lines end at CRLF, and basic-ftp refuses them. */
export const UNSENDABLE_NAME = /[\r\n]/

/**
 * Transport.canName: core leaves such names out of an FTP exchange (E_UNSUPPORTED warning)
 * instead of failing it, so one name with CR or LF cannot lock a requester out of a folder.
 */
export function canNameOverFtp(path: string): boolean {
  return !UNSENDABLE_NAME.test(path)
}
