// SPEC.md §6.10 "Connection and body bounds": the exempt addresses of a directory HTTP port's
// connection caps. An authority listed by host name is resolved at start and every 10 minutes; every
// address returned is exempt (IPv4-mapped IPv6 as its IPv4 address); a failed lookup keeps the last
// good set and warns once per failure streak.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConnectionCaps, EXEMPT_REFRESH_MS, exactAddress, type HostLookup } from '../../src/ops/connection-caps';
import type { Logger } from '../../src/ops/log';

afterEach(() => { vi.useRealTimers(); });

/** A logger that keeps the messages of warn and info. */
function recordingLog(): { log: Logger; warns: string[]; infos: string[] } {
  const warns: string[] = [];
  const infos: string[] = [];
  const log = { warn: (_o: unknown, m: string) => warns.push(m), info: (_o: unknown, m: string) => infos.push(m) } as unknown as Logger;
  return { log, warns, infos };
}

describe('connection caps: exempt addresses (SPEC.md §6.10)', () => {
  it('compares addresses by their bytes: bracketed, uncompressed and IPv4-mapped forms match', () => {
    expect(exactAddress('[2001:db8:0::1]')).toBe(exactAddress('2001:db8::1'));
    expect(exactAddress('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(exactAddress('authority.example')).toBeNull();
  });

  it('exempts every address a host name resolves to, IPv4 and IPv6, and no other', async () => {
    const { log } = recordingLog();
    const lookup: HostLookup = async (h) => (h === 'auth.example' ? ['192.0.2.7', '2001:db8::7'] : []);
    const caps = new ConnectionCaps({ max: 16, maxPerAddress: 1, exemptHosts: ['auth.example', '[2001:db8::9]'], log, lookup });
    expect(caps.isExempt('192.0.2.7')).toBe(false);
    await caps.start();
    expect(caps.isExempt('192.0.2.7')).toBe(true);
    expect(caps.isExempt('::ffff:192.0.2.7')).toBe(true);
    expect(caps.isExempt('2001:db8:0:0::7')).toBe(true);
    expect(caps.isExempt('2001:db8::9')).toBe(true);
    expect(caps.isExempt('192.0.2.8')).toBe(false);
    expect(caps.isExempt('2001:db8::8')).toBe(false);
    caps.close();
  });

  it('resolves again every 10 minutes; a failed lookup keeps the last good set and warns once per failure streak; close stops it', async () => {
    vi.useFakeTimers();
    const { log, warns, infos } = recordingLog();
    const answers: Array<string[] | Error> = [['192.0.2.7'], new Error('EAI_AGAIN'), new Error('EAI_AGAIN'), ['192.0.2.8'], new Error('ENOTFOUND')];
    let calls = 0;
    const lookup: HostLookup = async () => {
      const a = answers[calls++];
      if (a instanceof Error) throw a;
      return a;
    };
    const caps = new ConnectionCaps({ max: 16, maxPerAddress: 1, exemptHosts: ['auth.example'], log, lookup });
    await caps.start();
    expect(EXEMPT_REFRESH_MS).toBe(600_000);
    expect(caps.isExempt('192.0.2.7')).toBe(true);
    await vi.advanceTimersByTimeAsync(EXEMPT_REFRESH_MS);
    await vi.advanceTimersByTimeAsync(EXEMPT_REFRESH_MS);
    expect(calls).toBe(3);
    expect(caps.isExempt('192.0.2.7')).toBe(true);
    expect(warns).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(EXEMPT_REFRESH_MS);
    expect(caps.isExempt('192.0.2.7')).toBe(false);
    expect(caps.isExempt('192.0.2.8')).toBe(true);
    expect(infos).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(EXEMPT_REFRESH_MS);
    expect(warns).toHaveLength(2);
    expect(caps.isExempt('192.0.2.8')).toBe(true);
    caps.close();
    await vi.advanceTimersByTimeAsync(3 * EXEMPT_REFRESH_MS);
    expect(calls).toBe(5);
  });
});
