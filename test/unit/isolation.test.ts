import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { isolationKey, canAttach } from '../../src/client/isolation';
import { parseUserPass } from '../../src/client/socks5';

const k = (username?: string, password?: string, port = 80, host = 'example.com', opts = {}) =>
  isolationKey({ isolation: { username, password }, port, host }, opts);

describe('stream isolation (SPEC §7.7)', () => {
  it('same credentials give the same key', () => {
    expect(k('alice', 'x')).toBe(k('alice', 'x'));
  });
  it('different usernames or passwords give different keys', () => {
    expect(k('alice', 'x')).not.toBe(k('bob', 'x'));
    expect(k('alice', 'x')).not.toBe(k('alice', 'y'));
  });
  it('no credentials and empty credentials are the same group', () => {
    expect(k()).toBe(k('', ''));
    expect(k()).not.toBe(k('a'));
  });
  it('fields cannot be confused by concatenation', () => {
    expect(k('a:b', 'c')).not.toBe(k('a', 'b:c'));
    expect(k('ab', '')).not.toBe(k('a', 'b'));
  });
  it('destination port and host are ignored unless asked for', () => {
    expect(k('a', 'b', 80)).toBe(k('a', 'b', 443));
    expect(k('a', 'b', 80, 'x.org')).toBe(k('a', 'b', 80, 'y.org'));
    expect(k('a', 'b', 80, 'x', { isolateDestPort: true })).not.toBe(k('a', 'b', 443, 'x', { isolateDestPort: true }));
    expect(k('a', 'b', 80, 'x.org', { isolateDestAddr: true })).not.toBe(k('a', 'b', 80, 'y.org', { isolateDestAddr: true }));
    expect(k('a', 'b', 80, 'X.org', { isolateDestAddr: true })).toBe(k('a', 'b', 80, 'x.org', { isolateDestAddr: true }));
  });
  it('SOCKS credentials are told apart by their bytes as sent, valid UTF-8 or not', () => {
    const fromSocks = (user: number[], pass: number[] = []) => {
      const a = parseUserPass(Buffer.from([1, user.length, ...user, pass.length, ...pass]))!;
      return isolationKey({ isolation: a.value });
    };
    expect(fromSocks([0xff])).not.toBe(fromSocks([0xfe]));
    expect(fromSocks([0x61], [0xc3])).not.toBe(fromSocks([0x61], [0xc4]));
    expect(fromSocks([0xff])).toBe(fromSocks([0xff]));
    // Text given to the API stands for its UTF-8 bytes.
    expect(fromSocks([...Buffer.from('alice')], [...Buffer.from('tab1')])).toBe(k('alice', 'tab1'));
    expect(fromSocks([])).toBe(k());
  });
  it('keys do not contain the credentials', () => {
    expect(k('supersecretname', 'pw')).not.toContain('supersecret');
  });
  it('a fresh circuit takes any stream; a used one only its own key', () => {
    expect(canAttach(null, k('a'))).toBe(true);
    expect(canAttach(k('a'), k('a'))).toBe(true);
    expect(canAttach(k('a'), k('b'))).toBe(false);
  });
  it('property: keys are equal exactly when credentials are equal', () => {
    fc.assert(fc.property(fc.string(), fc.string(), fc.string(), fc.string(), (u1, p1, u2, p2) => {
      expect(k(u1, p1) === k(u2, p2)).toBe(u1 === u2 && p1 === p2);
    }));
  });
});
