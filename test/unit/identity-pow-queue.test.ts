// SPEC.md §6.4.1 "Authority intake": the proofs waiting to be checked. Listed identities have a
// waiting room of their own and are checked first; unlisted ones share theirs fairly by address
// group (IPv4 /24, IPv6 /48), so a flood from one group cannot keep another group's proof out.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isBitcloudError } from '../../src/errors';
import { IdentityProofVerifier, POW_TAG, proofQueueGroup, type PowVerifyContext } from '../../src/dir/identity-pow';
import type { IdentityProofMsg } from '../../src/wire/docs';

/** Evaluations started and not finished: the identity evaluated and how to finish it. */
const running: { identity: string; finish: () => void }[] = [];
/** Identities in the order their evaluation started. */
const evaluated: string[] = [];

vi.mock('../../src/crypto/primitives', async (importOriginal) => ({
  ...await importOriginal<typeof import('../../src/crypto/primitives')>(),
  // An evaluation that ends when the test says so; its output (zeros) meets any difficulty.
  argon2id: (input: Uint8Array) => new Promise<Buffer>((resolve) => {
    const identity = Buffer.from(input).subarray(POW_TAG.length, POW_TAG.length + 32).toString('hex');
    evaluated.push(identity);
    running.push({ identity, finish: () => resolve(Buffer.alloc(32)) });
  }),
}));

const ctx: PowVerifyContext = {
  params: { memoryKib: 8 * 1024, ops: 1, difficulty: 1, anchorPeriods: 24 }, periodSeconds: 3600, now: 1_800_000_000_000,
  anchorDigest: () => undefined, bootstrap: true,
};
const proof: IdentityProofMsg = { anchorValidAfter: 0, anchorDigest: Buffer.alloc(32), memoryKib: 8 * 1024, ops: 1, difficulty: 1, nonce: 0 };
const identity = (n: number): Buffer => { const b = Buffer.alloc(32); b.writeUInt32BE(n + 1); return b; };
const settle = () => new Promise<void>((r) => setImmediate(r));

type Outcome = 'ok' | 'busy' | 'evicted' | 'pending';
function track(p: Promise<void>): () => Outcome {
  let o: Outcome = 'pending';
  p.then(() => { o = 'ok'; }, (e: unknown) => {
    if (!isBitcloudError(e, 'IDENTITY_POW_BUSY')) throw e;
    o = e.detail?.evicted === true ? 'evicted' : 'busy';
  });
  return () => o;
}

/** Finish evaluations one at a time until none is left. */
async function drain(): Promise<void> {
  await settle();
  while (running.length > 0) {
    running.shift()!.finish();
    await settle();
  }
}

afterEach(async () => {
  await drain();
  evaluated.length = 0;
});

describe('the identity proof waiting rooms (SPEC.md §6.4.1)', () => {
  it('a flood of 32 waiting proofs from 32 IPv6 addresses of one /48 does not keep out a proof from another /48', async () => {
    const v = new IdentityProofVerifier({ concurrency: 1, maxQueued: 32, listedQueued: 16 });
    const first = track(v.verify(identity(0), proof, ctx, { listed: false, group: proofQueueGroup('2001:db8:1::1') }));
    await settle();
    expect(running).toHaveLength(1); // the evaluation place is taken
    const flood = Array.from({ length: 32 }, (_, i) =>
      track(v.verify(identity(100 + i), proof, ctx, { listed: false, group: proofQueueGroup(`2001:db8:7:${(i + 1).toString(16)}::1`) })));
    await settle();
    const honest = track(v.verify(identity(1), proof, ctx, { listed: false, group: proofQueueGroup('2001:db8:9::5') }));
    await settle();
    expect(honest()).toBe('pending');
    // The newest waiting proof of the flood made way for it.
    expect(flood.filter((o) => o() === 'evicted')).toHaveLength(1);
    await drain();
    expect(first()).toBe('ok');
    expect(honest()).toBe('ok');
    expect(evaluated).toContain(identity(1).toString('hex'));
    // The flood kept no more than the unlisted room's 16 places, less the one it gave up.
    expect(flood.filter((o) => o() === 'ok')).toHaveLength(15);
  });

  it('a listed identity\'s proof is queued and checked before waiting unlisted ones, even when their room is full', async () => {
    const v = new IdentityProofVerifier({ concurrency: 1, maxQueued: 32, listedQueued: 16 });
    track(v.verify(identity(0), proof, ctx, { listed: false, group: proofQueueGroup('192.0.2.1') }));
    await settle();
    const flood = Array.from({ length: 32 }, (_, i) =>
      track(v.verify(identity(100 + i), proof, ctx, { listed: false, group: proofQueueGroup(`2001:db8:7:${(i + 1).toString(16)}::1`) })));
    await settle();
    // Unlisted proofs find no further place: one more from the flood's /48 is refused.
    const more = track(v.verify(identity(200), proof, ctx, { listed: false, group: proofQueueGroup('2001:db8:7:200::1') }));
    await settle();
    expect(more()).toBe('busy');
    const listed = track(v.verify(identity(1), proof, ctx, { listed: true, group: proofQueueGroup('2001:db8:7:99::1') }));
    await settle();
    expect(listed()).toBe('pending');
    expect(flood.filter((o) => o() === 'pending')).toHaveLength(16); // the unlisted room's places
    running.shift()!.finish();
    await settle();
    // The next evaluation is the listed identity's, ahead of the unlisted proofs waiting longer.
    expect(evaluated[1]).toBe(identity(1).toString('hex'));
    await drain();
    expect(listed()).toBe('ok');
  });

  it('the listed room holds listedQueued proofs; a further one is IDENTITY_POW_BUSY', async () => {
    const v = new IdentityProofVerifier({ concurrency: 1, maxQueued: 4, listedQueued: 2 });
    track(v.verify(identity(0), proof, ctx, { listed: true, group: '?' }));
    await settle();
    const listed = [1, 2, 3].map((n) => track(v.verify(identity(n), proof, ctx, { listed: true, group: '?' })));
    await settle();
    expect(listed.map((o) => o())).toEqual(['pending', 'pending', 'busy']);
    expect(v.waiting).toEqual({ listed: 2, unlisted: 0 });
  });

  it('the listed room holds one waiting proof per identity: a further one (another nonce) is IDENTITY_POW_BUSY at once, the waiting one stays', async () => {
    const v = new IdentityProofVerifier({ concurrency: 1, maxQueued: 32, listedQueued: 16 });
    track(v.verify(identity(0), proof, ctx, { listed: true, group: '?' }));
    await settle();
    // One listed relay sends 16 proofs of its own identity, each with another nonce.
    const own = Array.from({ length: 16 }, (_, i) =>
      track(v.verify(identity(1), { ...proof, nonce: 1 + i }, ctx, { listed: true, group: proofQueueGroup('192.0.2.1') })));
    await settle();
    expect(own[0]()).toBe('pending');
    expect(own.slice(1).map((o) => o())).toEqual(Array(15).fill('busy'));
    expect(v.waiting).toEqual({ listed: 1, unlisted: 0 });
    // Another listed relay still finds a place.
    const other = track(v.verify(identity(2), proof, ctx, { listed: true, group: proofQueueGroup('198.51.100.1') }));
    await settle();
    expect(other()).toBe('pending');
    await drain();
    expect([own[0](), other()]).toEqual(['ok', 'ok']);
    // Once checked, the identity's next proof may wait again.
    track(v.verify(identity(3), proof, ctx, { listed: true, group: '?' }));
    await settle();
    const again = track(v.verify(identity(1), { ...proof, nonce: 99 }, ctx, { listed: true, group: '?' }));
    await settle();
    expect(again()).toBe('pending');
  });

  it('a newcomer from a group holding as many places as the largest gets IDENTITY_POW_BUSY; evictions take the newest proof of the largest group', async () => {
    const v = new IdentityProofVerifier({ concurrency: 1, maxQueued: 8, listedQueued: 4 });
    track(v.verify(identity(0), proof, ctx, { listed: false, group: 'x' }));
    await settle();
    const a = [1, 2, 3].map((n) => track(v.verify(identity(n), proof, ctx, { listed: false, group: 'a' })));
    const b = track(v.verify(identity(4), proof, ctx, { listed: false, group: 'b' }));
    await settle();
    // Full (a: 3, b: 1). c (0 places) evicts a's newest; then a (2) and c (1)...
    const c = track(v.verify(identity(5), proof, ctx, { listed: false, group: 'c' }));
    await settle();
    expect(a.map((o) => o())).toEqual(['pending', 'pending', 'evicted']);
    // ... a second b (1 place) evicts a's newest again (a: 1, b: 2, c: 1) ...
    const b2 = track(v.verify(identity(6), proof, ctx, { listed: false, group: 'b' }));
    await settle();
    expect(a.map((o) => o())).toEqual(['pending', 'evicted', 'evicted']);
    // ... and a third b, its group now the largest, is refused.
    const b3 = track(v.verify(identity(7), proof, ctx, { listed: false, group: 'b' }));
    await settle();
    expect(b3()).toBe('busy');
    expect([b(), c(), b2()]).toEqual(['pending', 'pending', 'pending']);
    expect(v.waiting).toEqual({ listed: 0, unlisted: 4 });
  });

  it('groups addresses by IPv4 /24 and IPv6 /48', () => {
    expect(proofQueueGroup('192.0.2.7')).toBe(proofQueueGroup('192.0.2.200'));
    expect(proofQueueGroup('::ffff:192.0.2.7')).toBe(proofQueueGroup('192.0.2.9'));
    expect(proofQueueGroup('192.0.3.7')).not.toBe(proofQueueGroup('192.0.2.7'));
    expect(proofQueueGroup('2001:db8:1:ffff::1')).toBe(proofQueueGroup('2001:db8:1::2'));
    expect(proofQueueGroup('[2001:db8:1::2]')).toBe(proofQueueGroup('2001:db8:1::2'));
    expect(proofQueueGroup('2001:db8:2::1')).not.toBe(proofQueueGroup('2001:db8:1::1'));
    expect(proofQueueGroup(undefined)).toBe('?');
    expect(proofQueueGroup('not an address')).toBe('?');
  });
});
