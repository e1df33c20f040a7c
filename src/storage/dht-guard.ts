// SPEC.md §9.14: every UDP datagram that reaches a node's DHT port is checked here before the DHT
// library (bittorrent-dht, k-rpc) acts on it. The library trusts the types of the fields it reads:
// a `get` whose `target` is an integer, a `find_node` whose `target` is a list, a `put` whose
// `token` is an integer or a reply whose `id` is an integer throws inside its UDP message handler,
// which no caller can catch (one datagram from anyone would end the storage daemon), and a throw
// while a reply is handled loses the lookup that waits for it. A datagram that is not a KRPC
// message with the field types of BEP 5 / BEP 44 below is dropped unseen by the library.
import type dgram from 'node:dgram';

/** A bencoded value as this check reads it: byte strings stay Buffers, dictionary keys are latin1. */
type BValue = Buffer | number | BValue[] | { [key: string]: BValue };

/**
 * SPEC.md §9.14: at most 8 levels of nesting, the message itself being level 1 (a reply's `values`
 * list is the deepest any KRPC message needs: 3). A list or dictionary read by `value(depth)` is
 * level depth + 1; the byte strings and integers in it add no level.
 */
const MAX_DEPTH = 8;
const ID_BYTES = 20;

/** Strict bencode: the whole datagram is one value, integers are safe, dictionary keys unique. Null if not. */
export function decodeBencode(buf: Buffer): BValue | null {
  let pos = 0;
  const value = (depth: number): BValue => {
    if (pos >= buf.length) throw new Error('bad');
    const c = buf[pos];
    if (c === 0x69) { // i<digits>e
      const end = buf.indexOf(0x65, pos + 1);
      if (end < 0) throw new Error('bad');
      const text = buf.toString('latin1', pos + 1, end);
      if (!/^(0|-?[1-9][0-9]*)$/.test(text)) throw new Error('bad');
      const n = Number(text);
      if (!Number.isSafeInteger(n)) throw new Error('bad');
      pos = end + 1;
      return n;
    }
    if (c === 0x6c || c === 0x64) { // l…e, d…e
      if (depth >= MAX_DEPTH) throw new Error('bad');
      pos++;
      const list: BValue[] = [];
      const dict: { [key: string]: BValue } = Object.create(null) as { [key: string]: BValue };
      while (pos < buf.length && buf[pos] !== 0x65) {
        if (c === 0x6c) { list.push(value(depth + 1)); continue; }
        const key = value(depth + 1);
        if (!Buffer.isBuffer(key)) throw new Error('bad');
        const k = key.toString('latin1');
        if (k in dict) throw new Error('bad');
        dict[k] = value(depth + 1);
      }
      if (pos >= buf.length) throw new Error('bad');
      pos++;
      return c === 0x6c ? list : dict;
    }
    // <length>:<bytes>
    const colon = buf.indexOf(0x3a, pos);
    if (colon < 0) throw new Error('bad');
    const text = buf.toString('latin1', pos, colon);
    if (!/^(0|[1-9][0-9]{0,5})$/.test(text)) throw new Error('bad');
    const end = colon + 1 + Number(text);
    if (end > buf.length) throw new Error('bad');
    pos = end;
    return buf.subarray(colon + 1, end);
  };
  try {
    const v = value(0);
    return pos === buf.length ? v : null;
  } catch {
    return null;
  }
}

function isDict(v: BValue | null | undefined): v is { [key: string]: BValue } {
  return v !== undefined && v !== null && typeof v === 'object' && !Buffer.isBuffer(v) && !Array.isArray(v);
}

const bytesOf = (v: BValue | undefined, min: number, max: number): boolean => v === undefined || (Buffer.isBuffer(v) && v.length >= min && v.length <= max);
const uint = (v: BValue | undefined, max = Number.MAX_SAFE_INTEGER): boolean => v === undefined || (typeof v === 'number' && v >= 0 && v <= max);

/** The BEP 44 item fields a query (`put`) or a reply (to `get`) may carry, each of its type and size. */
function itemFieldsOk(m: { [key: string]: BValue }): boolean {
  return bytesOf(m.v, 1, 999) && bytesOf(m.k, 32, 32) && bytesOf(m.sig, 64, 64) && bytesOf(m.salt, 0, 64) && uint(m.seq) && uint(m.cas) && bytesOf(m.token, 1, 64);
}

/**
 * SPEC.md §9.14: is `buf` a KRPC message this node's DHT may handle? A dictionary with `t` (bytes)
 * and `y` "q", "r" or "e". A query: `q` bytes, `a` a dictionary whose `id` is 20 bytes, `target`
 * and `info_hash` 20 bytes, `port` and `implied_port` 0..65535, and the BEP 44 fields of
 * itemFieldsOk. A reply: `r` a dictionary whose `id` is 20 bytes, `nodes` bytes, `values` a list of
 * bytes, and the same BEP 44 fields. An error: `e` a list.
 */
export function wellFormedKrpc(buf: Buffer): boolean {
  const m = decodeBencode(buf);
  if (!isDict(m) || !Buffer.isBuffer(m.t) || !Buffer.isBuffer(m.y)) return false;
  switch (m.y.toString('latin1')) {
    case 'q': {
      const a = m.a;
      if (!Buffer.isBuffer(m.q) || !isDict(a)) return false;
      return bytesOf(a.id, ID_BYTES, ID_BYTES) && a.id !== undefined && bytesOf(a.target, ID_BYTES, ID_BYTES) && bytesOf(a.info_hash, ID_BYTES, ID_BYTES)
        && uint(a.port, 65535) && uint(a.implied_port, 65535) && itemFieldsOk(a);
    }
    case 'r': {
      const r = m.r;
      if (!isDict(r)) return false;
      return bytesOf(r.id, ID_BYTES, ID_BYTES) && r.id !== undefined && bytesOf(r.nodes, 0, 65535)
        && (r.values === undefined || (Array.isArray(r.values) && r.values.every((p) => Buffer.isBuffer(p)))) && itemFieldsOk(r);
    }
    case 'e':
      return Array.isArray(m.e);
    default:
      return false;
  }
}

/**
 * Put the check in front of the library's own handler(s) on `socket` (the DHT's UDP socket, before
 * it is bound); with `fromMember`, a datagram from a source it refuses is dropped too. A dropped
 * datagram is reported to `onDropped`; should the library still throw on a message that passed,
 * that one message is lost (`onThrow`), never the process.
 */
export function guardDhtSocket(socket: dgram.Socket, onDropped: () => void, onThrow: (e: unknown) => void, fromMember?: (rinfo: dgram.RemoteInfo) => boolean): void {
  const handlers = socket.listeners('message') as Array<(buf: Buffer, rinfo: dgram.RemoteInfo) => void>;
  socket.removeAllListeners('message');
  socket.on('message', (buf: Buffer, rinfo: dgram.RemoteInfo) => {
    // SPEC.md §9.14 *Members only*: a datagram from an address that is not a storage node of the
    // consensus is dropped before it is even decoded (its source may be spoofed: it gets no answer).
    if (fromMember && !fromMember(rinfo)) { onDropped(); return; }
    if (!wellFormedKrpc(buf)) { onDropped(); return; }
    for (const h of handlers) {
      try {
        h.call(socket, buf, rinfo);
      } catch (e) {
        onThrow(e);
      }
    }
  });
}
