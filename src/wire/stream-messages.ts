// Stream message bodies (SPEC.md §2.7.2–2.7.3, tor-spec 6.2–6.4): BEGIN, CONNECTED, END,
// RESOLVE, RESOLVED, BEGIN_DIR, BEGIN_STORAGE. Each body is exactly the relay data; trailing
// bytes are MSG_MALFORMED. Re-exported by messages.ts; import from there.
import { err } from '../errors';
import { RELAY_DATA_MAX } from './relay-msg';
import { Reader, Writer, checkUint } from './bytes';
import { IPV4_LEN, IPV6_LEN, formatIPv4, formatIPv6, isHostname, parseIPv4, parseIPv6 } from './addr';

function bad(what: string, message: string): never {
  throw err('MSG_MALFORMED', `${what}: ${message}`, { message: what });
}

const PORT = /^[1-9][0-9]{0,4}$/;

// ---- BEGIN (tor-spec 6.2) -----------------------------------------------------------------
/** BEGIN flags (tor-spec 6.2); other bits are reserved, sent as 0 and ignored. */
export const BeginFlag = { IPV6_OK: 1, IPV4_NOT_OK: 2, IPV6_PREFERRED: 4 } as const;

export interface BeginBody { host: string; port: number; flags: number }

function checkPort(what: string, port: unknown): asserts port is number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 0xffff) bad(what, `port must be 1..65535, got ${String(port)}`);
}

/**
 * ADDRPORT "host:port" NUL | flags u32. An IPv6 host is written in brackets ("[::1]:80");
 * any other host is a host name (which includes IPv4 literals) of letters, digits, '-', '_', '.'.
 */
export function encodeBegin(body: { host: string; port: number; flags?: number }): Buffer {
  const { host, port } = body;
  const flags = body.flags ?? 0;
  checkPort('BEGIN', port);
  let text: string;
  if (typeof host === 'string' && host.includes(':')) {
    if (!parseIPv6(host)) bad('BEGIN', `not an IPv6 address: ${host}`);
    text = `[${host}]:${port}`;
  } else {
    if (!isHostname(host)) bad('BEGIN', `bad host ${JSON.stringify(host)}`);
    text = `${host}:${port}`;
  }
  return new Writer(RELAY_DATA_MAX, 'BEGIN').bytes(Buffer.from(text, 'latin1')).u8(0, 'nul').u32(flags, 'flags').finish();
}

/** Flags may be absent (Tor before 0.2.4 sent none): they then read as 0. */
export function decodeBegin(data: Uint8Array): BeginBody {
  const r = new Reader(data, 'BEGIN');
  const all = r.view(r.remaining, 'addrport');
  const nul = all.indexOf(0);
  if (nul < 0) bad('BEGIN', 'ADDRPORT is not NUL-terminated');
  const text = all.toString('latin1', 0, nul);
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') bad('BEGIN', 'bad bracketed address');
    host = text.slice(1, close);
    if (!parseIPv6(host)) bad('BEGIN', 'bracketed host is not an IPv6 address');
    portText = text.slice(close + 2);
  } else {
    const colon = text.indexOf(':');
    if (colon < 0) bad('BEGIN', 'ADDRPORT has no port');
    host = text.slice(0, colon);
    if (!isHostname(host)) bad('BEGIN', 'bad host');
    portText = text.slice(colon + 1);
  }
  if (!PORT.test(portText) || Number(portText) > 0xffff) bad('BEGIN', 'port must be 1..65535 in decimal');
  const rest = all.length - nul - 1;
  let flags = 0;
  if (rest === 4) flags = all.readUInt32BE(nul + 1);
  else if (rest !== 0) bad('BEGIN', `${rest} bytes after ADDRPORT (flags are 4 bytes)`);
  return { host, port: Number(portText), flags };
}

// ---- CONNECTED (tor-spec 6.2) -------------------------------------------------------------
export interface ConnectedBody { addr?: string; ttl?: number }
/** Alias of ConnectedBody. */
export type Connected = ConnectedBody;
/** Address type 6 marks the IPv6 form, after four zero bytes that no IPv4 answer starts with. */
const CONNECTED_IPV6_TYPE = 6;

/**
 * Empty; or IPv4 addr [4] | ttl u32; or zero [4] | 6 u8 | IPv6 addr [16] | ttl u32.
 * ttl defaults to 0 when an address is given. 0.0.0.0 cannot be sent (it opens the IPv6 form).
 */
export function encodeConnected(body: ConnectedBody = {}): Buffer {
  if (body.addr === undefined) {
    if (body.ttl !== undefined) bad('CONNECTED', 'ttl without an address');
    return Buffer.alloc(0);
  }
  const ttl = body.ttl ?? 0;
  const w = new Writer(4 + 1 + IPV6_LEN + 4, 'CONNECTED');
  const v4 = parseIPv4(body.addr);
  if (v4) {
    if (v4.readUInt32BE(0) === 0) bad('CONNECTED', '0.0.0.0 cannot be sent');
    return w.bytes(v4).u32(ttl, 'ttl').finish();
  }
  const v6 = parseIPv6(body.addr) ?? bad('CONNECTED', `not an IP address: ${String(body.addr)}`);
  return w.u32(0, 'zero').u8(CONNECTED_IPV6_TYPE, 'type').bytes(v6).u32(ttl, 'ttl').finish();
}

export function decodeConnected(data: Uint8Array): ConnectedBody {
  const r = new Reader(data, 'CONNECTED');
  if (r.remaining === 0) return {};
  const first = r.view(IPV4_LEN, 'addr');
  let addr: string;
  if (first.readUInt32BE(0) !== 0) {
    addr = formatIPv4(first);
  } else {
    const type = r.u8('type');
    if (type !== CONNECTED_IPV6_TYPE) bad('CONNECTED', `address type ${type} (only 6 follows four zero bytes)`);
    addr = formatIPv6(r.view(IPV6_LEN, 'addr'));
  }
  const ttl = r.u32('ttl');
  r.end();
  return { addr, ttl };
}

// ---- END (tor-spec 6.3) -------------------------------------------------------------------
export const EndReason = {
  MISC: 1,
  RESOLVEFAILED: 2,
  CONNECTREFUSED: 3,
  EXITPOLICY: 4,
  DESTROY: 5,
  DONE: 6,
  TIMEOUT: 7,
  NOROUTE: 8,
  HIBERNATING: 9,
  INTERNAL: 10,
  RESOURCELIMIT: 11,
  CONNRESET: 12,
  TORPROTOCOL: 13,
  NOTDIRECTORY: 14,
} as const;
export type EndReasonValue = (typeof EndReason)[keyof typeof EndReason];

export interface EndBody { reason: number; addr?: string; ttl?: number }

/**
 * reason u8, and only with EXITPOLICY optionally addr [4 or 16] | ttl u32 (the address the
 * exit refused). Any reason byte decodes (tor-spec 6.3: accept reasons not on the list);
 * an empty body reads as MISC, as Tor does.
 */
export function encodeEnd(reason: number, opts?: { addr?: string; ttl?: number }): Buffer;
/** The same, taking what decodeEnd returns. */
export function encodeEnd(body: EndBody): Buffer;
export function encodeEnd(reasonOrBody: number | EndBody, more: { addr?: string; ttl?: number } = {}): Buffer {
  const [reason, opts] = typeof reasonOrBody === 'object' && reasonOrBody !== null
    ? [reasonOrBody.reason, reasonOrBody] : [reasonOrBody, more];
  const w = new Writer(1 + IPV6_LEN + 4, 'END').u8(reason, 'reason');
  if (opts.addr === undefined) {
    if (opts.ttl !== undefined) bad('END', 'ttl without an address');
    return w.finish();
  }
  if (reason !== EndReason.EXITPOLICY) bad('END', 'only EXITPOLICY carries an address');
  const a = parseIPv4(opts.addr) ?? parseIPv6(opts.addr) ?? bad('END', `not an IP address: ${String(opts.addr)}`);
  return w.bytes(a).u32(opts.ttl ?? 0, 'ttl').finish();
}

export function decodeEnd(data: Uint8Array): EndBody {
  const r = new Reader(data, 'END');
  if (r.remaining === 0) return { reason: EndReason.MISC };
  const reason = r.u8('reason');
  if (r.remaining === 0) return { reason };
  if (reason !== EndReason.EXITPOLICY) bad('END', `reason ${reason} carries no data`);
  let addr: string;
  if (r.remaining === IPV4_LEN + 4) addr = formatIPv4(r.view(IPV4_LEN, 'addr'));
  else if (r.remaining === IPV6_LEN + 4) addr = formatIPv6(r.view(IPV6_LEN, 'addr'));
  else bad('END', `EXITPOLICY data must be 8 or 20 bytes, got ${r.remaining}`);
  return { reason, addr, ttl: r.u32('ttl') };
}

// ---- RESOLVE / RESOLVED (tor-spec 6.4) ----------------------------------------------------
/** host NUL. The host is a host name (reverse lookups use in-addr.arpa / ip6.arpa names). */
export function encodeResolve(host: string): Buffer {
  if (!isHostname(host)) bad('RESOLVE', `bad host ${JSON.stringify(host)}`);
  return new Writer(RELAY_DATA_MAX, 'RESOLVE').bytes(Buffer.from(host, 'latin1')).u8(0, 'nul').finish();
}

export function decodeResolve(data: Uint8Array): string {
  const r = new Reader(data, 'RESOLVE');
  const all = r.view(r.remaining, 'host');
  const nul = all.indexOf(0);
  if (nul !== all.length - 1) bad('RESOLVE', 'host must be followed by exactly one NUL, at the end');
  const host = all.toString('latin1', 0, nul);
  if (!isHostname(host)) bad('RESOLVE', 'bad host');
  return host;
}

export const ResolvedType = {
  HOSTNAME: 0x00,
  IPV4: 0x04,
  IPV6: 0x06,
  ERROR_TRANSIENT: 0xf0,
  ERROR_NONTRANSIENT: 0xf1,
} as const;

export type ResolvedAnswerKind = 'ipv4' | 'ipv6' | 'hostname' | 'error-transient' | 'error-nontransient';
/** For errors `value` is '' (the wire value is ignored, tor-spec 6.4). */
export interface ResolvedAnswer { type: ResolvedAnswerKind; value: string; ttl: number }

const KIND_TO_TYPE: Record<ResolvedAnswerKind, number> = {
  hostname: ResolvedType.HOSTNAME,
  ipv4: ResolvedType.IPV4,
  ipv6: ResolvedType.IPV6,
  'error-transient': ResolvedType.ERROR_TRANSIENT,
  'error-nontransient': ResolvedType.ERROR_NONTRANSIENT,
};
const isError = (k: ResolvedAnswerKind) => k === 'error-transient' || k === 'error-nontransient';

/** SPEC.md §2.7.3: at least one answer; an error answer is the only answer. */
function checkAnswerSet(kinds: ResolvedAnswerKind[]): void {
  if (kinds.length === 0) bad('RESOLVED', 'no answers');
  if (kinds.length > 1 && kinds.some(isError)) bad('RESOLVED', 'an error answer must be the only answer');
}

/** Repeated: type u8 | len u8 | value [len] | ttl u32. Error answers are sent with len 0. */
export function encodeResolved(answers: ResolvedAnswer[]): Buffer {
  if (!Array.isArray(answers)) bad('RESOLVED', 'answers must be an array');
  checkAnswerSet(answers.map((a) => a.type));
  const w = new Writer(RELAY_DATA_MAX, 'RESOLVED');
  for (const a of answers) {
    let value: Buffer;
    switch (a.type) {
      case 'ipv4': value = parseIPv4(a.value) ?? bad('RESOLVED', `not an IPv4 address: ${String(a.value)}`); break;
      case 'ipv6': value = parseIPv6(a.value) ?? bad('RESOLVED', `not an IPv6 address: ${String(a.value)}`); break;
      case 'hostname':
        if (!isHostname(a.value)) bad('RESOLVED', `bad host name ${JSON.stringify(a.value)}`);
        value = Buffer.from(a.value, 'latin1');
        break;
      case 'error-transient':
      case 'error-nontransient':
        if (a.value !== '' && a.value !== undefined) bad('RESOLVED', 'error answers carry no value');
        value = Buffer.alloc(0);
        break;
      default:
        bad('RESOLVED', `unknown answer type ${String((a as { type?: unknown }).type)}`);
    }
    checkUint(a.ttl, 0xffff_ffff, 'RESOLVED', 'ttl');
    w.u8(KIND_TO_TYPE[a.type], 'type').u8(value.length, 'len').bytes(value).u32(a.ttl, 'ttl');
  }
  return w.finish();
}

export function decodeResolved(data: Uint8Array): ResolvedAnswer[] {
  const r = new Reader(data, 'RESOLVED');
  const out: ResolvedAnswer[] = [];
  while (r.remaining > 0) {
    const type = r.u8('type');
    const len = r.u8('len');
    const v = r.view(len, 'value');
    const ttl = r.u32('ttl');
    const want = (n: number) => { if (len !== n) bad('RESOLVED', `answer type ${type} must be ${n} bytes, got ${len}`); };
    switch (type) {
      case ResolvedType.IPV4: want(IPV4_LEN); out.push({ type: 'ipv4', value: formatIPv4(v), ttl }); break;
      case ResolvedType.IPV6: want(IPV6_LEN); out.push({ type: 'ipv6', value: formatIPv6(v), ttl }); break;
      case ResolvedType.HOSTNAME: {
        const name = v.toString('latin1');
        if (!isHostname(name)) bad('RESOLVED', 'bad host name');
        out.push({ type: 'hostname', value: name, ttl });
        break;
      }
      case ResolvedType.ERROR_TRANSIENT: out.push({ type: 'error-transient', value: '', ttl }); break;
      case ResolvedType.ERROR_NONTRANSIENT: out.push({ type: 'error-nontransient', value: '', ttl }); break;
      default: bad('RESOLVED', `unknown answer type ${type}`);
    }
  }
  checkAnswerSet(out.map((a) => a.type));
  return out;
}

// ---- BEGIN_DIR / BEGIN_STORAGE (SPEC.md §2.7.2) ----------------------------------------------
/** Both open a stream to the circuit's last hop itself; their bodies are empty. */
export function encodeBeginDir(): Buffer {
  return Buffer.alloc(0);
}
export function decodeBeginDir(data: Uint8Array): void {
  new Reader(data, 'BEGIN_DIR').end();
}
export function encodeBeginStorage(): Buffer {
  return Buffer.alloc(0);
}
export function decodeBeginStorage(data: Uint8Array): void {
  new Reader(data, 'BEGIN_STORAGE').end();
}
