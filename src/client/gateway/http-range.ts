// SPEC.md §9.16.3: the Range header (RFC 9110 §14). One range is served (206); a range starting at
// or past the end is 416; a header the gateway does not serve (another unit, several ranges, bad
// syntax) is ignored and the whole file is sent (200), as RFC 9110 §14.2 allows.
export type RangeResult =
  | { kind: 'none' }
  | { kind: 'range'; start: number; end: number } // inclusive end, start <= end < size
  | { kind: 'unsatisfiable' };

// Any number of digits: a number too large for a double becomes Infinity (a huge end is clamped, a
// huge start is 416); b < a is compared exactly.
const DIGITS = /^\d+$/;

export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return { kind: 'none' };
  // Split by hand, in one pass each, not with a pattern such as /^\s*bytes\s*=\s*([^,]*)$/: its
  // two runs that both take white space backtracked quadratically, so one request with a header of
  // "bytes=", 16 KiB of spaces and a comma held the proxy's event loop (every circuit and stream of
  // the client) for about a third of a second (SPEC.md §9.16.3).
  const eq = header.indexOf('=');
  if (eq < 0 || header.slice(0, eq).trim().toLowerCase() !== 'bytes') return { kind: 'none' }; // other units: ignored
  if (header.includes(',', eq)) return { kind: 'none' }; // several ranges: ignored
  const spec = header.slice(eq + 1).trim();
  const dash = spec.indexOf('-');
  if (dash < 0) return { kind: 'none' };
  const a = spec.slice(0, dash).trim();
  const b = spec.slice(dash + 1).trim();
  if (a === '') {
    // Suffix range: the last N bytes.
    if (!DIGITS.test(b)) return { kind: 'none' };
    const n = Number(b);
    if (n === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', start: Math.max(0, size - Math.min(n, size)), end: size - 1 };
  }
  if (!DIGITS.test(a) || (b !== '' && !DIGITS.test(b))) return { kind: 'none' };
  const start = Number(a);
  if (b !== '' && BigInt(b) < BigInt(a)) return { kind: 'none' }; // invalid range: ignored (RFC 9110 §14.1.1)
  if (start >= size) return { kind: 'unsatisfiable' }; // also for huge numbers beyond 2^53
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  return { kind: 'range', start, end };
}
