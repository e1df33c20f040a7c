// SPEC.md §6.7: deterministic consensus computation. A pure function of the votes and the
// network parameters: every authority holding the same votes produces byte-identical bytes.
// No maps with undefined order reach the output, no floating point, relays sorted by identity.
import { encodeConsensus, LIMITS, type ConsensusMsg, type ParamMsg, type PowParamsMsg } from '../src/wire/docs';
import { DocType, makeBody } from '../src/wire/envelope';
import { sha256 } from '../src/crypto/primitives';
import { formatExitPolicy, parseExitPolicy } from '../src/dir/exit-policy';
import { majorityOf } from '../src/dir/authorities';
import { ALL_FLAGS, FLAG_BITS } from '../src/dir/types';
import type { VerifiedDescriptor } from '../src/dir/descriptor';
import { provenEpochFor, type VoteInput, type VoteInputEntry } from './vote';

export const CONSENSUS_METHOD = 1;
/**
 * SPEC.md §6.7.1: the most a consensus body may take: the 16 MiB limit (§6.2.5) less 32 KiB for the
 * envelope's signatures and certificates (32 of each: 32 × (137 + 515) bytes at most).
 */
export const CONSENSUS_BODY_MAX = LIMITS.consensusBytes - 32 * 1024;

export interface ConsensusParams {
  /** Number of configured authorities (ALL of them, not only those that voted). */
  totalAuthorities: number;
  /** ms since the epoch: the period the votes are for; becomes valid_after. */
  periodStart: number;
  periodSeconds: number;
  /** valid_until = valid_after + lifetimePeriods × period (Tor: 3). */
  lifetimePeriods: number;
  /** The most the body may take; CONSENSUS_BODY_MAX unless a test makes it smaller. */
  maxBodyBytes?: number;
}

export interface ComputedConsensus {
  /** Encoded Consensus message. */
  content: Buffer;
  /** Exact DocumentBody bytes every authority signs. */
  body: Buffer;
  /** SHA-256 of body. */
  digest: Buffer;
  relayCount: number;
  /** Listed relays left out to keep the body under CONSENSUS_BODY_MAX (SPEC.md §6.7.1). */
  dropped: number;
}

/**
 * SPEC.md §6.7 rules:
 *  - one vote per authority (the first for each authority, votes sorted by authority);
 *  - a relay is listed iff more than half of ALL configured authorities list it;
 *  - its descriptor is the one most listing votes carry (ties: newest, then lowest digest);
 *  - flag F is set iff more than half of the listing votes that declare F in known_flags assign F;
 *  - weight is the low median of the listing votes' measured values;
 *  - SPEC.md §8.6: proven_epoch = k − 2 (k = periodStart / P) when at least one listing vote
 *    measured that epoch, and each relay's proven = low median over its listing votes (a vote that
 *    measured another epoch, or nothing, counts 0); otherwise proven_epoch = 0 and no column;
 *  - SPEC.md §9.20.2: `stored` likewise (low median of the listing votes' audited bytes), left out
 *    when every value is 0.
 *  - SPEC.md §6.4.1: identity_pow per `powVote`.
 *  - SPEC.md §6.7.1: params per `paramsVote` (absent when none reaches a majority).
 */
export function computeConsensus(votes: readonly VoteInput[], p: ConsensusParams): ComputedConsensus {
  const need = majorityOf(p.totalAuthorities);
  const byAuthority = new Map<string, VoteInput>();
  for (const v of [...votes].sort((a, b) => Buffer.compare(a.authority, b.authority))) {
    const k = v.authority.toString('hex');
    if (!byAuthority.has(k)) byAuthority.set(k, v);
  }
  const used = [...byAuthority.values()];

  // Group entries by relay identity. Entries of each vote are distinct by identity.
  const wantEpoch = provenEpochFor(p.periodStart, p.periodSeconds);
  type Group = { entry: VoteInputEntry; known: number; measures: boolean }[];
  const groups = new Map<string, Group>();
  for (const v of used) {
    const measures = wantEpoch > 0 && v.provenEpoch === wantEpoch;
    for (const e of v.entries) {
      const k = e.descriptor.fingerprint;
      let g = groups.get(k);
      if (!g) groups.set(k, (g = []));
      g.push({ entry: e, known: v.knownFlags, measures });
    }
  }
  // SPEC.md §6.7.1: a relay's exit policy is listed in canonical text, one rule per element, under
  // the limits of §6.7.2. Intake keeps descriptors inside them (§6.4); one that is not anyway is
  // left out rather than making the whole consensus undecodable.
  const canonicalPolicy = new Map<string, string[] | null>();
  const policyOf = (d: VerifiedDescriptor): string[] | null => {
    const key = d.exitPolicy.join('\n');
    let pol = canonicalPolicy.get(key);
    if (pol === undefined) {
      const text = formatExitPolicy(parseExitPolicy(d.exitPolicy));
      pol = text.length <= LIMITS.exitPolicyRules && text.every((r) => r.length <= LIMITS.exitPolicyRuleChars) ? text : null;
      canonicalPolicy.set(key, pol);
    }
    return pol;
  };
  // Lowercase hex sorts exactly as the bytes do.
  const listed: { g: Group; d: VerifiedDescriptor; pol: string[] }[] = [];
  for (const k of [...groups.keys()].filter((k) => groups.get(k)!.length >= need).sort()) {
    const g = groups.get(k)!;
    const d = chooseDescriptor(g.map((x) => x.entry.descriptor));
    const pol = policyOf(d);
    if (pol) listed.push({ g, d, pol });
  }

  type Row = (typeof listed)[number];
  const validUntil = p.periodStart + p.lifetimePeriods * p.periodSeconds * 1000;
  const encodeRows = (rows: readonly Row[]): { content: Buffer; body: Buffer } => {
    const n = rows.length;
    const provenEpoch = rows.some((x) => x.g.some((y) => y.measures)) ? wantEpoch : 0;
    const m: ConsensusMsg = {
      method: CONSENSUS_METHOD,
      freshUntil: p.periodStart + p.periodSeconds * 1000,
      periodSeconds: p.periodSeconds,
      voters: used.map((v) => v.authority),
      policies: [], keyLists: [], versions: [],
      identities: Buffer.alloc(n * 32), onionKeys: Buffer.alloc(n * 32), addresses: Buffer.alloc(n * 4),
      orPorts: [], dirPorts: [], storagePorts: [], flags: [], roles: [], weights: [],
      policyIndex: [], familyIndex: [], moderatorIndex: [], versionIndex: [], nicknames: [],
      provenEpoch, proven: [], stored: [],
      identityPow: powVote(used, need),
      params: paramsVote(used, need),
    };
    // Tables in order of first use while walking relays by identity: deterministic.
    const policyIdx = new Map<string, number>();
    const listIdx = new Map<string, number>();
    const versionIdx = new Map<string, number>();
    const tableIndex = <T>(map: Map<string, number>, table: T[], key: string, value: T): number => {
      let i = map.get(key);
      if (i === undefined) { i = table.length; table.push(value); map.set(key, i); }
      return i;
    };

    for (let i = 0; i < n; i++) {
      const { g, d, pol } = rows[i];
      d.identity.copy(m.identities, i * 32);
      d.onionKey.copy(m.onionKeys, i * 32);
      d.addressBytes.copy(m.addresses, i * 4);
      m.orPorts.push(d.orPort);
      m.dirPorts.push(d.dirPort);
      m.storagePorts.push(d.storagePort);
      m.roles.push(d.rolesMask);
      m.nicknames.push(d.nickname);
      m.flags.push(flagVote(g));
      m.weights.push(lowMedian(g.map((x) => x.entry.measured)));
      if (provenEpoch) m.proven!.push(lowMedian(g.map((x) => (x.measures ? x.entry.proven ?? 0 : 0))));
      if (provenEpoch) m.stored!.push(lowMedian(g.map((x) => (x.measures ? x.entry.stored ?? 0 : 0))));

      m.policyIndex.push(tableIndex(policyIdx, m.policies, pol.join('\n'), pol));
      m.familyIndex.push(tableIndex(listIdx, m.keyLists, d.family.join(','), d.family.map((f) => Buffer.from(f, 'hex'))));
      m.moderatorIndex.push(tableIndex(listIdx, m.keyLists, d.moderators.join(','), d.moderators.map((f) => Buffer.from(f, 'hex'))));
      m.versionIndex.push(tableIndex(versionIdx, m.versions, d.version, d.version));
    }

    // SPEC.md §9.20.2: the stored column is left out when no node holds audited bytes.
    if (!m.stored!.some((v) => v > 0)) m.stored = [];
    const content = encodeConsensus(m);
    const body = makeBody(DocType.CONSENSUS, p.periodStart, validUntil, content);
    return { content, body };
  };

  // SPEC.md §6.7.1: a body too large for the consensus limit (§6.2.5, with room for the
  // signatures and certificates) leaves out relays in order of ascending weight, then identity:
  // the fewest that make it fit.
  let rows: readonly Row[] = listed;
  let out = encodeRows(rows);
  let dropped = 0;
  const maxBody = Math.min(p.maxBodyBytes ?? CONSENSUS_BODY_MAX, CONSENSUS_BODY_MAX);
  if (out.body.length > maxBody) {
    const order = listed.map((x, i) => ({ i, w: lowMedian(x.g.map((y) => y.entry.measured)) })).sort((a, b) => a.w - b.w || a.i - b.i);
    const without = (k: number): Row[] => {
      const gone = new Set(order.slice(0, k).map((x) => x.i));
      return listed.filter((_, i) => !gone.has(i));
    };
    let lo = 1, hi = listed.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (encodeRows(without(mid)).body.length > maxBody) lo = mid + 1;
      else hi = mid;
    }
    dropped = lo;
    rows = without(lo);
    out = encodeRows(rows);
  }
  return { content: out.content, body: out.body, digest: sha256(out.body), relayCount: rows.length, dropped };
}

/**
 * SPEC.md §6.7 / §6.4.1: the network's identity proof parameters: present iff at least a majority
 * of ALL configured authorities voted parameters; each field is the low median of those votes.
 */
export function powVote(votes: readonly VoteInput[], need: number): PowParamsMsg | undefined {
  const ps = votes.map((v) => v.identityPow).filter((p): p is PowParamsMsg => p !== undefined);
  if (ps.length < need || ps.length === 0) return undefined;
  return {
    memoryKib: lowMedian(ps.map((p) => p.memoryKib)),
    ops: lowMedian(ps.map((p) => p.ops)),
    difficulty: lowMedian(ps.map((p) => p.difficulty)),
    anchorPeriods: lowMedian(ps.map((p) => p.anchorPeriods)),
  };
}

/**
 * SPEC.md §6.7.1: the consensus parameters: a name is present iff at least `need` (a majority of ALL
 * configured authorities) of the used votes carry it; its value is the low median of those votes'
 * values. Sorted by name; empty when no name reaches `need` (the consensus then has no field 28).
 */
export function paramsVote(votes: readonly VoteInput[], need: number): ParamMsg[] {
  const byName = new Map<string, number[]>();
  for (const v of votes) {
    for (const p of v.params ?? []) {
      let vs = byName.get(p.name);
      if (!vs) byName.set(p.name, (vs = []));
      vs.push(p.value);
    }
  }
  const out: ParamMsg[] = [];
  for (const name of [...byName.keys()].sort()) {
    const vs = byName.get(name)!;
    if (vs.length >= need) out.push({ name, value: lowMedian(vs) });
  }
  return out;
}

/**
 * SPEC.md §6.7.1 (Tor's dir-spec, "the most common descriptor"): the descriptor listed by the most
 * listing votes wins; among equally common ones the greatest `published`, then the lowest digest.
 * Newest-wins would let one authority alone choose a relay's address, onion key, policy and family
 * by listing a newer descriptor of that relay than the others hold (one they never tested, or one
 * they refuse, such as a private address).
 */
export function chooseDescriptor(ds: readonly VerifiedDescriptor[]): VerifiedDescriptor {
  const count = new Map<string, number>();
  for (const d of ds) {
    const k = d.digest.toString('hex');
    count.set(k, (count.get(k) ?? 0) + 1);
  }
  let best = ds[0];
  let bestN = count.get(best.digest.toString('hex'))!;
  for (const d of ds) {
    const n = count.get(d.digest.toString('hex'))!;
    if (n > bestN || (n === bestN && (d.published > best.published || (d.published === best.published && Buffer.compare(d.digest, best.digest) < 0)))) {
      best = d;
      bestN = n;
    }
  }
  return best;
}

function flagVote(g: { entry: VoteInputEntry; known: number }[]): number {
  let out = 0;
  for (const f of ALL_FLAGS) {
    const bit = FLAG_BITS[f];
    let voters = 0, yes = 0;
    for (const x of g) {
      if (!(x.known & bit)) continue;
      voters++;
      if (x.entry.flags & bit) yes++;
    }
    if (voters > 0 && 2 * yes > voters) out |= bit;
  }
  return out;
}

/** Low median: element ⌊(k−1)/2⌋ of the ascending values (integers only). */
export function lowMedian(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const s = [...values].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1];
}
