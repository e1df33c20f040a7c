// SPEC.md §9.3: arithmetic in GF(2^8) with the primitive polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11D)
// and generator 2, the field of the Backblaze / klauspost Reed–Solomon codes.
// Pure tables and small-matrix algebra; the per-byte loops live in erasure.ts.
import { err } from '../errors';

const POLY = 0x11d;

/** EXP[i] = 2^i for i in [0, 510): doubled so that EXP[LOG[a] + LOG[b]] needs no modulo. */
const EXP = new Uint8Array(510);
/** LOG[a] for a in [1, 255]; LOG[0] is undefined (left 0, never read). */
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= POLY;
  }
  for (let i = 255; i < 510; i++) EXP[i] = EXP[i - 255];
}

/** MUL[a << 8 | b] = a·b. 64 KiB, built once; row `a` is the lookup table for "multiply by a". */
export const MUL = new Uint8Array(65536);
for (let a = 1; a < 256; a++) {
  for (let b = 1; b < 256; b++) MUL[(a << 8) | b] = EXP[LOG[a] + LOG[b]];
}

export function gfMul(a: number, b: number): number {
  return MUL[(a << 8) | b];
}

export function gfInv(a: number): number {
  if (a === 0) throw err('STORAGE_INTERNAL', 'gf256: zero has no inverse');
  return EXP[255 - LOG[a]];
}

/** a^e with a^0 = 1 for every a, including 0 (the convention of the Vandermonde construction). */
export function gfPow(a: number, e: number): number {
  if (e === 0) return 1;
  if (a === 0) return 0;
  return EXP[(LOG[a] * e) % 255];
}

/** A row-major matrix over GF(256). */
export type Matrix = Uint8Array[];

export function matMul(a: Matrix, b: Matrix): Matrix {
  const rows = a.length;
  const inner = b.length;
  const cols = b[0].length;
  const out: Matrix = [];
  for (let r = 0; r < rows; r++) {
    const row = new Uint8Array(cols);
    for (let c = 0; c < cols; c++) {
      let acc = 0;
      for (let i = 0; i < inner; i++) acc ^= MUL[(a[r][i] << 8) | b[i][c]];
      row[c] = acc;
    }
    out.push(row);
  }
  return out;
}

/** Gauss–Jordan inversion of a square matrix. A singular matrix is an internal error: every k×k
 *  submatrix of the systematic Vandermonde matrix is invertible (SPEC.md §9.3). */
export function matInvert(m: Matrix): Matrix {
  const size = m.length;
  const work = m.map((row) => {
    const r = new Uint8Array(size * 2);
    r.set(row, 0);
    return r;
  });
  for (let i = 0; i < size; i++) work[i][size + i] = 1;
  for (let c = 0; c < size; c++) {
    let p = c;
    while (p < size && work[p][c] === 0) p++;
    if (p === size) throw err('STORAGE_INTERNAL', 'gf256: singular matrix');
    if (p !== c) [work[p], work[c]] = [work[c], work[p]];
    const pivotInv = gfInv(work[c][c]);
    const pr = work[c];
    for (let j = 0; j < size * 2; j++) pr[j] = MUL[(pivotInv << 8) | pr[j]];
    for (let r = 0; r < size; r++) {
      if (r === c || work[r][c] === 0) continue;
      const f = work[r][c];
      const rr = work[r];
      for (let j = 0; j < size * 2; j++) rr[j] ^= MUL[(f << 8) | pr[j]];
    }
  }
  return work.map((row) => row.slice(size));
}

/**
 * The systematic n×k encoding matrix: the n×k Vandermonde matrix V[r][c] = r^c multiplied by the
 * inverse of its top k×k square. Its first k rows are the identity (data shares are the data),
 * rows k..n-1 give the parity shares. Same matrix as Backblaze JavaReedSolomon and klauspost/reedsolomon.
 */
export function systematicMatrix(k: number, n: number): Matrix {
  const v: Matrix = [];
  for (let r = 0; r < n; r++) {
    const row = new Uint8Array(k);
    for (let c = 0; c < k; c++) row[c] = gfPow(r, c);
    v.push(row);
  }
  return matMul(v, matInvert(v.slice(0, k)));
}
