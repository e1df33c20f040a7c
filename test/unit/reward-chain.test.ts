import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { ed25519FromSeed, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import { expectCode } from '../helpers/errors';
import { scheduledMint, type IssuanceSchedule } from '../../src/bandwidth/reward';
import {
  GENESIS_PREVIOUS_HASH, decodeRewardBlock, decodeSignedRewardBlock, encodeRewardBlock, encodeSignedRewardBlock,
  majorityOf, nextRewardBlock, rewardBlockHash, signRewardBlock, staticAuthorities, verifyChain, type ChainTip,
} from '../../src/bandwidth/reward-chain';

const fp = (n: number) => n.toString(16).padStart(64, '0');
const schedule: IssuanceSchedule = { initialPerBlock: 1_000_000n, halvingInterval: 3 };
// Three configured authorities: identity keys; the third signs with a separate (certified) signing key.
const ids = [11, 12, 13].map((i) => ed25519FromSeed(Buffer.alloc(32, i)));
const signer3 = ed25519FromSeed(Buffer.alloc(32, 23));
const signers: [Ed25519KeyPair, Ed25519KeyPair][] = [[ids[0], ids[0]], [ids[1], ids[1]], [ids[2], signer3]];
const authorities = staticAuthorities([
  { identity: ids[0].publicKey }, { identity: ids[1].publicKey }, { identity: ids[2].publicKey, signingKeys: [signer3.publicKey] },
]);

/** A chain of `n` blocks, each signed by the authorities at `who` (indices). */
function chain(n: number, who = [0, 1, 2]): Buffer[] {
  const out: Buffer[] = [];
  let tip: ChainTip | null = null;
  for (let h = 0; h < n; h++) {
    const proven = h === 2 ? new Map() : new Map<string, number>([[fp(1), 10 + h], [fp(2), 20], [fp(3 + h), 7]]);
    const { block, body, hash } = nextRewardBlock(tip, 100 + h, proven, schedule);
    const sigs = who.map((i) => signRewardBlock(body, signers[i][0].publicKey, signers[i][1]));
    out.push(encodeSignedRewardBlock(body, sigs));
    tip = { height: block.height, hash, epoch: block.epoch };
  }
  return out;
}

describe('reward block encoding (SPEC §8.7)', () => {
  it('round-trips and is canonical: one encoding per block', () => {
    const { block, body } = nextRewardBlock(null, 5, new Map([[fp(2), 3], [fp(1), 1]]), schedule);
    expect(body.length).toBe(61 + 2 * 40);
    expect(body[0]).toBe(1);
    expect(block.previousHash.equals(GENESIS_PREVIOUS_HASH)).toBe(true);
    const back = decodeRewardBlock(body);
    expect(back).toEqual(block);
    expect(encodeRewardBlock(back).equals(body)).toBe(true);
    expect([...back.allocations.keys()]).toEqual([fp(1), fp(2)]);
    expect(rewardBlockHash(body)).toHaveLength(32);
  });

  it('refuses allocations out of order, zero amounts, and sums that are not the minted amount', () => {
    const { body } = nextRewardBlock(null, 5, new Map([[fp(2), 3], [fp(1), 1]]), schedule);
    const swapped = Buffer.from(body);
    body.copy(swapped, 61, 101, 141);
    body.copy(swapped, 101, 61, 101);
    expectCode(() => decodeRewardBlock(swapped), 'REWARD_MALFORMED');
    const sum = Buffer.from(body);
    sum.writeBigUInt64BE(sum.readBigUInt64BE(61 + 32) + 1n, 61 + 32);
    expectCode(() => decodeRewardBlock(sum), 'REWARD_SUM_MISMATCH');
    expectCode(() => encodeRewardBlock({ height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 1, minted: 5n, allocations: new Map([[fp(1), 4n]]) }), 'REWARD_SUM_MISMATCH');
    expectCode(() => encodeRewardBlock({ height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 1, minted: 5n, allocations: new Map([[fp(2), 4n], [fp(1), 1n]]) }), 'REWARD_MALFORMED');
    expectCode(() => encodeRewardBlock({ height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 1, minted: 0n, allocations: new Map([[fp(1), 0n]]) }), 'REWARD_MALFORMED');
  });

  it('decoders fed random bytes throw only BitcloudError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), fc.boolean(), (bytes, signed) => {
      try {
        if (signed) decodeSignedRewardBlock(bytes); else decodeRewardBlock(bytes);
      } catch (e) {
        if (!isBitcloudError(e)) throw e;
      }
    }), { numRuns: 2000 });
    // Mutations of a valid block, which get past the length checks.
    const good = chain(1)[0];
    fc.assert(fc.property(fc.nat({ max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
      const b = Buffer.from(good);
      b[i] ^= x;
      try { decodeSignedRewardBlock(b); } catch (e) { if (!isBitcloudError(e)) throw e; }
    }), { numRuns: 2000 });
  });
});

describe('chain verification (SPEC §8.7)', () => {
  it('verifies a chain and returns balances; every block mints what it allocates', () => {
    const blocks = chain(5);
    const st = verifyChain(blocks, authorities, majorityOf(3), { schedule });
    expect(st.height).toBe(4);
    expect(st.epoch).toBe(104);
    let sum = 0n;
    for (const v of st.balances.values()) sum += v;
    expect(sum).toBe(st.totalMinted);
    // Block 2 proved nothing and minted nothing; the others minted the schedule's amount.
    const expected = [0, 1, 3, 4].reduce((a, h) => a + scheduledMint(h, schedule), 0n);
    expect(st.totalMinted).toBe(expected);
    for (const b of blocks) {
      const d = decodeSignedRewardBlock(b).block;
      let s = 0n;
      for (const v of d.allocations.values()) s += v;
      expect(s).toBe(d.minted);
    }
  });

  it('accepts a chain signed by a bare majority (2 of 3)', () => {
    expect(verifyChain(chain(3, [0, 2]), authorities).height).toBe(2);
  });

  it('fails on a missing signature (below more than half of the configured authorities)', () => {
    expectCode(() => verifyChain(chain(3, [1]), authorities), 'REWARD_TOO_FEW_SIGNATURES');
    const blocks = chain(3);
    const d = decodeSignedRewardBlock(blocks[1]);
    blocks[1] = encodeSignedRewardBlock(d.body, d.signatures.slice(0, 1));
    expectCode(() => verifyChain(blocks, authorities), 'REWARD_TOO_FEW_SIGNATURES');
  });

  it('does not count signatures by keys it does not know', () => {
    const stranger = ed25519FromSeed(Buffer.alloc(32, 99));
    const { body } = nextRewardBlock(null, 1, new Map([[fp(1), 1]]), schedule);
    const sigs = [signRewardBlock(body, ids[0].publicKey, ids[0]), signRewardBlock(body, stranger.publicKey, stranger), signRewardBlock(body, ids[1].publicKey, stranger)];
    expectCode(() => verifyChain([encodeSignedRewardBlock(body, sigs)], authorities), 'REWARD_TOO_FEW_SIGNATURES');
  });

  it('fails on an altered block', () => {
    const blocks = chain(3);
    const d = decodeSignedRewardBlock(blocks[1]);
    // Move one unit between two allocations: the sum still holds, the signatures do not.
    const body = Buffer.from(d.body);
    body.writeBigUInt64BE(body.readBigUInt64BE(61 + 32) + 1n, 61 + 32);
    body.writeBigUInt64BE(body.readBigUInt64BE(101 + 32) - 1n, 101 + 32);
    blocks[1] = encodeSignedRewardBlock(body, d.signatures);
    expectCode(() => verifyChain(blocks, authorities), 'REWARD_BAD_SIGNATURE');
    // Altering a signature.
    const blocks2 = chain(2);
    const d2 = decodeSignedRewardBlock(blocks2[0]);
    d2.signatures[2].signature[5] ^= 1;
    blocks2[0] = encodeSignedRewardBlock(d2.body, d2.signatures);
    expectCode(() => verifyChain(blocks2, authorities), 'REWARD_BAD_SIGNATURE');
  });

  it('fails on a broken hash link', () => {
    const a = chain(3);
    // A block re-signed by every authority but naming the wrong previous block.
    const d = decodeSignedRewardBlock(a[2]);
    const body = encodeRewardBlock({ ...d.block, previousHash: rewardBlockHash(decodeSignedRewardBlock(a[0]).body) });
    a[2] = encodeSignedRewardBlock(body, signers.map(([id, k]) => signRewardBlock(body, id.publicKey, k)));
    expectCode(() => verifyChain(a, authorities), 'REWARD_CHAIN_BROKEN_LINK');
    // A removed block breaks the chain too (heights are checked first).
    const b = chain(3);
    expectCode(() => verifyChain([b[0], b[2]], authorities), 'REWARD_CHAIN_BAD_HEIGHT');
  });

  it('fails on a wrong height, a repeated epoch, and a mint off the schedule', () => {
    const resign = (blk: Parameters<typeof encodeRewardBlock>[0]) => {
      const body = encodeRewardBlock(blk);
      return encodeSignedRewardBlock(body, signers.map(([id, k]) => signRewardBlock(body, id.publicKey, k)));
    };
    const a = chain(2);
    const d = decodeSignedRewardBlock(a[1]).block;
    expectCode(() => verifyChain([a[0], resign({ ...d, height: 5 })], authorities), 'REWARD_CHAIN_BAD_HEIGHT');
    expectCode(() => verifyChain([a[0], resign({ ...d, epoch: 100 })], authorities), 'REWARD_CHAIN_BAD_EPOCH');
    const over = resign({ ...d, minted: d.minted + 1n, allocations: new Map([...d.allocations].map(([k, v], i) => [k, i === 0 ? v + 1n : v])) });
    expect(verifyChain([a[0], over], authorities).height).toBe(1); // no schedule given: only the sum is checked
    expectCode(() => verifyChain([a[0], over], authorities, 2, { schedule }), 'REWARD_MINT_MISMATCH');
  });

  it('refuses a threshold below a majority', () => {
    expectCode(() => verifyChain(chain(1), authorities, 1), 'REWARD_BAD_INPUT');
  });

  it('refuses to build a block for an epoch that is not after the tip', () => {
    expectCode(() => nextRewardBlock({ height: 0, hash: GENESIS_PREVIOUS_HASH, epoch: 9 }, 9, new Map(), schedule), 'REWARD_CHAIN_BAD_EPOCH');
  });
});
