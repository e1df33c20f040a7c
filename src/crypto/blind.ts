// SPEC.md §9.21.2: per-period blinded keys of a hidden storage node, from library Ed25519 group
// operations only (sodium crypto_core_ed25519_*, crypto_scalarmult_ed25519_base_noclamp and the
// tweak extension's scalar signing).
import {
  ED25519_PUBLIC_BYTES, ed25519PointAddBase, ed25519ScalarAdd, ed25519ScalarReduce, ed25519SecretScalar,
  ed25519SignWithScalar, ed25519Verify, sha512,
} from './primitives';
import { err } from '../errors';

/** SPEC.md §9.21.2: a period is one day. */
export const HS_PERIOD_SECONDS = 86_400;
const BLIND_TAG = Buffer.from('bitcloud-hs-blind-v1', 'ascii');

/** The period number of a time (ms since the epoch). */
export function hsPeriodOf(nowMs: number, periodSeconds = HS_PERIOD_SECONDS): number {
  return Math.floor(nowMs / 1000 / periodSeconds);
}

function blindingFactor(identity: Uint8Array, period: number, periodSeconds: number): Buffer {
  if (identity.length !== ED25519_PUBLIC_BYTES) throw err('HIDDEN_BLIND_INVALID', 'identity key must be 32 bytes');
  if (!Number.isSafeInteger(period) || period < 0) throw err('HIDDEN_BLIND_INVALID', `bad period ${period}`);
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(BigInt(period), 0);
  n.writeUInt32BE(periodSeconds, 8);
  return ed25519ScalarReduce(sha512(BLIND_TAG, identity, n));
}

/** A' = A + h·B: the blinded key of `identity` for `period`. Anyone who knows A computes it. */
export function blindPublicKey(identity: Uint8Array, period: number, periodSeconds = HS_PERIOD_SECONDS): Buffer {
  return ed25519PointAddBase(identity, blindingFactor(identity, period, periodSeconds));
}

/** The node's signing key for a period: a' = a + h mod ℓ and A'. */
export interface BlindedSigner {
  readonly publicKey: Buffer;
  readonly period: number;
  sign(message: Uint8Array): Buffer;
}

export function blindSigner(identity: { publicKey: Buffer; secretKey: Buffer }, period: number, periodSeconds = HS_PERIOD_SECONDS): BlindedSigner {
  const h = blindingFactor(identity.publicKey, period, periodSeconds);
  const publicKey = ed25519PointAddBase(identity.publicKey, h);
  const scalar = ed25519ScalarAdd(ed25519SecretScalar(identity.secretKey), h);
  return {
    publicKey, period,
    sign: (message) => ed25519SignWithScalar(message, scalar, publicKey),
  };
}

/** An ordinary Ed25519 verification under a blinded key. */
export function verifyBlinded(signature: Uint8Array, message: Uint8Array, blindedKey: Uint8Array): boolean {
  return ed25519Verify(signature, message, blindedKey);
}
