// SPEC.md §9.3: the erasure-coding parameters of an upload (k data shares of n, any k rebuild the chunk).
import { err, type ErrorCode } from '../errors';

export interface Coding {
  /** Shares needed to rebuild a chunk. */
  readonly k: number;
  /** Shares made per chunk (k data + n−k parity). */
  readonly n: number;
}

/** Upper bound on n: keeps manifests and placement bounded (the field itself allows 256). */
export const MAX_SHARES_PER_CHUNK = 64;

/** SPEC.md §9.3: 4-of-6 by default; `durable` 3-of-10 survives the loss of 70% of the holders. */
export const CODING_PROFILES = {
  default: { k: 4, n: 6 },
  durable: { k: 3, n: 10 },
} as const satisfies Record<string, Coding>;
export type CodingProfile = keyof typeof CODING_PROFILES;
export const DEFAULT_CODING: Coding = CODING_PROFILES.default;

/** Parse a coding: 1 ≤ k ≤ n ≤ MAX_SHARES_PER_CHUNK, integers. Throws `code` (default STORAGE_CODING_INVALID). */
export function checkCoding(k: unknown, n: unknown, code: ErrorCode = 'STORAGE_CODING_INVALID'): Coding {
  if (typeof k !== 'number' || typeof n !== 'number' || !Number.isInteger(k) || !Number.isInteger(n)) {
    throw err(code, 'coding k and n must be integers', { k, n });
  }
  if (k < 1 || n < k || n > MAX_SHARES_PER_CHUNK) {
    throw err(code, `coding must satisfy 1 <= k <= n <= ${MAX_SHARES_PER_CHUNK}`, { k, n });
  }
  return { k, n };
}

/** A profile name ('default', 'durable') or "K-of-N" / "K/N" → Coding. */
export function parseCoding(text: string): Coding {
  if (Object.hasOwn(CODING_PROFILES, text)) return CODING_PROFILES[text as CodingProfile];
  const m = /^(\d{1,3})(?:-of-|\/)(\d{1,3})$/.exec(text);
  if (!m) throw err('STORAGE_CODING_INVALID', `coding must be a profile (${Object.keys(CODING_PROFILES).join(', ')}) or K-of-N`, { text });
  return checkCoding(Number(m[1]), Number(m[2]));
}
