// SPEC.md §6.10 "Connection and body bounds": the open connections of a directory HTTP port (an
// authority's HTTP port, a relay's dir port), counted from the accept, per address key (§7b.9) and
// in all, with the configured authorities' addresses (§6.1) exempt — those listed by name resolved
// at start and every 10 minutes. Shared by directory/http.ts and relay/daemon.ts.
import dns from 'node:dns';
import type http from 'node:http';
import type net from 'node:net';
import { addressKey } from '../wire/address-key';
import { KeyCounts } from './key-counts';
import { parseIPv4, parseIPv6 } from '../wire/addr';
import type { Logger } from './log';

/** Why a connection was refused (the `reason` label of the port's refused-connections counter). */
export type ConnectionRefusal = 'per_address' | 'total';

/** SPEC.md §6.10 "Connection and body bounds": how often exempt host names are resolved again. */
export const EXEMPT_REFRESH_MS = 10 * 60_000;

/** Every address `host` resolves to (IPv4 and IPv6); rejects when it resolves to none. */
export type HostLookup = (host: string) => Promise<string[]>;

const systemLookup: HostLookup = async (host) => (await dns.promises.lookup(host, { all: true })).map((a) => a.address);

/**
 * One exact address as a comparable string: an IPv4 address, an IPv4-mapped IPv6 address as its
 * IPv4 address, any other IPv6 address as its 16 bytes (so "2001:db8:0::1", "[2001:db8::1]" and
 * "2001:db8::1" are one address). Null for anything that is no IP literal.
 */
export function exactAddress(address: string): string | null {
  const a = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (parseIPv4(a)) return a;
  const v6 = parseIPv6(a);
  if (!v6) return null;
  if (v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) return `${v6[12]}.${v6[13]}.${v6[14]}.${v6[15]}`;
  return v6.toString('hex');
}

export interface ConnectionCapsOptions {
  /** Open connections at most, exempt ones not counted. */
  max: number;
  /** Open connections per address key (§7b.9) at most. */
  maxPerAddress: number;
  /** Hosts never limited nor counted: IP literals (bracketed IPv6 too) or names, resolved (§6.10). */
  exemptHosts: readonly string[];
  log: Logger;
  /** Name resolution; default `dns.lookup(host, {all: true})` (the system resolver, /etc/hosts included). */
  lookup?: HostLookup;
}

/**
 * SPEC.md §6.10 "Connection and body bounds": the open connections of a directory HTTP port, counted
 * from the accept. A connection from an exempt address (a configured authority's, §6.1; a relay's
 * own, §7b.7) is neither limited nor counted, so connections from other addresses can never keep the
 * authorities' vote and signature exchanges (§6.8) out; any other one is refused when its address
 * key (§7b.9) holds `maxPerAddress` already, or when `max` such connections are open. (Node's own
 * `server.maxConnections` refuses a connection before any address is looked at: one host holding the
 * cap would shut everyone out.)
 */
export class ConnectionCaps {
  private open = 0;
  /** Open connections per address key; an address holding none is absent. */
  private readonly perAddress = new KeyCounts();
  /** The exempt IP literals, as exactAddress gives them. */
  private readonly literals = new Set<string>();
  /** The exempt host names, each with the addresses its last good lookup gave. */
  private readonly named = new Map<string, Set<string>>();
  /** Names whose lookups are failing (warned once per streak). */
  private readonly failing = new Set<string>();
  private readonly lookup: HostLookup;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Settles once the first lookup of every exempt name has answered or failed. */
  ready: Promise<void> = Promise.resolve();

  constructor(private readonly o: ConnectionCapsOptions) {
    this.lookup = o.lookup ?? systemLookup;
    for (const h of o.exemptHosts) {
      const a = exactAddress(h);
      if (a !== null) this.literals.add(a);
      else this.named.set(h, new Set());
    }
  }

  /** Resolve the exempt names now and every EXEMPT_REFRESH_MS until close (an unref'd timer). */
  start(): Promise<void> {
    if (this.named.size === 0 || this.closed || this.timer) return this.ready;
    this.ready = this.resolveAll();
    this.timer = setInterval(() => { void this.resolveAll(); }, EXEMPT_REFRESH_MS);
    this.timer.unref();
    return this.ready;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Is `remote` (a socket's remoteAddress) an exempt address? */
  isExempt(remote: string | undefined): boolean {
    if (remote === undefined) return false;
    const a = exactAddress(remote);
    if (a === null) return false;
    if (this.literals.has(a)) return true;
    for (const set of this.named.values()) if (set.has(a)) return true;
    return false;
  }

  /**
   * Admit `socket` (just accepted): null, counting it until it closes, or why it is refused (the
   * caller destroys it).
   */
  admit(socket: net.Socket): ConnectionRefusal | null {
    const remote = socket.remoteAddress;
    if (this.isExempt(remote)) return null;
    const key = addressKey(remote) ?? remote ?? '?';
    if (this.perAddress.get(key) >= this.o.maxPerAddress) return 'per_address';
    if (this.open >= this.o.max) return 'total';
    this.open++;
    this.perAddress.add(key);
    socket.once('close', () => {
      this.open--;
      this.perAddress.remove(key);
    });
    return null;
  }

  /** SPEC.md §6.10: a failed lookup keeps the name's last good addresses; warned once per streak. */
  private async resolveAll(): Promise<void> {
    await Promise.all([...this.named.keys()].map(async (host) => {
      try {
        const found = await this.lookup(host);
        const set = new Set<string>();
        for (const f of found) { const a = exactAddress(f); if (a !== null) set.add(a); }
        if (set.size === 0) throw new Error('no address');
        if (this.closed) return;
        this.named.set(host, set);
        if (this.failing.delete(host)) this.o.log.info({ host, addresses: set.size }, 'exempt host name resolves again');
      } catch (e) {
        if (this.closed || this.failing.has(host)) return;
        this.failing.add(host);
        this.o.log.warn({ host, err: (e as Error).message, kept: this.named.get(host)?.size ?? 0 }, 'cannot resolve an exempt host name (a configured authority\'s); the addresses it last resolved to stay exempt from the connection caps');
      }
    }));
  }
}

/**
 * SPEC.md §6.10 "Connection and body bounds": put `caps` on `srv`: a connection over a cap is destroyed
 * as it arrives and reported to `refused`; the exempt names are resolved from now until the server closes.
 */
export function capConnections(srv: http.Server, caps: ConnectionCaps, refused: (reason: ConnectionRefusal) => void): void {
  serverCaps.set(srv, caps);
  void caps.start();
  srv.once('close', () => caps.close());
  srv.on('connection', (socket: net.Socket) => {
    const reason = caps.admit(socket);
    if (reason === null) return;
    refused(reason);
    socket.destroy();
  });
}

const serverCaps = new WeakMap<http.Server, ConnectionCaps>();

/** The caps capConnections put on `srv` (tests wait for their `ready`). */
export function connectionCapsOf(srv: http.Server): ConnectionCaps | undefined {
  return serverCaps.get(srv);
}
