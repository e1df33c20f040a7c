// SPEC.md §9.21.3: making, signing, checking and opening a hidden storage node's descriptor. The
// outer layer (blinded key, period, revision, signature) is checkable by a store that knows only
// the blinded key; the sealed body (service ntor key, introduction points) opens only with the
// node's identity key A.
import { err } from '../errors';
import { HS_PERIOD_SECONDS, blindPublicKey, blindSigner, hsPeriodOf, verifyBlinded } from '../crypto/blind';
import { randomBytes, sha256, xchachaDecrypt, xchachaEncrypt } from '../crypto/primitives';
import {
  HS_NONCE_LEN, decodeHsDescriptorInner, decodeHsDescriptorOuter, encodeHsDescriptorInner, encodeHsDescriptorUnsigned,
  type HsDescriptorInner, type HsDescriptorOuter,
} from '../wire/hidden';

const SIG_TAG = Buffer.from('bitcloud-hs-desc-v1', 'ascii');
const KEY_TAG = Buffer.from('bitcloud-hs-desc-key-v1', 'ascii');

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** The key that seals a descriptor body for period N: only readers who know A derive it. */
function sealKey(identity: Uint8Array, period: number): Buffer {
  return sha256(KEY_TAG, identity, u64(period));
}

export interface MakeDescriptorOptions {
  identity: { publicKey: Buffer; secretKey: Buffer };
  period: number;
  revision: number;
  /** Default: the end of period N+1. */
  validUntil?: number;
  inner: HsDescriptorInner;
}

/** Build and sign a descriptor (the hidden node). */
export function makeHsDescriptor(o: MakeDescriptorOptions): Buffer {
  const signer = blindSigner(o.identity, o.period);
  const nonce = randomBytes(HS_NONCE_LEN);
  const validUntil = o.validUntil ?? (o.period + 2) * HS_PERIOD_SECONDS * 1000;
  const fields = { blindedKey: signer.publicKey, period: o.period, periodLength: HS_PERIOD_SECONDS, revision: o.revision, validUntil, nonce };
  // The header is the AD of the seal, and it holds ct_len: compute the sealed length first.
  const plain = encodeHsDescriptorInner(o.inner);
  const placeholder = encodeHsDescriptorUnsigned({ ...fields, sealed: Buffer.alloc(plain.length + 16) });
  const sealed = xchachaEncrypt(sealKey(o.identity.publicKey, o.period), nonce, plain, placeholder.header);
  const { withSealed } = encodeHsDescriptorUnsigned({ ...fields, sealed });
  return Buffer.concat([withSealed, signer.sign(Buffer.concat([SIG_TAG, withSealed]))]);
}

/**
 * The outer checks a store makes (SPEC.md §9.21.3, all but the sealed body): layout, period
 * N or N+1 of `nowMs`, valid_until at most the end of the descriptor's period + 1, signature under the blinded key, not expired. `expectKey` (a client's
 * derived blinded key) adds the key check.
 */
export function checkHsDescriptorOuter(bytes: Uint8Array, o: { nowMs: number; expectKey?: Uint8Array }): HsDescriptorOuter {
  const d = decodeHsDescriptorOuter(bytes);
  const n = hsPeriodOf(o.nowMs);
  if (d.periodLength !== HS_PERIOD_SECONDS || (d.period !== n && d.period !== n + 1)) {
    throw err('HIDDEN_DESC_WRONG_PERIOD', `descriptor for period ${d.period} (length ${d.periodLength}); current period is ${n}`);
  }
  // SPEC.md §9.21.3: valid_until is at most the end of period N+1 (else a store would keep it for good).
  const last = (d.period + 2) * HS_PERIOD_SECONDS * 1000;
  if (d.validUntil > last) throw err('HIDDEN_DESC_MALFORMED', `valid_until ${d.validUntil} is after the end of period ${d.period + 1} (${last})`);
  if (o.expectKey && !d.blindedKey.equals(Buffer.from(o.expectKey))) throw err('HIDDEN_DESC_WRONG_KEY', 'descriptor is for another blinded key');
  if (!verifyBlinded(d.signature, Buffer.concat([SIG_TAG, d.signedPart]), d.blindedKey)) {
    throw err('HIDDEN_DESC_BAD_SIGNATURE', 'descriptor signature does not verify under its blinded key');
  }
  if (d.validUntil < o.nowMs) throw err('HIDDEN_DESC_EXPIRED', 'descriptor has expired');
  return d;
}

/**
 * A client's full check of the descriptor of the node with identity `identity` (SPEC.md §9.21.3),
 * for the period of `nowMs`: the outer checks against the blinded key it derives, then the seal.
 */
export function openHsDescriptor(bytes: Uint8Array, identity: Uint8Array, nowMs: number): { outer: HsDescriptorOuter; inner: HsDescriptorInner } {
  const pre = decodeHsDescriptorOuter(bytes);
  const n = hsPeriodOf(nowMs);
  const period = pre.period === n + 1 ? n + 1 : n;
  const outer = checkHsDescriptorOuter(bytes, { nowMs, expectKey: blindPublicKey(identity, period) });
  let plain: Buffer;
  try {
    plain = xchachaDecrypt(sealKey(identity, outer.period), outer.nonce, outer.sealed, outer.header);
  } catch {
    throw err('HIDDEN_DESC_MALFORMED', 'the sealed body does not open with this identity');
  }
  return { outer, inner: decodeHsDescriptorInner(plain) };
}
