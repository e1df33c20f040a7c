// SPEC.md §9.21.4–§9.21.5, the relay's part of hidden storage nodes: an introduction point
// (ESTABLISH_INTRO makes a circuit the introduction circuit of an auth key; INTRODUCE1 is relayed
// unread as INTRODUCE2 down that circuit) and a rendezvous point (ESTABLISH_RENDEZVOUS parks a
// client circuit under a cookie; RENDEZVOUS1 with that cookie joins the node's circuit to it).
// Plugged into the circuit switch as its `rendezvous` hook; knows circuits only through
// RendezvousCircuit.
import { err } from '../errors';
import { ed25519Verify } from '../crypto/primitives';
import { RelayCommand } from '../wire/relay-msg';
import { DestroyReason } from '../wire/messages';
import {
  IntroduceAckStatus, RendezvousStatus, decodeCookie, decodeEstablishIntro, decodeIntroduce, decodeRendezvous1,
  encodeStatus, establishIntroSignedBytes, DEFAULT_INTRO_DOS, type IntroDosParams,
} from '../wire/hidden';
import type { RendezvousCircuit, RendezvousHook } from './types';

export interface RendezvousLimits {
  /** Introduction circuits held at once. */
  maxIntroCircuits: number;
  /** Client circuits waiting under a cookie. */
  maxPendingCookies: number;
  /** How long a client circuit may wait under a cookie before it is destroyed (ms). */
  pendingCookieMs: number;
  /** How long a spent cookie is refused (ms). */
  spentCookieMs: number;
  /** Spent cookies remembered at once; past it the oldest is forgotten first (SPEC.md §9.21.5 step 1). */
  maxSpentCookies: number;
  /** ESTABLISH_INTRO timestamps accepted within this of the relay's clock (ms). */
  maxClockSkewMs: number;
}

export const DEFAULT_RENDEZVOUS_LIMITS: RendezvousLimits = {
  maxIntroCircuits: 1024, maxPendingCookies: 4096, pendingCookieMs: 120_000, spentCookieMs: 3_600_000, maxSpentCookies: 65_536, maxClockSkewMs: 600_000,
};

const HANDLED = new Set<number>([RelayCommand.ESTABLISH_INTRO, RelayCommand.INTRODUCE1, RelayCommand.ESTABLISH_RENDEZVOUS, RelayCommand.RENDEZVOUS1]);

export class RendezvousRelay implements RendezvousHook {
  private readonly intros = new Map<string, RendezvousCircuit>();
  private readonly introKeyOf = new Map<RendezvousCircuit, string>();
  /** SPEC.md §9.21.4: introduction circuits by the link they came in on, each set oldest first. */
  private readonly introsByLink = new Map<object, Set<RendezvousCircuit>>();
  /** SPEC.md §9.21.5 step 1: circuits waiting under a cookie by the link they came in on, each set oldest first. */
  private readonly waitingByLink = new Map<object, Set<RendezvousCircuit>>();
  /** Waiting circuits by cookie, with when each expires; the map keeps arrival order, oldest first. */
  private readonly pending = new Map<string, { circ: RendezvousCircuit; until: number }>();
  /** Destroys expired waiting circuits when no new arrival does; set only while one waits. */
  private expiry: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly cookieOf = new Map<RendezvousCircuit, string>();
  private readonly spent = new Map<string, number>();
  /** SPEC.md §9.21.5 step 4: circuits joined here (each may be joined once; a joined circuit has a role). */
  private readonly joined = new Set<RendezvousCircuit>();
  /** SPEC.md §9.21.5 step 2: client circuits that sent an INTRODUCE1 (one each, as Tor's already_received_introduce1). */
  private readonly introduced = new Set<RendezvousCircuit>();
  /** SPEC.md §9.21.4 DoS extension: each introduction circuit's INTRODUCE1 token bucket. */
  private readonly buckets = new Map<RendezvousCircuit, { tokens: number; at: number; dos: IntroDosParams }>();
  private readonly limits: RendezvousLimits;
  /** Counts by outcome (tests, metrics): established, introduced, joined, and refusals by code. */
  readonly counts = new Map<string, number>();

  constructor(
    private readonly identity: () => Buffer,
    o: {
      limits?: Partial<RendezvousLimits>;
      /** The wall clock (ms), for ESTABLISH_INTRO timestamps. Default Date.now. */
      now?: () => number;
      /**
       * A monotonic clock (ms) for the token buckets and the cookie lifetimes, so that a step of
       * the wall clock neither empties a bucket nor expires every waiting cookie at once (SPEC.md
       * §9.21.4, §9.21.5). Default: `now` when one is given (tests), else performance.now.
       */
      clock?: () => number;
      onError?: (code: string) => void;
      onRefused?: (kind: string) => void;
    } = {},
  ) {
    this.limits = { ...DEFAULT_RENDEZVOUS_LIMITS, ...o.limits };
    this.now = o.now ?? Date.now;
    this.clock = o.clock ?? o.now ?? (() => performance.now());
    this.onError = o.onError ?? (() => {});
    this.onRefused = o.onRefused ?? (() => {});
  }
  private readonly onRefused: (kind: string) => void;
  private readonly now: () => number;
  private readonly clock: () => number;
  private readonly onError: (code: string) => void;

  get introCircuits(): number { return this.intros.size; }
  get pendingCookies(): number { return this.pending.size; }
  get spentCookies(): number { return this.spent.size; }

  /** The relay stops: no timer is left behind (the switch destroys the circuits). */
  close(): void {
    this.closed = true;
    this.schedule();
  }

  handles(command: number): boolean { return HANDLED.has(command); }

  private count(k: string): void { this.counts.set(k, (this.counts.get(k) ?? 0) + 1); }

  onMessage(circ: RendezvousCircuit, command: number, data: Buffer): void {
    switch (command) {
      case RelayCommand.ESTABLISH_INTRO: return this.establishIntro(circ, data);
      case RelayCommand.INTRODUCE1: return this.introduce1(circ, data);
      case RelayCommand.ESTABLISH_RENDEZVOUS: return this.establishRendezvous(circ, data);
      case RelayCommand.RENDEZVOUS1: return this.rendezvous1(circ, data);
      default: throw err('RELAY_PROTOCOL', `command ${command} is not a rendezvous message`);
    }
  }

  /**
   * SPEC.md §9.21.4, §9.21.5: ESTABLISH_INTRO, INTRODUCE1 and ESTABLISH_RENDEZVOUS on a circuit
   * whose previous hop is no listed relay are refused (as Tor's "Disallow single hop client
   * circuit"): a client that skips its guard and middle harms its own anonymity and gets a cheap
   * way to load this relay. Checked first, before any signature is verified. The switch destroys
   * the circuit (reason PROTOCOL) on the thrown error.
   */
  private refuseOneHop(circ: RendezvousCircuit, command: string): void {
    if (!circ.oneHop) return;
    this.count('HIDDEN_ONE_HOP');
    this.onRefused('hidden_one_hop');
    throw err('HIDDEN_ONE_HOP', `${command} on a one-hop circuit`);
  }

  /** SPEC.md §9.21.4–§9.21.5: the circuit goes on (or an extension is in progress), or already has a role. */
  private busy(circ: RendezvousCircuit): boolean {
    return circ.extended || this.hasRole(circ);
  }

  /** SPEC.md §7b.3: an introduction, waiting or joined circuit (it may not be extended). */
  hasRole(circ: RendezvousCircuit): boolean {
    return this.introKeyOf.has(circ) || this.cookieOf.has(circ) || this.joined.has(circ);
  }

  /** SPEC.md §9.21.4. Any failure destroys the circuit (the switch does, on the thrown error). */
  private establishIntro(circ: RendezvousCircuit, data: Buffer): void {
    this.refuseOneHop(circ, 'ESTABLISH_INTRO');
    const bad = (why: string): never => { this.count('HIDDEN_ESTABLISH_INVALID'); throw err('HIDDEN_ESTABLISH_INVALID', why); };
    let m;
    try { m = decodeEstablishIntro(data); } catch (e) { return bad((e as Error).message); }
    if (this.busy(circ)) bad('circuit does not end here or already has a role');
    if (Math.abs(m.timestamp - this.now()) > this.limits.maxClockSkewMs) bad('timestamp too far from this relay\'s clock');
    if (!ed25519Verify(m.signature, establishIntroSignedBytes(this.identity(), m.authKey, m.timestamp, m.dos), m.authKey)) bad('signature does not verify');
    const key = m.authKey.toString('hex');
    const old = this.intros.get(key);
    if (!old && this.intros.size >= this.limits.maxIntroCircuits) this.makeRoom(this.introsByLink, circ, 'intro_evicted', 'too many introduction circuits');
    if (old) { this.forget(old); old.destroy(DestroyReason.FINISHED); }
    this.intros.set(key, circ);
    this.introKeyOf.set(circ, key);
    RendezvousRelay.addByLink(this.introsByLink, circ);
    const dos = m.dos ?? DEFAULT_INTRO_DOS;
    this.buckets.set(circ, { tokens: dos.burst, at: this.clock(), dos });
    this.count('established');
    circ.sendRelay(RelayCommand.INTRO_ESTABLISHED, 0, Buffer.alloc(0));
  }

  /**
   * SPEC.md §9.21.4, §9.21.5 step 1: all the slots of one kind (introduction circuits, or
   * circuits waiting under a cookie) held. They are shared among previous hops: when the link
   * holding the most holds at least two more than `circ`'s link, its newest one is destroyed to
   * make room (RESOURCELIMIT, counted as `kind`); else `circ` is refused (HIDDEN_RELAY_LIMIT).
   * So whoever fills the slots through a few links cannot lock out a circuit that comes by
   * another: it loses slots to it until the links hold about as many each.
   */
  private makeRoom(byLink: Map<object, Set<RendezvousCircuit>>, circ: RendezvousCircuit, kind: 'intro_evicted' | 'cookie_evicted', full: string): void {
    const have = byLink.get(circ.prev)?.size ?? 0;
    let most: Set<RendezvousCircuit> | undefined;
    for (const set of byLink.values()) if (!most || set.size > most.size) most = set;
    if (!most || most.size < have + 2) {
      this.count(kind === 'intro_evicted' ? 'intro_limit' : 'cookie_limit');
      throw err('HIDDEN_RELAY_LIMIT', full);
    }
    let victim: RendezvousCircuit | undefined;
    for (const c of most) victim = c;
    this.forget(victim!);
    victim!.destroy(DestroyReason.RESOURCELIMIT, 'HIDDEN_RELAY_LIMIT');
    this.count(kind);
    this.onRefused(kind);
  }

  private static addByLink(byLink: Map<object, Set<RendezvousCircuit>>, circ: RendezvousCircuit): void {
    let mine = byLink.get(circ.prev);
    if (!mine) byLink.set(circ.prev, mine = new Set());
    mine.add(circ);
  }

  private static deleteByLink(byLink: Map<object, Set<RendezvousCircuit>>, circ: RendezvousCircuit): void {
    const mine = byLink.get(circ.prev);
    if (mine?.delete(circ) && mine.size === 0) byLink.delete(circ.prev);
  }

  /** SPEC.md §9.21.5 step 2: relay unread as INTRODUCE2, answer INTRODUCE_ACK. */
  private introduce1(circ: RendezvousCircuit, data: Buffer): void {
    this.refuseOneHop(circ, 'INTRODUCE1');
    if (this.busy(circ)) throw err('RELAY_PROTOCOL', 'INTRODUCE1 on a circuit with a role');
    // SPEC.md §9.21.5 step 2: one INTRODUCE1 per circuit, whatever became of it. Else one circuit
    // (built once) could send introductions at cell speed, to every service here, and empty their
    // buckets for the cost of a cell each rather than of a circuit each.
    if (this.introduced.has(circ)) {
      this.count('introduce1_repeated');
      throw err('RELAY_PROTOCOL', 'a second INTRODUCE1 on one circuit');
    }
    this.introduced.add(circ);
    let authKey: Buffer;
    try { authKey = decodeIntroduce(data).authKey; } catch {
      this.count('ack_malformed');
      circ.sendRelay(RelayCommand.INTRODUCE_ACK, 0, encodeStatus(IntroduceAckStatus.MALFORMED));
      return;
    }
    const target = this.intros.get(authKey.toString('hex'));
    if (!target || target.isClosed) {
      this.count('ack_unknown');
      circ.sendRelay(RelayCommand.INTRODUCE_ACK, 0, encodeStatus(IntroduceAckStatus.UNKNOWN_KEY));
      return;
    }
    if (!this.takeToken(target)) {
      // SPEC.md §9.21.4: over the service's rate, refused here; the service never sees it.
      this.count('ack_rate_limited');
      this.onRefused('intro_rate_limited');
      circ.sendRelay(RelayCommand.INTRODUCE_ACK, 0, encodeStatus(IntroduceAckStatus.RATE_LIMITED));
      return;
    }
    target.sendRelay(RelayCommand.INTRODUCE2, 0, data);
    this.count('introduced');
    circ.sendRelay(RelayCommand.INTRODUCE_ACK, 0, encodeStatus(IntroduceAckStatus.SENT));
  }

  private pruneSpent(): void {
    const now = this.clock();
    for (const [k, until] of this.spent) { if (until > now) break; this.spent.delete(k); }
  }

  /**
   * SPEC.md §9.21.5 step 1: a circuit that has waited under its cookie for pendingCookieMs is
   * destroyed (TIMEOUT). Oldest first, so the sweep stops at the first one still in time.
   */
  private expirePending(): void {
    const now = this.clock();
    for (const [key, p] of this.pending) {
      if (p.until > now) break;
      this.pending.delete(key);
      this.cookieOf.delete(p.circ);
      RendezvousRelay.deleteByLink(this.waitingByLink, p.circ);
      this.count('expired');
      p.circ.destroy(DestroyReason.TIMEOUT);
    }
    this.schedule();
  }

  /** Keep one unref'd timer for the oldest waiting circuit while any waits; none otherwise. */
  private schedule(): void {
    const oldest = this.closed ? undefined : this.pending.values().next().value;
    if (!oldest) {
      if (this.expiry) { clearTimeout(this.expiry); this.expiry = null; }
      return;
    }
    if (this.expiry) return;
    this.expiry = setTimeout(() => { this.expiry = null; this.expirePending(); }, Math.max(0, oldest.until - this.clock()));
    this.expiry.unref();
  }

  /** SPEC.md §9.21.5 step 1. */
  private establishRendezvous(circ: RendezvousCircuit, data: Buffer): void {
    this.refuseOneHop(circ, 'ESTABLISH_RENDEZVOUS');
    const cookie = decodeCookie(data);
    if (this.busy(circ)) throw err('RELAY_PROTOCOL', 'ESTABLISH_RENDEZVOUS on a circuit with a role');
    this.expirePending();
    this.pruneSpent();
    const key = cookie.toString('hex');
    if (this.pending.has(key) || this.spent.has(key)) {
      this.count('HIDDEN_COOKIE_REUSED');
      this.onError('HIDDEN_COOKIE_REUSED');
      circ.sendRelay(RelayCommand.RENDEZVOUS_ESTABLISHED, 0, encodeStatus(RendezvousStatus.COOKIE_REUSED));
      circ.destroy(DestroyReason.PROTOCOL, 'HIDDEN_COOKIE_REUSED');
      return;
    }
    if (this.pending.size >= this.limits.maxPendingCookies) this.makeRoom(this.waitingByLink, circ, 'cookie_evicted', 'too many rendezvous cookies pending');
    this.pending.set(key, { circ, until: this.clock() + this.limits.pendingCookieMs });
    this.cookieOf.set(circ, key);
    RendezvousRelay.addByLink(this.waitingByLink, circ);
    this.schedule();
    circ.sendRelay(RelayCommand.RENDEZVOUS_ESTABLISHED, 0, encodeStatus(RendezvousStatus.OK));
  }

  /** SPEC.md §9.21.5 step 4. */
  private rendezvous1(circ: RendezvousCircuit, data: Buffer): void {
    const m = decodeRendezvous1(data);
    if (this.busy(circ)) throw err('RELAY_PROTOCOL', 'RENDEZVOUS1 on a circuit with a role');
    const key = m.cookie.toString('hex');
    const client = this.pending.get(key)?.circ;
    // Both sides are checked before either is joined: a waiting circuit that has since gone on
    // cannot be joined, and is no circuit waiting with the cookie.
    if (!client || client.isClosed || client.extended) {
      this.count('HIDDEN_COOKIE_UNKNOWN');
      throw err('HIDDEN_COOKIE_UNKNOWN', 'RENDEZVOUS1 with a cookie no circuit waits with');
    }
    this.pending.delete(key);
    this.cookieOf.delete(client);
    RendezvousRelay.deleteByLink(this.waitingByLink, client);
    this.schedule();
    this.spent.set(key, this.clock() + this.limits.spentCookieMs);
    // SPEC.md §9.21.5 step 1: bounded in count as well as in time. Joins come as fast as circuits
    // can be made here (two per join), so an hour of them was a map without bound; the oldest
    // (the first to expire) goes first, which costs nothing but a refusal of its reuse.
    if (this.spent.size > this.limits.maxSpentCookies) this.spent.delete(this.spent.keys().next().value!);
    client.sendRelay(RelayCommand.RENDEZVOUS2, 0, m.reply);
    client.join(circ);
    circ.join(client);
    this.joined.add(client);
    this.joined.add(circ);
    this.count('joined');
  }

  /** One token from the introduction circuit's bucket (refilled at rate_per_sec up to burst). */
  private takeToken(target: RendezvousCircuit): boolean {
    const b = this.buckets.get(target);
    if (!b) return true;
    const now = this.clock();
    b.tokens = Math.min(b.dos.burst, b.tokens + ((now - b.at) / 1000) * b.dos.ratePerSec);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  forget(circ: RendezvousCircuit): void {
    this.buckets.delete(circ);
    this.introduced.delete(circ);
    this.joined.delete(circ);
    const ik = this.introKeyOf.get(circ);
    if (ik !== undefined) {
      this.introKeyOf.delete(circ);
      if (this.intros.get(ik) === circ) this.intros.delete(ik);
      RendezvousRelay.deleteByLink(this.introsByLink, circ);
    }
    const ck = this.cookieOf.get(circ);
    if (ck !== undefined) {
      this.cookieOf.delete(circ);
      RendezvousRelay.deleteByLink(this.waitingByLink, circ);
      if (this.pending.get(ck)?.circ === circ) { this.pending.delete(ck); this.schedule(); }
    }
  }
}
