// SPEC.md §7.6 (exit policies): Tor-style "accept|reject ADDR[/BITS]:PORT[-PORT]" rules,
// first match wins, implicit final reject. Shared by the exit (which checks the resolved
// address at connect time) and the client (which picks an exit before the name is resolved).
// Evaluated once per stream, never per cell, so clarity wins over speed here.
import { err } from '../errors';
import { parseIPv4 as wireParseIPv4, parseIPv6 as wireParseIPv6, formatIPv6 as wireFormatIPv6 } from '../wire/addr';

// ---------------------------------------------------------------------------------------------
// IP addresses: IPv4 as an unsigned 32-bit number, IPv6 as a 128-bit bigint (prefix masks are
// then plain arithmetic). The text forms are src/wire/addr.ts's, the one place that parses them.

export type IpAddr = { family: 4; value: number } | { family: 6; value: bigint };

const V6_ALL = (1n << 128n) - 1n;

/** Strict dotted quad (no leading zeros, which some resolvers read as octal). */
export function parseIPv4(s: string): number | null {
  const b = wireParseIPv4(s);
  return b ? b.readUInt32BE(0) : null;
}

/** RFC 4291 §2.2 text forms, including "::" and a trailing dotted quad; no zone ids. */
export function parseIPv6(s: string): bigint | null {
  const b = wireParseIPv6(s);
  return b ? BigInt(`0x${b.toString('hex')}`) : null;
}

export function parseIp(s: string): IpAddr | null {
  const v4 = parseIPv4(s);
  if (v4 !== null) return { family: 4, value: v4 };
  const inner = s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
  const v6 = parseIPv6(inner);
  return v6 === null ? null : { family: 6, value: v6 };
}

export function formatIPv4(v: number): string {
  return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

/** RFC 5952 canonical text; an IPv4-mapped address keeps its dotted quad (RFC 5952 §5). */
export function formatIPv6(v: bigint): string {
  if (v >> 32n === 0xffffn) return `::ffff:${formatIPv4(Number(v & 0xffff_ffffn))}`;
  return wireFormatIPv6(Buffer.from(v.toString(16).padStart(32, '0'), 'hex'));
}

export function formatIp(a: IpAddr): string {
  return a.family === 4 ? formatIPv4(a.value) : formatIPv6(a.value);
}

/** An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is the IPv4 address for policy purposes. */
function unmap(a: IpAddr): IpAddr {
  if (a.family === 6 && a.value >> 32n === 0xffffn) return { family: 4, value: Number(a.value & 0xffff_ffffn) };
  return a;
}

// ---------------------------------------------------------------------------------------------
// Policies

export type ExitRuleAddress =
  | { kind: 'any' } | { kind: 'any4' } | { kind: 'any6' } | { kind: 'private' }
  | { kind: 'net'; family: 4; base: number; bits: number }
  | { kind: 'net'; family: 6; base: bigint; bits: number };

export interface ExitRule {
  readonly action: 'accept' | 'reject';
  readonly addr: ExitRuleAddress;
  readonly portLo: number;
  readonly portHi: number;
}

export interface ExitPolicy {
  readonly rules: readonly ExitRule[];
  /** The relay's own addresses, which the `private` keyword also covers (SPEC.md §7.6.2). */
  readonly ownAddresses: readonly IpAddr[];
}

type Net4 = { family: 4; base: number; bits: number };
type Net6 = { family: 6; base: bigint; bits: number };
const mask4 = (bits: number): number => (bits === 0 ? 0 : (0xffff_ffff << (32 - bits)) >>> 0);
const mask6 = (bits: number): bigint => (bits === 0 ? 0n : (V6_ALL << BigInt(128 - bits)) & V6_ALL);

/**
 * SPEC.md §7.6.2: the address ranges the `private` keyword stands for — every address that is not
 * a public unicast destination (as Tor's and Arti's exits treat them): unspecified, "this network",
 * loopback, RFC 1918, shared (CGN), link-local, IETF protocol assignments, benchmarking,
 * multicast, reserved and broadcast for IPv4; unspecified, loopback, IPv4-compatible, discard,
 * local-use NAT64, unique-local, site-local, link-local and multicast for IPv6.
 */
const PRIVATE_NETS: readonly (Net4 | Net6)[] = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 4], ['240.0.0.0', 4],
  ['::', 128], ['::1', 128], ['::', 96], ['100::', 64], ['64:ff9b:1::', 48], ['fc00::', 7], ['fec0::', 10], ['fe80::', 10], ['ff00::', 8],
].map(([a, bits]) => {
  const ip = parseIp(a as string)!;
  return ip.family === 4 ? { family: 4, base: ip.value, bits: bits as number } : { family: 6, base: ip.value, bits: bits as number };
});

function inNet(a: IpAddr, n: Net4 | Net6): boolean {
  if (a.family === 4 && n.family === 4) return ((a.value & mask4(n.bits)) >>> 0) === n.base;
  if (a.family === 6 && n.family === 6) return (a.value & mask6(n.bits)) === n.base;
  return false;
}

const v4At = (v: bigint, shift: number): IpAddr => ({ family: 4, value: Number((v >> BigInt(shift)) & 0xffff_ffffn) });

/**
 * SPEC.md §7.6.2: the IPv4 addresses an IPv6 address carries towards an IPv4 host: NAT64
 * 64:ff9b::/96 (last 32 bits), 6to4 2002::/16 (bits 16–47), Teredo 2001::/32 (the server, bits
 * 32–63, and the client, the last 32 bits inverted). IPv4-mapped addresses are unmapped before.
 */
function embeddedIPv4(a: IpAddr): IpAddr[] {
  if (a.family !== 6) return [];
  const v = a.value;
  if (v >> 32n === 0x0064_ff9b_0000_0000_0000_0000n) return [v4At(v, 0)];
  if (v >> 112n === 0x2002n) return [v4At(v, 80)];
  if (v >> 96n === 0x2001_0000n) return [v4At(v, 64), { family: 4, value: Number((v & 0xffff_ffffn) ^ 0xffff_ffffn) }];
  return [];
}

/** SPEC.md §7.6.2: not a public unicast destination (the `private` keyword's ranges, embedded IPv4 included). */
export function isPrivateAddress(a: IpAddr): boolean {
  const u = unmap(a);
  if (PRIVATE_NETS.some((n) => inNet(u, n))) return true;
  return embeddedIPv4(u).some((e) => PRIVATE_NETS.some((n) => inNet(e, n)));
}

function malformed(rule: string, why: string): never {
  throw err('EXIT_POLICY_MALFORMED', `bad exit policy rule "${rule}": ${why}`, { rule });
}

function parsePort(s: string, rule: string): number {
  if (!/^(0|[1-9]\d{0,4})$/.test(s)) malformed(rule, `bad port "${s}"`);
  const n = Number(s);
  if (n < 1 || n > 65535) malformed(rule, `port ${n} out of range 1-65535`);
  return n;
}

function parseRuleAddress(s: string, rule: string): ExitRuleAddress {
  switch (s) {
    case '*': return { kind: 'any' };
    case '*4': return { kind: 'any4' };
    case '*6': return { kind: 'any6' };
    case 'private': return { kind: 'private' };
  }
  let addr = s, bitsText: string | null = null;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) malformed(rule, 'unterminated [IPv6] address');
    addr = s.slice(1, close);
    const rest = s.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith('/')) malformed(rule, `unexpected "${rest}" after address`);
      bitsText = rest.slice(1);
    }
    const v6 = parseIPv6(addr);
    if (v6 === null) malformed(rule, `bad IPv6 address "${addr}"`);
    const bits = bitsText === null ? 128 : parseBits(bitsText, 128, rule);
    if ((v6 & ~mask6(bits) & V6_ALL) !== 0n) malformed(rule, `address has bits set beyond /${bits}`);
    // SPEC.md §7.6.2: an IPv4-mapped address is the IPv4 address for every rule. Targets are
    // unmapped before matching, so a rule inside ::ffff:0:0/96 is kept as the IPv4 rule it
    // means; kept as IPv6 it would never match, and a reject written that way would do nothing.
    if (bits >= 96 && v6 >> 32n === 0xffffn) return { kind: 'net', family: 4, base: Number(v6 & 0xffff_ffffn), bits: bits - 96 };
    return { kind: 'net', family: 6, base: v6, bits };
  }
  const slash = s.indexOf('/');
  if (slash >= 0) { addr = s.slice(0, slash); bitsText = s.slice(slash + 1); }
  const v4 = parseIPv4(addr);
  if (v4 === null) malformed(rule, parseIPv6(addr) !== null ? 'IPv6 addresses must be written in [brackets]' : `bad address "${addr}"`);
  const bits = bitsText === null ? 32 : parseBits(bitsText, 32, rule);
  if ((v4 & ~mask4(bits)) >>> 0 !== 0) malformed(rule, `address has bits set beyond /${bits}`);
  return { kind: 'net', family: 4, base: v4, bits };
}

function parseBits(s: string, max: number, rule: string): number {
  if (!/^(0|[1-9]\d{0,2})$/.test(s) || Number(s) > max) malformed(rule, `bad prefix length "/${s}"`);
  return Number(s);
}

function parseRule(text: string): ExitRule {
  const rule = text.trim();
  const parts = rule.split(/\s+/);
  if (rule === '' || parts.length !== 2) malformed(text, 'expected "accept|reject ADDR[/BITS]:PORT[-PORT]"');
  const action = parts[0].toLowerCase();
  if (action !== 'accept' && action !== 'reject') malformed(rule, `unknown action "${parts[0]}"`);
  const colon = parts[1].lastIndexOf(':');
  if (colon < 0) malformed(rule, 'missing ":PORT"');
  const addr = parseRuleAddress(parts[1].slice(0, colon), rule);
  const ports = parts[1].slice(colon + 1);
  let portLo = 1, portHi = 65535;
  if (ports !== '*') {
    const dash = ports.indexOf('-');
    if (dash < 0) portLo = portHi = parsePort(ports, rule);
    else {
      portLo = parsePort(ports.slice(0, dash), rule);
      portHi = parsePort(ports.slice(dash + 1), rule);
      if (portLo > portHi) malformed(rule, `empty port range ${portLo}-${portHi}`);
    }
  }
  return Object.freeze({ action, addr: Object.freeze(addr), portLo, portHi });
}

/**
 * Parse rules, one per element; an element may also hold several rules separated by commas
 * (as a config line does). Throws EXIT_POLICY_MALFORMED naming the first bad rule.
 * `ownAddresses` are the relay's addresses, covered by `private`.
 */
export function parseExitPolicy(rules: readonly string[], opts: { ownAddresses?: readonly string[] } = {}): ExitPolicy {
  const parsed: ExitRule[] = [];
  for (const line of rules) for (const r of String(line).split(',')) parsed.push(parseRule(r));
  const own: IpAddr[] = [];
  for (const a of opts.ownAddresses ?? []) {
    const ip = parseIp(a);
    if (ip) own.push(unmap(ip));
  }
  return Object.freeze({ rules: Object.freeze(parsed), ownAddresses: Object.freeze(own) });
}

function formatRuleAddress(a: ExitRuleAddress): string {
  switch (a.kind) {
    case 'any': return '*';
    case 'any4': return '*4';
    case 'any6': return '*6';
    case 'private': return 'private';
    case 'net':
      return a.family === 4
        ? formatIPv4(a.base) + (a.bits === 32 ? '' : `/${a.bits}`)
        : `[${formatIPv6(a.base)}]` + (a.bits === 128 ? '' : `/${a.bits}`);
  }
}

/** Canonical text, one rule per element (SPEC.md §7.6.1); parse(format(p)) equals p. */
export function formatExitPolicy(p: ExitPolicy): string[] {
  return p.rules.map((r) => {
    const ports = r.portLo === 1 && r.portHi === 65535 ? '*' : r.portLo === r.portHi ? `${r.portLo}` : `${r.portLo}-${r.portHi}`;
    return `${r.action} ${formatRuleAddress(r.addr)}:${ports}`;
  });
}

/** SPEC.md §7.6.1: the rule an exit's configured policy is preceded by unless its operator turns it off. */
export const REJECT_PRIVATE_RULE = 'reject private:*';
export const DEFAULT_EXIT_POLICY: ExitPolicy = parseExitPolicy([REJECT_PRIVATE_RULE, 'reject *:25', 'accept *:*']);
export const REJECT_ALL: ExitPolicy = parseExitPolicy(['reject *:*']);

function validPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

function addrMatches(r: ExitRuleAddress, a: IpAddr, own: readonly IpAddr[]): boolean {
  switch (r.kind) {
    case 'any': return true;
    case 'any4': return a.family === 4;
    case 'any6': return a.family === 6;
    // SPEC.md §7.6.2: the relay's own addresses are private too, and so is an IPv6 address that
    // carries one of them (NAT64, 6to4, Teredo), as for the private ranges.
    case 'private': return isPrivateAddress(a) || [a, ...embeddedIPv4(a)].some((x) => own.some((o) => o.family === x.family && o.value === x.value));
    case 'net': return inNet(a, r);
  }
}

/**
 * The exit's check at connect time, on the resolved address (SPEC.md §7.6.3): first matching
 * rule wins, no match rejects, port 0 and the unspecified address are never allowed. Throws
 * EXIT_POLICY_BAD_ADDRESS when `ip` is not an IP address (resolve first).
 */
export function exitPolicyAllowsAddress(p: ExitPolicy, ip: string, port: number): boolean {
  const parsed = parseIp(ip);
  if (!parsed) throw err('EXIT_POLICY_BAD_ADDRESS', 'exit policy check needs an IP address, not a name');
  if (!validPort(port)) return false;
  const a = unmap(parsed);
  // SPEC.md §7.6.3: the unspecified address (0.0.0.0, [::]) is no destination; connecting to it
  // reaches this host's own loopback. Never allowed, whatever the rules (Tor does the same).
  if (a.family === 4 ? a.value === 0 : a.value === 0n) return false;
  for (const r of p.rules) {
    if (port < r.portLo || port > r.portHi) continue;
    if (addrMatches(r.addr, a, p.ownAddresses)) return r.action === 'accept';
  }
  return false;
}

/** True when every address of the rule lies inside the private ranges (ignored for names). */
function onlyPrivate(r: ExitRuleAddress): boolean {
  if (r.kind === 'private') return true;
  if (r.kind !== 'net') return false;
  return PRIVATE_NETS.some((n) => n.family === r.family && n.bits <= r.bits && inNet({ family: r.family, value: r.base } as IpAddr, n));
}

/**
 * Client-side question "would this exit take a stream to addr:port?" (SPEC.md §7.6.4).
 * With an IP address: 'yes' or 'no'. With `null` or a host name (not resolved yet): 'yes' if
 * every public address of both families is accepted on that port, 'no' if none is, else
 * 'maybe'. Reject rules that only cover private ranges are ignored for names, as Tor's
 * policy summaries do: a public name is expected to resolve to a public address, and if it
 * does not the exit refuses at connect time. An accept rule covering only private ranges
 * makes an otherwise-'no' answer 'maybe' (the name may resolve there, e.g. on a local network).
 */
export function exitPolicyAllows(p: ExitPolicy, addr: string | null, port: number): 'yes' | 'no' | 'maybe' {
  if (!validPort(port)) return 'no';
  if (addr !== null && parseIp(addr)) return exitPolicyAllowsAddress(p, addr, port) ? 'yes' : 'no';
  const verdict: Record<4 | 6, 'accept' | 'reject' | null> = { 4: null, 6: null };
  const partial: Record<4 | 6, { accept: boolean; reject: boolean }> = { 4: { accept: false, reject: false }, 6: { accept: false, reject: false } };
  for (const r of p.rules) {
    if (port < r.portLo || port > r.portHi) continue;
    const a = r.addr;
    if (onlyPrivate(a)) {
      // A private-only accept still means the name *might* be accepted (it may resolve there).
      if (r.action === 'accept') for (const f of a.kind === 'net' ? [a.family] : [4, 6] as const) if (verdict[f] === null) partial[f].accept = true;
      continue;
    }
    const whole: (4 | 6)[] = a.kind === 'any' ? [4, 6] : a.kind === 'any4' ? [4] : a.kind === 'any6' ? [6]
      : a.kind === 'net' && a.bits === 0 ? [a.family] : [];
    for (const f of whole) if (verdict[f] === null) verdict[f] = r.action;
    if (a.kind === 'net' && a.bits > 0 && verdict[a.family] === null) partial[a.family][r.action] = true;
  }
  const outcome = (f: 4 | 6): 'all' | 'none' | 'some' => {
    const v = verdict[f] ?? 'reject';
    if (v === 'accept') return partial[f].reject ? 'some' : 'all';
    return partial[f].accept ? 'some' : 'none';
  };
  const o4 = outcome(4), o6 = outcome(6);
  if (o4 === 'all' && o6 === 'all') return 'yes';
  if (o4 === 'none' && o6 === 'none') return 'no';
  return 'maybe';
}
