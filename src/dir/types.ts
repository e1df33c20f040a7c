// SPEC.md §6.6: relay flags and roles as the directory encodes them, and the verified
// consensus shape every consumer (path selection, storage placement, mirrors) reads.

/** Flag bits (SPEC.md §6.6). The order is the wire order of the bitmask. */
export const FLAG_BITS = {
  Running: 1,
  Valid: 2,
  Guard: 4,
  Exit: 8,
  Fast: 16,
  Stable: 32,
  Storage: 64,
} as const;
export type Flag = keyof typeof FLAG_BITS;
export const ALL_FLAGS = Object.keys(FLAG_BITS) as Flag[];
export const ALL_FLAGS_MASK = 0x7f;

/** Role bits (SPEC.md §6.4). */
/** `hidden` (8): a storage node listed without address or ports (SPEC.md §9.21.1). */
export const ROLE_BITS = { relay: 1, exit: 2, storage: 4, hidden: 8 } as const;
export type Role = keyof typeof ROLE_BITS;
export const ALL_ROLES = Object.keys(ROLE_BITS) as Role[];

export function flagsFromMask(mask: number): Set<Flag> {
  const s = new Set<Flag>();
  for (const f of ALL_FLAGS) if (mask & FLAG_BITS[f]) s.add(f);
  return s;
}
export function flagsToMask(flags: Iterable<Flag>): number {
  let m = 0;
  for (const f of flags) m |= FLAG_BITS[f];
  return m;
}
export function rolesFromMask(mask: number): Role[] {
  return ALL_ROLES.filter((r) => mask & ROLE_BITS[r]);
}
export function rolesToMask(roles: Iterable<Role>): number {
  let m = 0;
  for (const r of roles) m |= ROLE_BITS[r];
  return m;
}

/** One relay as a verified consensus lists it. */
export interface ConsensusRelay {
  identity: Buffer;
  /** 64 lowercase hex characters of `identity`. */
  fingerprint: string;
  nickname: string;
  /** X25519 ntor onion key. */
  onionKey: Buffer;
  /** Dotted IPv4. */
  address: string;
  orPort: number;
  /** 0 when the relay mirrors no directory. */
  dirPort: number;
  /** 0 when the node offers no storage service. */
  storagePort: number;
  /** Shared between relays with the same flags: read-only. */
  flags: ReadonlySet<Flag>;
  /** Consensus weight, kilobytes (1000 B) per second. */
  weight: number;
  /** Exit policy rule lines (Tor style), in order; empty = rejects everything. Frozen, shared. */
  exitPolicy: readonly string[];
  /** Fingerprints of the relay's declared family. Frozen, shared. */
  family: readonly string[];
  /** Frozen, shared. */
  roles: readonly Role[];
  /** Fingerprints of the moderator keys the node enforces. Frozen, shared. */
  moderators: readonly string[];
  /** True when the node subscribes to no moderator (SPEC.md §9: encrypted content only). */
  unmoderated: boolean;
  version: string;
  /**
   * SPEC.md §8.6: proven cells of this relay in the consensus's `provenEpoch` (the low median of
   * the listing votes' measurements); 0 when the consensus carries no measurement.
   */
  proven: number;
  /** SPEC.md §9.20.2: audited stored bytes of this storage node in `provenEpoch` (0 or absent: none). */
  stored?: number;
}

declare const verifiedBrand: unique symbol;

/**
 * A consensus that has been checked: more than half of the configured authorities signed
 * these exact bytes with certified keys, and it was inside its validity window when checked.
 * Only src/dir/consensus.ts makes one (the brand cannot be forged without a cast).
 */
export interface VerifiedConsensus {
  readonly [verifiedBrand]: true;
  /** ms since the Unix epoch. */
  validAfter: number;
  freshUntil: number;
  validUntil: number;
  periodSeconds: number;
  /**
   * SPEC.md §8.6: the epoch whose proven values `relays[i].proven` carry (valid_after / (P·1000) − 2),
   * or null when this consensus carries no measurement (older consensuses included).
   */
  provenEpoch: number | null;
  /**
   * SPEC.md §6.4.1/§6.7: the identity proof parameters the authorities voted (what relays mine at
   * and authorities check against), or null when the consensus carries none (older consensuses).
   */
  identityPow: { memoryKib: number; ops: number; difficulty: number; anchorPeriods: number } | null;
  /**
   * SPEC.md §6.7.1: the consensus parameters (name → value) a majority of all authorities voted;
   * empty when the consensus carries none (older consensuses included). src/dir/consensus-params.ts.
   */
  params: ReadonlyMap<string, number>;
  relays: ConsensusRelay[];
  /** Fingerprints of the authorities whose signatures verified, sorted. */
  signers: string[];
  /** Fingerprints of the authorities whose votes made it. */
  voters: string[];
  /** Exact signed DocumentBody bytes. */
  bodyBytes: Buffer;
  /** SHA-256 of bodyBytes. */
  digest: Buffer;
  /** The whole envelope as received (for caches and mirrors). */
  envelopeBytes: Buffer;
}
