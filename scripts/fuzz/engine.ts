// The fuzzing engine that runs inside one worker thread for one target: fast-check generates the
// inputs (raw random bytes, and mutations of the target's valid seeds), each is decoded, and
// every outcome that is not "returned" or "threw a BitcloudError" is reported as a finding.
//
// The allocation bound: decoding an input of L bytes may grow the V8 heap plus ArrayBuffer
// (external) memory by at most ALLOC_BOUND(L) = 16 MiB + 1024 × L, measured with
// v8.getHeapStatistics() (used_heap_size + external_memory) immediately before the call and right
// after it while the decoded result is still referenced. A decoder that sizes a buffer from a
// length field in the input (4 GiB "because the header said so") exceeds it at once, or throws a
// RangeError, which is a finding too. Garbage collection during the call can only lower the
// measured growth; the heap's own bookkeeping can raise it now and then, so an input over the
// bound is decoded a second time and reported only if it is over the bound again. Allocations
// that are made and reclaimed inside one call are not seen.
//
// The resource bound: over one target's run the process's memory mappings may grow by at most
// MAX_MAPS_GROWTH and its open file descriptors by at most MAX_FDS_GROWTH (Linux /proc/self). The
// run never yields to the event loop, so a native resource that is freed late (after a collection
// and a later turn of the loop, as Node frees a native addon's external buffers) or never piles up
// there: one mapping or descriptor per input shows at once, where a daemon would only run out
// under a long flood.
import fs from 'node:fs';
import v8 from 'node:v8';
import fc from 'fast-check';
import { isBitcloudError } from '../../src/errors';
import type { FuzzTarget } from './targets';

export const ALLOC_BOUND = (len: number): number => 16 * 1024 * 1024 + 1024 * len;

/** A run's growth past these is a finding (see the file comment); normal runs grow by under 100 mappings. */
export const MAX_MAPS_GROWTH = 4096;
export const MAX_FDS_GROWTH = 256;

export interface OsResources { maps: number; fds: number }

/** The process's memory mappings and open file descriptors, or null where /proc/self is missing. */
export function osResources(): OsResources | null {
  try {
    return { maps: fs.readFileSync('/proc/self/maps', 'utf8').split('\n').length - 1, fds: fs.readdirSync('/proc/self/fd').length };
  } catch {
    return null;
  }
}

/** What a run's growth in resources says: null when within the bounds (or not measured). */
export function resourceGrowthFinding(before: OsResources | null, after: OsResources | null, inputs: number): string | null {
  if (!before || !after) return null;
  const maps = after.maps - before.maps, fds = after.fds - before.fds;
  if (maps <= MAX_MAPS_GROWTH && fds <= MAX_FDS_GROWTH) return null;
  return `over ${inputs} inputs the process's memory mappings grew by ${maps} (bound ${MAX_MAPS_GROWTH}) and its open file descriptors by ${fds} (bound ${MAX_FDS_GROWTH}): a native resource freed late or never`;
}

export interface Finding {
  kind: 'throw' | 'alloc' | 'hang' | 'leak';
  /** Short and stable: the error's name and first line of message, or the bound that was passed. */
  signature: string;
  input: Buffer;
  detail: string;
}

/** Values that make length fields and counters interesting. */
const INTERESTING_U32 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const INTERESTING_U8 = [0, 1, 0x7f, 0x80, 0xfe, 0xff];

type Op =
  | { k: 'flip'; at: number; bit: number }
  | { k: 'set'; at: number; v: number }
  | { k: 'u32'; at: number; v: number; le: boolean }
  | { k: 'insert'; at: number; data: Uint8Array }
  | { k: 'delete'; at: number; n: number }
  | { k: 'dup'; at: number; n: number; to: number }
  | { k: 'truncate'; at: number }
  | { k: 'splice'; at: number; other: number; from: number; n: number }
  | { k: 'varint'; at: number; n: number }
  | { k: 'pb'; pick: number; how: number; v: number; data: Uint8Array };

const pbOpArb = fc.record({ k: fc.constant('pb' as const), pick: fc.nat(), how: fc.nat(), v: fc.nat(), data: fc.uint8Array({ maxLength: 40 }) });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('set' as const), at: fc.nat(), v: fc.oneof(fc.constantFrom(...INTERESTING_U8), fc.nat(255)) }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('u32' as const), at: fc.nat(), v: fc.constantFrom(...INTERESTING_U32), le: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('insert' as const), at: fc.nat(), data: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 64 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('dup' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 64 }), to: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('splice' as const), at: fc.nat(), other: fc.nat(), from: fc.nat(), n: fc.integer({ min: 1, max: 256 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('varint' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 10 }) }) },
  { weight: 2, arbitrary: pbOpArb },
);

// ---- protobuf-aware mutation: most of the formats are protobuf, and a byte flip in one mostly
// stops at "not valid protobuf". These parse the wire format without a schema (SPEC.md §6 and
// §9 formats), change one field (at any depth) and re-encode, so the decoders' field checks run.

interface PbField { tag: number; wt: number; raw: Buffer; sub: PbField[] | null }

function readVarint(b: Buffer, o: number): [bigint, number] | null {
  let v = 0n, shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (o >= b.length) return null;
    const x = b[o++];
    v |= BigInt(x & 0x7f) << shift;
    if (!(x & 0x80)) return [v, o];
    shift += 7n;
  }
  return null;
}
function writeVarint(v: bigint): Buffer {
  const out: number[] = [];
  v = BigInt.asUintN(64, v);
  do { let x = Number(v & 0x7fn); v >>= 7n; if (v) x |= 0x80; out.push(x); } while (v);
  return Buffer.from(out);
}
function parsePb(b: Buffer, depth: number): PbField[] | null {
  const fields: PbField[] = [];
  let o = 0;
  while (o < b.length) {
    const k = readVarint(b, o);
    if (!k) return null;
    const key = Number(k[0]);
    o = k[1];
    const tag = key >>> 3, wt = key & 7;
    if (tag === 0) return null;
    let raw: Buffer;
    if (wt === 0) { const v = readVarint(b, o); if (!v) return null; raw = b.subarray(o, v[1]); o = v[1]; }
    else if (wt === 1) { if (o + 8 > b.length) return null; raw = b.subarray(o, o + 8); o += 8; }
    else if (wt === 5) { if (o + 4 > b.length) return null; raw = b.subarray(o, o + 4); o += 4; }
    else if (wt === 2) {
      const l = readVarint(b, o); if (!l) return null;
      o = l[1]; const n = Number(l[0]); if (o + n > b.length) return null;
      raw = b.subarray(o, o + n); o += n;
    } else return null;
    const sub = wt === 2 && depth < 4 && raw.length > 0 ? parsePb(raw, depth + 1) : null;
    fields.push({ tag, wt, raw, sub });
  }
  return fields;
}
function encodePb(fields: PbField[]): Buffer {
  const parts: Buffer[] = [];
  for (const f of fields) {
    parts.push(writeVarint(BigInt((f.tag << 3) | f.wt)));
    const raw = f.sub ? encodePb(f.sub) : f.raw;
    if (f.wt === 2) parts.push(writeVarint(BigInt(raw.length)));
    parts.push(raw);
  }
  return Buffer.concat(parts);
}
const INTERESTING_VARINTS = [0n, 1n, 2n, 0x7fn, 0x80n, 0xffffn, 0x10000n, 0xffffffffn, 0x100000000n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, 2n ** 64n - 1n];
/** Every field of the tree, with the list that holds it. */
function allFields(fields: PbField[], out: [PbField[], number][] = []): [PbField[], number][] {
  fields.forEach((f, i) => { out.push([fields, i]); if (f.sub) allFields(f.sub, out); });
  return out;
}
function mutatePb(b: Buffer, op: { pick: number; how: number; v: number; data: Uint8Array }): Buffer {
  const top = parsePb(b, 0);
  if (!top || top.length === 0) return b;
  const all = allFields(top);
  const [list, i] = all[op.pick % all.length];
  const f = list[i];
  switch (op.how % 8) {
    case 0: list.splice(i, 1); break; // drop the field
    case 1: list.splice(i, 0, { ...f }); break; // repeat it
    case 2: // a new value of the same wire type
      if (f.wt === 0) f.raw = writeVarint(op.v % 3 === 0 ? BigInt(op.v) : INTERESTING_VARINTS[op.v % INTERESTING_VARINTS.length]);
      else { f.sub = null; f.raw = Buffer.from(op.data); }
      break;
    case 3: // same bytes, one shorter or longer (lengths of keys, hashes, signatures)
      f.sub = null;
      f.raw = op.v & 1 ? f.raw.subarray(0, Math.max(0, f.raw.length - 1 - (op.v % 4))) : Buffer.concat([f.raw, Buffer.from(op.data.subarray(0, 1 + (op.v % 4)))]);
      break;
    case 4: f.tag = 1 + (op.v % 24); break; // another field number
    case 5: { const j = op.v % list.length; [list[i], list[j]] = [list[j], list[i]]; break; } // order
    case 6: list.splice(i, 0, { tag: 1 + (op.v % 24), wt: [0, 2, 5, 1][op.v % 4], raw: Buffer.from(op.data.length ? op.data : [1]), sub: null }); break;
    default: // a string field: characters the formats refuse
      f.sub = null;
      f.raw = Buffer.from(['', ' ', 'A'.repeat(300), '\u0000', 'é', '..', '*:*', '0.0.0.0/0', '[::]', 'reject *:*'][op.v % 10], 'utf8');
  }
  return encodePb(top);
}

function applyOps(seed: Uint8Array, ops: readonly Op[], seeds: readonly Uint8Array[], maxLen: number): Buffer {
  let b: Buffer = Buffer.from(seed);
  for (const op of ops) {
    const L = b.length;
    const at = L === 0 || !('at' in op) ? 0 : op.at % L;
    switch (op.k) {
      case 'flip': if (L) b[at] ^= 1 << op.bit; break;
      case 'set': if (L) b[at] = op.v; break;
      case 'u32':
        if (L >= 4) { const p = op.at % (L - 3); if (op.le) b.writeUInt32LE(op.v, p); else b.writeUInt32BE(op.v, p); }
        break;
      case 'insert': b = Buffer.concat([b.subarray(0, at), op.data, b.subarray(at)]); break;
      case 'delete': b = Buffer.concat([b.subarray(0, at), b.subarray(at + op.n)]); break;
      case 'dup': { const part = b.subarray(at, at + op.n); const to = L === 0 ? 0 : op.to % L; b = Buffer.concat([b.subarray(0, to), part, b.subarray(to)]); break; }
      case 'truncate': b = b.subarray(0, at); break;
      case 'splice': {
        const o = seeds[op.other % seeds.length];
        const from = o.length === 0 ? 0 : op.from % o.length;
        b = Buffer.concat([b.subarray(0, at), o.subarray(from, from + op.n), b.subarray(at)]);
        break;
      }
      case 'pb': b = mutatePb(b, op); break;
      case 'varint': // a protobuf varint that never ends (or ends late): 0xff…
        b = Buffer.concat([b.subarray(0, at), Buffer.alloc(op.n, 0xff), b.subarray(at)]);
        break;
    }
    if (b.length > maxLen) b = b.subarray(0, maxLen);
  }
  return b;
}

/** The input generator for one target: mostly mutated seeds, some raw bytes. */
export function inputArbitrary(seeds: readonly Buffer[], maxLen: number): fc.Arbitrary<Buffer> {
  const raw = fc.uint8Array({ maxLength: maxLen, size: 'medium' }).map((u) => Buffer.from(u.buffer, u.byteOffset, u.length));
  if (seeds.length === 0) return raw;
  const mutated = fc.tuple(fc.nat(seeds.length - 1), fc.array(opArb, { minLength: 1, maxLength: 8 }))
    .map(([i, ops]) => applyOps(seeds[i], ops, seeds, maxLen));
  const prefix = fc.tuple(fc.nat(seeds.length - 1), fc.uint8Array({ maxLength: 64 }))
    .map(([i, tail]) => { const s = seeds[i]; return Buffer.concat([s.subarray(0, Math.min(s.length, 1 + (tail.length * 37) % (s.length + 1))), tail]).subarray(0, maxLen); });
  // Field-level changes only: the input stays valid protobuf when the seed is (others ignore them).
  const fields = fc.tuple(fc.nat(seeds.length - 1), fc.array(pbOpArb, { minLength: 1, maxLength: 4 }))
    .map(([i, ops]) => applyOps(seeds[i], ops, seeds, maxLen));
  return fc.oneof({ weight: 1, arbitrary: raw }, { weight: 5, arbitrary: mutated }, { weight: 1, arbitrary: prefix }, { weight: 3, arbitrary: fields });
}

function describeError(e: unknown): { signature: string; detail: string } {
  if (e instanceof Error) {
    const first = (e.message || '').split('\n')[0].slice(0, 160);
    // Numbers in messages (offsets, lengths) would make every input its own signature.
    return { signature: `${e.name}: ${first.replace(/\d+/g, 'N')}`, detail: (e.stack ?? `${e.name}: ${e.message}`).split('\n').slice(0, 8).join('\n') };
  }
  return { signature: `non-error thrown: ${typeof e}`, detail: String(e) };
}

/**
 * Decode one input and judge it. Returns null (fine) or a finding. `onStart` is called with the
 * input right before the decoder runs (the watchdog's view of what is running).
 */
export async function runOne(t: FuzzTarget, input: Buffer, retry = true): Promise<Finding | null> {
  const h0 = v8.getHeapStatistics();
  const before = h0.used_heap_size + h0.external_memory;
  let result: unknown;
  try {
    result = t.decode(input);
    if (result instanceof Promise) result = await result;
  } catch (e) {
    if (isBitcloudError(e)) return null;
    const d = describeError(e);
    return { kind: 'throw', signature: d.signature, input, detail: d.detail };
  }
  const h1 = v8.getHeapStatistics();
  const grew = h1.used_heap_size + h1.external_memory - before;
  keep(result);
  if (grew > ALLOC_BOUND(input.length)) {
    // The heap's own bookkeeping (a new page, a code-space allocation) can now and then move the
    // figure by megabytes during a tiny call; a decoder's allocation repeats on a second try.
    if (retry) return runOne(t, input, false);
    return { kind: 'alloc', signature: `allocation over bound`, input, detail: `decoding ${input.length} bytes grew heap+external memory by ${grew} bytes (bound ${ALLOC_BOUND(input.length)})` };
  }
  return null;
}

// Hold the last result until after the measurement (so the allocation is still referenced).
let sink: unknown;
function keep(v: unknown): void { sink = v; }
export function dropSink(): void { sink = undefined; }
void sink;
