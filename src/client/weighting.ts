// SPEC.md §7.1.1–§7.1.2 (weighted choice, position weights): which relays may be hops, the position
// weights per relay class, and the weighted pick. Used by path selection (path.ts) and guard
// sampling (guards.ts), so that neither imports the other for them.
import type { ExitPolicy } from '../dir/exit-policy';

/** The fields of a consensus entry that path selection reads (the directory exposes a superset). */
export interface Relay {
  identity: Buffer;
  fingerprint: string;
  address: string;
  orPort: number;
  flags: ReadonlySet<string>;
  /** Consensus bandwidth weight (any non-negative unit; only ratios matter). */
  weight: number;
  exitPolicy: readonly string[] | ExitPolicy;
  /** Fingerprints this relay declares as its family. */
  family: readonly string[];
  /** 'relay', 'exit', 'storage' (SPEC §6). */
  roles: readonly string[];
}

export type Position = 'guard' | 'middle' | 'exit';

/**
 * Position weights in [0,1] per relay class (SPEC §7.1.2): G = Guard only, D = Guard and Exit,
 * E = Exit only, M = neither. For every class the weights over the positions sum to 1.
 */
export interface BandwidthWeights {
  Wgg: number; Wgd: number;
  Wmg: number; Wmm: number; Wme: number; Wmd: number;
  Wee: number; Wed: number;
}

export function isRunningValid(r: Relay): boolean {
  return r.flags.has('Running') && r.flags.has('Valid');
}

/** A node that extends circuits: roles empty (older entries) or naming 'relay' or 'exit'. A storage-only node is never a hop before the last. */
export function canBeHop(r: Relay): boolean {
  return r.roles.length === 0 || r.roles.includes('relay') || r.roles.includes('exit');
}

/**
 * SPEC §7.1.2, a simplification of Tor's Wxx weights (dir-spec §3.8.3): each position should
 * carry a third of the total bandwidth T. Exits are the scarcest resource, so E and D go to the
 * exit position first (Wee = Wed = min(1, (T/3)/(E+D))); guards take what they need from G plus
 * the D bandwidth left after the exit position; the middle takes everything left over.
 */
export function computeBandwidthWeights(relays: readonly Relay[]): BandwidthWeights {
  let G = 0, D = 0, E = 0, M = 0;
  for (const r of relays) {
    if (!isRunningValid(r) || !canBeHop(r)) continue;
    const w = Math.max(0, r.weight || 0);
    const g = r.flags.has('Guard'), e = r.flags.has('Exit');
    if (g && e) D += w; else if (g) G += w; else if (e) E += w; else M += w;
  }
  const third = (G + D + E + M) / 3;
  const Wed = E + D > 0 ? Math.min(1, third / (E + D)) : 0;
  const guardSupply = G + D * (1 - Wed);
  const Wgg = guardSupply > 0 ? Math.min(1, third / guardSupply) : 0;
  const Wgd = Wgg * (1 - Wed);
  return { Wgg, Wgd, Wmg: 1 - Wgg, Wmm: 1, Wme: 1 - Wed, Wmd: Math.max(0, 1 - Wed - Wgd), Wee: Wed, Wed };
}

/** A relay's weight in a position: consensus weight × the position weight of its class. */
export function positionWeight(r: Relay, pos: Position, w: BandwidthWeights): number {
  const bw = Math.max(0, r.weight || 0);
  const g = r.flags.has('Guard'), e = r.flags.has('Exit');
  switch (pos) {
    case 'guard': return bw * (g && e ? w.Wgd : g ? w.Wgg : 0);
    case 'exit': return bw * (e ? (g ? w.Wed : w.Wee) : 0);
    case 'middle': return bw * (g && e ? w.Wmd : g ? w.Wmg : e ? w.Wme : w.Wmm);
  }
}

/**
 * Pick one item with probability proportional to weight(item). If every weight is 0, fall back
 * to `fallback` weights (raw bandwidth), then to a uniform choice, so a small or unmeasured
 * network still yields a path. Returns null only for an empty list.
 */
export function weightedPick<T>(items: readonly T[], weight: (x: T) => number, rng: () => number, fallback?: (x: T) => number): T | null {
  if (items.length === 0) return null;
  for (const f of fallback ? [weight, fallback] : [weight]) {
    const ws = items.map((x) => { const v = f(x); return Number.isFinite(v) && v > 0 ? v : 0; });
    const total = ws.reduce((a, b) => a + b, 0);
    if (total <= 0) continue;
    let point = rng() * total;
    for (let i = 0; i < items.length; i++) {
      if (ws[i] === 0) continue;
      point -= ws[i];
      if (point < 0) return items[i];
    }
    for (let i = items.length - 1; i >= 0; i--) if (ws[i] > 0) return items[i]; // rounding at the top end
  }
  return items[Math.min(items.length - 1, Math.floor(rng() * items.length))];
}
