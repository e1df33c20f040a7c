// SPEC.md §8.11.1–§8.11.3: transfers are bound to their chain. A transfer signed for one chain
// (whose id is the hash of its block 0) does not apply on another, so a wallet key used on two
// networks cannot have its transfers replayed from one to the other. Versions 1 and 2 name no
// chain: blocks written with them still verify, but no authority's pool takes a new one.
import { describe, expect, it } from 'vitest';
import { ed25519FromSeed, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { expectCode } from '../helpers/errors';
import type { IssuanceSchedule } from '../../src/bandwidth/reward';
import {
  encodeSignedRewardBlock, nextRewardBlock, signRewardBlock, staticAuthorities, verifyChain, type ChainTip,
} from '../../src/bandwidth/reward-chain';
import * as transfers from '../../src/bandwidth/transfer';
import type { Transfer } from '../../src/wire/transfer';
import { TransferPool } from '../../directory/transfer-pool';

const { CoinLedger, signFundingTransfer, signTransfer } = transfers;
const schedule: IssuanceSchedule = { initialPerBlock: 1_000_000n, halvingInterval: 100 };
const auth = ed25519FromSeed(Buffer.alloc(32, 0x51));
const authorities = staticAuthorities([{ identity: auth.publicKey }]);
const relay = ed25519FromSeed(Buffer.alloc(32, 0x52));
const wallet = ed25519FromSeed(Buffer.alloc(32, 0x53));
const hex = (k: Ed25519KeyPair) => k.publicKey.toString('hex');

/** A signed chain whose block 0 is for `epoch0` (it mints to the relay), then one block per entry of `perBlock`. */
function chain(epoch0: number, perBlock: Transfer[][]): { blocks: Buffer[]; id: Buffer } {
  const blocks: Buffer[] = [];
  let tip: ChainTip | null = null;
  let id: Buffer | null = null;
  [[], ...perBlock].forEach((carried, i) => {
    const { block, body, hash } = nextRewardBlock(tip, epoch0 + i, new Map([[hex(relay), 1]]), schedule, new Map(), carried);
    blocks.push(encodeSignedRewardBlock(body, [signRewardBlock(body, auth.publicKey, auth)]));
    tip = { height: block.height, hash, epoch: block.epoch };
    id ??= hash;
  });
  return { blocks, id: id! };
}

/** The reason a chain is refused for, or 'ok'. */
function verdict(blocks: Buffer[]): string {
  try {
    verifyChain(blocks, authorities, 1, { schedule });
    return 'ok';
  } catch (e) {
    return (e as { detail?: { reason?: string } }).detail?.reason ?? (e as { code?: string }).code ?? String(e);
  }
}

describe('transfers bound to their chain (SPEC.md §8.11.1)', () => {
  // Two networks: the same relay key earns on both, block 0 differs (another epoch).
  const a = chain(100, []).id;
  const b = chain(200, []).id;

  it('a plain transfer signed for chain A applies on chain A and is refused on chain B (TRANSFER_BAD_SIGNATURE): it cannot be replayed across networks', () => {
    expect(a.equals(b)).toBe(false);
    const t = signTransfer(relay, wallet.publicKey, 1000n, 1, a);
    expect(verdict(chain(100, [[t]]).blocks)).toBe('ok');
    expect(verdict(chain(200, [[t]]).blocks)).toBe('TRANSFER_BAD_SIGNATURE');
    // The ledger alone says the same.
    const onB = new CoinLedger({ chainId: b, balances: new Map([[hex(relay), 5000n]]), nonces: new Map() });
    expectCode(() => onB.check(t), 'TRANSFER_BAD_SIGNATURE');
  });

  it('a funding transfer signed for chain A verifies on chain A only', () => {
    const contract = Buffer.alloc(32, 0x54);
    const t = signFundingTransfer(relay, contract, 1000n, 1, a);
    const on = (id: Buffer) => new CoinLedger({ chainId: id, balances: new Map([[hex(relay), 5000n]]), nonces: new Map() });
    on(a).check(t);
    expectCode(() => on(b).check(t), 'TRANSFER_BAD_SIGNATURE');
  });

  it('a chain-bound transfer in block 0 is refused: the chain has no id before its block 0', () => {
    const t = signTransfer(relay, wallet.publicKey, 1n, 1, a);
    const l = new CoinLedger({ chainId: null, balances: new Map([[hex(relay), 5000n]]), nonces: new Map() });
    expectCode(() => l.check(t), 'TRANSFER_BAD_SIGNATURE');
  });

  it('a chain written with version 1 transfers still verifies (SPEC.md §8.11.1: blocks already written keep verifying; version 2 fundings with their opens: escrow.test.ts)', () => {
    const t1 = transfers.signUnboundTransfer(relay, wallet.publicKey, 1000n, 1, 1);
    const t2 = transfers.signUnboundTransfer(wallet, relay.publicKey, 10n, 1, 1);
    const { blocks } = chain(100, [[t1], [t2]]);
    const s = verifyChain(blocks, authorities, 1, { schedule });
    expect(s.balances.get(hex(wallet))).toBe(990n);
    expect(s.nonces.get(hex(relay))).toBe(1);
    expect(s.chainId?.equals(a)).toBe(true);
  });
});

describe('an authority\'s pool takes no new unbound transfer (SPEC.md §8.11.3)', () => {
  const id = Buffer.alloc(32, 0x55);
  const base = () => ({ chainId: id, balances: new Map([[hex(relay), 5000n]]), nonces: new Map<string, number>(), height: 3 });

  it('refuses a new version 1 or version 2 transfer with TRANSFER_MALFORMED naming the version; takes version 3 and 4', () => {
    const pool = new TransferPool(base());
    for (const version of [1, 2] as const) {
      const t = transfers.signUnboundTransfer(relay, Buffer.alloc(32, 0x56), 10n, 1, version);
      let message = '';
      expectCode(() => { try { pool.add(t); } catch (e) { message = (e as Error).message; throw e; } }, 'TRANSFER_MALFORMED');
      expect(message).toContain(`version ${version} transfer names no chain`);
    }
    expect(pool.size).toBe(0);
    expect(pool.add(signTransfer(relay, wallet.publicKey, 10n, 1, id))).toBe('added');
    expect(pool.add(signFundingTransfer(relay, Buffer.alloc(32, 0x57), 10n, 2, id))).toBe('added');
    // One signed for another chain: refused as a bad signature.
    expectCode(() => pool.add(signTransfer(relay, wallet.publicKey, 10n, 3, Buffer.alloc(32, 0x58))), 'TRANSFER_BAD_SIGNATURE');
  });
});
