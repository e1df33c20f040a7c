// SPEC.md §11.1: a time from a document or the wire is printed for people without ever throwing
// (new Date(x).toISOString() throws RangeError outside ±8.64e15 ms).
import { describe, it, expect } from 'vitest';
import { isoTime } from '../../src/ops/log';

describe('isoTime', () => {
  it('prints a time in range as ISO 8601', () => {
    expect(isoTime(0)).toBe('1970-01-01T00:00:00.000Z');
    expect(isoTime(1_800_000_000_000)).toBe('2027-01-15T08:00:00.000Z');
    expect(isoTime(-1000)).toBe('1969-12-31T23:59:59.000Z');
    expect(isoTime(1.75)).toBe('1970-01-01T00:00:00.001Z');
    expect(isoTime(8.64e15)).toBe('+275760-09-13T00:00:00.000Z');
  });
  it('prints any other number as itself, never throwing', () => {
    expect(isoTime(1e300)).toBe('<invalid time 1e+300>');
    expect(isoTime(-1e16)).toBe('<invalid time -10000000000000000>');
    expect(isoTime(2 ** 64)).toBe('<invalid time 18446744073709552000>');
    expect(isoTime(NaN)).toBe('<invalid time NaN>');
    expect(isoTime(Infinity)).toBe('<invalid time Infinity>');
    expect(isoTime(8.64e15 + 1)).toBe('<invalid time 8640000000000001>');
  });
});
