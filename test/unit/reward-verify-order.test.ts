// SPEC.md §8.7.3: a reader checks a block's header, then its signatures over the raw body bytes,
// and decodes the body (its up to 1 000 000 allocations) only then: a block nobody signed, however
// large, is refused with REWARD_TOO_FEW_SIGNATURES and costs no body decode.
import { describe, it, expect, vi, beforeEach } from 'vitest';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import { expectCode } from '../helpers/errors';
import {
  GENESIS_PREVIOUS_HASH, applyRewardBlock, emptyChainState, encodeRewardBlock, encodeSignedRewardBlock, rewardBlockHash,
  signRewardBlock, staticAuthorities, verifyChain, type RewardAuthorities, type RewardBlock,
} from '../../src/bandwidth/reward-chain';

// Counts the body decodes made through the wire module's exports.
const decodes = vi.hoisted(() => ({ n: 0 }));
vi.mock('../../src/wire/reward-block', async (orig) => {
  const real = await orig<typeof import('../../src/wire/reward-block')>();
  return {
    ...real,
    decodeRewardBlock: (...args: Parameters<typeof real.decodeRewardBlock>) => { decodes.n++; return real.decodeRewardBlock(...args); },
    decodeSignedRewardBlock: (...args: Parameters<typeof real.decodeSignedRewardBlock>) => { decodes.n++; return real.decodeSignedRewardBlock(...args); },
  };
});

const fp = (n: number) => n.toString(16).padStart(64, '0');
const ids = [31, 32, 33].map((i) => ed25519FromSeed(Buffer.alloc(32, i)));
const authorities = staticAuthorities(ids.map((k) => ({ identity: k.publicKey })));
const ALLOCATIONS = 50_000;

/** Block 0 with many allocations; `broken`: its last allocation's amount zeroed (a body that does not decode). */
function bigBody(broken: boolean): Buffer {
  const allocations = new Map<string, bigint>();
  for (let i = 1; i <= ALLOCATIONS; i++) allocations.set(fp(i), 3n);
  const block: RewardBlock = { height: 0, previousHash: GENESIS_PREVIOUS_HASH, epoch: 7, minted: 3n * BigInt(ALLOCATIONS), allocations };
  const body = encodeRewardBlock(block);
  if (broken) body.writeBigUInt64BE(0n, body.length - 8);
  return body;
}

const signedBy = (body: Buffer, who: number[]) => encodeSignedRewardBlock(body, who.map((i) => signRewardBlock(body, ids[i].publicKey, ids[i])));

describe('a reward block is decoded only after its header and signatures passed (SPEC §8.7.3)', () => {
  beforeEach(() => { decodes.n = 0; });

  it('refuses a block nobody signed with REWARD_TOO_FEW_SIGNATURES without decoding its body', () => {
    expectCode(() => applyRewardBlock(emptyChainState(), signedBy(bigBody(true), []), authorities, 2), 'REWARD_TOO_FEW_SIGNATURES');
    expectCode(() => verifyChain([signedBy(bigBody(true), [1])], authorities), 'REWARD_TOO_FEW_SIGNATURES');
    expectCode(() => verifyChain([signedBy(bigBody(false), [])], authorities), 'REWARD_TOO_FEW_SIGNATURES');
    expect(decodes.n).toBe(0);
  });

  it('refuses a bad signature by an accepted key before decoding the body', () => {
    const body = bigBody(true);
    const sigs = [0, 1].map((i) => signRewardBlock(body, ids[i].publicKey, ids[i]));
    sigs[1].signature[3] ^= 1;
    expectCode(() => verifyChain([encodeSignedRewardBlock(body, sigs)], authorities), 'REWARD_BAD_SIGNATURE');
    expect(decodes.n).toBe(0);
  });

  it('checks the header before the signatures, and decodes a signed body then', () => {
    // A wrong link in the fixed header: refused before anything else is read.
    const off = bigBody(false);
    rewardBlockHash(off).copy(off, 9);
    expectCode(() => verifyChain([signedBy(off, [])], authorities), 'REWARD_CHAIN_BROKEN_LINK');
    expect(decodes.n).toBe(0);
    // Signed by a majority, the body is decoded and its faults are found.
    expectCode(() => verifyChain([signedBy(bigBody(true), [0, 2])], authorities), 'REWARD_MALFORMED');
    expect(decodes.n).toBe(1);
    expect(verifyChain([signedBy(bigBody(false), [0, 2])], authorities).balances.size).toBe(ALLOCATIONS);
  });

  it('gives `accepts` the block header only', () => {
    const seen: unknown[] = [];
    const spy: RewardAuthorities = { configured: 3, accepts: (a, k, block) => { seen.push(block); return authorities.accepts(a, k, block); } };
    verifyChain([signedBy(bigBody(false), [0, 1])], spy);
    expect(seen).toEqual([{ height: 0, epoch: 7 }, { height: 0, epoch: 7 }]);
  });
});
