// SPEC.md §6.8: fetch a consensus from one of several sources (relay mirrors, authorities) and
// verify it. Shared by the client and the relay mirror. A source whose document is refused is
// reported with its reason and the next source is tried.
import { errorCode } from '../errors';
import { LIMITS } from '../wire/docs';
import type { AuthorityInfo } from './authorities';
import { verifyConsensus } from './consensus';
import { fetchConsensusBytes, type Fetcher } from './fetch';
import type { VerifiedConsensus } from './types';

/**
 * A source that is not a plain URL: a relay's mirror reached over a BEGIN_DIR stream through a
 * guard (SPEC.md §6.10.1). `label` names it in outcomes (never logged at info).
 */
export interface TunnelSource {
  label: string;
  fetch(o: { ifModifiedSince?: number; timeoutMs?: number; maxBytes: number }): Promise<Buffer | null>;
}

export type ConsensusSource = string | TunnelSource;

export interface SourceFailure { source: string; code: string; reason: string }

export interface FetchOutcome {
  /** The best verified consensus any source gave, or null. */
  consensus: VerifiedConsensus | null;
  source: string | null;
  /** Sources that answered 304 Not Modified. */
  notModified: string[];
  failures: SourceFailure[];
}

/** SPEC.md §6.8: true when `b` should replace `a`: newer, or the same body with more signers. */
export function isBetterConsensus(a: VerifiedConsensus | null, b: VerifiedConsensus): boolean {
  if (!a) return true;
  if (b.validAfter !== a.validAfter) return b.validAfter > a.validAfter;
  return b.digest.equals(a.digest) && b.signers.length > a.signers.length;
}

/**
 * Try sources in order until one gives a consensus that verifies and is newer than `have`
 * (when given). With `ifModifiedSince`, a 304 counts as "nothing newer here".
 */
export async function fetchVerifiedConsensus(
  sources: readonly ConsensusSource[], authorities: readonly AuthorityInfo[],
  o: { now?: () => number; have?: VerifiedConsensus | null; ifModifiedSince?: number; timeoutMs?: number; stopAtFirst?: boolean; fetcher?: Fetcher } = {},
): Promise<FetchOutcome> {
  const now = o.now ?? Date.now;
  const out: FetchOutcome = { consensus: null, source: null, notModified: [], failures: [] };
  for (const source of sources) {
    const src = typeof source === 'string' ? source : source.label;
    try {
      const fo = { ifModifiedSince: o.ifModifiedSince, timeoutMs: o.timeoutMs, maxBytes: LIMITS.consensusBytes };
      const raw = typeof source === 'string' ? await fetchConsensusBytes(source, { ...fo, fetcher: o.fetcher }) : await source.fetch(fo);
      if (raw === null) { out.notModified.push(src); continue; }
      const c = verifyConsensus(raw, authorities, now());
      // SPEC.md §6.8: a newer or equally new consensus with more signatures replaces the one kept.
      if (isBetterConsensus(out.consensus, c)) { out.consensus = c; out.source = src; }
      const newest = !o.have || c.validAfter > o.have.validAfter;
      if (newest && (o.stopAtFirst ?? true)) break;
    } catch (e) {
      out.failures.push({ source: src, code: errorCode(e), reason: (e as Error).message });
    }
  }
  return out;
}
