// The reason tables of streams and circuits: one table per fact.
// - END_REASONS (SPEC.md §7b.6, §7.8.4): per END reason, the error code a stream ends with at the
//   side that receives it, and the SOCKS reply the client gives for it. The reason numbers are
//   the wire's (EndReason in src/wire/stream-messages.ts); this table is keyed by their names, so
//   TypeScript makes it cover every reason.
// - ERRNO (SPEC.md §7b.7, §7.8.4): per system error code, the END reason an exit sends when its
//   connection fails that way, and the SOCKS reply for a direct connection failing that way.
// - UNSERVED_STREAM_REFUSAL (SPEC.md §7b.7): the END reason for a stream kind a node does not serve.
// - BEGIN_FAILURE_END (SPEC.md §7b.6): the END reason for a BEGIN refused by a code.
// - EXTEND_FAILURE_DESTROY (SPEC.md §7b.3): the DESTROY reason for an extension failed by a code.
import { err, isErrorCode, type BitcloudError, type ErrorCode } from '../errors';
import { DestroyReason, EndReason, type DestroyReasonValue, type EndReasonValue } from '../wire/messages';
import type { SocksReplyName } from '../wire/socks';
import type { IncomingStream } from './types';

export type EndReasonName = keyof typeof EndReason;

export const END_REASONS: Record<EndReasonName, { code: ErrorCode; message: string; socks: SocksReplyName }> = {
  MISC: { code: 'STREAM_REFUSED', message: 'the exit refused the stream', socks: 'GENERAL_FAILURE' },
  RESOLVEFAILED: { code: 'EXIT_RESOLVE_FAILED', message: 'the exit could not resolve the host name', socks: 'HOST_UNREACHABLE' },
  CONNECTREFUSED: { code: 'EXIT_CONNECT_REFUSED', message: 'the target refused the connection', socks: 'CONNECTION_REFUSED' },
  EXITPOLICY: { code: 'EXIT_POLICY_REJECTED', message: "the exit's policy does not allow this address and port", socks: 'NOT_ALLOWED' },
  DESTROY: { code: 'CIRCUIT_DESTROYED', message: 'the circuit was destroyed', socks: 'GENERAL_FAILURE' },
  DONE: { code: 'STREAM_CLOSED', message: 'the stream was closed', socks: 'GENERAL_FAILURE' },
  TIMEOUT: { code: 'EXIT_TIMEOUT', message: 'the connection to the target timed out', socks: 'TTL_EXPIRED' },
  NOROUTE: { code: 'EXIT_NO_ROUTE', message: 'the exit has no route to the target', socks: 'HOST_UNREACHABLE' },
  HIBERNATING: { code: 'EXIT_RESOURCE_LIMIT', message: 'the exit is hibernating', socks: 'GENERAL_FAILURE' },
  INTERNAL: { code: 'STREAM_REFUSED', message: 'internal error at the exit', socks: 'GENERAL_FAILURE' },
  RESOURCELIMIT: { code: 'EXIT_RESOURCE_LIMIT', message: 'the exit is out of resources', socks: 'GENERAL_FAILURE' },
  CONNRESET: { code: 'STREAM_CONNRESET', message: 'the target reset the connection', socks: 'CONNECTION_REFUSED' },
  TORPROTOCOL: { code: 'STREAM_PROTOCOL', message: 'protocol violation on the stream', socks: 'GENERAL_FAILURE' },
  NOTDIRECTORY: { code: 'STREAM_NOT_DIRECTORY', message: 'the relay is not a directory mirror', socks: 'GENERAL_FAILURE' },
};

const NAME_OF = new Map<number, EndReasonName>(
  (Object.entries(EndReason) as [EndReasonName, number][]).map(([name, n]) => [n, name]));

/** The name of an END reason given by number or by name (case and punctuation ignored); undefined if unknown. */
export function endReasonName(reason: unknown): EndReasonName | undefined {
  if (typeof reason === 'number') return NAME_OF.get(reason);
  if (typeof reason !== 'string') return undefined;
  const n = reason.toUpperCase().replace(/[^A-Z0-9]/g, '');
  return Object.hasOwn(END_REASONS, n) ? n as EndReasonName : undefined;
}

/** The error a stream ends with when the peer sends END(reason). `beforeOpen`: no CONNECTED yet. */
export function endReasonError(reason: number, beforeOpen: boolean): BitcloudError {
  const name = endReasonName(reason);
  if (name === 'DONE' && beforeOpen) return err('STREAM_REFUSED', 'the stream was closed before it opened', { endReason: reason });
  if (!name) return err('STREAM_REFUSED', `stream ended with reason ${reason}`, { endReason: reason });
  const { code, message } = END_REASONS[name];
  return err(code, message, { endReason: reason });
}

/** System error codes of a failed connection or lookup; anything else is END MISC / SOCKS general failure. */
export const ERRNO: Readonly<Record<string, { end: EndReasonName; socks: SocksReplyName }>> = {
  ECONNREFUSED: { end: 'CONNECTREFUSED', socks: 'CONNECTION_REFUSED' },
  ECONNRESET: { end: 'CONNRESET', socks: 'CONNECTION_REFUSED' },
  EPIPE: { end: 'CONNRESET', socks: 'CONNECTION_REFUSED' },
  ETIMEDOUT: { end: 'TIMEOUT', socks: 'TTL_EXPIRED' },
  EHOSTUNREACH: { end: 'NOROUTE', socks: 'HOST_UNREACHABLE' },
  ENETUNREACH: { end: 'NOROUTE', socks: 'NETWORK_UNREACHABLE' },
  EADDRNOTAVAIL: { end: 'NOROUTE', socks: 'HOST_UNREACHABLE' },
  ENOTFOUND: { end: 'RESOLVEFAILED', socks: 'HOST_UNREACHABLE' },
  EAI_AGAIN: { end: 'RESOLVEFAILED', socks: 'HOST_UNREACHABLE' },
  EAI_NONAME: { end: 'RESOLVEFAILED', socks: 'HOST_UNREACHABLE' },
  EAI_FAIL: { end: 'RESOLVEFAILED', socks: 'HOST_UNREACHABLE' },
  ENODATA: { end: 'RESOLVEFAILED', socks: 'HOST_UNREACHABLE' },
};

/** The ERRNO row of a system error code, if it has one. */
export function errnoInfo(code: string | undefined): { end: EndReasonName; socks: SocksReplyName } | undefined {
  return code !== undefined && Object.hasOwn(ERRNO, code) ? ERRNO[code] : undefined;
}

/** The END reason an exit sends for a failed connect, from a node errno (SPEC.md §7b.7). */
export function endReasonForErrno(code: string | undefined): EndReasonValue {
  return EndReason[errnoInfo(code)?.end ?? 'MISC'];
}

/** The END reason an exit sends for a failed name lookup: TIMEOUT for a timeout, else RESOLVEFAILED. */
export function endReasonForLookupErrno(code: string | undefined): EndReasonValue {
  return errnoInfo(code)?.end === 'TIMEOUT' ? EndReason.TIMEOUT : EndReason.RESOLVEFAILED;
}

/** What a node that has no handler for a stream kind answers. */
export const UNSERVED_STREAM_REFUSAL: Readonly<Record<IncomingStream['kind'], EndReasonValue>> = {
  begin: EndReason.EXITPOLICY,
  begin_dir: EndReason.NOTDIRECTORY,
  begin_storage: EndReason.MISC,
};

/** The END reason for a BEGIN that failed with a code (decoding or the stream limits); default TORPROTOCOL. */
const BEGIN_FAILURE_END: Partial<Record<ErrorCode, EndReasonName>> = {
  STREAM_LIMIT: 'RESOURCELIMIT',
  STREAM_RATE_LIMIT: 'RESOURCELIMIT',
};

export function endReasonForBeginFailure(code: string): EndReasonValue {
  return EndReason[(isErrorCode(code) ? BEGIN_FAILURE_END[code] : undefined) ?? 'TORPROTOCOL'];
}

/** The DESTROY reason for an EXTEND2 that failed with a code; default CONNECTFAILED. */
const EXTEND_FAILURE_DESTROY: Partial<Record<ErrorCode, keyof typeof DestroyReason>> = {
  LINK_IDENTITY_MISMATCH: 'OR_IDENTITY',
  EXTEND_IDENTITY_UNKNOWN: 'OR_IDENTITY',
  EXTEND_ADDRESS_MISMATCH: 'OR_IDENTITY',
  LINK_CIRCID_EXHAUSTED: 'RESOURCELIMIT',
};

export function destroyReasonForExtendFailure(code: string): DestroyReasonValue {
  return DestroyReason[(isErrorCode(code) ? EXTEND_FAILURE_DESTROY[code] : undefined) ?? 'CONNECTFAILED'];
}
