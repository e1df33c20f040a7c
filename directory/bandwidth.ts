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

/**
 * SPEC.md §6.6 "Measured bandwidth", with proofs (§8.5): for a relay this authority measured,
 *   measured = max(1, min(floor(declared / 1000), max(cap, floor(provenBytesPerSecond / 1000))))
 * Proofs can raise a relay above the unmeasured cap (that is what they are for), never above what
 * it declares (it said it cannot do more; bound 6 already credits both directions, the weight is
 * one); a relay that carried nothing provable in the epoch keeps the capped declared weight, so
 * one quiet epoch (or a relay that joined after it) never drops it to zero and out of paths.
 * `provenBytesPerSecond` maps fingerprints to measure()'s bytesPerSecond; absent = 0.
 */
export function provenSource(provenBytesPerSecond: ReadonlyMap<string, number>, capKBps = DEFAULT_UNMEASURED_CAP_KBPS): BandwidthSource {
  return {
    measuredKBps: (fp, declared) => {
      const proven = Math.floor((provenBytesPerSecond.get(fp) ?? 0) / 1000);
      return Math.max(1, Math.min(Math.floor(declared / 1000), Math.max(capKBps, proven)));
    },
  };
}

/**
 * SPEC.md §8.12 "Weight": for a relay this authority has probed (figure `M` bytes/s, its own count),
 *   capacity = M + min(floor(proven / 2), floor(M / 3))
 *   measured = max(1, min(floor(declared / 1000), floor(capacity / 1000)))
 * `proven` is the relay's weight bytes/s from receipts (§8.5, both directions of its relay links, so
 * half of it is its output there): client traffic the relay carried beside the probe, which took
 * that much of its capacity from the probe, counted only up to a third of what the probe saw
 * (FlashFlow's bound: the weight never exceeds 4/3 of what the measurer itself counted). A relay
 * with no probe figure keeps the rule of provenSource.
 */
export function probedSource(
  provenBytesPerSecond: ReadonlyMap<string, number>, probed: (fp: string) => number | undefined, capKBps = DEFAULT_UNMEASURED_CAP_KBPS,
): BandwidthSource {
  const fallback = provenSource(provenBytesPerSecond, capKBps);
  return {
    measuredKBps: (fp, declared) => {
      const m = probed(fp);
      if (m === undefined || !(m > 0)) return fallback.measuredKBps(fp, declared);
      return Math.max(1, Math.min(Math.floor(declared / 1000), Math.floor(probeCapacity(m, provenBytesPerSecond.get(fp) ?? 0) / 1000)));
    },
  };
}

/** SPEC.md §8.12: the capacity a probe figure `m` and the receipts' `proven` bytes/s support (at most 4/3 · m). */
export function probeCapacity(m: number, proven: number): number {
  const M = Math.max(0, Math.floor(m));
  return M + Math.min(Math.floor(Math.max(0, proven) / 2), Math.floor(M / 3));
}
