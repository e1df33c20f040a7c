// SPEC.md §6.8: the last valid consensus, kept on disk (atomic write) by clients and relay
// mirrors and used until it expires. Loading re-verifies it: a file is never trusted as such.
import fsp from 'node:fs/promises';
import { errorCode } from '../errors';
import { writeFileAtomic } from '../ops/fsutil';
import type { AuthorityInfo } from './authorities';
import { verifyConsensus } from './consensus';
import type { VerifiedConsensus } from './types';

export type CacheLoad =
  | { consensus: VerifiedConsensus; savedAt: number }
  | { consensus: null; reason: string; code: string };

export async function loadConsensusCache(file: string, authorities: readonly AuthorityInfo[], now: number): Promise<CacheLoad> {
  let raw: Buffer, savedAt: number;
  try {
    raw = await fsp.readFile(file);
    savedAt = (await fsp.stat(file)).mtimeMs;
  } catch {
    return { consensus: null, reason: 'no consensus saved yet', code: 'CACHE_EMPTY' };
  }
  try {
    return { consensus: verifyConsensus(raw, authorities, now), savedAt };
  } catch (e) {
    return { consensus: null, reason: (e as Error).message, code: errorCode(e) };
  }
}

export async function saveConsensusCache(file: string, c: VerifiedConsensus): Promise<void> {
  await writeFileAtomic(file, c.envelopeBytes, 0o644);
}

/** True when `b` should replace `a`: newer, or the same body with more signers. */
export function isBetterConsensus(a: VerifiedConsensus | null, b: VerifiedConsensus): boolean {
  if (!a) return true;
  if (b.validAfter !== a.validAfter) return b.validAfter > a.validAfter;
  return b.digest.equals(a.digest) && b.signers.length > a.signers.length;
}
