// SPEC.md §9.9.2, §9.18.3: the expiry a renew or keep pass reports for a file.

/**
 * The earliest of `expiries` above 0 (0 when there is none). A loop, not `Math.min(...)`: a large
 * file has more shares than a call can take arguments (about 125 000).
 */
export function earliestExpiry(expiries: Iterable<number>): number {
  let min = 0;
  for (const x of expiries) if (x > 0 && (min === 0 || x < min)) min = x;
  return min;
}
