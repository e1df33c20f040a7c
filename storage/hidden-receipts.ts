// SPEC.md §9.21.7, the hidden storage node's side of proof-of-bandwidth receipts. The node
// authenticates its links to its guards under a pseudonym key P, fresh for each hidden period N
// (§9.21.2; not derived from its identity, never stored), with a TLS certificate made with it, so
// the ordinary exchange of §8.3 runs on them: the node proposes as the initiator, the guard (which
// sees P, not the identity) countersigns and uploads as for any link. The node registers P with
// the authorities — `period | identity | P` signed by both keys, sealed to each authority's
// signing key — through a relay mirror over a circuit (§9.21.8), and uploads none of its receipts.
import { errorCode, isErrorCode } from '../src/errors';
import { ed25519Generate, type Ed25519KeyPair } from '../src/crypto/primitives';
import { generateTlsCredentials } from '../src/crypto/tls';
import { hsPeriodOf } from '../src/crypto/blind';
import { authoritySigningKeys } from '../src/dir/consensus';
import type { AuthorityInfo } from '../src/dir/authorities';
import type { VerifiedConsensus } from '../src/dir/types';
import type { LinkIdentity } from '../src/client/circuit-builder';
import type { Channel } from '../src/link/channel';
import type { Cell } from '../src/wire/cell';
import { ReceiptExchange } from '../src/bandwidth/exchange';
import { ReceiptMetrics } from '../src/bandwidth/receipt-metrics';
import { HS_PSEUDONYM_PATH, makePseudonymRegistration, sealPseudonymUpload } from '../src/hidden/pseudonym';
import { uploadOverCircuit, type ForwardedResult } from '../src/hidden/upload';
import type { MirrorCircuitOptions } from '../src/hidden/client';
import type { Logger } from '../src/ops/log';
import { prom, type Registry } from '../src/ops/metrics';
import type { ReceiptSettings } from '../src/bandwidth/node-bandwidth';

/** How often the node looks for a new period, and retries a registration some authority has not taken. */
export const PSEUDONYM_CHECK_MS = 30_000;

interface Pseudonym { period: number; id: LinkIdentity; accepted: Set<string> }

export interface HiddenReceiptsOptions {
  identity: Ed25519KeyPair;
  authorities: readonly AuthorityInfo[];
  consensus: () => VerifiedConsensus | null;
  periodSeconds: () => number | null;
  mirrorCircuits: () => MirrorCircuitOptions | null;
  /** Closes links under keys other than these (hex): CircuitBuilder.closeLinksExcept. */
  closeLinksExcept: (keep: ReadonlySet<string>) => void;
  settings: ReceiptSettings;
  registry: Registry;
  log: Logger;
  now?: () => number;
  checkMs?: number;
}

export class HiddenReceipts {
  readonly exchange: ReceiptExchange;
  private cur: Pseudonym | null = null;
  private prev: Pseudonym | null = null;
  private timer: NodeJS.Timeout | null = null;
  private registering: Promise<void> | null = null;
  private stopped = false;
  private readonly now: () => number;
  private readonly events: prom.Counter<'event'>;

  constructor(private readonly o: HiddenReceiptsOptions) {
    this.now = o.now ?? Date.now;
    this.events = new prom.Counter({
      name: 'bitcloud_storage_hidden_receipts_total', help: 'A hidden node\'s receipts under its pseudonym (SPEC.md §9.21.7): countersigned, disagreements by reason, registrations by result',
      labelNames: ['event'], registers: [o.registry],
    });
    // Its own metrics object: the node's NodeBandwidth keeps the registry's (it counts no link here).
    this.exchange = new ReceiptExchange({
      identity: o.identity, periodSeconds: o.periodSeconds, now: this.now, metrics: new ReceiptMetrics(), log: o.log,
      jitterSeconds: o.settings.jitterSeconds, answerTimeoutSeconds: o.settings.answerTimeoutSeconds,
      onReceipt: () => this.events.inc({ event: 'countersigned' }),
      onDisagreement: (d) => this.events.inc({ event: `disagreement_${d.reason}` }),
    });
  }

  /** The key and certificate new guard links authenticate under (CircuitBuilder.linkIdentity). */
  linkIdentity(): LinkIdentity | undefined { return this.cur?.id; }

  /** The current pseudonym (tests, status). */
  get pseudonym(): Buffer | null { return this.cur ? this.cur.id.key.publicKey : null; }

  /** CircuitBuilder.onLink: count the link and take its RECEIPT_* cells (SPEC.md §8.3). */
  onLink(ch: Channel, key: Ed25519KeyPair): void {
    if (!this.exchange.attach(ch, key)) return;
    ch.on('cell', (c: Cell) => { if (c.circId === 0) this.exchange.onLinkCell(ch, c); });
  }

  /** Make the first pseudonym (before any circuit is built) and start the exchange. */
  async start(): Promise<void> {
    await this.rotate();
    this.exchange.start();
    const tick = (): void => {
      if (this.stopped) return;
      void this.check().finally(() => { if (!this.stopped) this.timer = setTimeout(tick, this.o.checkMs ?? PSEUDONYM_CHECK_MS).unref(); });
    };
    this.timer = setTimeout(tick, this.o.checkMs ?? PSEUDONYM_CHECK_MS).unref();
  }

  /** Register now (after the hidden service is up: circuits and its relay descriptor at the authorities). */
  registerNow(): Promise<void> {
    this.registering ??= this.register().finally(() => { this.registering = null; });
    return this.registering;
  }

  /** SPEC.md §8.3 step 10 on the guard links, then stop. */
  async stop(channels: Channel[]): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.exchange.settleBeforeClose(this.o.settings.shutdownGraceMs, channels).catch(() => {});
    this.exchange.stop();
  }

  private async check(): Promise<void> {
    if (this.cur && this.cur.period !== hsPeriodOf(this.now())) {
      await this.rotate();
      // Links under the pseudonym before the previous one would carry receipts no authority takes.
      this.o.closeLinksExcept(new Set([this.cur, this.prev].filter((p): p is Pseudonym => p !== null).map((p) => p.id.key.publicKey.toString('hex'))));
    }
    await this.registerNow();
  }

  private async rotate(): Promise<void> {
    const period = hsPeriodOf(this.now());
    const next: Pseudonym = { period, id: { key: ed25519Generate(), tls: await generateTlsCredentials() }, accepted: new Set() };
    this.prev = this.cur;
    this.cur = next;
    this.o.log.info({ period }, 'new link pseudonym for this period');
  }

  /** Upload the registration of the current pseudonym until every authority took it (SPEC.md §9.21.7). */
  private async register(): Promise<void> {
    const p = this.cur;
    const c = this.o.consensus();
    const circuits = this.o.mirrorCircuits();
    if (!p || !c || !circuits) return;
    const keys = authoritySigningKeys(c, this.o.authorities, this.now());
    if (keys.size === 0 || [...keys.keys()].every((fp) => p.accepted.has(fp))) return;
    const reg = makePseudonymRegistration(this.o.identity, p.id.key, p.period);
    try {
      // Sealed to every authority each time: one that took it already answers 200 (unchanged).
      // SPEC.md §9.21.8: each 200 counts only with that authority's ack under the key sealed to;
      // others become HIDDEN_UPLOAD_UNCONFIRMED (counted as register_HIDDEN_UPLOAD_UNCONFIRMED) and are retried.
      const results = await uploadOverCircuit(circuits, HS_PSEUDONYM_PATH, sealPseudonymUpload(reg, [...keys.values()]), { signingKeys: () => keys, log: this.o.log });
      recordRegistration(results, new Set(keys.keys()), p.accepted, this.events);
      this.o.log.debug({ accepted: p.accepted.size, of: keys.size }, 'pseudonym registration sent');
    } catch (e) {
      if (this.stopped) return;
      this.events.inc({ event: `register_${errorCode(e)}` });
      this.o.log.warn({ code: errorCode(e) }, 'pseudonym registration failed; retrying');
    }
  }
}

/**
 * Count a mirror's forwarded list (SPEC.md §9.21.8) and note which authorities took the registration.
 * The list is the mirror's word: only authorities the registration was sealed to (`sealedTo`,
 * fingerprints of configured authorities) are taken as accepted, entries naming others are
 * ignored, and a code counts as its own series only when it is a known error code (else
 * `register_other`), so a mirror cannot grow the metric's series.
 */
export function recordRegistration(results: readonly ForwardedResult[], sealedTo: ReadonlySet<string>, accepted: Set<string>, events: prom.Counter<'event'>): void {
  for (const r of results) {
    if (!sealedTo.has(r.authority)) continue;
    if (r.status === 200) accepted.add(r.authority);
    events.inc({ event: r.status === 200 ? 'registered' : `register_${isErrorCode(r.code) ? r.code : 'other'}` });
  }
}
