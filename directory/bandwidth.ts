// SPEC.md §6.6: where an authority's "measured" bandwidth comes from. Pluggable: today the
// measured value is the declared one, capped (nobody has measured the relay); the
// proof-of-bandwidth engine (SPEC.md §8) plugs verified receipts in through the same interface.

export interface BandwidthSource {
  /**
   * Kilobytes (1000 B) per second to vote for this relay. `declared` is the descriptor's
   * declared bandwidth in bytes per second.
   */
  measuredKBps(fingerprint: string, declaredBytesPerSecond: number): number;
}

/** SPEC.md §6.6: default cap for relays nobody has measured yet, KB/s. */
export const DEFAULT_UNMEASURED_CAP_KBPS = 1000;

/**
 * measured = min(declared, cap) for every relay: a relay that overstates its bandwidth cannot
 * attract more than `cap` until proofs of bandwidth say otherwise. At least 1 so every listed
 * relay stays selectable.
 */
export function cappedDeclaredSource(capKBps = DEFAULT_UNMEASURED_CAP_KBPS): BandwidthSource {
  return {
    measuredKBps: (_fp, declared) => Math.max(1, Math.min(capKBps, Math.floor(declared / 1000))),
  };
}
