// SPEC.md §9.3: systematic Reed–Solomon erasure coding over GF(2^8) — the code of Backblaze's
// JavaReedSolomon, klauspost/reedsolomon and the Rust reed-solomon-erasure crate (polynomial 0x11D,
// Vandermonde matrix made systematic). Data shares are the (padded) encrypted chunk cut into k equal
// pieces; parity share j (k ≤ j < n) is row j of that matrix applied byte-wise. Any k shares rebuild.
//
// The arithmetic comes from a library: reed-solomon-erasure (Rust) compiled to WebAssembly
// (@subspace/reed-solomon-erasure.wasm). Why not @ronomon/reed-solomon: it allows at most 6 parity
// shares (so no `durable` 3-of-10 profile) and its Cauchy bit-matrix code changes with k, m and shard
// size, which a second implementation could not reproduce from a short rule.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { ReedSolomonErasure } from '@subspace/reed-solomon-erasure.wasm';
import { err } from '../errors';
import type { Coding } from './coding';

let rs: ReedSolomonErasure | null = null;
/** Instantiate the WebAssembly module once, synchronously, on first use. */
function lib(): ReedSolomonErasure {
  if (!rs) {
    const require = createRequire(import.meta.url);
    const wasm = require.resolve('@subspace/reed-solomon-erasure.wasm/dist/reed_solomon_erasure_bg.wasm');
    rs = ReedSolomonErasure.fromBytes(fs.readFileSync(wasm));
  }
  return rs;
}

/** Bytes per share for an encrypted chunk of `encLen` bytes: ceil(encLen / k). Never 0 (encLen ≥ 16). */
export function shareSizeFor(encLen: number, k: number): number {
  if (!(encLen >= 1) || !Number.isSafeInteger(encLen)) throw err('STORAGE_INTERNAL', 'encrypted length must be a positive integer', { encLen });
  return Math.ceil(encLen / k);
}

/** Run one library call; a WebAssembly trap poisons the instance, so drop it and report. */
function call(what: string, f: (r: ReedSolomonErasure) => number): void {
  let result: number;
  try {
    result = f(lib());
  } catch (e) {
    rs = null;
    throw err('STORAGE_INTERNAL', `reed-solomon ${what} trapped: ${(e as Error).message}`, undefined, e);
  }
  if (result !== ReedSolomonErasure.RESULT_OK) throw err('STORAGE_INTERNAL', `reed-solomon ${what} failed with result ${result}`, { result });
}

/**
 * Compute the parity shares in place. `buf` holds n·size bytes: shares 0..k−1 (the padded data) are
 * read, shares k..n−1 are overwritten. One buffer for all shares lets callers hand out views.
 */
export function erasureEncodeInPlace(coding: Coding, buf: Uint8Array, size: number): void {
  const { k, n } = coding;
  // The library must never see an empty shard (zero-length input is refused before it).
  if (size < 1 || buf.length !== n * size) throw err('STORAGE_INTERNAL', 'erasure buffer must hold n shares of equal, non-zero size', { size, len: buf.length });
  if (n === k) return;
  // k = 1 is replication: every row of the systematic matrix is [1], so each parity share is a copy.
  // (Done here because the library traps on one data shard when reconstructing.)
  if (k === 1) {
    for (let r = 1; r < n; r++) buf.copyWithin(r * size, 0, size);
    return;
  }
  call('encode', (r) => r.encode(buf, k, n - k));
}

/**
 * Rebuild the k·size data bytes from any k of the n shares. `shares[i]` is share i or null when
 * missing; every present share must be exactly `size` bytes (callers drop bad ones first: a share
 * whose hash does not match is treated as missing). Fewer than k → CHUNK_TOO_FEW_SHARES.
 */
export function erasureReconstruct(coding: Coding, shares: ReadonlyArray<Uint8Array | null>, size: number): Buffer {
  const { k, n } = coding;
  if (shares.length !== n) throw err('STORAGE_INTERNAL', 'need one slot per share', { slots: shares.length, n });
  if (size < 1) throw err('STORAGE_INTERNAL', 'share size must be non-zero', { size });
  let present = 0;
  let dataComplete = true;
  for (let i = 0; i < n; i++) {
    const s = shares[i];
    if (s === null) { if (i < k) dataComplete = false; continue; }
    if (s.length !== size) throw err('STORAGE_INTERNAL', 'share of the wrong size given to reconstruct', { index: i });
    present++;
  }
  if (present < k) throw err('CHUNK_TOO_FEW_SHARES', `need ${k} good shares, have ${present}`, { have: present, need: k });
  const out = Buffer.alloc(n * size);
  for (let i = 0; i < n; i++) { const s = shares[i]; if (s) out.set(s, i * size); }
  // Fast path: every data share is here, nothing to rebuild.
  if (!dataComplete) {
    if (k === 1) {
      const first = shares.find((s) => s !== null) as Uint8Array;
      out.set(first, 0);
    } else {
      const flags = shares.map((s) => s !== null);
      call('reconstruct', (r) => r.reconstruct(out, k, n - k, flags));
    }
  }
  return out.subarray(0, k * size);
}
