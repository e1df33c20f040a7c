// SPEC.md §10.3, §10.7.1: a DenySet holds a policy's entries packed in one sorted buffer; its
// answers are those of a plain set of the entries, and it costs about the entries' bytes.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import v8 from 'node:v8';
import vm from 'node:vm';
import { randomBytes } from '../../src/crypto/primitives';
import { allowEntry, denyEntry, DenySet } from '../../src/moderation/denylist';

/** global.gc, or one made available at run time (v8 flag), or null. */
function exposedGc(): (() => void) | null {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) return g;
  try {
    v8.setFlagsFromString('--expose-gc');
    return vm.runInNewContext('gc') as () => void;
  } catch {
    return null;
  }
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Entries that share long prefixes with each other (only the last byte or two differ). */
function prefixed(): Buffer[] {
  const out: Buffer[] = [];
  for (const last of [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff]) {
    const a = Buffer.alloc(32, 0x55); a[31] = last; out.push(a);
    const b = Buffer.alloc(32, 0x55); b[30] = 0x56; b[31] = last; out.push(b);
  }
  out.push(Buffer.alloc(32, 0x00), Buffer.alloc(32, 0xff));
  return out;
}

function sameAsSet(s: DenySet, listed: readonly Uint8Array[], probes: readonly Uint8Array[]): void {
  const ref = new Set(listed.map(hex));
  expect(s.size).toBe(ref.size);
  for (const p of [...listed, ...probes]) expect(s.hasEntry(p), hex(p)).toBe(ref.has(hex(p)));
  expect(s.entries().map(hex)).toEqual([...ref].sort());
}

describe('DenySet: one packed sorted buffer, answers as a set (SPEC.md §10.7.1)', () => {
  it('membership is that of a Set: first and last keys, shared prefixes, duplicates, absent keys', () => {
    const all = prefixed();
    const listed = all.filter((_, i) => i % 2 === 0);
    const absent = all.filter((_, i) => i % 2 === 1);
    // Unsorted and with duplicates, as a caller may hand them.
    const input = [...listed].reverse().concat(listed.slice(0, 3));
    const s = DenySet.of(input);
    sameAsSet(s, listed, absent);
    const sorted = listed.map(hex).sort();
    expect(s.hasEntry(Buffer.from(sorted[0], 'hex'))).toBe(true);
    expect(s.hasEntry(Buffer.from(sorted[sorted.length - 1], 'hex'))).toBe(true);
    // An entry of another length is never listed.
    expect(s.hasEntry(listed[0].subarray(0, 31))).toBe(false);
    expect(DenySet.EMPTY.hasEntry(listed[0])).toBe(false);
    expect(DenySet.of([]).size).toBe(0);
  });

  it('raw ids are matched through the double hash (deny and allow entries)', () => {
    const ids = Array.from({ length: 50 }, (_, i) => Buffer.alloc(32, i));
    const d = DenySet.of(ids.slice(0, 25).map(denyEntry));
    const a = DenySet.of(ids.slice(0, 25).map(allowEntry), allowEntry);
    for (const [i, id] of ids.entries()) {
      expect(d.deniesId(id)).toBe(i < 25);
      expect(a.hasId(id)).toBe(i < 25);
    }
  });

  it('edits (add, remove, re-add) give the same set as a Set given the same edits', () => {
    const key = fc.integer({ min: 0, max: 40 });
    const ops = fc.array(fc.tuple(fc.constantFrom('add', 'remove'), key), { maxLength: 60 });
    fc.assert(fc.property(fc.array(key, { maxLength: 30 }), ops, ops, (start, ops1, ops2) => {
      const pool = prefixed().concat(Array.from({ length: 27 }, (_, i) => denyEntry(Buffer.alloc(32, i))));
      const ref = new Set(start.map((i) => hex(pool[i])));
      const s0 = DenySet.of(start.map((i) => pool[i]));
      const e = s0.edit();
      for (const [op, i] of ops1) {
        if (op === 'add') { e.add(pool[i]); ref.add(hex(pool[i])); } else { e.remove(pool[i]); ref.delete(hex(pool[i])); }
        expect(e.hasEntry(pool[i])).toBe(ref.has(hex(pool[i])));
      }
      const s1 = e.done();
      const at1 = new Set(ref);
      // Later changes to the copy do not reach the set handed over.
      for (const [op, i] of ops2) { if (op === 'add') e.add(pool[i]); else e.remove(pool[i]); }
      e.done();
      sameAsSet(s1, [...at1].map((h) => Buffer.from(h, 'hex')), pool);
      sameAsSet(s0, start.map((i) => pool[i]), pool);
    }), { numRuns: 200 });
  });

  it('apply adds and removes', () => {
    const [x, y, z] = prefixed();
    sameAsSet(DenySet.of([x, y]).apply([z], [x]), [y, z], [x]);
  });

  it('a 200 000-entry set adds less than 2x its bytes to heapUsed + external', () => {
    const gc = exposedGc();
    const n = 200_000;
    const packed = randomBytes(n * 32);
    const used = (): number => { gc?.(); gc?.(); const m = process.memoryUsage(); return m.heapUsed + m.external; };
    const before = used();
    // Entries as a decoded policy hands them: subarrays of the one buffer it read (dropped after).
    const build = (): DenySet => DenySet.of(Array.from({ length: n }, (_, i) => packed.subarray(i * 32, i * 32 + 32)));
    let s: DenySet | null = build();
    const grew = used() - before;
    expect(s.size).toBe(n);
    expect(s.hasEntry(packed.subarray((n - 1) * 32))).toBe(true);
    s = null;
    // Without a gc to call the numbers would measure garbage, not the set: no assertion then.
    if (gc) expect(grew).toBeLessThan(2 * n * 32);
  });
});
