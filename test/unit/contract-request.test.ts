// SPEC.md §9.20.4: what `bitcloud keep contract` and `bitcloud put --pay` check before anything is
// stored or sent: the epochs, the coins, and at least one unit per epoch.
import { describe, expect, it, vi } from 'vitest';
import { contractRequest, openContract } from '../../src/client/commands/keep';
import type { StorageSession } from '../../src/client/storage-client-setup';
import { uploadContract } from '../../src/client/storage-contract';
import { keepFile } from '../../src/client/storage-client-verify';
import { formatVerifyCapability } from '../../src/storage/verify-cap';
import { BitcloudError } from '../../src/errors';
import { expectCode } from '../helpers/errors';

vi.mock('../../src/client/storage-client-verify', async (orig) => ({ ...await orig<typeof import('../../src/client/storage-client-verify')>(), keepFile: vi.fn() }));
vi.mock('../../src/client/storage-contract', async (orig) => ({ ...await orig<typeof import('../../src/client/storage-contract')>(), uploadContract: vi.fn() }));

describe('a paid contract request (SPEC.md §9.20.4)', () => {
  it('reads epochs and coins; a free contract has no pay', () => {
    expect(contractRequest({ epochs: 100, pay: '2', key: 'k.key', 'no-wait': true })).toMatchObject({ epochs: 100, pay: 200_000_000n, key: 'k.key', noWait: true });
    expect(contractRequest({ epochs: 24 })).toMatchObject({ epochs: 24, pay: null, noWait: false });
  });

  it('refuses bad epochs, bad amounts and less than one unit per epoch, with their codes', () => {
    expectCode(() => contractRequest({ epochs: 0 }), 'CONFIG_INVALID');
    expectCode(() => contractRequest({ epochs: 1.5 }), 'CONFIG_INVALID');
    expectCode(() => contractRequest({ epochs: 3, pay: 'lots' }), 'CONFIG_INVALID');
    expectCode(() => contractRequest({ epochs: 3, pay: '0.000000001' }), 'CONFIG_INVALID');
    expectCode(() => contractRequest({ epochs: 3, pay: '0.00000002' }), 'ESCROW_UNDERFUNDED');
    expect(contractRequest({ epochs: 3, pay: '0.00000003' }).pay).toBe(3n);
  });
});

describe('a contract after a pass with unknown shares (SPEC.md §9.18.3 step 3, §9.20.1)', () => {
  it('is refused STORAGE_BUSY and nothing is uploaded: the contract would miss the shares whose audits stayed busy', async () => {
    const placed = [{ node: 'aa'.repeat(32), shareId: Buffer.alloc(32, 1), size: 64, root: Buffer.alloc(32, 2) }];
    vi.mocked(keepFile).mockResolvedValueOnce({
      shares: 4, healthy: 3, repaired: 0, lost: 0, unrecoverableChunks: 0, mismatchedChunks: 0, audits: 4, failures: [],
      busy: [{ node: 'bb'.repeat(32), shareId: '03'.repeat(32), code: 'STORAGE_BUSY' }], unknown: 1, expiresAt: 0, placed,
    });
    const session = { network: { dir: { consensus: () => ({ periodSeconds: 3600 }) }, dirCfg: { authorities: [] } }, client: {} } as unknown as StorageSession;
    const vcap = formatVerifyCapability({ manifestId: Buffer.alloc(32, 5), verifyId: Buffer.alloc(32, 6), verifyKey: Buffer.alloc(32, 7) });
    const e = await openContract(session, vcap, contractRequest({ epochs: 3 })).then(() => null, (x: unknown) => x);
    expect(e).toBeInstanceOf(BitcloudError);
    expect(e).toMatchObject({ code: 'STORAGE_BUSY' });
    expect(vi.mocked(uploadContract)).not.toHaveBeenCalled();
  });
});
