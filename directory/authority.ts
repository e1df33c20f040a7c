// The directory authority (SPEC.md §6.5–6.8): owns the voting schedule and its state.
// Each period of P seconds, aligned to the Unix epoch:
//   t = 0      sign own vote (relays reachable now), serve it; retest every relay
//   t = P/4    fetch the other authorities' votes (retried until P/2)
//   t = P/2    compute the consensus from the votes held (pure, deterministic), sign it
//   t > P/2    fetch the others' detached signatures; publish once more than half of ALL
//              configured authorities signed the same body; keep adding signatures after.
import fs from 'node:fs';
import path from 'node:path';
import { err, errorCode, isBitcloudError } from '../src/errors';
import { isPrivateAddress, parseIp } from '../src/dir/exit-policy';
import { isoTime, type Logger } from '../src/ops/log';
import { LatestFileWriter } from '../src/ops/fsutil';
import { fingerprint } from '../src/crypto/keys';
import { decodeDetachedSignatures, encodeDetachedSignatures, LIMITS, type SignatureMsg } from '../src/wire/docs';
import { makeSignature, openEnvelope, DocType, sealEnvelope } from '../src/wire/envelope';
import type { AuthorityInfo } from '../src/dir/authorities';
import { countSignatures, verifyConsensus } from '../src/dir/consensus';
import { indexCertificates } from '../src/dir/certificate';
import { DESCRIPTOR_MAX_AGE_TO_PUBLISH_MS, verifyDescriptor, type VerifiedDescriptor } from '../src/dir/descriptor';
import { IdentityProofVerifier, proofQueueGroup, type PowParams, type PowVerifyContext } from '../src/dir/identity-pow';
import { httpRequest, PATHS } from '../src/dir/fetch';
import { ServedDocument, servedConsensus } from '../src/dir/http-serve';
import type { VerifiedConsensus } from '../src/dir/types';
import type { AuthorityConfig } from './config';
import type { BandwidthSource } from './bandwidth';
import type { StorageAudits } from './storage-audits';
import { BandwidthMeasurement } from './measurement';
import { PseudonymStore } from './pseudonyms';
import { computeConsensus, type ComputedConsensus } from './compute';
import { assignFlags, KNOWN_FLAGS, limitPerAddress } from './flags';
import type { AuthorityMetrics } from './metrics';
import { linkReachabilityTest, ReachabilityQueue, type ReachabilityResult, type ReachabilityTester } from './reachability';
import { HS_STORE_MAX_BYTES, HsDescriptorStore } from '../src/hidden/store';

/** SPEC.md §9.21.1: a hidden node counts as reachable while its current descriptor was received this recently. */
const HIDDEN_FRESH_MS = 2 * 3_600_000;
import { blindPublicKey, hsPeriodOf } from '../src/crypto/blind';
import { DescriptorStore, type IntakeResult } from './store';
import { StatusHistory } from './status-history';
import { SigningRound, peerFetchTimeoutMs } from './signing-round';
import { buildVoteWithin, verifyVote, type Signer, type VoteBounds, type VerifiedVote } from './vote';
import { CapacityProbes, type Prober } from './probes';
import { SignedPeriods } from './signed-periods';

export const CONSENSUS_FILE = 'consensus';

export interface AuthorityDeps {
  config: AuthorityConfig;
  signer: Signer;
  log: Logger;
  metrics: AuthorityMetrics;
  bandwidth?: BandwidthSource;
  reachabilityTest?: ReachabilityTester;
  /** SPEC.md §8.12: the capacity probe (tests substitute their own); default runProbe. */
  prober?: Prober;
  now?: () => number;
  /** SPEC.md §9.20: storage contracts and the audits of every epoch (absent: no storage audits). */
  storage?: StorageAudits;
  /** The status page's history (default: loaded from the data dir). */
  history?: StatusHistory;
  /** SPEC.md §6.5 "Bounds": the own vote's entry and byte bounds (default VOTE_BOUNDS; tests pass smaller ones). */
  voteBounds?: VoteBounds;
  /** The reward ledger (directory/rewards.ts, SPEC.md §8.7): told of each newly published consensus, ticked with the schedule. */
  rewards?: {
    onConsensus(info: VerifiedConsensus): void;
    tick(): void;
    /** For the status page: chain height (−1 when empty), tip epoch, the block being signed. */
    readonly height?: number;
    readonly tipEpoch?: number;
    readonly pendingBlock?: { height: number; epoch: number; signers: string[]; published: boolean } | null;
    /** Transfers waiting for a block (SPEC.md §8.11.3). */
    readonly pendingTransfers?: number;
  };
}

/** A detached signature on the consensus with the certificate of the key that made it. */
interface ConsensusSignature { sig: SignatureMsg; cert: Buffer }

interface Pending {
  periodStart: number;
  computed: ComputedConsensus;
  round: SigningRound<ConsensusSignature>;
}

export function periodStartOf(now: number, periodSeconds: number): number {
  const p = periodSeconds * 1000;
  return Math.floor(now / p) * p;
}

export class Authority {
  readonly store: DescriptorStore;
  /** What the status page plots (SPEC.md §6.10). */
  readonly history: StatusHistory;
  private readonly cfg: AuthorityConfig;
  private readonly self: string;
  private readonly reach: ReachabilityQueue;
  /** Injected by tests; otherwise the measurement's source (SPEC.md §6.6 with §8.5 proofs). */
  private readonly bandwidth: BandwidthSource | undefined;
  /** SPEC.md §8.4–8.5: receipt intake (POST /bitcloud/receipts) and measurement at vote time. */
  readonly measurement: BandwidthMeasurement;
  /** SPEC.md §9.21.7: hidden nodes' pseudonym registrations (POST /bitcloud/hs/pseudonym). */
  readonly pseudonyms: PseudonymStore;
  /** SPEC.md §8.12: the capacity probes this authority runs (idle unless configured). */
  readonly probes: CapacityProbes;
  private readonly now: () => number;
  private readonly log: Logger;
  private readonly m: AuthorityMetrics;
  private timer: NodeJS.Timeout | null = null;
  private ownVote: VerifiedVote | null = null;
  private votes = new Map<string, VerifiedVote>();
  /** The period whose votes `votes` holds (own or not: a period this authority sits out has none of its own). */
  private votesFor = -1;
  /**
   * SPEC.md §6.5: authorities whose signed vote for `votesFor` was refused (VOTE_MALFORMED): that is
   * their vote for the period, not fetched again (each try would verify up to 100 000 descriptors).
   */
  private refusedVotes = new Set<string>();
  private pending: Pending | null = null;
  private fetchingVotes = false;
  private votesFetchedFor = 0;
  private ready = false;
  private storeDirty = false;
  /** The published consensus and its served form. */
  private current: { info: VerifiedConsensus; served: ServedDocument } | null = null;
  private currentVoteDoc: ServedDocument | null = null;
  /** SPEC.md §6.4.1: consensus valid_after → digest, the anchors identity proofs may name. */
  private readonly anchors = new Map<number, Buffer>();
  // SPEC.md §6.4.1 "Authority intake": one evaluation at a time; 32 places waiting, 16 of them for
  // identities the newest consensus lists, the others shared by address group.
  private readonly powVerifier = new IdentityProofVerifier({ concurrency: 1, maxQueued: 32, listedQueued: 16 });
  /** Fingerprints the newest consensus lists (SPEC.md §6.4.1 listed room), for the consensus `of`. */
  private listed: { of: VerifiedConsensus; fingerprints: Set<string> } | null = null;
  /** SPEC.md §6.5, §6.8: the vote and consensus digests signed per period, kept on disk. */
  private readonly signedPeriods: SignedPeriods;
  /** SPEC.md §6.8: the published consensus on disk, served again after a restart. */
  private readonly consensusWriter: LatestFileWriter;
  /** A period whose vote (or consensus) this authority will not sign again: logged and counted once. */
  private voteSkippedFor = -1;
  private consensusRefusedFor = -1;

  constructor(private readonly deps: AuthorityDeps) {
    this.cfg = deps.config;
    this.self = deps.config.identity;
    this.log = deps.log;
    this.m = deps.metrics;
    this.now = deps.now ?? Date.now;
    this.bandwidth = deps.bandwidth;
    this.store = new DescriptorStore(deps.config.dataDir);
    this.signedPeriods = new SignedPeriods(deps.config.dataDir);
    this.consensusWriter = new LatestFileWriter(path.join(deps.config.dataDir, CONSENSUS_FILE), 0o644, (e) => this.log.warn({ err: e.message }, 'saving consensus failed'));
    this.history = deps.history ?? new StatusHistory(deps.config.dataDir, deps.log).load();
    this.pseudonyms = new PseudonymStore({
      dataDir: deps.config.dataDir, signingKey: () => this.signer.signingKey, now: this.now, log: deps.log,
      // A hidden node is known here by its relay descriptor with the hidden role (it may not be listed yet).
      isHiddenNode: (fp) => this.store.get(fp)?.descriptor.roles.includes('hidden') === true,
      isListedRelay: (key) => this.store.get(key) !== undefined || this.current?.info.relays.some((r) => r.fingerprint === key) === true,
    });
    this.measurement = new BandwidthMeasurement({
      pseudonymIdentity: (p, period) => this.pseudonyms.identityOf(p, period),
      dataDir: deps.config.dataDir, periodSeconds: deps.config.periodSeconds, authorities: deps.config.authorities,
      skewMs: this.skewMs, bounds: deps.config.bandwidthBounds ?? 'default', rule: deps.config.bandwidthRule ?? 'pair', unmeasuredCapKBps: deps.config.unmeasuredCapKBps,
      declared: (fp) => this.store.get(fp)?.descriptor.declaredBandwidth, log: deps.log, now: this.now,
      probed: deps.config.probe.enabled ? (fp) => this.probes.figure(fp) : undefined,
    });
    this.probes = new CapacityProbes({
      config: deps.config.probe, periodSeconds: deps.config.periodSeconds, self: deps.config.identity,
      authorities: deps.config.authorities.map((a) => a.fingerprint), log: deps.log, now: this.now, prober: deps.prober, dataDir: deps.config.dataDir,
      relays: () => this.store.all().filter((r) => r.reachable && r.descriptor.roles.includes('relay') && !r.descriptor.roles.includes('hidden') && this.addressAllowed(r.descriptor)).map((r) => r.descriptor),
      onResult: (result, seconds) => { this.m.probes.labels(result).inc(); if (seconds !== null) this.m.probeSeconds.labels(result).observe(seconds); },
    });
    const linkTest = deps.reachabilityTest ?? linkReachabilityTest;
    // SPEC.md §9.21.1: a hidden node cannot be reached by address; it counts as reachable while a
    // valid hidden descriptor for its current blinded key is held here.
    const test: ReachabilityTester = async (d, t) => (d.roles.includes('hidden') ? this.hiddenReachable(d) : linkTest(d, t));
    this.reach = new ReachabilityQueue(test, (d, r) => {
      this.store.recordTest(d, r.ok, this.now(), r.ok ? undefined : r.code);
      this.m.reachability.labels(r.ok ? 'ok' : r.code).inc();
      // Relay addresses are public (they are in the consensus); still, keep per-relay lines at debug.
      this.log.debug({ relay: d.fingerprint, ok: r.ok, code: r.ok ? undefined : r.code }, 'reachability test');
    }, deps.config.reachability);
  }

  get signer(): Signer { return this.deps.signer; }

  /** SPEC.md §9.21.3: hidden descriptors uploaded here. */
  // (HIDDEN_FRESH_MS: SPEC.md §9.21.1, a hidden node is reachable while its descriptor is this recent.)
  readonly hsDescriptors = new HsDescriptorStore(() => this.now(), HS_STORE_MAX_BYTES, (n) => this.m.hsDescriptorsEvicted.inc(n));

  private hiddenReachable(d: VerifiedDescriptor): ReachabilityResult {
    const now = this.now();
    const at = this.hsDescriptors.receivedAt(blindPublicKey(d.identity, hsPeriodOf(now)).toString('hex'));
    const fresh = at !== null && now - at <= HIDDEN_FRESH_MS;
    return fresh ? { ok: true } : { ok: false, code: 'HIDDEN_DESC_NOT_FOUND' };
  }
  /** The reward ledger's state for the status page (null when this authority keeps no chain). */
  get rewardsStatus(): { height: number; tipEpoch: number; pending: { height: number; epoch: number; signers: string[]; published: boolean } | null; pendingTransfers: number } | null {
    const r = this.deps.rewards;
    return r && r.height !== undefined ? { height: r.height, tipEpoch: r.tipEpoch ?? -1, pending: r.pendingBlock ?? null, pendingTransfers: r.pendingTransfers ?? 0 } : null;
  }
  get config(): AuthorityConfig { return this.cfg; }
  get skewMs(): number { return this.cfg.clockSkewSeconds * 1000; }
  get published(): { info: VerifiedConsensus; served: ServedDocument } | null { return this.current; }
  get currentVote(): ServedDocument | null { return this.currentVoteDoc; }
  get currentVotePeriod(): number | null { return this.ownVote?.periodStart ?? null; }
  get votesHeld(): string[] { return [...this.votes.keys()].sort(); }

  /** Loads the state and starts the schedule. Throws IO_STATE_UNREADABLE when the record of signed periods is damaged (SPEC.md §6.5). */
  start(): void {
    this.signedPeriods.load();
    const now = this.now();
    const loaded = this.store.load(now);
    for (const r of this.store.all()) if (this.addressAllowed(r.descriptor)) this.reach.enqueue(r.descriptor);
    this.loadPublished(now);
    // SPEC.md §9.21.7: registrations before the stored receipts that name pseudonyms are re-judged.
    const pseudonyms = this.pseudonyms.load();
    const kept = this.measurement.load();
    const probeFigures = this.cfg.probe.enabled ? this.probes.load() : 0;
    this.log.info({ descriptors: loaded, ...kept, pseudonyms, probeFigures, consensus: this.current ? isoTime(this.current.info.validAfter) : null }, 'authority state loaded');
    const tickMs = Math.min(2000, Math.max(100, Math.floor(this.cfg.periodSeconds * 1000 / 20)));
    this.timer = setInterval(() => this.tick(), tickMs);
    this.tick();
    this.probes.start();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.probes.stop();
    await this.probes.flush();
    this.reach.close();
    if (this.storeDirty) await this.store.save().catch(() => {});
    await this.consensusWriter.idle();
  }

  // ---- descriptor intake (POST /bitcloud/descriptor) ----

  /**
   * SPEC.md §6.4, §6.4.1: verify a descriptor and its identity proof (one argon2id evaluation per
   * identity and anchor, cached; IDENTITY_POW_* refusals), then keep it. The store is untouched on refusal.
   * `remote`: the uploader's socket address, whose address group shares the waiting places of
   * unlisted identities' proofs (§6.4.1 "Authority intake").
   */
  async acceptDescriptorWithProof(raw: Buffer, remote?: string): Promise<{ result: IntakeResult; descriptor: VerifiedDescriptor }> {
    const d = verifyDescriptor(raw, { now: this.now(), skewMs: this.skewMs });
    // The cheap checks first (checks 7 and 8 of §6.4), then the argon2id evaluation.
    this.checkIntake(d);
    // SPEC.md §6.4.1: the held descriptor again, or an older one (anyone can send again what a
    // vote lists), is answered 'unchanged' without an evaluation: else each costs one and puts
    // its proof in place of the relay's current one among those remembered, so that the relay's
    // next upload costs another.
    if (this.store.keepsHeld(d)) return { result: 'unchanged', descriptor: d };
    try {
      await this.powVerifier.verify(d.identity, d.identityProof, this.powContext(), { listed: this.listsIdentity(d.fingerprint), group: proofQueueGroup(remote) });
    } catch (e) {
      // An evicted proof (§6.4.1) is answered IDENTITY_POW_BUSY and counted as result "evicted".
      this.m.identityProofs.labels(isBitcloudError(e, 'IDENTITY_POW_BUSY') && e.detail?.evicted === true ? 'evicted' : errorCode(e)).inc();
      throw e;
    }
    this.m.identityProofs.labels('ok').inc();
    return this.acceptDescriptor(raw);
  }

  /** SPEC.md §6.4.1 "Authority intake": does the newest consensus this authority published or loaded list `fingerprint`? */
  private listsIdentity(fingerprint: string): boolean {
    const c = this.current?.info;
    if (!c) return false;
    if (this.listed?.of !== c) this.listed = { of: c, fingerprints: new Set(c.relays.map((r) => r.fingerprint)) };
    return this.listed.fingerprints.has(fingerprint);
  }

  /** The anchors this authority accepts (SPEC.md §6.4.1): consensuses it published or loaded. */
  private powContext(): PowVerifyContext {
    return {
      params: this.powParams, periodSeconds: this.cfg.periodSeconds, now: this.now(),
      anchorDigest: (va) => this.anchors.get(va), bootstrap: this.anchors.size === 0,
    };
  }

  /**
   * SPEC.md §6.4.1: the parameters descriptors are checked against: those of the newest consensus
   * this authority published when it carries them (what the majority voted, and what relays read),
   * else this authority's own configuration (bootstrap, or a network whose consensus has none).
   */
  get powParams(): PowParams {
    return this.published?.info.identityPow ?? this.cfg.identityPow;
  }

  private rememberAnchor(info: VerifiedConsensus): void {
    this.anchors.set(info.validAfter, info.digest);
    const oldest = info.validAfter - Math.max(this.cfg.identityPow.anchorPeriods, this.powParams.anchorPeriods) * this.cfg.periodSeconds * 1000;
    for (const va of this.anchors.keys()) if (va < oldest) this.anchors.delete(va);
  }

  /**
   * SPEC.md §6.4 check 7: a descriptor's address must be a public unicast address (§7.6.2's
   * `private` classes are not), unless this authority runs a test network (`testNetwork`). An
   * authority never connects to, nor lists, a relay at a loopback or private address otherwise.
   */
  private addressAllowed(d: VerifiedDescriptor): boolean {
    if (this.cfg.testNetwork) return true;
    if (d.roles.includes('hidden')) return true; // SPEC.md §9.21.1: no address at all
    const ip = parseIp(d.address);
    return ip !== null && !isPrivateAddress(ip);
  }

  /**
   * SPEC.md §6.4 checks 7 and 8, an authority's own: a public address (unless a test network), and
   * a published time at most DESCRIPTOR_MAX_AGE_TO_PUBLISH_MS old (Tor's ROUTER_MAX_AGE_TO_PUBLISH):
   * an old descriptor replayed to an authority that lacks the newer one (it just started, or the
   * newer one expired) would otherwise list the relay's former address or onion key for up to the
   * 7 days of its lifetime.
   */
  private checkIntake(d: VerifiedDescriptor): void {
    if (!this.addressAllowed(d)) {
      throw err('DOC_PRIVATE_ADDRESS', `descriptor address ${d.address} is not a public address (this authority does not run a test network)`);
    }
    const age = this.now() - d.published;
    if (age > DESCRIPTOR_MAX_AGE_TO_PUBLISH_MS) {
      throw err('DOC_EXPIRED', `descriptor was published ${Math.floor(age / 60_000)} minutes ago, more than ${DESCRIPTOR_MAX_AGE_TO_PUBLISH_MS / 3600_000} hours: the relay's clock is behind, or this is an old descriptor sent again`, { published: d.published });
    }
  }

  /** Verify and keep a descriptor, without its identity proof (the HTTP intake uses acceptDescriptorWithProof). Throws DOC_* codes. */
  acceptDescriptor(raw: Buffer): { result: IntakeResult; descriptor: VerifiedDescriptor } {
    const d = verifyDescriptor(raw, { now: this.now(), skewMs: this.skewMs });
    this.checkIntake(d);
    const result = this.store.add(d);
    if (result !== 'unchanged') {
      this.storeDirty = true;
      this.reach.enqueue(this.store.get(d.fingerprint)!.descriptor);
    }
    return { result, descriptor: d };
  }

  // ---- the schedule ----

  private tick(): void {
    const now = this.now();
    const P = this.cfg.periodSeconds * 1000;
    const ps = periodStartOf(now, this.cfg.periodSeconds);
    const t = now - ps;
    try {
      this.deps.rewards?.tick();
      this.deps.storage?.tick();
      // SPEC.md §6.5: a period whose signed vote could not be served again gets no second one; the
      // others' votes are still fetched and their consensus signed (§6.8).
      const voting = this.voteSkippedFor !== ps;
      if (voting && (!this.ownVote || this.ownVote.periodStart !== ps)) {
        // After a restart, vote only once the relays loaded from disk were tested (or at P/4
        // at the latest): otherwise the first vote would list none of them.
        if (!this.ready && (this.reach.pending === 0 || t >= P / 4)) this.ready = true;
        if (!this.ready) return;
        this.makeVote(ps, now);
      }
      if (this.votesFor !== ps) return;
      const allVotes = this.votes.size >= this.cfg.authorities.length - (voting ? 0 : 1);
      const fetched = allVotes || this.votesFetchedFor === ps;
      // Fetch from P/4 to P/2; an authority that starts later still fetches once before computing.
      if (t >= P / 4 && !allVotes && (t < P / 2 || !fetched)) void this.fetchVotes(ps);
      if (t >= P / 2 && fetched && (!this.pending || this.pending.periodStart !== ps) && this.consensusRefusedFor !== ps) this.computeAndSign(ps);
      if (this.pending?.periodStart === ps && !this.pending.round.complete) this.background(this.pending.round.fetchMissing(), 'fetching consensus signatures failed');
    } catch (e) {
      this.m.errors.labels(errorCode(e)).inc();
      this.log.error({ err: (e as Error).message, code: errorCode(e) }, 'schedule step failed');
    }
  }

  /** A step the schedule starts and does not wait for: a failure is logged at warn and counted by code, never left unhandled. */
  private background(job: Promise<void>, what: string): void {
    job.catch((e: unknown) => {
      this.m.errors.labels(errorCode(e)).inc();
      this.log.warn({ err: (e as Error)?.message, code: errorCode(e) }, what);
    });
  }

  private makeVote(ps: number, now: number): void {
    if (this.store.expire(now) > 0) this.storeDirty = true;
    if (this.storeDirty) { this.storeDirty = false; void this.store.save().catch((e) => this.log.warn({ err: e.message }, 'saving descriptors failed')); }
    const skew = this.skewMs;
    const running = this.store.all().filter((r) => r.reachable && r.descriptor.expires >= ps && r.descriptor.published <= ps + skew);
    // SPEC.md §8.5: the vote for period k carries the measurement of epoch k − 2.
    const vm = this.measurement.measureForVote(ps);
    const source = this.bandwidth ?? vm.source;
    // SPEC.md §9.20.2: with the measurement of epoch k − 2 goes the storage audited in that epoch.
    const stored = vm.provenEpoch ? this.deps.storage?.storedFor(vm.provenEpoch) ?? null : null;
    const all = running.map((r) => ({
      descriptor: r.descriptor,
      measured: source.measuredKBps(r.descriptor.fingerprint, r.descriptor.declaredBandwidth),
      proven: vm.proven.get(r.descriptor.fingerprint) ?? 0,
      stored: stored?.get(r.descriptor.fingerprint) ?? 0,
      runningSince: r.runningSince,
    }));
    // SPEC.md §6.5: at most maxRelaysPerAddress relays per address (Tor's AuthDirMaxServersPerAddr).
    const { kept: inputs, leftOut: overAddress } = limitPerAddress(all, this.cfg.maxRelaysPerAddress);
    if (overAddress > 0) {
      this.m.voteRelaysOverAddressLimit.inc(overAddress);
      this.log.info({ period: new Date(ps).toISOString(), leftOut: overAddress, maxRelaysPerAddress: this.cfg.maxRelaysPerAddress }, 'relays sharing an address over the limit left out of the vote');
    }
    const flags = assignFlags(inputs, { now, stableAfterMs: this.cfg.stableAfterSeconds * 1000 });
    const entries = inputs.map((x, i) => ({ i, descriptorRaw: x.descriptor.raw, identity: x.descriptor.identity, flags: flags[i], measured: x.measured, proven: x.proven, stored: x.stored }));
    // SPEC.md §6.5 "Bounds": over 100 000 relays or the vote byte limit, the lowest measured are left out.
    const { raw, kept } = buildVoteWithin(this.signer, ps, this.cfg.periodSeconds, KNOWN_FLAGS, entries, vm.provenEpoch, this.cfg.identityPow, this.deps.voteBounds, this.cfg.consensusParams);
    if (kept.length < entries.length) {
      this.m.voteRelaysLeftOut.inc(entries.length - kept.length);
      this.log.warn({ period: new Date(ps).toISOString(), leftOut: entries.length - kept.length, listed: kept.length }, 'vote over its size bounds: the lowest measured relays are left out');
    }
    const doc = openEnvelope(raw, DocType.VOTE, LIMITS.voteBytes);
    const signedBefore = this.signedPeriods.signed('vote', ps);
    let vote: VerifiedVote;
    if (signedBefore !== null && signedBefore !== doc.digest.toString('hex')) {
      // SPEC.md §6.5: a vote for this period was signed before a restart; serve that one again.
      const kept = this.restoredVote(ps, signedBefore);
      if (!kept) {
        this.voteSkippedFor = ps;
        this.m.secondBodyRefused.labels('vote').inc();
        this.log.warn({ period: new Date(ps).toISOString() }, 'a different vote was signed for this period before a restart and is not kept: no vote this period (the others\' votes are still fetched and their consensus signed)');
        // SPEC.md §6.5: no vote of its own is served this period (its vote endpoint answers 404).
        this.ownVote = null;
        this.currentVoteDoc = null;
        this.startVotes(ps, new Map());
        return;
      }
      vote = kept;
      this.m.votes.labels('own_restored').inc();
      this.log.warn({ period: new Date(ps).toISOString(), relays: kept.entries.length }, 'serving the vote signed for this period before a restart');
    } else {
      // SPEC.md §6.5: recorded durably before the vote is served.
      this.signedPeriods.record('vote', ps, doc.digest, raw);
      vote = {
        authority: this.signer.identity, fingerprint: this.self, knownFlags: KNOWN_FLAGS,
        entries: kept.map(({ i }) => ({ descriptor: inputs[i].descriptor, flags: flags[i], measured: inputs[i].measured, proven: vm.provenEpoch ? inputs[i].proven : 0, stored: vm.provenEpoch ? inputs[i].stored : 0 })),
        provenEpoch: vm.provenEpoch, identityPow: this.cfg.identityPow, ...(this.cfg.consensusParams.length ? { params: this.cfg.consensusParams } : {}), periodStart: ps, periodSeconds: this.cfg.periodSeconds, digest: doc.digest, raw,
      };
      this.m.votes.labels('own').inc();
      this.log.info({ period: new Date(ps).toISOString(), relays: kept.length }, 'vote signed');
    }
    this.ownVote = vote;
    this.currentVoteDoc = new ServedDocument(vote.raw, now);
    this.startVotes(ps, new Map([[this.self, vote]]));
  }

  /** The votes held for period `ps` start as `votes` (the own vote, or none when this period has none). */
  private startVotes(ps: number, votes: Map<string, VerifiedVote>): void {
    this.votes = votes;
    this.votesFor = ps;
    this.refusedVotes = new Set();
    if (this.pending && this.pending.periodStart !== ps) this.pending = null;
    // Retest everyone during this period, so the next vote reflects who is up now.
    for (const r of this.store.all()) if (this.addressAllowed(r.descriptor)) this.reach.enqueue(r.descriptor);
  }

  /** The own vote kept on disk when it is the one recorded for `ps` (`digest`, hex) and still verifies; else null. */
  private restoredVote(ps: number, digest: string): VerifiedVote | null {
    const raw = this.signedPeriods.ownVote();
    if (!raw) return null;
    try {
      const v = verifyVote(raw, this.cfg.authorities, { periodStart: ps, periodSeconds: this.cfg.periodSeconds });
      return v.fingerprint === this.self && v.digest.toString('hex') === digest ? v : null;
    } catch (e) {
      this.log.warn({ code: errorCode(e), err: (e as Error).message }, 'the kept own vote does not verify');
      return null;
    }
  }

  private async fetchVotes(ps: number): Promise<void> {
    if (this.fetchingVotes) return;
    this.fetchingVotes = true;
    try {
      const missing = this.cfg.authorities.filter((a) => a.fingerprint !== this.self && !this.votes.has(a.fingerprint) && !this.refusedVotes.has(a.fingerprint));
      await Promise.all(missing.map(async (a) => {
        try {
          const r = await httpRequest(`${a.url}${PATHS.vote}?period=${ps}`, { maxBytes: LIMITS.voteBytes, timeoutMs: this.fetchTimeout() });
          if (r.status !== 200) { this.m.votes.labels(`http_${r.status}`).inc(); return; }
          const v = verifyVote(r.body, this.cfg.authorities, { periodStart: ps, periodSeconds: this.cfg.periodSeconds });
          if (v.fingerprint !== a.fingerprint || this.votesFor !== ps) return;
          this.votes.set(v.fingerprint, v);
          this.m.votes.labels('fetched').inc();
          this.log.info({ from: a.name, relays: v.entries.length }, 'vote fetched');
        } catch (e) {
          this.m.votes.labels(errorCode(e)).inc();
          // SPEC.md §6.5: a malformed vote the authority signed is its one vote for this period.
          if (isBitcloudError(e, 'VOTE_MALFORMED') && e.detail?.signedBy === a.fingerprint && this.votesFor === ps) {
            this.refusedVotes.add(a.fingerprint);
            this.log.warn({ from: a.name, code: e.code, err: e.message }, 'authority signed a malformed vote: refused, not fetched again this period');
            return;
          }
          this.log.debug({ from: a.name, code: errorCode(e), err: (e as Error).message }, 'vote fetch failed');
        }
      }));
    } finally {
      this.fetchingVotes = false;
      this.votesFetchedFor = ps;
    }
  }

  private computeAndSign(ps: number): void {
    const votes = [...this.votes.values()].filter((v) => v.periodStart === ps);
    // A period this authority has no vote for (SPEC.md §6.5) and no other vote arrived: nothing to compute.
    if (votes.length === 0) return;
    const computed = computeConsensus(votes, {
      totalAuthorities: this.cfg.authorities.length, periodStart: ps,
      periodSeconds: this.cfg.periodSeconds, lifetimePeriods: this.cfg.consensusLifetimePeriods,
    });
    if (computed.dropped > 0) {
      this.log.warn({ dropped: computed.dropped, listed: computed.relayCount }, 'consensus over its size limit: the lowest-weight relays are left out');
    }
    // SPEC.md §6.8: one consensus body per period, across restarts too.
    const signedBefore = this.signedPeriods.signed('consensus', ps);
    if (signedBefore !== null && signedBefore !== computed.digest.toString('hex')) {
      this.consensusRefusedFor = ps;
      this.m.secondBodyRefused.labels('consensus').inc();
      this.log.warn({ period: new Date(ps).toISOString(), signed: signedBefore, computed: computed.digest.toString('hex') }, 'a different consensus body was signed for this period before a restart: not signing this one');
      return;
    }
    const held = this.pending?.round ?? null;
    const { round, decision } = SigningRound.begin<ConsensusSignature>(held, {
      slot: ps, bodyId: computed.digest, authorities: this.cfg.authorities, self: this.self, timeoutMs: this.fetchTimeout(),
      hooks: {
        fetch: (a, _round, timeoutMs) => this.fetchSignatures(pending, a, timeoutMs),
        publish: () => this.publish(pending),
        fetchFailed: (a, e) => this.log.debug({ from: a.name, code: errorCode(e) }, 'signature fetch failed'),
      },
    }, () => {
      // Recorded durably before the signature is made, served or published.
      this.signedPeriods.record('consensus', ps, computed.digest);
      return { sig: makeSignature(computed.body, this.signer.identity, this.signer.signingKey), cert: this.signer.certificate };
    });
    if (decision !== 'sign' || !round) {
      // One body per period: the schedule (SPEC.md §6.9) computes once per period, so this is a bug guard.
      this.log.error({ period: new Date(ps).toISOString(), decision }, 'not signing a second consensus body for this period');
      return;
    }
    const pending: Pending = { periodStart: ps, computed, round };
    this.pending = pending;
    this.m.computed.inc();
    this.log.info({ period: new Date(ps).toISOString(), votes: votes.length, relays: computed.relayCount, digest: computed.digest.toString('hex') }, 'consensus computed and signed');
    round.publish();
  }

  /** Detached signatures this authority holds for its pending consensus (GET /bitcloud/consensus/signatures). */
  detachedSignatures(): Buffer | null {
    const p = this.pending;
    if (!p) return null;
    const held = p.round.signatures();
    return encodeDetachedSignatures({ digest: p.computed.digest, signatures: held.map((x) => x.sig), certificates: held.map((x) => x.cert) });
  }

  /** One peer's detached signatures (GET /bitcloud/consensus/signatures): those over our body that verify. */
  private async fetchSignatures(p: Pending, a: AuthorityInfo, timeoutMs: number): Promise<[string, ConsensusSignature][]> {
    const r = await httpRequest(a.url + PATHS.signatures, { maxBytes: LIMITS.signaturesBytes, timeoutMs });
    if (r.status !== 200) return [];
    return this.verifiedSignatures(p, r.body, a.name);
  }

  private verifiedSignatures(p: Pending, raw: Buffer, from: string): [string, ConsensusSignature][] {
    const d = decodeDetachedSignatures(raw);
    if (!d.digest.equals(p.computed.digest)) {
      this.m.signatures.labels('digest_mismatch').inc();
      if (p.round.firstTime(from)) {
        this.log.warn({ from, theirs: d.digest.toString('hex'), ours: p.computed.digest.toString('hex') }, 'authority computed a different consensus (different votes?)');
      }
      return [];
    }
    const certs = indexCertificates(d.certificates, this.now(), this.skewMs);
    const out = new Map<string, ConsensusSignature>();
    for (const s of d.signatures) {
      const fp = fingerprint(s.signer);
      if (p.round.has(fp) || out.has(fp) || !s.key) continue;
      // Verify each one through its certificate, exactly as a client will.
      const cert = certs.get(`${fp}/${s.key.toString('hex')}`);
      const c = countSignatures(p.computed.body, [s], cert ? [cert.raw] : [], this.cfg.authorities, this.now(), this.skewMs, p.computed.digest);
      if (!cert || c.valid.length !== 1) { this.m.signatures.labels('bad').inc(); continue; }
      out.set(fp, { sig: s, cert: cert.raw });
      this.m.signatures.labels('added').inc();
    }
    return [...out];
  }

  /** Called by the round once a majority signed, and again when more signatures arrive. */
  private publish(p: Pending): boolean {
    const cur = this.current;
    if (cur && cur.info.digest.equals(p.computed.digest) && cur.info.signers.length >= p.round.size) return true;
    const held = p.round.signatures();
    const raw = sealEnvelope(p.computed.body, held.map((x) => x.sig), held.map((x) => x.cert));
    const now = this.now();
    let info: VerifiedConsensus;
    try {
      // Self-check: publish only what a client would accept.
      info = verifyConsensus(raw, this.cfg.authorities, now, this.skewMs);
    } catch (e) {
      this.m.errors.labels(errorCode(e)).inc();
      this.log.error({ code: errorCode(e), err: (e as Error).message }, 'assembled consensus does not verify; not publishing');
      return false;
    }
    const first = !cur || !cur.info.digest.equals(info.digest);
    this.current = { info, served: servedConsensus(raw, info, now) };
    this.rememberAnchor(info);
    // One write at a time, the newest last: a republication with more signatures never loses to an older one.
    this.consensusWriter.write(raw);
    if (first) this.m.published.inc();
    if (first) this.deps.storage?.onConsensus(info);
    if (first) this.deps.rewards?.onConsensus(info);
    if (first) this.history.onConsensus(info);
    if (first) this.measurement.onConsensus(info).catch((e) => this.log.warn({ err: e.message }, 'archiving consensus failed'));
    this.log.info({ validAfter: isoTime(info.validAfter), relays: info.relays.length, signers: info.signers.length, first }, first ? 'consensus published' : 'consensus signatures added');
    return true;
  }

  private loadPublished(now: number): void {
    const file = path.join(this.cfg.dataDir, CONSENSUS_FILE);
    let raw: Buffer;
    try { raw = fs.readFileSync(file); } catch { return; }
    try {
      const info = verifyConsensus(raw, this.cfg.authorities, now, this.skewMs);
      this.current = { info, served: servedConsensus(raw, info, fs.statSync(file).mtimeMs) };
      this.rememberAnchor(info);
      this.deps.storage?.onConsensus(info);
      void this.measurement.onConsensus(info).catch(() => {});
    } catch (e) {
      this.log.info({ code: errorCode(e) }, 'stored consensus not usable');
    }
  }

  private fetchTimeout(): number {
    return peerFetchTimeoutMs(this.cfg.periodSeconds);
  }

  /** For the status page: relays known with their reachability. */
  statusSnapshot(): { known: number; running: number; votePeriod: number | null; votesHeld: string[]; pendingSigners: string[] } {
    const all = this.store.all();
    return {
      known: all.length,
      running: all.filter((r) => r.reachable).length,
      votePeriod: this.currentVotePeriod,
      votesHeld: this.votesHeld,
      pendingSigners: this.pending ? this.pending.round.signers() : [],
    };
  }
}
