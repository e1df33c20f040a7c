// Building client circuits (SPEC.md §7b.11): links to guards (one per guard, reused), paths
// from path.ts, CREATE2 then EXTEND2 ×2, a timeout learned by BuildTimeoutEstimator, and
// retries on other relays when a hop fails. Knows nothing of streams or SOCKS.
import type { RelayCryptoAlgorithm } from '../crypto/hop-crypto';
import { LAT_TRACE, latTrace } from '../ops/lat-trace';
import { err, errorCode, isBitcloudError, kindOf, type BitcloudError } from '../errors';
import { connectLink, type LinkTuning } from '../link';
import { Channel } from '../link/channel';
import type { Ed25519KeyPair } from '../crypto/primitives';
import type { TlsCredentials } from '../crypto/tls';
import type { LinkMetrics } from '../link/metrics';
import type { ConsensusRelay } from '../dir/types';
import { silentLogger, type Logger } from '../ops/log';
import { choosePath, type PathTarget } from './path';
import type { Guard, GuardSet } from './guards';
import { BuildTimeoutEstimator } from './build-timeout';
import { ClientCircuit, ClientLink, clientViolationCounter, type ClientViolationCounter, type HopTarget } from './client-circuit';
import type { Registry } from '../ops/metrics';

/** A relay the client can route through: what path selection reads and what a hop needs. */
export type ClientRelay = ConsensusRelay;

export interface CircuitBuilderOptions {
  /** The relays of the current verified consensus (null until one is known). */
  relays: () => readonly ClientRelay[] | null;
  /** The persistent guard set, or a fixed list; default [] (guards picked by weight each time). */
  guards?: GuardSet | readonly Guard[];
  buildTimeout?: BuildTimeoutEstimator;
  /** Tor's EnforceDistinctSubnets; the local network turns it off. Default true. */
  enforceDistinctSubnets?: boolean;
  /** The relay crypto every circuit negotiates (SPEC.md §5.6.1). Default tor1. */
  relayCrypto?: RelayCryptoAlgorithm;
  /** Paths tried per build before giving up. Default 3. */
  maxAttempts?: number;
  /** Link handshake timeout. Default 10 s. */
  linkTimeoutMs?: number;
  linkTuning?: LinkTuning;
  linkMetrics?: LinkMetrics;
  log?: Logger;
  /** Called with the duration of each successful build (metrics). */
  onBuilt?: (ms: number) => void;
  /** Called with the code of each failed attempt (metrics). */
  onBuildFailed?: (code: string) => void;
  /**
   * Where the protocol violations that close this builder's circuits are counted
   * (`bitcloud_client_circuit_violations_total`, SPEC.md §7b.10); none when absent.
   */
  registry?: Registry;
  /**
   * SPEC.md §9.21.7: the key a hidden storage node authenticates its links to its guards under (its
   * current pseudonym, with a TLS certificate of its own), or undefined for anonymous links (the
   * default, a client's). Links are kept per guard and key, so a new key opens new links.
   */
  linkIdentity?: () => LinkIdentity | undefined;
  /** Called in the tick an authenticated link (linkIdentity) is handed over, with the key it proved. */
  onLink?: (ch: Channel, identity: Ed25519KeyPair) => void;
  /**
   * SPEC.md §7b.11: take guard links from this builder instead of opening links of our own (the
   * proxy's directory circuits, or the storage client's circuits over its directory links), so a
   * guard sees one link from the client; that builder owns them and closes them when it closes,
   * and `closeIdleLinks` here closes its idle ones.
   */
  linksFrom?: CircuitBuilder;
}

/**
 * SPEC.md §1.8, §7.2: a guard link that closes with an error counts a failure of the guard
 * (silence, I/O, a protocol violation, TLS), unless the error is our own (kind internal).
 */
const isGuardLinkFailure = (e: BitcloudError | undefined): boolean => e !== undefined && kindOf(e.code) !== 'internal';

/** SPEC.md §7.1, §7.3: the hops of a full path, the only builds the build timeout learns from. */
const FULL_PATH_LENGTH = 3;

/** The errors build() threw because its last attempt to build a circuit failed (not a path choice). */
const BUILD_FAILURES = new WeakSet<BitcloudError>();

/**
 * SPEC.md §7b.11: whether build() failed because a circuit it built failed (a link, a handshake,
 * a timeout, a DESTROY), as opposed to finding no path or the builder being closed.
 */
export function isBuildFailure(e: unknown): boolean {
  return isBitcloudError(e) && BUILD_FAILURES.has(e);
}
/** What an authenticated initiator presents (SPEC.md §1.3). */
export interface LinkIdentity { key: Ed25519KeyPair; tls: TlsCredentials }

export class CircuitBuilder {
  readonly buildTimeout: BuildTimeoutEstimator;
  private readonly links = new Map<string, Promise<ClientLink>>();
  private readonly log: Logger;
  private closed = false;
  private readonly violations: ClientViolationCounter | null;

  constructor(private readonly opts: CircuitBuilderOptions) {
    this.buildTimeout = opts.buildTimeout ?? new BuildTimeoutEstimator();
    this.log = opts.log ?? silentLogger;
    this.violations = opts.registry ? clientViolationCounter(opts.registry) : null;
  }

  /** Relays of the current consensus; CIRCUIT_NO_CONSENSUS if none is known yet. */
  relays(): readonly ClientRelay[] {
    const r = this.opts.relays();
    if (!r || r.length === 0) throw err('CIRCUIT_NO_CONSENSUS', 'no verified consensus yet: cannot choose a path');
    return r;
  }

  /**
   * Build a 3-hop circuit for `target` (a TCP target: the exit is chosen by its policy; a
   * storage node: it is the last hop). Tries up to maxAttempts paths, leaving out relays that
   * failed. Rejects with the last failure (CIRCUIT_BUILD_TIMEOUT, CIRCUIT_DESTROYED, LINK_*,
   * PATH_*).
   */
  async build(target?: PathTarget, exclude: ReadonlySet<string> = new Set(), firstPath?: ClientRelay[]): Promise<{ circ: ClientCircuit; path: ClientRelay[] }> {
    const failed = new Set(exclude);
    // SPEC.md §7.1 step 3, §7.3: the middles of attempts that failed at the fixed last hop, avoided
    // as the middle of the next ones (else the retry may take the same middle to the same node).
    const failedMiddles = new Set<string>();
    const attempts = this.opts.maxAttempts ?? 3;
    let last: BitcloudError | null = null;
    for (let i = 0; i < attempts; i++) {
      if (this.closed) throw err('CIRCUIT_MANAGER_CLOSED', 'the circuit manager is closed');
      const path = i === 0 && firstPath ? firstPath : this.choose(target, failed, failedMiddles);
      try {
        const circ = await this.buildPath(path);
        return { circ, path };
      } catch (e) {
        const be = isBitcloudError(e) ? e : err('CIRCUIT_BUILD_FAILED', String((e as Error)?.message ?? e), undefined, e);
        last = be;
        this.opts.onBuildFailed?.(be.code);
        const hop = (be.detail?.hop as number | undefined) ?? 0;
        // Leave out the hop that failed, unless it is a storage target the caller asked for: then
        // the extension to it failed at the middle, which the next attempt avoids (SPEC.md §7.3).
        const isFixedLast = target && 'storageNode' in target && hop === path.length - 1;
        if (isFixedLast) for (const r of path.slice(1, -1)) failedMiddles.add(r.fingerprint);
        else failed.add(path[Math.min(hop, path.length - 1)].fingerprint);
        this.log.debug({ code: be.code, attempt: i + 1 }, 'circuit build failed');
      }
    }
    if (last) BUILD_FAILURES.add(last);
    throw last ?? err('CIRCUIT_BUILD_FAILED', 'no attempt made');
  }

  /**
   * A path [guard, middle, last] for `target` (path.ts rules), taking none of `avoidMiddles` as the
   * middle while another fits; throws PATH_* or CIRCUIT_NO_CONSENSUS.
   */
  choose(target: PathTarget | undefined, exclude: ReadonlySet<string>, avoidMiddles?: ReadonlySet<string>): ClientRelay[] {
    return choosePath(this.relays(), {
      target, guards: this.opts.guards ?? [], exclude, avoidMiddles, enforceDistinctSubnets: this.opts.enforceDistinctSubnets,
    }) as unknown as ClientRelay[];
  }

  /** Build through exactly these hops (first = guard). The error's detail.hop names the hop that failed. */
  async buildPath(path: readonly HopTarget[]): Promise<ClientCircuit> {
    const started = performance.now();
    if (LAT_TRACE) latTrace('build.start');
    const timeoutMs = this.buildTimeout.timeoutMs();
    // SPEC.md §7.3: only full three-hop builds are observations (Tor's CBT counts circuits of the
    // default length only); a one-hop directory circuit to a guard takes a round trip or two and
    // would pull the learned timeout under what a three-hop build needs.
    const countsForTimeout = path.length === FULL_PATH_LENGTH;
    const guardSet = this.guardSet();
    let hop = 0;
    let circ: ClientCircuit | null = null;
    let guardLink: ClientLink | null = null;
    let timer: NodeJS.Timeout | undefined;
    // SPEC.md §7.3: a build that timed out is abandoned. The work below stops at its next step:
    // a guard link that opens late carries no circuit, and a circuit allocated meanwhile is destroyed.
    let abandoned: BitcloudError | null = null;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        abandoned = err('CIRCUIT_BUILD_TIMEOUT', `circuit not built within ${timeoutMs} ms`, { hop, timeoutMs });
        reject(abandoned);
      }, timeoutMs);
    });
    const stopIfAbandoned = (): void => {
      if (!abandoned) return;
      (circ as ClientCircuit | null)?.destroy(abandoned);
      throw abandoned;
    };
    try {
      const work = (async () => {
        const link = guardLink = await this.linkTo(path[0]);
        stopIfAbandoned();
        if (LAT_TRACE) latTrace('build.link');
        circ = ClientCircuit.allocate(link, this.opts.relayCrypto, this.violations);
        await circ.create(path[0]);
        stopIfAbandoned();
        if (LAT_TRACE) latTrace('build.created');
        for (hop = 1; hop < path.length; hop++) { await circ.extend(path[hop]); stopIfAbandoned(); if (LAT_TRACE) latTrace('build.extended', hop); }
        return circ;
      })();
      work.catch(() => {});
      const c = await Promise.race([work, timedOut]);
      const ms = performance.now() - started;
      if (LAT_TRACE) latTrace('build.done', ms.toFixed(3));
      if (countsForTimeout) this.buildTimeout.record(ms);
      this.opts.onBuilt?.(ms);
      guardSet?.markSuccess(path[0].fingerprint);
      return c;
    } catch (e) {
      const be = isBitcloudError(e) ? e : err('CIRCUIT_BUILD_FAILED', String((e as Error)?.message ?? e), undefined, e);
      if (be.code === 'CIRCUIT_BUILD_TIMEOUT' && countsForTimeout) this.buildTimeout.recordTimeout(timeoutMs);
      // SPEC.md §7.2: any failure of the first hop counts against the guard (no link, no answer in
      // time, CREATE2 refused with DESTROY or answered with a bad CREATED2). A link that could not
      // be opened is counted once by linkTo, however many builds waited on it, and one that closed
      // under the build where it closes; closing the client counts nothing.
      const link = guardLink as ClientLink | null;
      if (hop === 0 && guardSet && !this.closed && link && !link.closed) guardSet.markFailure(path[0].fingerprint);
      (circ as ClientCircuit | null)?.destroy(be);
      throw err(be.code, be.message, { ...be.detail, hop }, be.cause ?? be);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * One anonymous link per guard, reused by every circuit through it (SPEC.md §7b.11); with
   * `linkIdentity`, one per guard and key, authenticated under the key (SPEC.md §9.21.7).
   */
  linkTo(guard: HopTarget): Promise<ClientLink> {
    if (this.opts.linksFrom) return this.opts.linksFrom.linkTo(guard);
    const id = this.opts.linkIdentity?.();
    const key = id ? `${guard.fingerprint}/${id.key.publicKey.toString('hex')}` : guard.fingerprint;
    const have = this.links.get(key);
    if (have) return have;
    const p = connectLink({
      host: guard.address, port: guard.orPort, expectedIdentity: guard.identity,
      ...(id ? { identity: id.key, tls: id.tls } : {}),
      timeoutMs: this.opts.linkTimeoutMs ?? 10_000, metrics: this.opts.linkMetrics, log: this.log, ...this.opts.linkTuning,
    }).then((ch) => {
      if (id) this.opts.onLink?.(ch, id.key);
      const link = new ClientLink(ch);
      ch.once('close', (e?: BitcloudError) => {
        if (this.links.get(key) === p) this.links.delete(key);
        // SPEC.md §1.8, §7.2: a guard link that closed with an error is a guard failure; a clean
        // close is not (a relay not in the guard set is ignored by markFailure).
        if (isGuardLinkFailure(e)) this.guardSet()?.markFailure(guard.fingerprint);
      });
      if (this.closed) ch.close('client closing');
      return link;
    }, (e: unknown) => {
      this.links.delete(key);
      this.log.debug({ code: errorCode(e) }, 'link to guard failed');
      // SPEC.md §7.2: a link that cannot be opened is one guard failure, counted here once for the
      // attempt, not once for each build that waited on it.
      if (!this.closed) this.guardSet()?.markFailure(guard.fingerprint);
      throw e;
    });
    this.links.set(key, p);
    return p;
  }

  private guardSet(): GuardSet | null {
    const g = this.opts.guards;
    return g && !Array.isArray(g) ? g as GuardSet : null;
  }

  get linkCount(): number { return this.links.size; }

  /** Close links to guards that carried no circuit for `idleMs` (as Tor closes idle channels). */
  closeIdleLinks(idleMs: number, now = Date.now()): void {
    // Links taken from another builder are that builder's: its idle ones close here too, since the
    // circuits that idle them are ours (SPEC.md §7b.11).
    if (this.opts.linksFrom) { this.opts.linksFrom.closeIdleLinks(idleMs, now); return; }
    for (const [key, p] of this.links) {
      p.then((l) => {
        if (l.idleSince !== null && now - l.idleSince >= idleMs && this.links.get(key) === p) {
          this.links.delete(key);
          l.ch.close('idle');
        }
      }, () => {});
    }
  }

  /**
   * SPEC.md §9.21.7: close the links authenticated under a key not in `keep` (hex public keys):
   * a retired pseudonym's receipts would no longer be accepted. Their circuits end; a hidden node
   * replaces its introduction circuits.
   */
  closeLinksExcept(keep: ReadonlySet<string>): void {
    for (const [key, p] of this.links) {
      const slash = key.indexOf('/');
      if (slash < 0 || keep.has(key.slice(slash + 1))) continue;
      this.links.delete(key);
      p.then((l) => l.ch.close('pseudonym retired'), () => {});
    }
  }

  /** The open authenticated links (for settling receipts before a shutdown). */
  async channels(): Promise<Channel[]> {
    const out: Channel[] = [];
    for (const p of this.links.values()) { try { const l = await p; if (l.ch instanceof Channel) out.push(l.ch); } catch { /* failed link */ } }
    return out;
  }

  /** Close every link (their circuits end with CIRCUIT_DESTROYED). */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.links.values()];
    this.links.clear();
    await Promise.all(all.map((p) => p.then((l) => l.ch.close('client closing'), () => {})));
  }
}
