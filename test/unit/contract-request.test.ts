// SPEC.md §9.20.4: what `bitcloud keep contract` and `bitcloud put --pay` check before anything is
// stored or sent: the epochs, the coins, and at least one unit per epoch.
import { describe, expect, it } from 'vitest';
import { contractRequest } from '../../src/client/commands/keep';
import { expectCode } from '../helpers/errors';

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
