// SPEC.md §6.8: fetch a consensus from one of several sources (relay mirrors, authorities) and
// verify it. Shared by the client and the relay mirror. A source whose document is refused is
// reported with its reason and the next source is tried.
import { errorCode } from '../errors';
import { LIMITS } from '../wire/docs';
import type { AuthorityInfo } from './authorities';
import { verifyConsensus } from './consensus';
import { fetchConsensusBytes } from './fetch';
import type { VerifiedConsensus } from './types';

export interface SourceFailure { source: string; code: string; reason: string }

export interface FetchOutcome {
  /** The best verified consensus any source gave, or null. */
  consensus: VerifiedConsensus | null;
  source: string | null;
  /** Sources that answered 304 Not Modified. */
  notModified: string[];
  failures: SourceFailure[];
}

/**
 * Try sources in order until one gives a consensus that verifies and is newer than `have`
 * (when given). With `ifModifiedSince`, a 304 counts as "nothing newer here".
 */
export async function fetchVerifiedConsensus(
  sources: readonly string[], authorities: readonly AuthorityInfo[],
  o: { now?: () => number; have?: VerifiedConsensus | null; ifModifiedSince?: number; timeoutMs?: number; stopAtFirst?: boolean } = {},
): Promise<FetchOutcome> {
  const now = o.now ?? Date.now;
  const out: FetchOutcome = { consensus: null, source: null, notModified: [], failures: [] };
  for (const src of sources) {
    try {
      const raw = await fetchConsensusBytes(src, { ifModifiedSince: o.ifModifiedSince, timeoutMs: o.timeoutMs, maxBytes: LIMITS.consensusBytes });
      if (raw === null) { out.notModified.push(src); continue; }
      const c = verifyConsensus(raw, authorities, now());
      if (!out.consensus || c.validAfter > out.consensus.validAfter) { out.consensus = c; out.source = src; }
      const newest = !o.have || c.validAfter > o.have.validAfter;
      if (newest && (o.stopAtFirst ?? true)) break;
    } catch (e) {
      out.failures.push({ source: src, code: errorCode(e), reason: (e as Error).message });
    }
  }
  return out;
}
