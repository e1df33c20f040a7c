// SPEC.md §7b.7: which resolved address an exit connects to (BEGIN flags, exit policy).
import { describe, expect, it } from 'vitest';
import { chooseExitAddress } from '../../relay/exit';
import { parseExitPolicy } from '../../src/dir/exit-policy';
import { BeginFlag } from '../../src/wire/messages';

const policy = parseExitPolicy(['reject 10.0.0.0/8:*', 'accept *:80', 'accept [::]/0:443', 'reject *:*']);
const addrs = [
  { address: '10.1.1.1', family: 4 as const },
  { address: '93.184.216.34', family: 4 as const },
  { address: '2606:2800:220:1::1', family: 6 as const },
];

describe('chooseExitAddress', () => {
  it('takes the first address the policy accepts for the port, IPv4 by default', () => {
    expect(chooseExitAddress(addrs, 0, policy, 80)?.address).toBe('93.184.216.34');
  });
  it('never picks an address the policy rejects, whatever the flags', () => {
    expect(chooseExitAddress([addrs[0]], BeginFlag.IPV6_OK, policy, 80)).toBeNull();
  });
  it('uses IPv6 only when the flags allow it, and first when preferred', () => {
    expect(chooseExitAddress(addrs, 0, policy, 443)).toBeNull();
    expect(chooseExitAddress(addrs, BeginFlag.IPV6_OK, policy, 443)?.address).toBe('2606:2800:220:1::1');
    expect(chooseExitAddress(addrs, BeginFlag.IPV4_NOT_OK, policy, 80)?.family).toBe(6); // IPv4 refused implies IPv6 wanted
    const both = parseExitPolicy(['accept *:*']);
    expect(chooseExitAddress(addrs.slice(1), BeginFlag.IPV6_OK | BeginFlag.IPV6_PREFERRED, both, 80)?.family).toBe(6);
    expect(chooseExitAddress(addrs.slice(1), BeginFlag.IPV6_OK, both, 80)?.family).toBe(4);
  });
});

describe('the exit\'s resolver (SPEC.md §7b.7)', () => {
  it('localhost is loopback without a query; a name that does not exist is ENOTFOUND', async () => {
    const { createDnsLookup } = await import('../../relay/exit');
    const lookup = createDnsLookup({ timeoutMs: 1000, tries: 1 });
    expect(await lookup('localhost')).toEqual([{ address: '127.0.0.1', family: 4 }, { address: '::1', family: 6 }]);
    expect(await lookup('a.b.LOCALHOST.')).toHaveLength(2);
    await expect(lookup('does-not-exist.invalid')).rejects.toMatchObject({ code: expect.stringMatching(/^(ENOTFOUND|ENODATA|ETIMEDOUT|ECONNREFUSED)$/) });
  });
});

describe('numeric host forms at the exit (SPEC.md §7b.7)', () => {
  it('are the addresses getaddrinfo would make of them, so the exit policy judges them', async () => {
    const { inetAton, createDnsLookup } = await import('../../relay/exit');
    expect(inetAton('167772161')).toBe('10.0.0.1');
    expect(inetAton('0x7f.1')).toBe('127.0.0.1');
    expect(inetAton('10.1')).toBe('10.0.0.1');
    expect(inetAton('0177.0.0.01')).toBe('127.0.0.1');
    expect(inetAton('1.2.3.4')).toBe('1.2.3.4');
    for (const x of ['example.com', '1.2.3.4.5', '256.1.1.1', '4294967296', '09', 'deadbeef', '1..2']) expect(inetAton(x), x).toBeNull();
    expect(await createDnsLookup()('167772161')).toEqual([{ address: '10.0.0.1', family: 4 }]);
  });
});
