// SPEC.md §9.21.4–§9.21.5, the hidden storage node's side: introduction circuits to a few relays
// (ESTABLISH_INTRO under a fresh auth key each), the descriptor that names them (signed under the
// blinded key, published for periods N and N+1), and for each INTRODUCE2 that passes the checks
// (auth key, seal, replay cache, listed rendezvous point) a circuit to the client's rendezvous
// point, RENDEZVOUS1, and the virtual hop's relay end, whose BEGIN_STORAGE streams go to the node.
// The node's links to its guards are authenticated under the period's pseudonym key, never its
// identity (§9.21.4, §9.21.7).
import { err, errorCode, isBitcloudError } from '../errors';
import { ed25519Generate, ed25519Sign, randomBytes, secureRandom, shuffle, x25519Generate, type Ed25519KeyPair, type X25519KeyPair } from '../crypto/primitives';
import { hsPeriodOf } from '../crypto/blind';
import { ntorServerRespond } from '../crypto/ntor';
import { relayCryptoHandshake } from '../crypto/relay-crypto';
import { RelayCommand } from '../wire/relay-msg';
import { DEFAULT_INTRO_DOS, decodeIntroduce, encodeEstablishIntro, encodeRendezvous1, establishIntroSignedBytes, type IntroDosParams } from '../wire/hidden';
import type { ConsensusRelay } from '../dir/types';
import type { IncomingStream } from '../circuit/types';
import type { CircuitBuilder } from '../client/circuit-builder';
import type { ClientCircuit } from '../client/client-circuit';
import { isRunningValid, canBeHop } from '../client/weighting';
import { silentLogger, type Logger } from '../ops/log';
import { makeHsDescriptor } from './descriptor';
import { CookieReplayCache, IntroReplayCache, openIntroduce } from './introduce';

export const DEFAULT_INTRO_POINTS = 3;
const WAIT_MS = 30_000;
/** After a fill that could not establish every introduction point: the next try, doubling up to RETRY_MAX_MS. */
const RETRY_MIN_MS = 5_000;
const RETRY_MAX_MS = 5 * 60_000;
/** SPEC.md §9.21.5 step 3: rendezvous circuits held at once, built or being built; an introduction past them is dropped. */
export const MAX_RENDEZVOUS_CIRCUITS = 256;
/** SPEC.md §9.21.5 step 6: a rendezvous circuit with no open stream this long (since it joined or its last stream closed) is closed. */
export const RENDEZVOUS_IDLE_MS = 60_000;

/**
 * SPEC.md §9.21.4 "Rotation": each introduction point draws, when established, a lifetime and an
 * introduction budget uniformly from these bounds (Tor's: 18–24 h, 16 384–32 767 introductions);
 * past either it is due, and retired once its replacement is established (at twice its budget,
 * even without one). A retired point is closed once a descriptor without it is published, or
 * `retireMs` after it retired, whichever comes first.
 */
export interface IntroRotation {
  lifetimeMs: readonly [number, number];
  introductions: readonly [number, number];
  retireMs: number;
}
export const DEFAULT_INTRO_ROTATION: IntroRotation = {
  lifetimeMs: [18 * 3_600_000, 24 * 3_600_000],
  introductions: [16_384, 32_767],
  retireMs: 5 * 60_000,
};

interface Intro {
  relay: ConsensusRelay;
  circ: ClientCircuit;
  auth: Ed25519KeyPair;
  enc: X25519KeyPair;
  replay: IntroReplayCache;
  /** Valid introductions (opened, not replays) it passed on; at `budget` it is due, at twice `budget` retired. */
  introductions: number;
  budget: number;
  /** Past its lifetime or budget: still listed and serving until a replacement is established. */
  due: boolean;
  /** Makes it due at the end of its lifetime; then, once retired, closes it at the latest after retireMs. */
  timer: NodeJS.Timeout | null;
}

/** A whole number uniform in [lo, hi] (CSPRNG: the introduction point must not predict it). */
function uniformInt([lo, hi]: readonly [number, number]): number {
  return lo + Math.floor(secureRandom() * (hi - lo + 1));
}

/** A rendezvous circuit's open streams, and the timer that closes it while it has none. */
interface Rendezvous {
  streams: number;
  idle: NodeJS.Timeout | null;
}

export interface HiddenServiceOptions {
  identity: Ed25519KeyPair;
  /** The service ntor key (SPEC.md §9.21.3), kept in dataDir/hs-ntor.key. */
  ntorKey: X25519KeyPair;
  relays: () => readonly ConsensusRelay[] | null;
  /** Builds the node's circuits (anonymous links to its guards). */
  builder: CircuitBuilder;
  /** A BEGIN_STORAGE stream a client opened on a rendezvous circuit. */
  onStream: (inc: IncomingStream) => void;
  /** Upload one descriptor to every authority. */
  publish: (descriptor: Buffer) => Promise<void>;
  introPoints?: number;
  /** SPEC.md §9.21.4: the node's declared family (fingerprints); never introduction points. */
  family?: readonly string[];
  /** SPEC.md §9.21.4: the INTRODUCE1 rate each introduction point enforces for this node (default 25/s, burst 200). */
  introDos?: IntroDosParams;
  /** SPEC.md §9.21.5 step 3: entries of one auth key's replay cache before its introduction point is replaced (default 65 536). */
  introReplayMax?: number;
  /** SPEC.md §9.21.4 "Rotation": lifetime and introduction bounds of an introduction point (default Tor's; tests shorten them). */
  introRotation?: Partial<IntroRotation>;
  /** Republish this often (ms); default 30 minutes. */
  republishMs?: number;
  /** Counts refusals and events by code (metrics). */
  onEvent?: (code: string) => void;
  log?: Logger;
  now?: () => number;
  /** A monotonic clock (ms) for the rendezvous-cookie replay cache (SPEC.md §9.21.5 step 3); default performance.now. */
  clock?: () => number;
}

export class HiddenService {
  private readonly intros: Intro[] = [];
  /** Rotated out: no longer in a descriptor being published, still open for clients holding an older one. */
  private readonly retiring: Intro[] = [];
  private readonly rotation: IntroRotation;
  private readonly rendezvous = new Map<ClientCircuit, Rendezvous>();
  /** SPEC.md §9.21.5 step 3: rendezvous cookies served in the last 5 minutes, across introduction points. */
  private readonly cookies: CookieReplayCache;
  /** Rendezvous circuits being built (they count toward MAX_RENDEZVOUS_CIRCUITS). */
  private meeting = 0;
  private readonly log: Logger;
  private readonly now: () => number;
  private closed = false;
  private timer: NodeJS.Timeout | null = null;
  private filling: Promise<void> | null = null;
  /** An introduction point changed while a fill ran (perhaps past its loop): run it again after. */
  private fillAgain = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryMs = RETRY_MIN_MS;
  private started = false;
  private published = false;
  /** Counts by event code (tests read them; metrics mirror them). */
  readonly counts = new Map<string, number>();

  constructor(private readonly o: HiddenServiceOptions) {
    this.log = o.log ?? silentLogger;
    this.now = o.now ?? Date.now;
    this.cookies = new CookieReplayCache(o.clock ?? (() => performance.now()));
    const r = o.introRotation ?? {};
    const d = DEFAULT_INTRO_ROTATION;
    this.rotation = { lifetimeMs: r.lifetimeMs ?? d.lifetimeMs, introductions: r.introductions ?? d.introductions, retireMs: r.retireMs ?? d.retireMs };
  }

  get introductionPoints(): readonly ConsensusRelay[] { return this.intros.map((i) => i.relay); }
  get rendezvousCircuits(): number { return this.rendezvous.size; }
  get hasPublished(): boolean { return this.published; }

  private event(code: string): void {
    this.counts.set(code, (this.counts.get(code) ?? 0) + 1);
    this.o.onEvent?.(code);
  }

  /** Establish the introduction points and publish; then keep both up. Resolves after the first publication. */
  async start(): Promise<void> {
    await this.fill();
    this.started = true;
    if (this.serving < this.want) this.retryLater();
    const every = this.o.republishMs ?? 30 * 60_000;
    const tick = () => {
      if (this.closed) return;
      void this.fill().catch(() => {}).finally(() => { if (!this.closed) this.timer = setTimeout(tick, every).unref(); });
    };
    this.timer = setTimeout(tick, every).unref();
  }

  private get want(): number { return this.o.introPoints ?? DEFAULT_INTRO_POINTS; }
  /** Introduction points in the set and not due for rotation. */
  private get serving(): number { return this.intros.filter((i) => !i.due).length; }

  /**
   * Replace dead introduction points, then publish (always: fresh revision, current periods).
   * SPEC.md §9.21.1, §9.21.4: a call while a fill runs (an introduction point lost or replaced,
   * perhaps after that fill's loop or during its publication) makes it run once more after.
   */
  private fill(): Promise<void> {
    if (this.filling) { this.fillAgain = true; return this.filling; }
    this.filling = (async () => {
      try {
        for (;;) {
          this.fillAgain = false;
          try {
            await this.fillOnce();
          } catch (e) {
            if (!this.fillAgain || this.closed) throw e;
            continue;
          }
          if (!this.fillAgain || this.closed) return;
        }
      } finally {
        this.filling = null;
      }
    })();
    return this.filling;
  }

  private async fillOnce(): Promise<void> {
    const want = this.want;
    // SPEC.md §9.21.4: 3 tries per point missing when the round starts (not per point wanted); a
    // point due for rotation counts as missing, though it serves until its replacement is up.
    const tries = 3 * Math.max(0, want - this.serving);
    for (let attempt = 0; this.serving < want && attempt < tries && !this.closed; attempt++) {
      try { await this.establishOne(); } catch (e) { this.event(errorCode(e)); this.log.debug({ code: errorCode(e) }, 'introduction point failed'); }
    }
    this.stopIfClosed();
    // SPEC.md §9.21.4 "Rotation", make before break: a due point is retired only once a
    // replacement took its place; the others stay listed until a later round replaces them.
    for (const old of this.intros.filter((i) => i.due)) {
      if (this.intros.length <= want) break;
      this.retire(old);
    }
    if (this.serving < want) this.retryLater();
    else this.retryMs = RETRY_MIN_MS;
    if (this.intros.length === 0) throw err('HIDDEN_NO_INTRO', 'no introduction point could be established');
    await this.publishNow();
  }

  /**
   * SPEC.md §9.21.3, §9.21.4: after every wait of a round (a build, an INTRO_ESTABLISHED, an
   * upload) a node closed meanwhile neither establishes nor publishes anything more.
   */
  private stopIfClosed(): void {
    if (this.closed) throw err('HIDDEN_NO_INTRO', 'the hidden node was closed: no introduction point, nothing published');
  }

  /** Too few introduction points after a fill: try again in 5 s, doubling up to 5 minutes (once started). */
  private retryLater(): void {
    if (!this.started || this.closed || this.retryTimer) return;
    const ms = this.retryMs;
    this.retryMs = Math.min(ms * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => { this.retryTimer = null; void this.fill().catch(() => {}); }, ms).unref();
  }

  /** SPEC.md §9.21.4: Running, Valid, relay role, distinct, not the node itself nor in its family. */
  private candidates(): ConsensusRelay[] {
    // A replacement is a fresh relay: not one in use, nor one being retired.
    const used = new Set([...this.intros, ...this.retiring].map((i) => i.relay.fingerprint));
    used.add(this.o.identity.publicKey.toString('hex'));
    for (const f of this.o.family ?? []) used.add(f);
    const relays = this.o.relays() ?? [];
    return shuffle(relays.filter((r) => isRunningValid(r) && canBeHop(r) && r.orPort > 0 && !used.has(r.fingerprint)));
  }

  private async establishOne(): Promise<void> {
    const relay = this.candidates()[0];
    if (!relay) throw err('HIDDEN_NO_INTRO', 'no relay left to use as an introduction point');
    const { circ } = await this.o.builder.build({ storageNode: relay });
    // The node closed while this circuit was being built: close() never saw it.
    if (this.closed) { circ.destroy(); return; }
    const auth = ed25519Generate();
    const timestamp = this.now();
    const dos = this.o.introDos ?? DEFAULT_INTRO_DOS;
    const signature = ed25519Sign(establishIntroSignedBytes(relay.identity, auth.publicKey, timestamp, dos), auth.secretKey);
    const intro: Intro = {
      relay, circ, auth, enc: x25519Generate(), replay: new IntroReplayCache(this.o.introReplayMax),
      introductions: 0, budget: uniformInt(this.rotation.introductions), due: false, timer: null,
    };
    let onEarlyClose: (e: Error) => void = () => {};
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { circ.destroy(); reject(err('HIDDEN_NO_INTRO', 'no INTRO_ESTABLISHED in time')); }, WAIT_MS);
      onEarlyClose = (e) => { clearTimeout(timer); reject(e); };
      circ.once('close', onEarlyClose);
      circ.onControl = (cmd, data) => {
        if (cmd === RelayCommand.INTRO_ESTABLISHED) { clearTimeout(timer); resolve(); return; }
        if (cmd === RelayCommand.INTRODUCE2) { this.onIntroduce2(intro, data); return; }
        throw err('RELAY_PROTOCOL', `unexpected relay command ${cmd} on an introduction circuit`);
      };
      circ.sendControl(RelayCommand.ESTABLISH_INTRO, encodeEstablishIntro({ authKey: auth.publicKey, timestamp, signature, dos }));
    });
    circ.off('close', onEarlyClose);
    // The node closed while this point was being established: close() never saw this circuit.
    if (this.closed) { circ.destroy(); return; }
    // SPEC.md §9.21.4: a circuit that closed as INTRO_ESTABLISHED came (a DESTROY read with it)
    // would never emit the close that replaces it, and would be described while dead; it is a
    // failed try, like one that closed before.
    if (!circ.isOpen) throw err('HIDDEN_NO_INTRO', 'the introduction circuit closed as it was established');
    this.intros.push(intro);
    // SPEC.md §9.21.4 "Rotation": a monotonic timer, so a step of the wall clock rotates nothing.
    intro.timer = setTimeout(() => { intro.timer = null; this.rotate(intro); }, uniformInt(this.rotation.lifetimeMs)).unref();
    circ.once('close', () => {
      if (intro.timer) { clearTimeout(intro.timer); intro.timer = null; }
      const r = this.retiring.indexOf(intro);
      if (r >= 0) this.retiring.splice(r, 1);
      const i = this.intros.indexOf(intro);
      if (i < 0 || this.closed) return; // closed by us (replaced, retired, or the service stopped)
      this.intros.splice(i, 1);
      this.event('intro_lost');
      void this.fill().catch(() => {});
    });
    this.event('intro_established');
  }

  /** Sign and publish descriptors for the current and the next period. */
  async publishNow(): Promise<void> {
    const listed = new Set(this.intros);
    const n = hsPeriodOf(this.now());
    const inner = {
      ntorKey: this.o.ntorKey.publicKey,
      intros: this.intros.map((i) => ({
        linkSpecifiers: [{ type: 'ipv4' as const, addr: i.relay.address, port: i.relay.orPort }, { type: 'ed25519' as const, id: i.relay.identity }],
        authKey: i.auth.publicKey,
        encKey: i.enc.publicKey,
      })),
    };
    const revision = this.now();
    for (const period of [n, n + 1]) {
      this.stopIfClosed();
      await this.o.publish(makeHsDescriptor({ identity: this.o.identity, period, revision, inner }));
    }
    this.stopIfClosed();
    this.published = true;
    this.event('published');
    // SPEC.md §9.21.4 "Rotation": a retired point is closed once a descriptor without it is out.
    for (const r of [...this.retiring]) if (!listed.has(r)) r.circ.destroy();
  }

  /** SPEC.md §9.21.5 step 3. A refused introduction is dropped (and counted by its code). */
  private onIntroduce2(intro: Intro, data: Buffer): void {
    try {
      const m = decodeIntroduce(data);
      if (!m.authKey.equals(intro.auth.publicKey)) throw err('HIDDEN_INTRO_FORGED', 'INTRODUCE2 under another auth key');
      const p = openIntroduce(m, intro.enc);
      intro.replay.check(data);
      intro.introductions++;
      // Tor's order: the cookie is checked (and remembered) right after the body, before the rendezvous point.
      this.cookies.check(p.cookie);
      const rpId = p.rpLinkSpecifiers.find((s) => s.type === 'ed25519');
      const rp = (this.o.relays() ?? []).find((r) => rpId && rpId.type === 'ed25519' && r.identity.equals(rpId.id));
      if (!rp || !isRunningValid(rp) || !canBeHop(rp)) throw err('HIDDEN_RP_UNKNOWN', 'the rendezvous point is not a running relay of the consensus');
      if (this.rendezvous.size + this.meeting >= MAX_RENDEZVOUS_CIRCUITS) {
        throw err('HIDDEN_RENDEZVOUS_LIMIT', `${MAX_RENDEZVOUS_CIRCUITS} rendezvous circuits held or being built`, { held: this.rendezvous.size, building: this.meeting });
      }
      const hs = relayCryptoHandshake('tor1');
      const { reply, keys } = ntorServerRespond({ onionskin: p.onionskin, id: this.o.identity.publicKey, onionKeys: [this.o.ntorKey], protoid: hs.protoid, keyLength: hs.keyLength });
      this.event('introduced');
      void this.meet(rp, p.cookie, reply, keys);
    } catch (e) {
      const code = isBitcloudError(e) ? e.code : 'HIDDEN_INTRO_FORGED';
      this.event(code);
      this.log.debug({ code }, 'introduction refused');
    } finally {
      if (intro.replay.full) this.replace(intro);
      else if (intro.introductions >= intro.budget) this.rotate(intro);
    }
  }

  /**
   * SPEC.md §9.21.5 step 3: an auth key whose replay cache is full would refuse every further
   * INTRODUCE2, so its introduction point is replaced at once (new circuit, new keys, a new
   * descriptor) and its circuit closed, rather than left until the circuit dies.
   */
  private replace(intro: Intro): void {
    const i = this.intros.indexOf(intro);
    if (i < 0 || this.closed) return;
    this.intros.splice(i, 1);
    intro.circ.destroy();
    this.event('intro_replaced');
    void this.fill().catch(() => {});
  }

  /**
   * SPEC.md §9.21.4 "Rotation": past its lifetime or its introduction budget, an introduction
   * point is due: it stays in the set, listed and serving, while a fill establishes its
   * replacement on a fresh relay, and is retired (fillOnce) only once that replacement is up; a
   * failed build leaves it, and the retry tries again. Past twice its budget it is retired at
   * once, replacement or not. Further introductions on a due point start no fill of their own.
   */
  private rotate(intro: Intro): void {
    if (this.closed || !this.intros.includes(intro)) return;
    if (intro.introductions >= 2 * intro.budget) {
      this.retire(intro);
      void this.fill().catch(() => {});
      return;
    }
    if (intro.due) return;
    intro.due = true;
    void this.fill().catch(() => {});
  }

  /**
   * SPEC.md §9.21.4 "Rotation": the point leaves the set; its circuit keeps serving clients
   * holding an older descriptor until one without it is published (publishNow closes it), at
   * most retireMs.
   */
  private retire(intro: Intro): void {
    const i = this.intros.indexOf(intro);
    if (i < 0 || this.closed) return;
    this.intros.splice(i, 1);
    this.retiring.push(intro);
    if (intro.timer) clearTimeout(intro.timer);
    intro.timer = setTimeout(() => { intro.timer = null; intro.circ.destroy(); }, this.rotation.retireMs).unref();
    this.event('intro_rotated');
  }

  /**
   * SPEC.md §9.21.5 step 3: a rendezvous circuit is held (counted toward MAX_RENDEZVOUS_CIRCUITS)
   * only while it is open. One that closed as its build ended (a DESTROY read with its last
   * EXTENDED2, which the rendezvous point the client chose can send at will) would never emit the
   * close that frees its place, so it is dropped here, before RENDEZVOUS1; so is one on any
   * failure below, rather than left open and uncounted. The introduction holds one place in
   * `meeting` from here until its circuit is held or dropped, across a retried build too.
   */
  private async meet(rp: ConsensusRelay, cookie: Buffer, reply: Buffer, keys: Buffer): Promise<void> {
    let circ: ClientCircuit | null = null;
    this.meeting++;
    try {
      circ = await this.buildRendezvous(rp);
      if (!circ) { keys.fill(0); return; }
      const c = circ;
      const held: Rendezvous = { streams: 0, idle: null };
      this.rendezvous.set(c, held);
      c.once('close', () => {
        if (held.idle) clearTimeout(held.idle);
        this.rendezvous.delete(c);
      });
      c.sendControl(RelayCommand.RENDEZVOUS1, encodeRendezvous1({ cookie, reply }));
      c.attachServiceEnd(keys, (inc) => { this.streamOpened(c, held, inc); this.o.onStream(inc); });
      this.idleLater(c, held);
      this.event('rendezvous');
    } catch (e) {
      keys.fill(0);
      circ?.destroy();
      this.event(errorCode(e));
      this.log.debug({ code: errorCode(e) }, 'rendezvous circuit failed');
    } finally {
      this.meeting--;
    }
  }

  /**
   * SPEC.md §9.21.5 step 3: the builder's circuit to the rendezvous point, open when its build
   * ends; null when the node closed meanwhile (the circuit destroyed). A build that fails, or a
   * circuit closed as its build ended, is built once more on a freshly chosen path to the same
   * rendezvous point (counted as `rendezvous_retry`; the middle hops of a path that closed are
   * left out), as Tor's service relaunches a failed rendezvous circuit once: the cookie is in the
   * replay cache already, so the client could not try it again through another introduction
   * point. The second failure is thrown.
   */
  private async buildRendezvous(rp: ConsensusRelay): Promise<ClientCircuit | null> {
    const avoid = new Set<string>();
    for (let attempt = 1; ; attempt++) {
      try {
        const built: { circ: ClientCircuit; path?: readonly { fingerprint: string }[] } = await this.o.builder.build({ storageNode: rp }, avoid);
        if (this.closed) { built.circ.destroy(); return null; }
        if (!built.circ.isOpen) {
          for (const hop of built.path?.slice(1, -1) ?? []) avoid.add(hop.fingerprint);
          throw err('CIRCUIT_DESTROYED', 'the rendezvous circuit closed as its build ended');
        }
        return built.circ;
      } catch (e) {
        if (attempt >= 2 || this.closed) throw e;
        this.event('rendezvous_retry');
        this.log.debug({ code: errorCode(e) }, 'rendezvous circuit failed; building it once more on a fresh path');
      }
    }
  }

  /** SPEC.md §9.21.5 step 6: a stream keeps its rendezvous circuit open; the last one to close starts the idle wait. */
  private streamOpened(circ: ClientCircuit, held: Rendezvous, inc: IncomingStream): void {
    held.streams++;
    if (held.idle) { clearTimeout(held.idle); held.idle = null; }
    inc.stream.once('close', () => {
      held.streams--;
      if (held.streams === 0) this.idleLater(circ, held);
    });
  }

  /** SPEC.md §9.21.5 step 6: close a rendezvous circuit that carries no stream for RENDEZVOUS_IDLE_MS, as Tor closes unused circuits. */
  private idleLater(circ: ClientCircuit, held: Rendezvous): void {
    if (held.idle) clearTimeout(held.idle);
    held.idle = null;
    if (this.closed || !this.rendezvous.has(circ)) return;
    held.idle = setTimeout(() => {
      held.idle = null;
      if (held.streams > 0) return;
      this.event('rendezvous_idle');
      circ.destroy();
    }, RENDEZVOUS_IDLE_MS).unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    for (const i of [...this.intros.splice(0), ...this.retiring.splice(0)]) {
      if (i.timer) clearTimeout(i.timer);
      i.circ.destroy();
    }
    for (const [c, held] of [...this.rendezvous]) {
      if (held.idle) clearTimeout(held.idle);
      c.destroy();
    }
    this.rendezvous.clear();
  }
}

/** A cookie for ESTABLISH_RENDEZVOUS (SPEC.md §9.21.5). */
export function newCookie(): Buffer { return randomBytes(20); }
