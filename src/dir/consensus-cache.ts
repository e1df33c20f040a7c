// SPEC.md §6.8: the last valid consensus, kept on disk (atomic write) by clients and relay
// mirrors and used until it expires. Loading re-verifies it: a file is never trusted as such.
import fsp from 'node:fs/promises';
import path from 'node:path';
import { err, errorCode } from '../errors';
import { writeFileAtomic } from '../ops/fsutil';
import type { AuthorityInfo } from './authorities';
import { consensusIfModifiedSince, UncheckedConsensus } from './consensus';
import type { VerifiedConsensus } from './types';
import { fetchVerifiedConsensus, isBetterConsensus, type ConsensusSource } from './consensus-fetch';
import type { Fetcher } from './fetch';

/** The file, in a client's or a node's data folder, that holds the last valid consensus. */
export const CONSENSUS_CACHE_FILE = 'cached-consensus';

export type CacheLoad =
  | { consensus: VerifiedConsensus; savedAt: number }
  /** `expired`: with `liveForMs`, a cached consensus that verifies as of its own valid-until and expired less than that long ago. */
  | { consensus: null; reason: string; code: string; expired?: VerifiedConsensus };

export async function loadConsensusCache(file: string, authorities: readonly AuthorityInfo[], now: number, liveForMs = 0): Promise<CacheLoad> {
  let raw: Buffer, savedAt: number;
  try {
    raw = await fsp.readFile(file);
    savedAt = (await fsp.stat(file)).mtimeMs;
  } catch {
    return { consensus: null, reason: 'no consensus saved yet', code: 'CACHE_EMPTY' };
  }
  let u: UncheckedConsensus | null = null;
  try {
    u = UncheckedConsensus.parse(raw);
    return { consensus: u.check(authorities, now), savedAt };
  } catch (e) {
    const miss = { consensus: null, reason: (e as Error).message, code: errorCode(e) };
    if (u && liveForMs > 0 && now > u.validUntil && now - u.validUntil <= liveForMs) {
      try { return { ...miss, expired: u.check(authorities, u.validUntil) }; } catch { /* it does not verify */ }
    }
    return miss;
  }
}

export async function saveConsensusCache(file: string, c: VerifiedConsensus): Promise<void> {
  await writeFileAtomic(file, c.envelopeBytes, 0o644);
}

export { isBetterConsensus } from './consensus-fetch';

/**
 * The consensus a one-shot command should use: the one kept in `dataDir` while it is fresh, else
 * one fetched from `sources` (kept on disk when `save` and better), else the kept one until it
 * expires. CONSENSUS_NOT_AVAILABLE when there is none at all.
 */
export async function currentConsensus(o: {
  dataDir: string; authorities: readonly AuthorityInfo[];
  /** Where to fetch when the cached one is not fresh; a function gets the cached one (or null) to choose (SPEC.md §6.10.1). */
  sources: readonly ConsensusSource[] | ((have: VerifiedConsensus | null) => readonly ConsensusSource[]);
  save?: boolean; now?: () => number; timeoutMs?: number; fetcher?: Fetcher;
}): Promise<VerifiedConsensus> {
  const now = o.now ?? Date.now;
  const cacheFile = path.join(o.dataDir, CONSENSUS_CACHE_FILE);
  const have = (await loadConsensusCache(cacheFile, o.authorities, now())).consensus;
  if (have && now() <= have.freshUntil) return have;
  const sources = typeof o.sources === 'function' ? o.sources(have) : o.sources;
  // SPEC.md §6.10.1 step 2: a holder sends its fresh_until; a 304 keeps the one held.
  const ifModifiedSince = have ? consensusIfModifiedSince(have) : undefined;
  const r = await fetchVerifiedConsensus(sources, o.authorities, { now, have, ifModifiedSince, timeoutMs: o.timeoutMs ?? 10_000, fetcher: o.fetcher });
  if (r.consensus && isBetterConsensus(have, r.consensus)) {
    if (o.save ?? true) await saveConsensusCache(cacheFile, r.consensus).catch(() => {});
    return r.consensus;
  }
  if (have) return have;
  const why = r.failures.map((f) => `${f.source}: ${f.code}`).join('; ');
  throw err('CONSENSUS_NOT_AVAILABLE', `no valid consensus${why ? `: ${why}` : ''}`, { failures: r.failures });
}
