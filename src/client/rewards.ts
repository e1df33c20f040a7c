// SPEC.md §8.7.3, §8.7.7: a client fetches the whole reward chain from an authority and verifies
// every block from height 0 before reading a balance. The authorities are tried in random order;
// a chain refused from one is reported and the next is tried. The threshold is more than half of
// the CONFIGURED authorities, whatever a source says; signatures count only through key
// certificates (src/dir/reward-authorities.ts), windows checked against the consensus period P.
import { err, errorCode, isErrorCode, kindOf, layerOf } from '../errors';
import { majorityOf, type AuthorityInfo } from '../dir/authorities';
import { httpRequest, errorBodyReason, FETCHER_HEADER, PATHS, type Fetcher, type HttpResponse } from '../dir/fetch';
import { RewardCertificateSet, pageCertificates } from '../dir/reward-authorities';
import { DEFAULT_SCHEDULE, UNITS_PER_COIN, type IssuanceSchedule } from '../bandwidth/reward';
import { shuffle } from '../crypto/primitives';
import { rewardAuthoritySetId, type RewardTipsSeen } from './rewards-seen';
import {
  MAX_REWARD_BUNDLE_BYTES, applyRewardBlock, emptyChainState,
  type ChainState, type RewardBlock,
} from '../bandwidth/reward-chain';
import {
  REWARD_PAGE_BYTES, rewardPageBytes, shortRewardPage, splitRewardChainBundle,
} from '../wire/reward-block';

/**
 * SPEC.md §8.7.5: how long the client gives one page of the chain (one `GET /bitcloud/rewards?from=H`,
 * the whole request with its body, not an idle time) unless told otherwise: above a relay mirror's 30 s deadline for one fetch, so the mirror's 504
 * REWARD_FETCH_TIMEOUT reaches the client rather than the client giving up at the same moment, and
 * below the dir port's 60 s idle timeout (§6.10).
 */
export const REWARD_PAGE_TIMEOUT_MS = 45_000;

/**
 * SPEC.md §8.7.5: how long one read of the chain from one source (all its pages; for an authority,
 * the pages of one other authority in a catch-up) may take. The page fill rule bounds the number of
 * pages by the chain's size, not the time: a source answering every page just within
 * REWARD_PAGE_TIMEOUT_MS would otherwise hold the reader for as long as it likes.
 */
export const REWARD_READ_DEADLINE_MS = 600_000;

/** A read's deadline: a signal aborted once `ms` have passed (its timer keeps no process alive). */
export function rewardReadSignal(ms = REWARD_READ_DEADLINE_MS): AbortSignal {
  return AbortSignal.timeout(ms);
}

/**
 * SPEC.md §8.7.5: one page of a read: `get` is given a signal aborted at the page deadline
 * (`pageMs`, the whole request including its body, not an idle time) or at the read's (`read`),
 * whichever comes first, and the page ends then with REWARD_FETCH_TIMEOUT whether or not `get`
 * heeds the signal. Both deadlines are AbortSignal.timeout timers, which keep no process alive.
 */
export async function rewardPage<T>(source: string, read: AbortSignal, pageMs: number, get: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const page = AbortSignal.timeout(pageMs);
  const signal = AbortSignal.any([read, page]);
  const timedOut = () => (read.aborted
    ? err('REWARD_FETCH_TIMEOUT', `${source}: the reward chain read passed its deadline`, { deadline: 'read' })
    : err('REWARD_FETCH_TIMEOUT', `${source}: no whole page in ${pageMs} ms`, { deadline: 'page', pageMs }));
  if (signal.aborted) throw timedOut();
  let onAbort = (): void => {};
  const aborted = new Promise<never>((_, reject) => { onAbort = () => reject(timedOut()); });
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await Promise.race([get(signal), aborted]);
  } catch (e) {
    if (signal.aborted) throw timedOut();
    throw e;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

export interface FetchRewardChainOptions {
  /** The configured authorities (N = their number; the threshold is floor(N/2)+1). */
  authorities: readonly AuthorityInfo[];
  /** Consensus period P in seconds, from a verified consensus (certificate windows, SPEC §8.7.3). */
  periodSeconds: number;
  /**
   * Sources to try instead of the authorities (in this order): base URLs (direct), or guard
   * mirrors reached over BEGIN_DIR (SPEC.md §6.10.1, src/client/guard-dir.ts).
   */
  sources?: readonly (string | RewardSource)[];
  /** Declared in the fetcher header of direct requests (SPEC.md §6.10.1). */
  fetcher?: Fetcher;
  skewMs?: number;
  /** Per page (one request, its body included); default REWARD_PAGE_TIMEOUT_MS. */
  timeoutMs?: number;
  /** SPEC.md §8.7.5: per read from one source (all its pages); default REWARD_READ_DEADLINE_MS. */
  deadlineMs?: number;
  schedule?: IssuanceSchedule;
  /** SPEC.md §8.7.5: the page byte limit the sources fill pages to (tests); default REWARD_PAGE_BYTES. */
  pageBytes?: number;
  /** SPEC.md §8.7.7 step 2: the highest tips verified before, per chain (src/client/rewards-seen.ts). */
  seen?: RewardTipsSeen;
}

/** A source reached some other way than a direct URL: a label and a GET of a path with its query. */
export interface RewardSource {
  label: string;
  get(pathAndQuery: string, o: { maxBytes: number; timeoutMs?: number; signal?: AbortSignal }): Promise<HttpResponse>;
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
 * else REWARD_FETCH_TIMEOUT when a read passed a deadline (SPEC.md §8.7.5), else the first
 * transfer failure (DIR_FETCH_FAILED…).
 */
export async function fetchRewardChain(o: FetchRewardChainOptions): Promise<RewardChainResult> {
  const given = o.sources?.length ? [...o.sources] : shuffle(o.authorities.map((a) => a.url));
  const sources = given.map((s) => (typeof s === 'string' ? directSource(s, o.fetcher) : s));
  const failures: RewardChainResult['failures'] = [];
  let got: { acc: ChainAccumulator; source: string } | null = null;
  // SPEC §8.7.5: the blocks verified from a source whose read passed a deadline; the next source goes on from them.
  let partial: ChainAccumulator | null = null;
  for (const src of sources) {
    const source = src.label;
    if (!got) {
      const acc: ChainAccumulator = partial ?? newAccumulator(o);
      try {
        await fetchFrom(src, o, acc);
        got = { acc, source };
      } catch (e) {
        failures.push({ source, code: errorCode(e), reason: (e as Error).message });
        // Every block in `acc` passed the checks of §8.7.3 (a block is applied only once it passed).
        if (acc.blocks.length > 0 && (acc === partial || errorCode(e) === 'REWARD_FETCH_TIMEOUT')) partial = acc;
      }
      continue;
    }
    // An authority that is behind serves a shorter chain that still verifies: ask the others
    // for what comes after the tip we hold. Every block they add passed the same checks
    // (majority of the configured authorities), so any source may extend the chain; a source
    // that fails only loses its say (reported, not fatal).
    try {
      await fetchFrom(src, o, got.acc);
    } catch (e) {
      failures.push({ source, code: errorCode(e), reason: (e as Error).message });
    }
  }
  if (got) {
    checkNoRollback(got.acc, o.seen, rewardAuthoritySetId(o.authorities), failures);
    return { state: got.acc.state, blocks: got.acc.blocks, source: got.source, failures };
  }
  // A read cut at a deadline (REWARD_FETCH_TIMEOUT, SPEC §8.7.5) is a transfer failure, not a verification one.
  const first = failures.find((f) => isErrorCode(f.code) && layerOf(f.code) === 'REWARD' && kindOf(f.code) !== 'timeout')
    ?? failures.find((f) => f.code === 'REWARD_FETCH_TIMEOUT') ?? failures[0];
  const list = failures.map((f) => `${f.source}: ${f.reason}`).join('; ');
  throw err(first && isErrorCode(first.code) ? first.code : 'DIR_FETCH_FAILED', `no authority gave a reward chain that verifies (${list || 'no source'})`, { failures });
}

/**
 * SPEC.md §8.7.7 step 2: a chain whose tip, after every source was asked, is below the highest tip
 * verified before for the same chain (the same block 0), or that holds another block at that
 * height, is a rollback: REWARD_CHAIN_ROLLBACK, naming both heights and the sources. An empty
 * chain (no block 0, so no id) ends at height -1: it is a rollback when a tip was verified before
 * under the same authority set (`authorities`, rewardAuthoritySetId); entries written before the
 * set was kept are not compared with it.
 */
function checkNoRollback(acc: ChainAccumulator, seen: RewardTipsSeen | undefined, authorities: string, failures: RewardChainResult['failures']): void {
  const id = acc.state.chainId?.toString('hex');
  if (id === undefined) {
    const heights = Object.values(seen ?? {}).filter((t) => t.authorities === authorities).map((t) => t.height);
    if (heights.length === 0) return;
    const seenHeight = Math.max(...heights);
    throw err('REWARD_CHAIN_ROLLBACK', `the reward chain the sources gave is empty, below height ${seenHeight} verified before under the same authorities`, { height: acc.state.height, seenHeight, failures });
  }
  const was = seen?.[id];
  if (!was) return;
  const have = acc.blocks[was.height];
  if (have && have.hash.toString('hex') === was.hash) return;
  const why = have ? `holds another block at height ${was.height} than the one verified before` : `ends at height ${acc.state.height}, below height ${was.height} verified before`;
  throw err('REWARD_CHAIN_ROLLBACK', `the reward chain the sources gave ${why}`, { height: acc.state.height, seenHeight: was.height, failures });
}

/** `certs`: every distinct certificate of the bundles read, each checked at most once and only when a signature names it (SPEC §8.7.5). */
interface ChainAccumulator { state: ChainState; blocks: VerifiedRewardBlock[]; certs: RewardCertificateSet }

function newAccumulator(o: FetchRewardChainOptions): ChainAccumulator {
  return { state: emptyChainState(), blocks: [], certs: new RewardCertificateSet(o.authorities, { periodSeconds: o.periodSeconds, skewMs: o.skewMs }) };
}

function directSource(base: string, fetcher: Fetcher | undefined): RewardSource {
  const headers: Record<string, string> = fetcher ? { [FETCHER_HEADER]: fetcher } : {};
  return { label: base, get: (pq, ro) => httpRequest(base + pq, { ...ro, headers }) };
}

/** Fetches from `src` the blocks after `acc`'s tip, verifying and appending each (acc is extended in place). */
async function fetchFrom(src: RewardSource, o: FetchRewardChainOptions, acc: ChainAccumulator): Promise<void> {
  const source = src.label;
  const { state, blocks, certs } = acc;
  const threshold = majorityOf(o.authorities.length);
  const schedule = o.schedule ?? DEFAULT_SCHEDULE;
  // SPEC §8.7.5: the previous page, when it stopped short of the source's chain length.
  let last: { bytes: number; certificates: readonly Uint8Array[] } | null = null;
  // SPEC §8.7.5: the read's deadline and each page's; past either, REWARD_FETCH_TIMEOUT.
  const read = rewardReadSignal(o.deadlineMs);
  const pageMs = o.timeoutMs ?? REWARD_PAGE_TIMEOUT_MS;
  for (;;) {
    const from = state.height + 1;
    // The source's own timeout is a backstop only: the page's signal ends the request first.
    const r = await rewardPage(source, read, pageMs, (signal) => src.get(`${PATHS.rewards}?from=${from}`, { maxBytes: MAX_REWARD_BUNDLE_BYTES, timeoutMs: pageMs + 1000, signal }));
    if (r.status !== 200) throw err('DIR_FETCH_FAILED', `${source}: ${errorBodyReason(r)}`, { status: r.status });
    // SPEC §8.7.4: the layout only; each block is split, its header checked against the tip and its
    // signatures counted, and its body decoded only then (§8.7.3), so a bundle of 64 MiB behind a
    // bad first block, or a block nobody signed, costs no body decode.
    const bundle = splitRewardChainBundle(r.body);
    if (bundle.blocks.length === 0) {
      // A source that says it holds more blocks than it sends is cut short; say so.
      if (bundle.chainLength > from) throw err('REWARD_MALFORMED', `${source} claims ${bundle.chainLength} blocks but sent none from height ${from}`);
      break;
    }
    // SPEC §8.7.5: a page short of the chain length must have been full: its blocks and this
    // page's first exceed the page limit. A source sending fewer blocks (one a page, say) would
    // have the reader make a request per block; it is left for the next source.
    const short = last && shortRewardPage(last, bundle.blocks.at(0)!, o.pageBytes ?? REWARD_PAGE_BYTES);
    if (short) throw err('REWARD_MALFORMED', `${source} sent a short page: ${short}`, { from });
    // Each distinct certificate is taken once, however many pages repeat it, and checked only when a block signature names it.
    for (const c of bundle.certificates) certs.add(c);
    const verifier = certs.verifier;
    for (const raw of bundle.blocks) {
      // SPEC §8.7.3: the header, then the signatures, and only then the body is decoded.
      const sb = applyRewardBlock(state, raw, verifier, threshold, { schedule });
      blocks.push({ block: sb.block, hash: sb.hash, signers: sb.signatures.map((s) => s.authority.toString('hex')).sort() });
    }
    if (state.height + 1 >= bundle.chainLength) break;
    last = { bytes: rewardPageBytes(bundle.blocks), certificates: pageCertificates(bundle.blocks, bundle.certificates) };
  }
}


/** Units as coins with 8 decimals ("12.34500000"). */
export function formatCoins(units: bigint): string {
  const neg = units < 0n;
  const u = neg ? -units : units;
  return `${neg ? '-' : ''}${u / UNITS_PER_COIN}.${(u % UNITS_PER_COIN).toString().padStart(8, '0')}`;
}
