// SPEC.md §6.4.1: identity proofs of work — making, carrying in a descriptor, and every refusal.
import { describe, it, expect } from 'vitest';
import { ed25519Generate, sha256, x25519Generate } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import { buildDescriptor, verifyDescriptor } from '../../src/dir/descriptor';
import {
  GENESIS_ANCHOR, IdentityProofVerifier, checkIdentityProofFields, checkIdentityProofWork, leadingZeroBits, mineIdentityProof,
  type PowParams, type PowVerifyContext,
} from '../../src/dir/identity-pow';
import { decodeEnvelope, decodeDocumentBody, decodeRelayDescriptor, encodeRelayDescriptor } from '../../src/wire/docs';
import type { IdentityProofMsg } from '../../src/wire/docs';

async function codeOfAsync(f: () => Promise<unknown>): Promise<string> {
  try { await f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'NO_ERROR';
}
const codeOf = (f: () => unknown): string => {
  try { f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'NO_ERROR';
};

// Cheap parameters: 8 MiB, one pass, 3 bits (≈8 evaluations to mine).
const P: PowParams = { memoryKib: 8 * 1024, ops: 1, difficulty: 3, anchorPeriods: 4 };
const PERIOD = 3600;
const ANCHOR_AT = 1_800_000_000_000;
const anchor = { validAfter: ANCHOR_AT, digest: sha256(Buffer.from('consensus body')) };
const ctx = (o: Partial<PowVerifyContext> = {}): PowVerifyContext => ({
  params: P, periodSeconds: PERIOD, now: ANCHOR_AT + 1000, bootstrap: false,
  anchorDigest: (va) => (va === ANCHOR_AT ? anchor.digest : undefined), ...o,
});

describe('identity proof of work', () => {
  const id = ed25519Generate().publicKey;
  let proof: IdentityProofMsg;

  it('mines a proof that verifies for its identity and anchor, and a verifier caches it', async () => {
    proof = await mineIdentityProof(id, anchor, P);
    expect(proof).toMatchObject({ anchorValidAfter: ANCHOR_AT, memoryKib: P.memoryKib, ops: 1, difficulty: 3 });
    await checkIdentityProofWork(id, checkIdentityProofFields(proof, ctx()));
    const v = new IdentityProofVerifier();
    await v.verify(id, proof, ctx());
    await v.verify(id, proof, ctx()); // cached: no second evaluation needed
  });

  it('refuses it for another identity key (unless that key happens to meet the difficulty too)', async () => {
    // 3 bits: another key passes by chance with probability 1/8; try keys until one fails.
    let refused = 0;
    for (let i = 0; i < 8 && refused === 0; i++) {
      const c = await codeOfAsync(() => checkIdentityProofWork(ed25519Generate().publicKey, proof));
      if (c === 'IDENTITY_POW_INVALID') refused++;
      else expect(c).toBe('NO_ERROR');
    }
    expect(refused).toBe(1);
  });

  it('refuses a wrong anchor digest, an unknown anchor and a stale anchor', () => {
    expect(codeOf(() => checkIdentityProofFields({ ...proof, anchorDigest: Buffer.alloc(32, 7) }, ctx()))).toBe('IDENTITY_POW_INVALID');
    expect(codeOf(() => checkIdentityProofFields({ ...proof, anchorValidAfter: ANCHOR_AT - PERIOD * 1000 }, ctx()))).toBe('IDENTITY_POW_STALE');
    expect(codeOf(() => checkIdentityProofFields(proof, ctx({ now: ANCHOR_AT + (P.anchorPeriods * PERIOD + 1) * 1000 })))).toBe('IDENTITY_POW_STALE');
    expect(codeOf(() => checkIdentityProofFields(proof, ctx({ now: ANCHOR_AT + P.anchorPeriods * PERIOD * 1000 })))).toBe('NO_ERROR');
  });

  it('refuses a missing proof and parameters below (or far above) the minimum', () => {
    expect(codeOf(() => checkIdentityProofFields(undefined, ctx()))).toBe('IDENTITY_POW_MISSING');
    expect(codeOf(() => checkIdentityProofFields({ ...proof, difficulty: 2 }, ctx()))).toBe('IDENTITY_POW_WEAK');
    expect(codeOf(() => checkIdentityProofFields({ ...proof, memoryKib: 4096 }, ctx()))).toBe('IDENTITY_POW_WEAK');
    expect(codeOf(() => checkIdentityProofFields(proof, ctx({ params: { ...P, ops: 2 } })))).toBe('IDENTITY_POW_WEAK');
    expect(codeOf(() => checkIdentityProofFields({ ...proof, memoryKib: 5 * P.memoryKib }, ctx()))).toBe('IDENTITY_POW_WEAK');
  });

  it('refuses a proof that claims more difficulty than its output has', async () => {
    // Find a nonce whose output has fewer than 3 zero bits, and claim 3.
    let bad: IdentityProofMsg | null = null;
    for (let n = proof.nonce + 1; bad === null; n++) {
      const c = await codeOfAsync(() => checkIdentityProofWork(id, { ...proof, nonce: n }));
      if (c === 'IDENTITY_POW_INVALID') bad = { ...proof, nonce: n };
    }
    const v = new IdentityProofVerifier();
    expect(await codeOfAsync(() => v.verify(id, bad!, ctx()))).toBe('IDENTITY_POW_INVALID');
  });

  it('accepts the genesis anchor only while the verifier knows no consensus', async () => {
    const g = await mineIdentityProof(id, GENESIS_ANCHOR, P);
    expect(codeOf(() => checkIdentityProofFields(g, ctx({ bootstrap: true })))).toBe('NO_ERROR');
    expect(codeOf(() => checkIdentityProofFields(g, ctx()))).toBe('IDENTITY_POW_STALE');
    expect(codeOf(() => checkIdentityProofFields({ ...g, anchorDigest: Buffer.alloc(32, 1) }, ctx({ bootstrap: true })))).toBe('IDENTITY_POW_INVALID');
  });

  it('travels in the signed descriptor; descriptors without one still decode; malformed ones are refused', () => {
    const base = {
      identity: ed25519Generate(), onionKey: x25519Generate().publicKey, nickname: 'r1', address: '10.1.2.3', orPort: 9001,
      declaredBandwidth: 1000, roles: ['relay' as const], version: 'bitcloud-0.1.0', published: ANCHOR_AT,
    };
    const withProof = verifyDescriptor(buildDescriptor({ ...base, identityProof: proof }));
    expect(withProof.identityProof).toEqual(proof);
    expect(verifyDescriptor(buildDescriptor(base)).identityProof).toBeUndefined();
    const content = decodeDocumentBody(decodeEnvelope(buildDescriptor({ ...base, identityProof: proof }), 8192).body, 8192).content;
    const msg = decodeRelayDescriptor(content);
    expect(codeOf(() => decodeRelayDescriptor(encodeRelayDescriptor({ ...msg, identityProof: { ...proof, anchorDigest: Buffer.alloc(31) } })))).toBe('DOC_MALFORMED');
    expect(codeOf(() => decodeRelayDescriptor(encodeRelayDescriptor({ ...msg, identityProof: { ...proof, difficulty: 65 } })))).toBe('DOC_MALFORMED');
    expect(codeOf(() => decodeRelayDescriptor(encodeRelayDescriptor({ ...msg, identityProof: { ...proof, memoryKib: 4 } })))).toBe('DOC_MALFORMED');
  });

  it('counts leading zero bits', () => {
    expect(leadingZeroBits(Buffer.from([0, 0x80]))).toBe(8);
    expect(leadingZeroBits(Buffer.from([0x01]))).toBe(7);
    expect(leadingZeroBits(Buffer.from([0xff]))).toBe(0);
    expect(leadingZeroBits(Buffer.alloc(4))).toBe(32);
  });
});
