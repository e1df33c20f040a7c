// Network addresses and host names as relay messages carry them (SPEC.md §2.7.1).
// Binary forms: IPv4 4 bytes, IPv6 16 bytes, network order. Text forms: dotted quad without
// leading zeros; IPv6 as RFC 4291 §2.2 on input and RFC 5952 §4 (lowercase, longest zero run
// compressed) on output. Host names: ASCII letters, digits, '-', '_', '.', 1..255 bytes.
// Parsers return null on bad input; callers turn that into their own error code.
import { isIPv6 } from 'node:net';

export const IPV4_LEN = 4;
export const IPV6_LEN = 16;
export const HOSTNAME_MAX = 255;

const DEC_OCTET = /^(0|[1-9][0-9]{0,2})$/;
const HOSTNAME = /^[A-Za-z0-9_.-]+$/;

export function parseIPv4(s: string): Buffer | null {
  if (typeof s !== 'string' || s.length > 15) return null;
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const out = Buffer.alloc(IPV4_LEN);
  for (let i = 0; i < 4; i++) {
    if (!DEC_OCTET.test(parts[i])) return null;
    const v = Number(parts[i]);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

export function formatIPv4(b: Uint8Array): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 4291 §2.2 text (with '::' and an optional dotted-quad tail); no zone ids. */
export function parseIPv6(s: string): Buffer | null {
  if (typeof s !== 'string' || s.length === 0 || s.length > 45 || s.includes('%') || !isIPv6(s)) return null;
  let text = s;
  if (text.includes('.')) {
    // A dotted-quad tail stands for the last two groups: rewrite it as hex and parse on.
    const cut = text.lastIndexOf(':');
    const tail = parseIPv4(text.slice(cut + 1));
    if (!tail) return null;
    text = `${text.slice(0, cut + 1)}${tail.readUInt16BE(0).toString(16)}:${tail.readUInt16BE(2).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const toGroups = (h: string): number[] | null => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = toGroups(halves[0]);
  const rest = halves.length === 2 ? toGroups(halves[1]) : [];
  if (!head || !rest) return null;
  let groups: number[];
  if (halves.length === 2) {
    const fill = 8 - head.length - rest.length;
    if (fill < 1) return null;
    groups = [...head, ...new Array<number>(fill).fill(0), ...rest];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return null;
  const out = Buffer.alloc(IPV6_LEN);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** RFC 5952 §4: lowercase hex, no leading zeros, the longest run (>= 2) of zero groups as '::'. */
export function formatIPv6(b: Uint8Array): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[i * 2] << 8) | b[i * 2 + 1]);
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (bestLen < 2) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

export function isHostname(s: string): boolean {
  return typeof s === 'string' && s.length >= 1 && s.length <= HOSTNAME_MAX && HOSTNAME.test(s);
}

export type IpAddress = { family: 4; bytes: Buffer } | { family: 6; bytes: Buffer };

/** An IPv4 or IPv6 literal (IPv6 without brackets), or null. */
export function parseIp(s: string): IpAddress | null {
  const v4 = parseIPv4(s);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIPv6(s);
  return v6 ? { family: 6, bytes: v6 } : null;
}
