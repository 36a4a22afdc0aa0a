// The one mapping of a server that cannot listen (control port, transfer servers) to a typed error naming the flag to change.
import {FpeerError, isFpeerError} from '../errors.js'

/**
 * A server that cannot listen: a busy port is E_USAGE naming the flag that picks another
 * (`--port`, `--data-port HTTP=…`), an address not on this machine E_BAD_ADDRESS.
 */
export function listenError(err: unknown, what: string, host: string, port: number, flag: string): FpeerError {
  const cause = (isFpeerError(err) ? err.cause : err) as NodeJS.ErrnoException | undefined
  const sys = cause?.code ?? (err as NodeJS.ErrnoException)?.code
  const details = {address: `${host}:${port}`, ...(sys ? {errno: sys} : {})}
  if (sys === 'EADDRINUSE')
    return new FpeerError('E_USAGE', `cannot listen on ${host}:${port} (${what}): the port is in use`, {
      cause: err,
      details,
      hint: `another program (another fpeer serve?) uses it: pick another with ${flag}`,
    })
  if (sys === 'EADDRNOTAVAIL' || sys === 'ENOTFOUND' || sys === 'EAI_AGAIN')
    return new FpeerError('E_BAD_ADDRESS', `cannot listen on ${host}:${port} (${what}): not an address of this machine`, {
      cause: err,
      details,
      hint: 'give --host an address this machine has (0.0.0.0: all)',
    })
  if (sys === 'EACCES' || sys === 'EPERM')
    return new FpeerError('E_USAGE', `cannot listen on ${host}:${port} (${what}): permission denied`, {
      cause: err,
      details,
      hint: `ports below 1024 need privileges: pick another with ${flag}`,
    })
  if (isFpeerError(err)) return err
  return new FpeerError('E_IO', `cannot listen on ${host}:${port} (${what}): ${(err as Error)?.message ?? String(err)}`, {cause: err, details})
}
