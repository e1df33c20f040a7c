// SPEC.md §7b.9 "Address key": the one key every per-address limit counts a remote address under —
// a relay's and a storage node's DoS limits (§7b.9), the receipt exchange's unlisted peers
// (§8.3 step 13), the dir ports' upload buckets and answer places (§6.10, §9.20.3, §9.21.8).
import { parseIPv4, parseIPv6 } from './addr';

/**
 * SPEC.md §7b.9 "Address key": an IPv4 address (an IPv4-mapped IPv6 address is its IPv4 address),
 * or the /64 of an IPv6 address as "<hex>::/64" (one host commonly holds a whole /64, so a peer
 * rotating addresses inside it stays under one key). Null when the address is unknown or does not
 * parse. A bracketed IPv6 address ("[2001:db8::1]") is accepted; a port is not (see hostOf).
 */
export function addressKey(address: string | undefined): string | null {
  if (!address) return null;
  const a = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const v4 = parseIPv4(a);
  if (v4) return a;
  const v6 = parseIPv6(a);
  if (!v6) return null;
  if (isMapped(v6)) return `${v6[12]}.${v6[13]}.${v6[14]}.${v6[15]}`;
  return `${BigInt(`0x${v6.subarray(0, 8).toString('hex')}`).toString(16)}::/64`;
}

/**
 * The host of a "host:port" remote address (Channel.remoteAddress): "[2001:db8::1]:443" and
 * "2001:db8::1:443" give "2001:db8::1", "192.0.2.1:443" gives "192.0.2.1". The port is the part
 * after the last colon; a string with none is returned unchanged.
 */
export function hostOf(remote: string): string {
  const i = remote.lastIndexOf(':');
  const host = i > 0 ? remote.slice(0, i) : remote;
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** An IPv4-mapped IPv6 address as a dual-stack socket reports it (::ffff:a.b.c.d) as that IPv4 address; anything else unchanged. */
export function plainAddress(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

/** Is `address` a loopback address (127.0.0.0/8, ::1, or an IPv4-mapped 127.x)? */
export function isLoopback(address: string): boolean {
  const a = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const v4 = parseIPv4(a);
  if (v4) return v4[0] === 127;
  const v6 = parseIPv6(a);
  if (!v6) return false;
  if (isMapped(v6)) return v6[12] === 127;
  return v6.subarray(0, 15).every((b) => b === 0) && v6[15] === 1;
}

function isMapped(v6: Buffer): boolean {
  return v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
}
