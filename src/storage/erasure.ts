// SPEC.md §9.3: systematic Reed–Solomon erasure coding over GF(2^8).
// Data shares are the (padded) encrypted chunk cut in k equal pieces; parity share j (k ≤ j < n) is
// row j of the systematic Vandermonde matrix applied byte-wise to the data shares. Any k shares rebuild.
//
// Why not @ronomon/reed-solomon (no longer a dependency; see README "Why erasure coding is in-house"):
// it is limited to m = n − k ≤ 6 parity shares, so it cannot make the `durable` 3-of-10 profile (7 parity
// shares), and its code (a Cauchy bit-matrix whose field size, polynomial and byte interleaving change
// with k, m and shard size) cannot be written down as a short normative rule
// for a second implementation. This code is the one Backblaze, klauspost/reedsolomon and the Rust
// reed-solomon-erasure crate implement, so other implementations exist already. Its WebAssembly
// build (@subspace/reed-solomon-erasure.wasm) was tried as the library instead: its allocator
// (wee_alloc) corrupts memory and traps after a few calls, and it traps outright on k = 1.
import { err } from '../errors';
import type { Coding } from './coding';
import { MUL, matInvert, systematicMatrix, type Matrix } from './gf256';

const matrices = new Map<number, Matrix>();
/** MUL_ROWS[c] is the 256-byte "multiply by c" table, a view of MUL (a fixed-size table the JIT indexes well). */
const MUL_ROWS: Uint8Array[] = Array.from({ length: 256 }, (_, c) => MUL.subarray(c << 8, (c + 1) << 8));

/** The cached encoding matrix for (k, n). At most 64·64 entries ever exist, each a few KiB. */
function encodingMatrix(c: Coding): Matrix {
  const key = c.k * 256 + c.n;
  let m = matrices.get(key);
  if (!m) {
    m = systematicMatrix(c.k, c.n);
    matrices.set(key, m);
  }
  return m;
}

/** Bytes per share for an encrypted chunk of `encLen` bytes: ceil(encLen / k). Never 0 (encLen ≥ 40, SPEC.md §9.3). */
export function shareSizeFor(encLen: number, k: number): number {
  if (!(encLen >= 1) || !Number.isSafeInteger(encLen)) throw err('STORAGE_INTERNAL', 'encrypted length must be a positive integer', { encLen });
  return Math.ceil(encLen / k);
}

/**
 * out = Σ coefs[j] · inputs[j], byte-wise: the inner loop of encoding and decoding (per chunk byte).
 * Inputs are taken four at a time (then two, then one), so `out` is read and written once per four
 * inputs: one pass for the default 4-of-6. Table rows 0 and 1 are the zero and identity maps, so
 * no coefficient needs a special case. No allocation.
 */
function combine(out: Uint8Array, inputs: readonly Uint8Array[], coefs: ArrayLike<number>): void {
  const len = out.length;
  const cnt = inputs.length;
  let j = 0;
  let first = true;
  for (; j + 3 < cnt; j += 4) {
    const a = inputs[j];
    const b = inputs[j + 1];
    const c = inputs[j + 2];
    const d = inputs[j + 3];
    const ta = MUL_ROWS[coefs[j]];
    const tb = MUL_ROWS[coefs[j + 1]];
    const tc = MUL_ROWS[coefs[j + 2]];
    const td = MUL_ROWS[coefs[j + 3]];
    if (first) for (let i = 0; i < len; i++) out[i] = ta[a[i]] ^ tb[b[i]] ^ tc[c[i]] ^ td[d[i]];
    else for (let i = 0; i < len; i++) out[i] ^= ta[a[i]] ^ tb[b[i]] ^ tc[c[i]] ^ td[d[i]];
    first = false;
  }
  if (j + 1 < cnt) {
    const a = inputs[j];
    const b = inputs[j + 1];
    const ta = MUL_ROWS[coefs[j]];
    const tb = MUL_ROWS[coefs[j + 1]];
    if (first) for (let i = 0; i < len; i++) out[i] = ta[a[i]] ^ tb[b[i]];
    else for (let i = 0; i < len; i++) out[i] ^= ta[a[i]] ^ tb[b[i]];
    first = false;
    j += 2;
  }
  if (j < cnt) {
    const a = inputs[j];
    const ta = MUL_ROWS[coefs[j]];
    if (first) for (let i = 0; i < len; i++) out[i] = ta[a[i]];
    else for (let i = 0; i < len; i++) out[i] ^= ta[a[i]];
  }
}

/**
 * Compute the parity shares in place. `buf` holds n·size bytes: shares 0..k−1 (the padded data) are
 * read, shares k..n−1 are overwritten. One buffer for all shares lets callers hand out views.
 */
export function erasureEncodeInPlace(coding: Coding, buf: Uint8Array, size: number): void {
  const { k, n } = coding;
  if (size < 1 || buf.length !== n * size) throw err('STORAGE_INTERNAL', 'erasure buffer must hold n shares of equal, non-zero size', { size, len: buf.length });
  if (n === k) return;
  const m = encodingMatrix(coding);
  const data: Uint8Array[] = [];
  for (let c = 0; c < k; c++) data.push(buf.subarray(c * size, (c + 1) * size));
  for (let r = k; r < n; r++) combine(buf.subarray(r * size, (r + 1) * size), data, m[r]);
}

/**
 * Rebuild the k·size data bytes from any k of the n shares. `shares[i]` is share i or null when
 * missing; every present share must be exactly `size` bytes (callers drop bad ones first: a share
 * whose hash does not match is treated as missing). Fewer than k → CHUNK_TOO_FEW_SHARES.
 */
export function erasureReconstruct(coding: Coding, shares: ReadonlyArray<Uint8Array | null>, size: number): Buffer {
  const { k, n } = coding;
  if (shares.length !== n) throw err('STORAGE_INTERNAL', 'need one slot per share', { slots: shares.length, n });
  const chosen: number[] = [];
  for (let i = 0; i < n && chosen.length < k; i++) {
    const s = shares[i];
    if (s === null) continue;
    if (s.length !== size) throw err('STORAGE_INTERNAL', 'share of the wrong size given to reconstruct', { index: i });
    chosen.push(i);
  }
  if (chosen.length < k) throw err('CHUNK_TOO_FEW_SHARES', `need ${k} good shares, have ${chosen.length}`, { have: chosen.length, need: k });
  const out = Buffer.allocUnsafe(k * size);
  // Data shares present are copied; the rest are rows of the inverse of the chosen rows' submatrix.
  const missing: number[] = [];
  for (let c = 0; c < k; c++) {
    const s = shares[c];
    if (s) out.set(s, c * size);
    else missing.push(c);
  }
  if (missing.length === 0) return out;
  const m = encodingMatrix(coding);
  const inv = matInvert(chosen.map((i) => m[i]));
  const inputs = chosen.map((i) => shares[i]!);
  for (const c of missing) combine(out.subarray(c * size, (c + 1) * size), inputs, inv[c]);
  return out;
}
