// SPEC.md §7b.9 "Address key": the one key every per-address limit counts a remote address under.
import { describe, expect, it } from 'vitest';
import { addressKey, hostOf, isLoopback, plainAddress } from '../../src/wire/address-key';
import { clientAddressKey } from '../../src/dir/answer-places';
import { uploaderKey } from '../../directory/rate-limit';

describe('addressKey', () => {
  it('is an IPv4 address itself, and an IPv4-mapped IPv6 address its IPv4 address', () => {
    expect(addressKey('192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
    expect(addressKey('::FFFF:c000:207')).toBe('192.0.2.7');
  });

  it('is the /64 of an IPv6 address, however it is written', () => {
    const k = addressKey('2001:db8:1:2::1');
    expect(k).toBe('20010db800010002::/64');
    expect(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:fffe')).toBe(k);
    expect(addressKey('[2001:db8:1:2::5]')).toBe(k);
    expect(addressKey('2001:db8:1:3::1')).not.toBe(k);
    expect(addressKey('::1')).toBe('0::/64');
  });

  it('is null for an unknown or unparseable address', () => {
    for (const a of [undefined, '', '?', 'example.com', '1.2.3', '256.1.1.1', '01.2.3.4', '2001:db8:::1', 'fe80::1%eth0', '[2001:db8::1]:443']) {
      expect(addressKey(a)).toBeNull();
    }
  });

  it('hostOf splits the port off "host:port"', () => {
    expect(hostOf('192.0.2.7:443')).toBe('192.0.2.7');
    expect(hostOf('[2001:db8::1]:443')).toBe('2001:db8::1');
    expect(hostOf('2001:db8::1:443')).toBe('2001:db8::1');
    expect(hostOf('::ffff:192.0.2.7:9001')).toBe('::ffff:192.0.2.7');
    expect(addressKey(hostOf('[2001:db8::1]:443'))).toBe(addressKey(hostOf('2001:db8::2:9001')));
    expect(addressKey(hostOf('?:?'))).toBeNull();
  });

  it('plainAddress and isLoopback', () => {
    expect(plainAddress('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(plainAddress('2001:db8::1')).toBe('2001:db8::1');
    for (const a of ['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1']) expect(isLoopback(a)).toBe(true);
    for (const a of ['10.0.0.1', '::2', '2001:db8::1', 'junk']) expect(isLoopback(a)).toBe(false);
  });

  it('the callers keep their own exemptions', () => {
    expect(clientAddressKey('::1', '::1')).toBeNull();
    expect(clientAddressKey('127.0.0.1', '10.0.0.1')).toBeNull();
    expect(clientAddressKey('10.0.0.2', '10.0.0.2')).toBeNull();
    expect(clientAddressKey('2001:db8::1', '2001:db8::9')).toBe('20010db800000000::/64');
    expect(clientAddressKey('::ffff:10.0.0.2', '10.0.0.1')).toBe('10.0.0.2');
    expect(uploaderKey(undefined)).toBe('?');
    expect(uploaderKey('::ffff:203.0.113.7')).toBe('203.0.113.7');
  });
});
