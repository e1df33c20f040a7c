// SPEC.md §7b.6: what each END reason means to the side that receives it, as an error code.
// The SOCKS server turns these codes into reply codes (src/client/socks5.ts), so the table is
// the one place where "why the exit refused" becomes a stable code.
import { err, type BitcloudError } from '../errors';
import { EndReason as END } from '../wire/messages';

const CODES: Record<number, [string, string]> = {
  [END.MISC]: ['STREAM_REFUSED', 'the exit refused the stream'],
  [END.RESOLVEFAILED]: ['EXIT_RESOLVE_FAILED', 'the exit could not resolve the host name'],
  [END.CONNECTREFUSED]: ['EXIT_CONNECT_REFUSED', 'the target refused the connection'],
  [END.EXITPOLICY]: ['EXIT_POLICY_REJECTED', "the exit's policy does not allow this address and port"],
  [END.DESTROY]: ['CIRCUIT_DESTROYED', 'the circuit was destroyed'],
  [END.DONE]: ['STREAM_CLOSED', 'the stream was closed'],
  [END.TIMEOUT]: ['EXIT_TIMEOUT', 'the connection to the target timed out'],
  [END.NOROUTE]: ['EXIT_NO_ROUTE', 'the exit has no route to the target'],
  [END.HIBERNATING]: ['EXIT_RESOURCE_LIMIT', 'the exit is hibernating'],
  [END.INTERNAL]: ['STREAM_REFUSED', 'internal error at the exit'],
  [END.RESOURCELIMIT]: ['EXIT_RESOURCE_LIMIT', 'the exit is out of resources'],
  [END.CONNRESET]: ['STREAM_CONNRESET', 'the target reset the connection'],
  [END.TORPROTOCOL]: ['STREAM_PROTOCOL', 'protocol violation on the stream'],
  [END.NOTDIRECTORY]: ['STREAM_NOT_DIRECTORY', 'the relay is not a directory mirror'],
};

/** The error a stream ends with when the peer sends END(reason). `beforeOpen`: no CONNECTED yet. */
export function endReasonError(reason: number, beforeOpen: boolean): BitcloudError {
  const [code, message] = CODES[reason] ?? ['STREAM_REFUSED', `stream ended with reason ${reason}`];
  if (reason === END.DONE && beforeOpen) return err('STREAM_REFUSED', 'the stream was closed before it opened', { endReason: reason });
  return err(code, message, { endReason: reason });
}

/** The END reason an exit sends for a failed connect, from a node errno (SPEC.md §7b.7). */
export function endReasonForErrno(code: string | undefined): number {
  switch (code) {
    case 'ECONNREFUSED': return END.CONNECTREFUSED;
    case 'ETIMEDOUT': return END.TIMEOUT;
    case 'EHOSTUNREACH': case 'ENETUNREACH': case 'EADDRNOTAVAIL': return END.NOROUTE;
    case 'ENOTFOUND': case 'EAI_AGAIN': case 'EAI_FAIL': case 'ENODATA': return END.RESOLVEFAILED;
    case 'ECONNRESET': case 'EPIPE': return END.CONNRESET;
    default: return END.MISC;
  }
}
