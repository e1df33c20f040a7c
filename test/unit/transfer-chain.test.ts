// SPEC.md §8.7.1, §8.7.3 item 7, §8.11: transfers carried by reward blocks and an authority's
// pool of pending transfers. Balances are allocations ± transfers; a block whose transfers do not
// apply is refused (REWARD_BAD_TRANSFER) and changes nothing; the pool refuses a bad signature, a
// replay, a double spend, a nonce gap, an overspend, each with its code.
import { describe, expect, it, vi } from 'vitest';
import { ed25519FromSeed, ed25519Verify, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { expectCode } from '../helpers/errors';
import type { IssuanceSchedule } from '../../src/bandwidth/reward';
import {
  applyRewardBlock, decodeRewardBlock, emptyChainState, encodeRewardBlock, encodeSignedRewardBlock, nextRewardBlock,
  signRewardBlock, staticAuthorities, transfersLedger, verifyChain, type ChainTip,
} from '../../src/bandwidth/reward-chain';
import { MAX_PENDING_PER_SENDER, signFundingTransfer as signFundingFor, signTransfer as signFor } from '../../src/bandwidth/transfer';
import { contractId, escrowOpener, escrowOpsFor } from '../../src/bandwidth/escrow';
import type { StorageContract } from '../../src/wire/storage-contract';
import { encodeTransfer, type Transfer } from '../../src/wire/transfer';
import { TransferPool } from '../../directory/transfer-pool';
import { RewardLedger } from '../../directory/rewards';

// Signature checks are counted (the pool verifies a transfer once, when it is added).
vi.mock('../../src/crypto/primitives', async (orig) => {
  const m = await orig<typeof import('../../src/crypto/primitives')>();
  return { ...m, ed25519Verify: vi.fn(m.ed25519Verify) };
});
// Encodings are counted too (GET /bitcloud/transfers/pending serves the bytes kept at add).
vi.mock('../../src/wire/transfer', async (orig) => {
  const m = await orig<typeof import('../../src/wire/transfer')>();
  return { ...m, encodeTransfer: vi.fn(m.encodeTransfer) };
});

const schedule: IssuanceSchedule = { initialPerBlock: 1_000_000n, halvingInterval: 100 };
const auth = ed25519FromSeed(Buffer.alloc(32, 5));
const authorities = staticAuthorities([{ identity: auth.publicKey }]);
const relay = ed25519FromSeed(Buffer.alloc(32, 1));
const relay2 = ed25519FromSeed(Buffer.alloc(32, 2));
const wallet = ed25519FromSeed(Buffer.alloc(32, 3));
const other = ed25519FromSeed(Buffer.alloc(32, 4));
const hex = (k: Ed25519KeyPair) => k.publicKey.toString('hex');
/** SPEC §8.11.1: the id of the chains `chain` builds, the hash of their block 0 (epoch 100, no transfers). */
const CHAIN_ID = nextRewardBlock(null, 100, new Map([[hex(relay), 3], [hex(relay2), 1]]), schedule).hash;
const signTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signFor(k, to, amount, nonce, CHAIN_ID);
const signFundingTransfer = (k: Ed25519KeyPair, to: Buffer, amount: bigint, nonce: number) => signFundingFor(k, to, amount, nonce, CHAIN_ID);

/** Signed blocks: each mints 1 000 000 units split 3:1 between relay and relay2, then carries its transfers. */
function chain(perBlock: Transfer[][]): Buffer[] {
  const out: Buffer[] = [];
  let tip: ChainTip | null = null;
  perBlock.forEach((transfers, h) => {
    const { block, body, hash } = nextRewardBlock(tip, 100 + h, new Map([[hex(relay), 3], [hex(relay2), 1]]), schedule, new Map(), transfers);
    out.push(encodeSignedRewardBlock(body, [signRewardBlock(body, auth.publicKey, auth)]));
    tip = { height: block.height, hash, epoch: block.epoch };
  });
  return out;
}

describe('transfers in reward blocks (SPEC §8.7.1, §8.11)', () => {
  it('a block without transfers is version 1 as before; with transfers, version 2 with the 145-byte transfers after the allocations', () => {
    const [b0] = chain([[]]);
    const body0 = b0.subarray(4, 4 + b0.readUInt32BE(0));
    expect(body0[0]).toBe(1);
    expect(body0.length).toBe(61 + 2 * 40);
    const t = signTransfer(relay, wallet.publicKey, 10n, 1);
    const { body, block } = nextRewardBlock(null, 7, new Map([[hex(relay), 1]]), schedule, new Map(), [t]);
    expect(body[0]).toBe(2);
    expect(body.length).toBe(61 + 40 + 4 + 145);
    expect(body.subarray(61 + 40 + 4).equals(encodeTransfer(t))).toBe(true);
    expect(decodeRewardBlock(body)).toEqual(block);
    expect(encodeRewardBlock(decodeRewardBlock(body)).equals(body)).toBe(true);
    // One encoding per block: version 2 with zero transfers, a truncated or altered transfer, bytes after.
    const zero = Buffer.concat([body.subarray(0, 61 + 40), Buffer.alloc(4)]);
    expectCode(() => decodeRewardBlock(zero), 'REWARD_MALFORMED');
    expectCode(() => decodeRewardBlock(body.subarray(0, body.length - 1)), 'REWARD_MALFORMED');
    expectCode(() => decodeRewardBlock(Buffer.concat([body, Buffer.alloc(1)])), 'REWARD_MALFORMED');
    const badVersion = Buffer.from(body); badVersion[61 + 40 + 4] = 9;
    expectCode(() => decodeRewardBlock(badVersion), 'REWARD_MALFORMED');
    const v1WithTail = Buffer.from(body); v1WithTail[0] = 1;
    expectCode(() => decodeRewardBlock(v1WithTail), 'REWARD_MALFORMED');
  });

  it('balances are allocations ± transfers, in block order', () => {
    const s = verifyChain(chain([
      [],
      [signTransfer(relay, wallet.publicKey, 500_000n, 1), signTransfer(wallet, other.publicKey, 100_000n, 1)],
      [signTransfer(relay2, wallet.publicKey, 250_000n, 1), signTransfer(relay, other.publicKey, 1n, 2)],
    ]), authorities, 1, { schedule });
    expect(s.balances.get(hex(relay))).toBe(3n * 750_000n - 500_000n - 1n);
    expect(s.balances.get(hex(relay2))).toBe(3n * 250_000n - 250_000n);
    expect(s.balances.get(hex(wallet))).toBe(500_000n - 100_000n + 250_000n);
    expect(s.balances.get(hex(other))).toBe(100_001n);
    expect([...s.balances.values()].reduce((a, b) => a + b, 0n)).toBe(s.totalMinted);
    expect(s.nonces.get(hex(relay))).toBe(2);
    expect(s.transfers).toBe(4);
  });

  it('refuses a block whose transfers do not apply (REWARD_BAD_TRANSFER with the reason), changing nothing', () => {
    const t1 = signTransfer(relay, wallet.publicKey, 700_000n, 1);
    const cases: [string, Transfer[][]][] = [
      // Block 0 carries none: its hash is the chain id the transfers are signed for (§8.11.1).
      ['TRANSFER_OVERSPEND', [[signTransfer(relay, wallet.publicKey, 1_500_001n, 1)]]],
      ['TRANSFER_BAD_SIGNATURE', [[{ ...signTransfer(other, wallet.publicKey, 1n, 1), from: relay.publicKey }]]],
      // The same transfer twice (a replay), or a second spend of one nonce in a later block (a double spend).
      ['TRANSFER_REPLAYED', [[t1, t1]]],
      ['TRANSFER_REPLAYED', [[t1], [signTransfer(relay, other.publicKey, 10n, 1)]]],
      ['TRANSFER_NONCE_GAP', [[signTransfer(relay, wallet.publicKey, 1n, 2)]]],
      // Spending what arrives only later in the same block.
      ['TRANSFER_OVERSPEND', [[signTransfer(wallet, other.publicKey, 1n, 1), t1]]],
    ];
    for (const [reason, blocks] of cases) {
      const raw = chain([[], ...blocks]);
      const state = emptyChainState();
      for (const b of raw.slice(0, -1)) applyRewardBlock(state, b, authorities, 1, { schedule });
      const before = { height: state.height, balances: new Map(state.balances), nonces: new Map(state.nonces) };
      let detail: unknown = null;
      expectCode(() => {
        try { applyRewardBlock(state, raw[raw.length - 1], authorities, 1, { schedule }); } catch (e) { detail = (e as { detail?: unknown }).detail; throw e; }
      }, 'REWARD_BAD_TRANSFER');
      expect(detail).toMatchObject({ reason });
      expect(state.height).toBe(before.height);
      expect(state.balances).toEqual(before.balances);
      expect(state.nonces).toEqual(before.nonces);
    }
  });
});

describe('an authority\'s transfer pool (SPEC §8.11.3)', () => {
  const state = verifyChain(chain([[]]), authorities, 1, { schedule }); // relay 750 000, relay2 250 000

  it('takes transfers that apply after the chain and the pool; refuses the rest with their codes', () => {
    const pool = new TransferPool(state);
    const t1 = signTransfer(relay, wallet.publicKey, 500_000n, 1);
    expect(pool.add(t1)).toBe('added');
    expect(pool.add(t1)).toBe('held'); // the same transfer again (another authority passing it on)
    // A second spend of nonce 1, to someone else: a double spend.
    expectCode(() => pool.add(signTransfer(relay, other.publicKey, 1n, 1)), 'TRANSFER_REPLAYED');
    expectCode(() => pool.add(signTransfer(relay, other.publicKey, 1n, 3)), 'TRANSFER_NONCE_GAP');
    // 250 000 left after the pending transfer.
    expectCode(() => pool.add(signTransfer(relay, other.publicKey, 250_001n, 2)), 'TRANSFER_OVERSPEND');
    expectCode(() => pool.add({ ...signTransfer(relay, other.publicKey, 5n, 2), amount: 6n }), 'TRANSFER_BAD_SIGNATURE');
    // Units that only a pending transfer brings are not spendable until a block carries them.
    expectCode(() => pool.add(signTransfer(wallet, other.publicKey, 1n, 1)), 'TRANSFER_OVERSPEND');
    expect(pool.add(signTransfer(relay2, other.publicKey, 250_000n, 1))).toBe('added');
    expect(pool.pending().length).toBe(2);
    expect(pool.pending(hex(relay2)).length).toBe(1);
    expect(pool.take(1)).toEqual([t1]);
  });

  it('a pending transfer spends only the sender\'s chain balance minus its own pending ones: one funded unit cannot fill the pool through fresh keys', () => {
    const pool = new TransferPool(state, 50);
    const keys = Array.from({ length: 50 }, (_, i) => ed25519FromSeed(Buffer.alloc(32, 100 + i)));
    // relay funds keys[0] with 1 unit in a block; keys[0] → keys[1] → keys[2] … one unit each.
    const funded = verifyChain(chain([[], [signTransfer(relay, keys[0].publicKey, 1n, 1)]]), authorities, 1, { schedule });
    pool.rebase(funded);
    expect(pool.add(signTransfer(keys[0], keys[1].publicKey, 1n, 1))).toBe('added');
    for (let i = 1; i < keys.length - 1; i++) expectCode(() => pool.add(signTransfer(keys[i], keys[i + 1].publicKey, 1n, 1)), 'TRANSFER_OVERSPEND');
    expect(pool.size).toBe(1);
    // Once a block carries the first, keys[1] may spend its unit.
    const s3 = verifyChain(chain([[], [signTransfer(relay, keys[0].publicKey, 1n, 1)], [signTransfer(keys[0], keys[1].publicKey, 1n, 1)]]), authorities, 1, { schedule });
    expect(pool.rebase(s3)).toBe(1);
    expect(pool.add(signTransfer(keys[1], keys[2].publicKey, 1n, 1))).toBe('added');
  });

  it('a full pool refuses with TRANSFER_POOL_FULL; a new tip drops what the block carried or no longer applies', () => {
    const pool = new TransferPool(state, 2);
    const a = signTransfer(relay, wallet.publicKey, 1n, 1);
    const b = signTransfer(relay, wallet.publicKey, 1n, 2);
    pool.add(a);
    pool.add(b);
    expectCode(() => pool.add(signTransfer(relay2, wallet.publicKey, 1n, 1)), 'TRANSFER_POOL_FULL');
    // A block carried `a` and another spend of nonce 2: both pending ones are gone.
    const s2 = verifyChain(chain([[], [a, signTransfer(relay, other.publicKey, 7n, 2)]]), authorities, 1, { schedule });
    expect(pool.rebase(s2)).toBe(2);
    expect(pool.size).toBe(0);
    expectCode(() => pool.add(a), 'TRANSFER_REPLAYED');
  });

  it('at most 16 of one sender\'s transfers wait for a block (TRANSFER_RATE_LIMITED); others still get in; a block frees the sender', () => {
    const pool = new TransferPool(state);
    const mine = Array.from({ length: MAX_PENDING_PER_SENDER }, (_, i) => signTransfer(relay, wallet.publicKey, 1n, i + 1));
    for (const t of mine) expect(pool.add(t)).toBe('added');
    expect(pool.add(mine[3])).toBe('held');
    expectCode(() => pool.add(signTransfer(relay, wallet.publicKey, 1n, MAX_PENDING_PER_SENDER + 1)), 'TRANSFER_RATE_LIMITED');
    expect(pool.add(signTransfer(relay2, wallet.publicKey, 1n, 1))).toBe('added');
    expect(pool.size).toBe(MAX_PENDING_PER_SENDER + 1);
    // Once a block carried the sender's transfers, it may send again.
    const s2 = verifyChain(chain([[], mine]), authorities, 1, { schedule });
    pool.rebase(s2);
    expect(pool.add(signTransfer(relay, wallet.publicKey, 1n, MAX_PENDING_PER_SENDER + 1))).toBe('added');
  });

  it('a new tip re-applies the pending transfers without verifying their signatures again; those whose nonce the block used are dropped first', () => {
    const pool = new TransferPool(state, 1000, 100);
    const mine = Array.from({ length: 100 }, (_, i) => signTransfer(relay, wallet.publicKey, 1n, i + 1));
    for (const t of mine) pool.add(t);
    const verifies = vi.mocked(ed25519Verify);
    verifies.mockClear();
    // A tip that carries none of them: all are kept, none verified again.
    const same = { chainId: CHAIN_ID, balances: new Map(state.balances), nonces: new Map(state.nonces) };
    expect(pool.rebase(same)).toBe(0);
    expect(pool.size).toBe(100);
    // A tip in which the sender's nonces 1..100 are all used: all dropped.
    const used = { chainId: CHAIN_ID, balances: new Map(state.balances), nonces: new Map([...state.nonces, [hex(relay), 100]]) };
    expect(pool.rebase(used)).toBe(100);
    expect(pool.size).toBe(0);
    expect(verifies).toHaveBeenCalledTimes(0);
  });

  it('GET /bitcloud/transfers/pending serves the bytes kept when each transfer was taken: no transfer is encoded again per request', () => {
    const pool = new TransferPool(state);
    const mine = Array.from({ length: 10 }, (_, i) => signTransfer(relay, wallet.publicKey, 1n, i + 1));
    const theirs = signTransfer(relay2, wallet.publicKey, 1n, 1);
    for (const t of [...mine.slice(0, 5), theirs, ...mine.slice(5)]) pool.add(t);
    const want = Buffer.concat([...mine.slice(0, 5), theirs, ...mine.slice(5)].map((t) => encodeTransfer(t)));
    const encodes = vi.mocked(encodeTransfer);
    encodes.mockClear();
    const serve = (from?: string) => RewardLedger.prototype.pendingTransfersBytes.call({ pool } as unknown as RewardLedger, from);
    expect(serve()).toEqual(want);
    expect(serve()).toEqual(want);
    expect(serve(hex(relay2))).toEqual(encodeTransfer(theirs));
    expect(encodes).toHaveBeenCalledTimes(1); // the one just above, by the test
    expect(serve(hex(relay)).length).toBe(10 * 145);
    expect(serve(hex(other)).length).toBe(0);
    // The pool changed: the body follows.
    pool.rebase({ chainId: CHAIN_ID, balances: new Map(state.balances), nonces: new Map([...state.nonces, [hex(relay), 10]]) });
    expect(serve()).toEqual(encodeTransfer(theirs));
  });
});

describe('funding transfers (version 2) in an authority\'s pool and the proposer\'s block (SPEC §8.11.3, §9.20.4)', () => {
  const contract: StorageContract = {
    startEpoch: 100, endEpoch: 104,
    entries: [{ node: Buffer.alloc(32, 7), shareId: Buffer.alloc(32, 8), shareSize: 4096, auditRoot: Buffer.alloc(32, 9) }],
  };
  const id = contractId(contract);
  const ID = id.toString('hex');
  const held = (x: string) => (x === ID ? contract : undefined);
  const fund = signFundingTransfer(relay, id, 1000n, 1);
  const after = signTransfer(relay, wallet.publicKey, 5n, 2);
  const theirs = signTransfer(relay2, wallet.publicKey, 7n, 1);

  it('a proposer that does not hold the contract leaves the funding transfer and its sender\'s later ones pending; one that holds it carries both with the open', () => {
    const state = verifyChain(chain([[]]), authorities, 1, { schedule });
    const pool = new TransferPool(state);
    for (const t of [fund, after, theirs]) expect(pool.add(t)).toBe('added');
    // An authority holding no contracts, or not this one: only the other sender's transfer.
    expect(pool.take(100)).toEqual([theirs]);
    const notHeld = escrowOpener(state.escrows, 101, () => undefined);
    expect(pool.take(100, (t) => notHeld(t) !== null)).toEqual([theirs]);
    expect(pool.size).toBe(3);
    // The contract held: all three, and the block with its open verifies.
    const opener = escrowOpener(state.escrows, 101, held);
    const carried = pool.take(100, (t) => opener(t) !== null);
    expect(carried).toEqual([fund, after, theirs]);
    const next = nextRewardBlock({ height: state.height, hash: state.tipHash, epoch: state.epoch }, 101, new Map([[hex(relay), 1]]), schedule, new Map(), carried);
    const ops = escrowOpsFor(state.escrows, transfersLedger(state, next.block), 101, carried, held, null);
    expect(ops).toEqual([{ kind: 'open', contract: ID, payer: hex(relay), startEpoch: 100, endEpoch: 104, funded: 1000n, totalBytes: 4096n }]);
    const body = encodeRewardBlock({ ...next.block, escrow: ops });
    applyRewardBlock(state, encodeSignedRewardBlock(body, [signRewardBlock(body, auth.publicKey, auth)]), authorities, 1, { schedule });
    expect(state.escrows.get(ID)?.funded).toBe(1000n);
    expect(pool.rebase(state)).toBe(3);
    // A second funding of a contract opened already could never get an open: the pool refuses it
    // (ESCROW_ALREADY_FUNDED), so it holds none of its sender's later transfers.
    expectCode(() => pool.add(signFundingTransfer(relay, id, 1000n, 3)), 'ESCROW_ALREADY_FUNDED');
    const next3 = signTransfer(relay, wallet.publicKey, 1n, 3);
    expect(pool.add(next3)).toBe('added');
    const later = escrowOpener(state.escrows, 102, held);
    expect(pool.take(100, (t) => later(t) !== null)).toEqual([next3]);
  });

  it('while funding-v2 is off (SPEC §8.11.3) the pool refuses a funding transfer (TRANSFER_VERSION_DISABLED) and the proposer carries none; version 1 goes on', () => {
    const state = verifyChain(chain([[]]), authorities, 1, { schedule });
    let on = false;
    const pool = new TransferPool(state, undefined, undefined, () => on);
    expectCode(() => pool.add(fund), 'TRANSFER_VERSION_DISABLED');
    expect(pool.size).toBe(0);
    const plain = theirs;
    expect(pool.add(plain)).toBe('added');
    // Switched on: taken, and carried with its open.
    on = true;
    expect(pool.add(fund)).toBe('added');
    expect(pool.add(after)).toBe('added');
    expect(pool.add(fund)).toBe('held');
    // Off again: the identical pending one is still `held`, but the proposer leaves it and its
    // sender's later transfer out, without asking for an open; the other sender's goes on.
    on = false;
    expect(pool.add(fund)).toBe('held');
    const asked: Transfer[] = [];
    const opener = escrowOpener(state.escrows, 101, held);
    expect(pool.take(100, (t) => { asked.push(t); return opener(t) !== null; })).toEqual([plain]);
    expect(asked).toEqual([plain]);
    expect(pool.size).toBe(3);
    on = true;
    const opener2 = escrowOpener(state.escrows, 101, held);
    expect(pool.take(100, (t) => opener2(t) !== null)).toEqual([plain, fund, after]);
  });

  it('the proposer looks each contract id up once per block, however many pending transfers pay it', () => {
    const state = verifyChain(chain([[]]), authorities, 1, { schedule });
    const pool = new TransferPool(state);
    const ended: StorageContract = { ...contract, startEpoch: 90, endEpoch: 100 };
    const endedId = contractId(ended);
    for (let i = 1; i <= 5; i++) pool.add(signTransfer(relay, endedId, 10n, i));
    pool.add(signFundingTransfer(relay2, endedId, 10n, 1));
    let lookups = 0;
    const opener = escrowOpener(state.escrows, 101, (x) => { lookups++; return x === endedId.toString('hex') ? ended : undefined; });
    // An ended contract gets no open: the plain transfers go, the funding transfer waits.
    expect(pool.take(100, (t) => opener(t) !== null)).toHaveLength(5);
    expect(lookups).toBe(1);
  });

  it('a funding transfer that no block carried within 24 heights of its arrival is dropped, and its sender\'s later transfers with it', () => {
    const state = verifyChain(chain([[]]), authorities, 1, { schedule });
    const at = (height: number) => ({ chainId: CHAIN_ID, balances: state.balances, nonces: state.nonces, height });
    const pool = new TransferPool(at(10));
    const plain = signTransfer(relay2, other.publicKey, 1n, 2);
    for (const t of [fund, after, theirs, plain]) expect(pool.add(t)).toBe('added');
    expect(pool.rebase(at(33))).toBe(0);
    expect(pool.expired).toEqual({ funding: 0, after: 0 });
    expect(pool.size).toBe(4);
    expect(pool.rebase(at(34))).toBe(2);
    expect(pool.expired).toEqual({ funding: 1, after: 1 });
    expect(pool.pending()).toEqual([theirs, plain]);
    // Plain transfers do not expire; a new funding transfer with the freed nonce has its own 24 heights.
    const fundAgain = signFundingTransfer(relay, id, 2000n, 1);
    expect(pool.add(fundAgain)).toBe('added');
    expect(pool.rebase(at(57))).toBe(0);
    expect(pool.rebase(at(58))).toBe(1);
    expect(pool.expired).toEqual({ funding: 1, after: 0 });
    expect(pool.pending()).toEqual([theirs, plain]);
  });

  it('a funding transfer dropped for its age is refused when posted again, until the chain uses its nonce; its sender\'s nonce stays free', () => {
    const state = verifyChain(chain([[]]), authorities, 1, { schedule });
    const at = (height: number, nonce = 0) => ({ chainId: CHAIN_ID, balances: state.balances, nonces: new Map([[hex(relay), nonce]]), height });
    const pool = new TransferPool(at(10));
    expect(pool.add(fund)).toBe('added');
    expect(pool.rebase(at(34))).toBe(1);
    expect(pool.expired).toEqual({ funding: 1, after: 0 });
    // Its bytes are public (GET /bitcloud/transfers/pending): posted again by anyone, it would hold
    // the sender's nonce for another 24 heights, and so on for ever.
    expectCode(() => pool.add(fund), 'TRANSFER_REPLAYED');
    expect(pool.size).toBe(0);
    // The sender itself sends another transfer with that nonce.
    const instead = signTransfer(relay, wallet.publicKey, 5n, 1);
    expect(pool.add(instead)).toBe('added');
    expectCode(() => pool.add(fund), 'TRANSFER_REPLAYED');
    // Once the chain used the nonce, the nonce itself refuses it (that the pool then forgets it is the next test).
    expect(pool.rebase(at(35, 1))).toBe(1);
    expectCode(() => pool.add(fund), 'TRANSFER_REPLAYED');
    // At most `max` are remembered, the oldest forgotten first.
    const small = new TransferPool(at(0), 1);
    const f1 = signFundingTransfer(relay, id, 1000n, 1);
    const f2 = signFundingTransfer(relay2, id, 1000n, 1);
    expect(small.add(f1)).toBe('added');
    small.rebase({ chainId: CHAIN_ID, balances: state.balances, nonces: new Map(), height: 24 });
    expectCode(() => small.add(f1), 'TRANSFER_REPLAYED');
    expect(small.add(f2)).toBe('added');
    small.rebase({ chainId: CHAIN_ID, balances: state.balances, nonces: new Map(), height: 48 });
    expectCode(() => small.add(f2), 'TRANSFER_REPLAYED');
    expect(small.add(f1)).toBe('added');
  });

  it('a remembered funding transfer is forgotten once the chain uses its sender\'s nonce, and no longer counts against the bound', () => {
    const state = verifyChain(chain([[]]), authorities, 1, { schedule });
    const base = (height: number, used: [Ed25519KeyPair, number][] = []) => ({ chainId: CHAIN_ID, balances: state.balances, nonces: new Map(used.map(([k, n]) => [hex(k), n])), height });
    const pool = new TransferPool(base(0), 2);
    const a = signFundingTransfer(relay, id, 1000n, 1);
    const b = signFundingTransfer(relay2, id, 1000n, 1);
    expect([pool.add(a), pool.add(b)]).toEqual(['added', 'added']);
    expect(pool.rebase(base(24))).toBe(2);
    expectCode(() => pool.add(a), 'TRANSFER_REPLAYED');
    expectCode(() => pool.add(b), 'TRANSFER_REPLAYED');
    // A block carries relay2's nonce 1 (another transfer of its): b is forgotten, a is still remembered.
    pool.rebase(base(25, [[relay2, 1]]));
    // One more dropped funding transfer: with b forgotten, two are remembered, within the bound of 2,
    // so a is not pushed out (were b still remembered, a, the oldest, would be forgotten).
    const c = signFundingTransfer(relay, id, 999n, 1);
    expect(pool.add(c)).toBe('added');
    expect(pool.rebase(base(49, [[relay2, 1]]))).toBe(1);
    expectCode(() => pool.add(a), 'TRANSFER_REPLAYED');
    expectCode(() => pool.add(c), 'TRANSFER_REPLAYED');
    expect(pool.size).toBe(0);
  });

  it('a transfer to a contract id whose escrow the chain holds: a funding one is ESCROW_ALREADY_FUNDED, a plain one to a closed escrow ESCROW_CLOSED (its units could never move again); a plain one to an open escrow is taken (SPEC §8.11.3, §9.20.4)', () => {
    const open = Buffer.alloc(32, 0x0e), closed = Buffer.alloc(32, 0xc1), later = Buffer.alloc(32, 0x1a);
    const escrows = new Map([[open.toString('hex'), { refunded: null }], [closed.toString('hex'), { refunded: 7n }]]);
    const onChain = { chainId: CHAIN_ID, balances: new Map([[hex(relay), 1000n]]), nonces: new Map<string, number>(), height: 5, escrows };
    const pool = new TransferPool(onChain);
    expectCode(() => pool.add(signTransfer(relay, closed, 10n, 1)), 'ESCROW_CLOSED');
    expectCode(() => pool.add(signFundingTransfer(relay, closed, 10n, 1)), 'ESCROW_ALREADY_FUNDED');
    expectCode(() => pool.add(signFundingTransfer(relay, open, 10n, 1)), 'ESCROW_ALREADY_FUNDED');
    expect(pool.size).toBe(0);
    expect(pool.add(signTransfer(relay, open, 10n, 1))).toBe('added');
    // One taken before the contract's escrow closed is dropped when the chain shows it closed.
    expect(pool.add(signTransfer(relay, later, 10n, 2))).toBe('added');
    expect(pool.rebase({ ...onChain, escrows: new Map([...escrows, [later.toString('hex'), { refunded: 0n }]]) })).toBe(1);
    expect(pool.pending().map((t) => t.to.toString('hex'))).toEqual([open.toString('hex')]);
  });

  it('a funding transfer to an id with no escrow whose account holds units is ESCROW_ALREADY_FUNDED: no escrow is opened for it (SPEC §8.11.3, §9.20.4 item 1)', () => {
    const dirty = Buffer.alloc(32, 0xd1), clean = Buffer.alloc(32, 0xd2);
    const onChain = { chainId: CHAIN_ID, balances: new Map([[hex(relay), 1000n], [dirty.toString('hex'), 40n]]), nonces: new Map<string, number>(), height: 5, escrows: new Map() };
    const pool = new TransferPool(onChain);
    expectCode(() => pool.add(signFundingTransfer(relay, dirty, 10n, 1)), 'ESCROW_ALREADY_FUNDED');
    expect(pool.add(signFundingTransfer(relay, clean, 10n, 1))).toBe('added');
    // A plain transfer to it is still taken (its sender's to make).
    expect(pool.add(signTransfer(relay, dirty, 10n, 2))).toBe('added');
  });
});
