// Relay resource limits (SPEC.md §7b.9), modelled on Tor's DoS subsystem (dos.c):
// a per-address token bucket for circuit creation that only applies once the address
// holds several concurrent connections, and a cap on concurrent connections per address.
// Known relays (in the consensus) are exempt, as in Tor; by address only until the handshake
// ends (a link that then proves no listed identity is counted). The queue/memory limits live in
// src/circuit/cell-queue.ts because every circuit endpoint shares them.

import type { LinkAdmission } from '../link/listener';
import { MAX_STREAMS_PER_CIRCUIT } from './constants';
import { addressKey, hostOf, plainAddress } from '../wire/address-key';
import { KeyCounts } from '../ops/key-counts';

export interface RelayLimits {
  /** Circuit-creation bucket refill rate per address, circuits per second. Tor: 3. */
  circuitRate: number;
  /** Bucket size. Tor: 90. */
  circuitBurst: number;
  /** The creation bucket applies only to addresses holding at least this many counted connections (from the TCP accept: handshaking and open). Tor: 3. */
  circuitMinConnections: number;
  /** Concurrent connections per address, counted from the TCP accept (handshaking and open). Tor: 50. */
  maxConnectionsPerAddress: number;
  /** Circuits one link may hold open at a time. */
  maxCircuitsPerLink: number;
  /** Cells one circuit may queue per direction for a congested link (> one circuit window). */
  maxQueuedCellsPerCircuit: number;
  /** All queued cells and the unread stream data of circuits ending here together, in bytes; over it, the circuits with the oldest queued data die. */
  maxQueuedBytes: number;
  /** Streams one circuit may have open at a time at this relay. */
  maxStreamsPerCircuit: number;
  /** Exit TCP connect timeout, ms. */
  exitConnectTimeoutMs: number;
  /** SPEC.md §7b.7: name resolutions (RESOLVE and BEGIN to a name) one circuit may have pending. */
  maxResolvesPerCircuit: number;
  /** SPEC.md §7b.7: name resolutions (RESOLVE and BEGIN to a name) this exit runs at once. */
  maxConcurrentResolves: number;
  /** SPEC.md §7b.9: TCP connections to targets this exit holds at once. */
  maxExitConnections: number;
  /** SPEC.md §7b.9: BEGIN_DIR streams spliced to this relay's dir port at once, all circuits together. */
  maxDirStreams: number;
  /**
   * SPEC.md §7b.9 (Tor's DoSStreamCreationRate): stream-creation bucket refill per circuit,
   * messages (BEGIN, BEGIN_DIR, BEGIN_STORAGE, RESOLVE) per second. 0 switches the bucket off.
   */
  streamCreationRate: number;
  /** SPEC.md §7b.9 (Tor's DoSStreamCreationBurst): the per-circuit stream-creation bucket's size. 0 switches it off. */
  streamCreationBurst: number;
}

export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  circuitRate: 3,
  circuitBurst: 90,
  circuitMinConnections: 3,
  maxConnectionsPerAddress: 50,
  maxCircuitsPerLink: 4096,
  maxQueuedCellsPerCircuit: 2000,
  maxQueuedBytes: 256 * 1024 * 1024,
  maxStreamsPerCircuit: MAX_STREAMS_PER_CIRCUIT,
  exitConnectTimeoutMs: 10_000,
  maxResolvesPerCircuit: 4,
  maxConcurrentResolves: 256,
  maxExitConnections: 4096,
  maxDirStreams: 2048,
  streamCreationRate: 100,
  streamCreationBurst: 300,
};

/** The addresses a consensus lists relays at, indexed once per consensus. */
const consensusAddresses = new WeakMap<object, Set<string>>();

/**
 * SPEC.md §7b.9: does this consensus list a relay at the address a socket reports (Tor's set of
 * the addresses known relays are listed at)? A connection from one is exempt until its handshake ends.
 */
export function listsAddress(c: { relays: readonly { address: string }[] } | null | undefined, address: string): boolean {
  if (!c) return false;
  let set = consensusAddresses.get(c);
  if (!set) { set = new Set(c.relays.map((r) => plainAddress(r.address))); consensusAddresses.set(c, set); }
  return set.has(plainAddress(address));
}

/**
 * SPEC.md §7b.9: open links one proven identity may hold with this node, inbound and outbound
 * together (Tor keeps one canonical channel per relay and a few extras). Fixed.
 */
export const MAX_LINKS_PER_IDENTITY = 8;

/**
 * SPEC.md §7b.9: the place of a connection from an address the consensus lists a relay at, held
 * only until its handshake ends (under the separate cap on such handshakes per address).
 */
export interface ExemptHandshake extends LinkAdmission {
  readonly exemptUntilHandshake: true;
}

export function isExemptHandshake(a: LinkAdmission | null): a is ExemptHandshake {
  return a !== null && (a as Partial<ExemptHandshake>).exemptUntilHandshake === true;
}

/**
 * SPEC.md §7b.9: the onionskin-queue source of a link (`remote`: "host:port"): a listed relay is
 * its own source (it carries many clients' extends), anyone else is queued under its address key.
 */
export function creationSource(remote: string, listedIdentity: Buffer | null): string {
  return listedIdentity ? `relay:${listedIdentity.toString('hex')}` : `addr:${dosKey(hostOf(remote))}`;
}

/**
 * SPEC.md §7b.9: the key the per-address limits count `address` (a socket's remote address, no
 * port) under: its address key (an IPv4 address, or an IPv6 /64), or, for one that does not
 * parse, the text itself.
 */
export function dosKey(address: string): string {
  return addressKey(address) ?? address;
}

/** Merge a partial config over the defaults, refusing nonsense with the key named. */
export function resolveRelayLimits(partial: Partial<RelayLimits> = {}): RelayLimits {
  const out = { ...DEFAULT_RELAY_LIMITS, ...partial };
  for (const [k, v] of Object.entries(out)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`limits.${k} must be a non-negative number`);
  }
  return out;
}

/** A token bucket (pure: time is passed in). */
export class TokenBucket {
  private tokens: number;
  private last: number;
  constructor(private readonly rate: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.last = now;
  }
  take(now: number, n = 1): boolean {
    const dt = Math.max(0, now - this.last) / 1000;
    this.last = now;
    this.tokens = Math.min(this.burst, this.tokens + dt * this.rate);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }
  /** True when the bucket is full again (the entry can be forgotten). */
  full(now: number): boolean {
    return this.tokens + (Math.max(0, now - this.last) / 1000) * this.rate >= this.burst;
  }
}

interface AddressState {
  connections: number;
  bucket?: TokenBucket;
}

/** How often addresses left with no link and a refilling bucket are looked at again, in ms. */
const SWEEP_MS = 10_000;

/**
 * Per-address accounting for links from clients and unknown peers, keyed by dosKey (an IPv4
 * address or an IPv6 /64: SPEC.md §7b.9 "Address key"). An address is forgotten once
 * it has no link and its bucket is full again: at once when its last link closes with a full
 * bucket, else by a sweep (at most every 10 s, when a link opens) once the bucket has refilled,
 * so the map never keeps addresses that are gone (SPEC.md §7b.9).
 */
export class DosGuard {
  private readonly byAddr = new Map<string, AddressState>();
  /** SPEC.md §7b.9: handshakes in progress from exempt addresses, by address key (a count apart). */
  private readonly exemptHandshakes = new KeyCounts();
  /** Addresses with no link whose bucket is still refilling. */
  private readonly idle = new Set<string>();
  private lastSweep = 0;
  /**
   * `now`: a monotonic clock in ms (SPEC.md §7b.9), default performance.now, so a step of the wall
   * clock neither empties nor refills the buckets, nor keeps or forgets addresses.
   */
  constructor(private readonly limits: RelayLimits, private readonly now: () => number = () => performance.now()) {}

  /** A TCP connection from `address` was accepted (before TLS); false = over the concurrent-connection cap (close it). */
  connectionOpened(address: string): boolean {
    const addr = dosKey(address);
    this.sweep();
    const s = this.state(addr);
    if (s.connections >= this.limits.maxConnectionsPerAddress) return false;
    s.connections++;
    this.idle.delete(addr);
    return true;
  }

  /**
   * SPEC.md §7b.9: a place for one connection from `addr` under the concurrent-connection cap, or
   * null when the address already holds the cap. release() gives it back, once however often called.
   */
  admit(address: string): LinkAdmission | null {
    const addr = dosKey(address);
    if (!this.connectionOpened(addr)) return null;
    let held = true;
    return { release: () => { if (held) { held = false; this.connectionClosed(addr); } } };
  }

  /**
   * SPEC.md §7b.9: a place for one connection from `address`, an address the consensus lists a
   * relay at, until its handshake ends: counted apart from the connection cap, under the same
   * bound per address key, so that clients at a relay's address cannot block its link bursts.
   * null when the address key already holds that many handshakes. Once the handshake ends, the
   * holder releases it and, unless the link proved a listed relay's identity, takes a place under
   * the connection cap (admit). release() gives it back, once however often called.
   */
  admitExemptHandshake(address: string): ExemptHandshake | null {
    const key = dosKey(address);
    if (this.exemptHandshakes.get(key) >= this.limits.maxConnectionsPerAddress) return null;
    this.exemptHandshakes.add(key);
    let held = true;
    return { exemptUntilHandshake: true, release: () => { if (held) { held = false; this.exemptHandshakes.remove(key); } } };
  }

  connectionClosed(address: string): void {
    const addr = dosKey(address);
    const s = this.byAddr.get(addr);
    if (!s) return;
    s.connections = Math.max(0, s.connections - 1);
    this.maybeForget(addr, s);
  }

  /** May `address` create one more circuit now? */
  allowCircuit(address: string): boolean {
    const s = this.byAddr.get(dosKey(address));
    if (!s || s.connections < this.limits.circuitMinConnections) return true;
    s.bucket ??= new TokenBucket(this.limits.circuitRate, this.limits.circuitBurst, this.now());
    return s.bucket.take(this.now());
  }

  /** Number of addresses tracked (for tests and metrics). */
  get size(): number {
    return this.byAddr.size;
  }

  private state(addr: string): AddressState {
    let s = this.byAddr.get(addr);
    if (!s) { s = { connections: 0 }; this.byAddr.set(addr, s); }
    return s;
  }

  private maybeForget(addr: string, s: AddressState): void {
    if (s.connections !== 0) return;
    if (!s.bucket || s.bucket.full(this.now())) {
      this.byAddr.delete(addr);
      this.idle.delete(addr);
    } else {
      this.idle.add(addr);
    }
  }

  /** Forget the idle addresses whose buckets have refilled (at most every SWEEP_MS). */
  private sweep(): void {
    const now = this.now();
    if (this.idle.size === 0 || now - this.lastSweep < SWEEP_MS) return;
    this.lastSweep = now;
    for (const addr of this.idle) {
      const s = this.byAddr.get(addr);
      if (!s || s.connections !== 0) { this.idle.delete(addr); continue; }
      if (!s.bucket || s.bucket.full(now)) { this.byAddr.delete(addr); this.idle.delete(addr); }
    }
  }
}
