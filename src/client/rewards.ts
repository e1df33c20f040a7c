// SPEC.md §8.7.3–8.7.4: a client fetches the whole reward chain from an authority and verifies
// every block from height 0 before reading a balance. The authorities are tried in random order;
// a chain refused from one is reported and the next is tried. The threshold is more than half of
// the CONFIGURED authorities, whatever a source says; signatures count only through key
// certificates (src/dir/reward-authorities.ts), windows checked against the consensus period P.
import { err, errorCode, isErrorCode, layerOf } from '../errors';
import { majorityOf, type AuthorityInfo } from '../dir/authorities';
import { httpRequest, errorBodyReason, PATHS } from '../dir/fetch';
import { certifiedRewardAuthorities } from '../dir/reward-authorities';
import { DEFAULT_SCHEDULE, UNITS_PER_COIN, type IssuanceSchedule } from '../bandwidth/reward';
import {
  MAX_REWARD_BUNDLE_BYTES, applyRewardBlock, decodeRewardChainBundle, emptyChainState,
  type ChainState, type RewardBlock,
} from '../bandwidth/reward-chain';

export interface FetchRewardChainOptions {
  /** The configured authorities (N = their number; the threshold is floor(N/2)+1). */
  authorities: readonly AuthorityInfo[];
  /** Consensus period P in seconds, from a verified consensus (certificate windows, SPEC §8.7.3). */
  periodSeconds: number;
  /** Base URLs to try instead of the authorities (in this order). */
  sources?: readonly string[];
  skewMs?: number;
  timeoutMs?: number;
  schedule?: IssuanceSchedule;
}

/** One verified block, without its body bytes. */
export interface VerifiedRewardBlock {
  block: RewardBlock;
  hash: Buffer;
  /** Fingerprints of the authorities whose signatures are carried (sorted). */
  signers: string[];
}

export interface RewardChainResult {
  state: ChainState;
  blocks: VerifiedRewardBlock[];
  source: string;
  /** Sources tried before the one that gave a chain that verified, with why they failed. */
  failures: { source: string; code: string; reason: string }[];
}

/**
 * Fetch and verify the reward chain. Resolves with the first chain that verifies completely;
 * when every source fails, rejects with the code of the first verification failure (REWARD_*),
 * or of the first transfer failure (DIR_FETCH_FAILED…) when no chain was received at all.
 */
export async function fetchRewardChain(o: FetchRewardChainOptions): Promise<RewardChainResult> {
  const sources = o.sources?.length ? [...o.sources] : shuffle(o.authorities.map((a) => a.url));
  const failures: RewardChainResult['failures'] = [];
  let got: { acc: ChainAccumulator; source: string } | null = null;
  for (const source of sources) {
    if (!got) {
      const acc = newAccumulator();
      try {
        await fetchFrom(source, o, acc);
        got = { acc, source };
      } catch (e) {
        failures.push({ source, code: errorCode(e), reason: (e as Error).message });
      }
      continue;
    }
    // An authority that is behind serves a shorter chain that still verifies: ask the others
    // for what comes after the tip we hold. Every block they add passed the same checks
    // (majority of the configured authorities), so any source may extend the chain; a source
    // that fails only loses its say (reported, not fatal).
    try {
      await fetchFrom(source, o, got.acc);
    } catch (e) {
      failures.push({ source, code: errorCode(e), reason: (e as Error).message });
    }
  }
  if (got) return { state: got.acc.state, blocks: got.acc.blocks, source: got.source, failures };
  const first = failures.find((f) => isErrorCode(f.code) && layerOf(f.code) === 'REWARD') ?? failures[0];
  const list = failures.map((f) => `${f.source}: ${f.reason}`).join('; ');
  throw err(first && isErrorCode(first.code) ? first.code : 'DIR_FETCH_FAILED', `no authority gave a reward chain that verifies (${list || 'no source'})`, { failures });
}

interface ChainAccumulator { state: ChainState; blocks: VerifiedRewardBlock[]; certs: Buffer[] }

function newAccumulator(): ChainAccumulator {
  return { state: emptyChainState(), blocks: [], certs: [] };
}

/** Fetches from `source` the blocks after `acc`'s tip, verifying and appending each (acc is extended in place). */
async function fetchFrom(source: string, o: FetchRewardChainOptions, acc: ChainAccumulator): Promise<void> {
  const { state, blocks, certs } = acc;
  const threshold = majorityOf(o.authorities.length);
  const schedule = o.schedule ?? DEFAULT_SCHEDULE;
  for (;;) {
    const from = state.height + 1;
    const r = await httpRequest(`${source}${PATHS.rewards}?from=${from}`, { maxBytes: MAX_REWARD_BUNDLE_BYTES, timeoutMs: o.timeoutMs ?? 30_000 });
    if (r.status !== 200) throw err('DIR_FETCH_FAILED', `${source}: ${errorBodyReason(r)}`, { status: r.status });
    const bundle = decodeRewardChainBundle(r.body);
    if (bundle.blocks.length === 0) {
      // A source that says it holds more blocks than it sends is cut short; say so.
      if (bundle.chainLength > from) throw err('REWARD_MALFORMED', `${source} claims ${bundle.chainLength} blocks but sent none from height ${from}`);
      break;
    }
    certs.push(...bundle.certificates);
    const verifier = certifiedRewardAuthorities(o.authorities, certs, { periodSeconds: o.periodSeconds, skewMs: o.skewMs });
    for (const sb of bundle.blocks) {
      applyRewardBlock(state, sb, verifier, threshold, { schedule });
      blocks.push({ block: sb.block, hash: sb.hash, signers: sb.signatures.map((s) => s.authority.toString('hex')).sort() });
    }
    if (state.height + 1 >= bundle.chainLength) break;
  }
}

function shuffle<T>(a: T[]): T[] {
  for (let i = a.length - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [a[i], a[j]] = [a[j], a[i]]; }
  return a;
}

/** Units as coins with 8 decimals ("12.34500000"). */
export function formatCoins(units: bigint): string {
  const neg = units < 0n;
  const u = neg ? -units : units;
  return `${neg ? '-' : ''}${u / UNITS_PER_COIN}.${(u % UNITS_PER_COIN).toString().padStart(8, '0')}`;
}
