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
  const m = /^\s*bytes\s*=\s*([^,]*)$/i.exec(header);
  if (!m) return { kind: 'none' }; // other units, or several ranges: ignored
  const spec = m[1].trim();
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
