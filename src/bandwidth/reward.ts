// SPEC.md §8.6: how many cloudcoin units an epoch mints and how they
// are split. Integer arithmetic only (BigInt), so every authority computes the same block.
import { err } from '../errors';

/** 1 cloudcoin = 10^8 units; every amount on the chain is in units. */
export const UNITS_PER_COIN = 100_000_000n;

export interface IssuanceSchedule {
  /** Units minted by block 0 (and every block until the first halving). */
  initialPerBlock: bigint;
  /** The amount halves (integer shift) every `halvingInterval` blocks. */
  halvingInterval: number;
}

/**
 * SPEC §8.6 default: 50 coins per block, halving every 35 040 blocks (four years of one-hour
 * epochs), so at most 2 × 50 × 35 040 = 3 504 000 coins are ever minted.
 */
export const DEFAULT_SCHEDULE: IssuanceSchedule = { initialPerBlock: 50n * UNITS_PER_COIN, halvingInterval: 35_040 };

/** Units the schedule allows block `height` to mint: initial >> floor(height / interval); 0 after 64 halvings. */
export function scheduledMint(height: number, s: IssuanceSchedule = DEFAULT_SCHEDULE): bigint {
  if (!Number.isSafeInteger(height) || height < 0) throw err('REWARD_BAD_INPUT', `height must be a non-negative integer, got ${height}`);
  if (typeof s.initialPerBlock !== 'bigint' || s.initialPerBlock < 0n || !Number.isSafeInteger(s.halvingInterval) || s.halvingInterval <= 0) {
    throw err('REWARD_BAD_INPUT', 'invalid issuance schedule');
  }
  const halvings = Math.floor(height / s.halvingInterval);
  return halvings >= 64 ? 0n : s.initialPerBlock >> BigInt(halvings);
}

/** Upper bound on everything the schedule can mint. */
export function maxSupply(s: IssuanceSchedule = DEFAULT_SCHEDULE): bigint {
  let total = 0n;
  for (let h = 0; h < 64; h++) total += (s.initialPerBlock >> BigInt(h)) * BigInt(s.halvingInterval);
  return total;
}

function toBig(fp: string, v: bigint | number): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n) throw err('REWARD_BAD_INPUT', `negative proven bandwidth for ${fp}`);
    return v;
  }
  if (!Number.isSafeInteger(v) || v < 0) throw err('REWARD_BAD_INPUT', `proven bandwidth for ${fp} must be a non-negative integer, got ${v}`);
  return BigInt(v);
}

/**
 * SPEC §8.6: split `minted` units in exact proportion to `proven` (largest remainder method).
 * Each relay first gets floor(minted × p / total); the units left over (fewer than the number of
 * relays) go one each to the largest remainders (minted × p mod total), ties broken by the smaller
 * fingerprint. So the sum is exactly `minted` and every share is within one unit of exact.
 * Relays with zero proven bandwidth and zero allocations are omitted. When the total is zero
 * nothing is allocated (the caller mints nothing: the block records minted = 0).
 * The result iterates in ascending fingerprint order.
 */
export function allocate(minted: bigint, proven: ReadonlyMap<string, bigint | number>): Map<string, bigint> {
  if (typeof minted !== 'bigint' || minted < 0n) throw err('REWARD_BAD_INPUT', 'minted must be a non-negative bigint');
  const entries: { fp: string; p: bigint }[] = [];
  let total = 0n;
  for (const [fp, v] of proven) {
    const p = toBig(fp, v);
    if (p === 0n) continue;
    entries.push({ fp, p });
    total += p;
  }
  const out = new Map<string, bigint>();
  if (total === 0n || minted === 0n) return out;
  entries.sort((a, b) => (a.fp < b.fp ? -1 : a.fp > b.fp ? 1 : 0));
  const base: bigint[] = [];
  const rem: bigint[] = [];
  let given = 0n;
  for (const e of entries) {
    const num = minted * e.p;
    const q = num / total;
    base.push(q);
    rem.push(num % total);
    given += q;
  }
  let left = Number(minted - given); // < entries.length
  if (left > 0) {
    const order = entries.map((_, i) => i);
    // Largest remainder first; equal remainders in fingerprint order (indices are already sorted by fingerprint).
    order.sort((i, j) => (rem[i] > rem[j] ? -1 : rem[i] < rem[j] ? 1 : i - j));
    for (const i of order) {
      if (left === 0) break;
      base[i] += 1n;
      left--;
    }
  }
  entries.forEach((e, i) => { if (base[i] > 0n) out.set(e.fp, base[i]); });
  return out;
}

/** The units a block mints: the schedule's amount, or 0 when nothing was proven. */
export function mintFor(height: number, proven: ReadonlyMap<string, bigint | number>, s: IssuanceSchedule = DEFAULT_SCHEDULE): bigint {
  for (const [fp, v] of proven) if (toBig(fp, v) > 0n) return scheduledMint(height, s);
  return 0n;
}

/** SPEC.md §9.20.2: the part of a block's minted units that pays storage when both kinds were proven (1/5). */
export const STORAGE_SHARE_NUM = 1n;
export const STORAGE_SHARE_DEN = 5n;

/**
 * SPEC.md §8.6 with §9.20.2: a block's allocations over proven bandwidth and audited storage.
 * With both, storage gets floor(minted × 1/5) allocated by stored bytes and bandwidth the rest by
 * proven cells; with only one kind, it gets all of `minted`. Identities in both are summed (a
 * node is either a relay or a storage node, so this does not happen on a well-formed network).
 */
export function allocateWithStorage(
  minted: bigint, proven: ReadonlyMap<string, bigint | number>, stored: ReadonlyMap<string, bigint | number>,
): Map<string, bigint> {
  const any = (m: ReadonlyMap<string, bigint | number>) => [...m].some(([fp, v]) => toBig(fp, v) > 0n);
  const hasBw = any(proven);
  const hasSt = any(stored);
  if (!hasSt) return allocate(minted, proven);
  if (!hasBw) return allocate(minted, stored);
  const st = (minted * STORAGE_SHARE_NUM) / STORAGE_SHARE_DEN;
  const out = allocate(minted - st, proven);
  for (const [fp, v] of allocate(st, stored)) out.set(fp, (out.get(fp) ?? 0n) + v);
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
