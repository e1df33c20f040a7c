// SPEC.md §8.11.3: what a transfer costs an authority's pool. One from a key that holds nothing in
// the chain (any number of fresh keys) is refused (TRANSFER_OVERSPEND) before its signature is
// verified, and a transfer taken is verified once, not once per check.
import { describe, expect, it, vi } from 'vitest';
import { ed25519FromSeed, ed25519Verify } from '../../src/crypto/primitives';
import { signTransfer } from '../../src/bandwidth/transfer';
import { expectCode } from '../helpers/errors';
import { TransferPool } from '../../directory/transfer-pool';

vi.mock('../../src/crypto/primitives', async (orig) => {
  const m = await orig<typeof import('../../src/crypto/primitives')>();
  return { ...m, ed25519Verify: vi.fn(m.ed25519Verify) };
});

const CHAIN_ID = Buffer.alloc(32, 31);
const rich = ed25519FromSeed(Buffer.alloc(32, 32));
const to = Buffer.alloc(32, 33);

describe('transfer pool: signature verifications (SPEC.md §8.11.3)', () => {
  it('transfers from fresh keys holding nothing are refused without a verification; one taken costs one', () => {
    const pool = new TransferPool({ chainId: CHAIN_ID, balances: new Map([[rich.publicKey.toString('hex'), 1_000n]]), nonces: new Map(), height: 0 });
    const fresh = Array.from({ length: 200 }, (_, i) => { const seed = Buffer.alloc(32, 0x55); seed.writeUInt32BE(i); return signTransfer(ed25519FromSeed(seed), to, 1n, 1, CHAIN_ID); });
    vi.mocked(ed25519Verify).mockClear();
    for (const t of fresh) expectCode(() => pool.add(t), 'TRANSFER_OVERSPEND');
    expect(vi.mocked(ed25519Verify)).not.toHaveBeenCalled();
    expect(pool.size).toBe(0);
    expect(pool.add(signTransfer(rich, to, 10n, 1, CHAIN_ID))).toBe('added');
    expect(vi.mocked(ed25519Verify)).toHaveBeenCalledTimes(1);
  });

  it('a second transfer with a pending or used nonce is TRANSFER_REPLAYED, whatever its amount, before the balance check', () => {
    const pool = new TransferPool({ chainId: CHAIN_ID, balances: new Map([[rich.publicKey.toString('hex'), 1_000n]]), nonces: new Map(), height: 0 });
    const first = signTransfer(rich, to, 600n, 1, CHAIN_ID);
    expect(pool.add(first)).toBe('added');
    vi.mocked(ed25519Verify).mockClear();
    // A double spend: nonce 1 again, more than the chain balance less the pending 600.
    expectCode(() => pool.add(signTransfer(rich, Buffer.alloc(32, 34), 500n, 1, CHAIN_ID)), 'TRANSFER_REPLAYED');
    // A block carried the first: the same bytes posted again (a wallet waiting for its block).
    pool.rebase({ chainId: CHAIN_ID, balances: new Map([[rich.publicKey.toString('hex'), 400n]]), nonces: new Map([[rich.publicKey.toString('hex'), 1]]), height: 1 });
    expect(pool.size).toBe(0);
    expectCode(() => pool.add(first), 'TRANSFER_REPLAYED');
    expect(vi.mocked(ed25519Verify)).not.toHaveBeenCalled();
  });
});
