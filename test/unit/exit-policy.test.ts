import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  parseExitPolicy, formatExitPolicy, exitPolicyAllows, exitPolicyAllowsAddress,
  DEFAULT_EXIT_POLICY, REJECT_ALL, parseIp, formatIp, parseIPv6, formatIPv6, isPrivateAddress,
} from '../../src/dir/exit-policy';
import { isBitcloudError } from '../../src/errors';

function code(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : 'NOT_BITCLOUD'; }
  return undefined;
}

describe('exit policy syntax (SPEC §7.6.1)', () => {
  it('parses every address form', () => {
    const p = parseExitPolicy([
      'accept *:80', 'accept *4:443', 'reject *6:*', 'reject private:*',
      'accept 1.2.3.4:22', 'accept 10.0.0.0/8:1-1024', 'reject [2001:db8::]/32:*', 'accept [::1]:8080',
    ]);
    expect(p.rules.map((r) => r.addr.kind)).toEqual(['any', 'any4', 'any6', 'private', 'net', 'net', 'net', 'net']);
    expect(p.rules[5]).toMatchObject({ action: 'accept', portLo: 1, portHi: 1024 });
  });

  it('formats canonically and round-trips', () => {
    const rules = ['reject private:*', 'accept 1.2.3.4:80-443', 'reject 10.0.0.0/8:25', 'accept [2001:db8::1]:*', 'accept [fc00::]/7:9', 'reject *:*'];
    expect(formatExitPolicy(parseExitPolicy(rules))).toEqual(rules);
    expect(formatExitPolicy(parseExitPolicy(['ACCEPT 1.2.3.4/32:1-65535', 'accept [2001:DB8:0:0:0:0:0:1]:5-5'])))
      .toEqual(['accept 1.2.3.4:*', 'accept [2001:db8::1]:5']);
  });

  it('splits comma-separated rules in one element', () => {
    expect(formatExitPolicy(parseExitPolicy(['reject *:25, accept *:*']))).toEqual(['reject *:25', 'accept *:*']);
  });

  const bad = [
    'allow *:*', 'accept *', 'accept', 'accept *:* extra', 'accept *:0', 'accept *:65536', 'accept *:80-20',
    'accept 1.2.3:80', 'accept 01.2.3.4:80', 'accept 256.1.1.1:80', 'accept 10.0.0.1/8:*', 'accept 1.2.3.4/33:*',
    'accept ::1:80', 'accept [::1:80', 'accept [::1]x:80', 'accept [1::2::3]:80', 'accept [::1]/129:*', 'accept *:abc', '', 'accept *:08',
  ];
  for (const rule of bad) {
    it(`rejects malformed rule ${JSON.stringify(rule)} with EXIT_POLICY_MALFORMED naming it`, () => {
      try { parseExitPolicy(['accept *:80', rule]); expect.unreachable(); } catch (e) {
        expect(isBitcloudError(e, 'EXIT_POLICY_MALFORMED')).toBe(true);
        expect((e as { detail: { rule: string } }).detail.rule.trim()).toBe(rule.trim());
      }
    });
  }
});

describe('exit policy matching at the exit (SPEC §7.6.3)', () => {
  it('first match wins', () => {
    const p = parseExitPolicy(['accept 1.2.3.4:80', 'reject 1.2.3.0/24:*', 'accept *:*']);
    expect(exitPolicyAllowsAddress(p, '1.2.3.4', 80)).toBe(true);
    expect(exitPolicyAllowsAddress(p, '1.2.3.4', 81)).toBe(false);
    expect(exitPolicyAllowsAddress(p, '1.2.4.4', 81)).toBe(true);
  });
  it('rejects when no rule matches (implicit final reject)', () => {
    expect(exitPolicyAllowsAddress(parseExitPolicy(['accept *:80']), '8.8.8.8', 443)).toBe(false);
    expect(exitPolicyAllowsAddress(parseExitPolicy([]), '8.8.8.8', 80)).toBe(false);
  });
  it('never allows port 0, out-of-range ports or the unspecified address', () => {
    expect(exitPolicyAllowsAddress(parseExitPolicy(['accept *:*']), '8.8.8.8', 0)).toBe(false);
    expect(exitPolicyAllowsAddress(parseExitPolicy(['accept *:*']), '8.8.8.8', 70000)).toBe(false);
    // SPEC.md §7.6.3: the unspecified address reaches the host's own loopback; never allowed.
    for (const a of ['0.0.0.0', '::', '::ffff:0.0.0.0']) expect(exitPolicyAllowsAddress(parseExitPolicy(['accept *:*']), a, 80), a).toBe(false);
    expect(exitPolicyAllows(parseExitPolicy(['accept *:*']), '0.0.0.0', 80)).toBe('no');
  });
  it('*4 and *6 match only their family', () => {
    const p = parseExitPolicy(['accept *4:*']);
    expect(exitPolicyAllowsAddress(p, '8.8.8.8', 80)).toBe(true);
    expect(exitPolicyAllowsAddress(p, '2001:db8::1', 80)).toBe(false);
    const q = parseExitPolicy(['accept *6:*']);
    expect(exitPolicyAllowsAddress(q, '2001:db8::1', 80)).toBe(true);
    expect(exitPolicyAllowsAddress(q, '8.8.8.8', 80)).toBe(false);
  });
  it('IPv6 prefixes match', () => {
    const p = parseExitPolicy(['accept [2001:db8::]/32:*']);
    expect(exitPolicyAllowsAddress(p, '2001:db8:ffff::1', 1)).toBe(true);
    expect(exitPolicyAllowsAddress(p, '2001:db9::1', 1)).toBe(false);
  });
  it('private covers every listed range and the relay\'s own address', () => {
    const priv = ['0.1.2.3', '10.9.9.9', '127.0.0.1', '169.254.1.1', '172.16.0.1', '172.31.255.255', '192.168.7.7',
      '100.64.0.1', '100.127.255.255', '::1', 'fc00::1', 'fdff::1', 'fe80::1', 'febf::1', '::ffff:10.0.0.1'];
    for (const a of priv) expect(exitPolicyAllowsAddress(DEFAULT_EXIT_POLICY, a, 80), a).toBe(false);
    for (const a of ['8.8.8.8', '172.32.0.1', '100.128.0.1', '2001:db8::1', 'ff0::1']) expect(exitPolicyAllowsAddress(DEFAULT_EXIT_POLICY, a, 80), a).toBe(true);
    const own = parseExitPolicy(['reject private:*', 'accept *:*'], { ownAddresses: ['203.0.113.5'] });
    expect(exitPolicyAllowsAddress(own, '203.0.113.5', 80)).toBe(false);
    expect(exitPolicyAllowsAddress(own, '203.0.113.6', 80)).toBe(true);
  });
  it('private covers an IPv6 address that carries the relay\'s own address, as it does the private ranges (SPEC §7.6.2)', () => {
    const own = parseExitPolicy(['reject private:*', 'accept *:*'], { ownAddresses: ['203.0.113.5'] });
    // NAT64, 6to4, Teredo server and Teredo client (inverted) forms of 203.0.113.5 (cb00:7105).
    for (const a of ['::ffff:203.0.113.5', '64:ff9b::cb00:7105', '2002:cb00:7105::1', '2001:0:cb00:7105::1', '2001:0:4136:e378:8000:63bf:34ff:8efa']) {
      expect(exitPolicyAllowsAddress(own, a, 80), a).toBe(false);
    }
    expect(exitPolicyAllowsAddress(own, '64:ff9b::cb00:7106', 80)).toBe(true);
  });
  it('private covers every address that is not a public unicast destination, embedded IPv4 included (SPEC §7.6.2)', () => {
    const priv = [
      '0.0.0.0', '::', '[::]', '0:0:0:0:0:0:0:0', '::1', '::0.0.0.1', '::127.0.0.1', '::8.8.8.8', // unspecified, loopback, IPv4-compatible
      '192.0.0.8', '198.18.0.1', '198.19.255.255', '224.0.0.1', '239.255.255.250', '240.0.0.1', '255.255.255.255',
      'ff02::1', 'ff05::2', 'fec0::1', '100::1', '64:ff9b:1::1',
      '::ffff:127.0.0.1', '::ffff:0.0.0.0', '::ffff:169.254.169.254', // IPv4-mapped
      '64:ff9b::7f00:1', '64:ff9b::a00:1', '64:ff9b::c0a8:101', // NAT64 of 127.0.0.1, 10.0.0.1, 192.168.1.1
      '2002:7f00:1::', '2002:a9fe:a9fe::1', // 6to4 of 127.0.0.1, 169.254.169.254
      '2001:0:7f00:1::1', '2001:0:4136:e378:8000:63bf:80ff:fffe', // Teredo: server 127.0.0.1; client 127.0.0.1 (inverted)
    ];
    for (const a of priv) expect(exitPolicyAllowsAddress(DEFAULT_EXIT_POLICY, a, 6379), a).toBe(false);
    const pub = ['64:ff9b::808:808', '2002:808:808::1', '2001:0:4136:e378:8000:63bf:f7f7:f7f7', '2606:4700::1111', '1.1.1.1', '192.0.1.1', '198.20.0.1'];
    for (const a of pub) expect(exitPolicyAllowsAddress(DEFAULT_EXIT_POLICY, a, 80), a).toBe(true);
  });
  it('a rule written as an IPv4-mapped IPv6 network is the IPv4 rule (SPEC §7.6.2: "for every rule")', () => {
    const p = parseExitPolicy(['reject [::ffff:198.51.100.0]/120:*', 'reject [::ffff:203.0.113.9]:443', 'accept *:*']);
    expect(exitPolicyAllowsAddress(p, '198.51.100.7', 80)).toBe(false);
    expect(exitPolicyAllowsAddress(p, '::ffff:198.51.100.7', 80)).toBe(false);
    expect(exitPolicyAllowsAddress(p, '203.0.113.9', 443)).toBe(false);
    expect(exitPolicyAllowsAddress(p, '198.51.101.7', 80)).toBe(true);
    expect(formatExitPolicy(p)).toEqual(['reject 198.51.100.0/24:*', 'reject 203.0.113.9:443', 'accept *:*']);
    expect(exitPolicyAllows(p, '198.51.100.7', 80)).toBe('no');
  });

  it('IPv4-mapped IPv6 addresses are checked as IPv4', () => {
    expect(exitPolicyAllowsAddress(parseExitPolicy(['reject 8.8.8.0/24:*', 'accept *:*']), '::ffff:8.8.8.8', 80)).toBe(false);
    expect(exitPolicyAllowsAddress(parseExitPolicy(['accept *4:*']), '::ffff:8.8.8.8', 80)).toBe(true);
  });
  it('the default policy rejects private and SMTP, accepts the rest; REJECT_ALL rejects all', () => {
    expect(formatExitPolicy(DEFAULT_EXIT_POLICY)).toEqual(['reject private:*', 'reject *:25', 'accept *:*']);
    expect(exitPolicyAllowsAddress(DEFAULT_EXIT_POLICY, '8.8.8.8', 25)).toBe(false);
    expect(exitPolicyAllowsAddress(DEFAULT_EXIT_POLICY, '8.8.8.8', 443)).toBe(true);
    expect(exitPolicyAllowsAddress(REJECT_ALL, '8.8.8.8', 443)).toBe(false);
  });
  it('the local network policy allows 127.0.0.1 before rejecting private', () => {
    const p = parseExitPolicy(['accept 127.0.0.1:*', 'reject private:*', 'accept *:*'], { ownAddresses: ['127.0.0.1'] });
    expect(exitPolicyAllowsAddress(p, '127.0.0.1', 8080)).toBe(true);
    expect(exitPolicyAllowsAddress(p, '127.0.0.2', 8080)).toBe(false);
  });
  it('refuses a host name with EXIT_POLICY_BAD_ADDRESS', () => {
    expect(code(() => exitPolicyAllowsAddress(DEFAULT_EXIT_POLICY, 'example.com', 80))).toBe('EXIT_POLICY_BAD_ADDRESS');
  });
});

describe('exit policy answers for the client (SPEC §7.6.4)', () => {
  it('with an address: yes or no', () => {
    expect(exitPolicyAllows(DEFAULT_EXIT_POLICY, '8.8.8.8', 80)).toBe('yes');
    expect(exitPolicyAllows(DEFAULT_EXIT_POLICY, '10.0.0.1', 80)).toBe('no');
  });
  it('unresolved name: yes when every public address is accepted (private rejects ignored)', () => {
    expect(exitPolicyAllows(DEFAULT_EXIT_POLICY, null, 80)).toBe('yes');
    expect(exitPolicyAllows(DEFAULT_EXIT_POLICY, 'example.com', 443)).toBe('yes');
  });
  it('unresolved name: no when no address is accepted on that port', () => {
    expect(exitPolicyAllows(DEFAULT_EXIT_POLICY, null, 25)).toBe('no');
    expect(exitPolicyAllows(REJECT_ALL, null, 80)).toBe('no');
    expect(exitPolicyAllows(parseExitPolicy(['accept *:80']), null, 81)).toBe('no');
  });
  it('unresolved name: maybe when some public addresses are accepted and some rejected', () => {
    expect(exitPolicyAllows(parseExitPolicy(['reject 8.8.8.0/24:*', 'accept *:*']), null, 80)).toBe('maybe');
    expect(exitPolicyAllows(parseExitPolicy(['accept 8.8.8.0/24:*']), null, 80)).toBe('maybe');
    expect(exitPolicyAllows(parseExitPolicy(['accept *4:*']), null, 80)).toBe('maybe');
  });
  it('unresolved name: a private-only accept makes no into maybe', () => {
    expect(exitPolicyAllows(parseExitPolicy(['accept 127.0.0.1:*', 'reject *:*']), null, 80)).toBe('maybe');
  });
  it('rules after a whole-family decision do not matter', () => {
    expect(exitPolicyAllows(parseExitPolicy(['accept *:*', 'reject 8.8.8.8:*']), null, 80)).toBe('yes');
  });
  it('port 0 is no', () => {
    expect(exitPolicyAllows(DEFAULT_EXIT_POLICY, null, 0)).toBe('no');
  });
});

describe('IP text forms', () => {
  it('parses and formats IPv6 canonically (RFC 5952)', () => {
    expect(formatIPv6(parseIPv6('2001:0db8:0000:0000:0000:0000:0000:0001')!)).toBe('2001:db8::1');
    expect(formatIPv6(parseIPv6('1:0:0:2:0:0:0:3')!)).toBe('1:0:0:2::3');
    expect(formatIPv6(parseIPv6('1:0:2:3:4:5:6:7')!)).toBe('1:0:2:3:4:5:6:7');
    expect(formatIPv6(parseIPv6('::')!)).toBe('::');
    expect(formatIPv6(parseIPv6('::ffff:1.2.3.4')!)).toBe('::ffff:1.2.3.4');
    expect(parseIPv6('fe80::1%eth0')).toBeNull();
    expect(parseIPv6('1:2:3:4:5:6:7:8:9')).toBeNull();
    expect(parseIp('[::1]')).toEqual({ family: 6, value: 1n });
    expect(isPrivateAddress(parseIp('127.5.5.5')!)).toBe(true);
  });
  it('property: IPv6 format/parse round trip', () => {
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), (v) => {
      expect(parseIPv6(formatIPv6(v))).toBe(v);
    }));
  });
  it('property: IPv4 format/parse round trip', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (v) => {
      expect(parseIp(formatIp({ family: 4, value: v }))).toEqual({ family: 4, value: v });
    }));
  });
});

describe('property: parse/format round trip', () => {
  const v4net = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 })).map(([v, bits]) => {
    const m = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const base = (v & m) >>> 0;
    return `${base >>> 24}.${(base >>> 16) & 255}.${(base >>> 8) & 255}.${base & 255}${bits === 32 ? '' : `/${bits}`}`;
  });
  const v6net = fc.tuple(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), fc.integer({ min: 0, max: 128 })).map(([v, bits]) => {
    const all = (1n << 128n) - 1n;
    const m = bits === 0 ? 0n : (all << BigInt(128 - bits)) & all;
    return `[${formatIPv6(v & m)}]${bits === 128 ? '' : `/${bits}`}`;
  }).filter((t) => !/^\[::ffff:\d/.test(t)); // an IPv4-mapped network's canonical text is its IPv4 form
  const addr = fc.oneof(fc.constantFrom('*', '*4', '*6', 'private'), v4net, v6net);
  const ports = fc.oneof(
    fc.constant('*'),
    fc.integer({ min: 1, max: 65535 }).map(String),
    fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 }))
      .filter(([a, b]) => a < b && !(a === 1 && b === 65535)).map(([a, b]) => `${a}-${b}`),
  );
  const rule = fc.tuple(fc.constantFrom('accept', 'reject'), addr, ports).map(([a, ad, p]) => `${a} ${ad}:${p}`);

  it('format(parse(rules)) === rules for canonical rules', () => {
    fc.assert(fc.property(fc.array(rule, { maxLength: 12 }), (rules) => {
      const p = parseExitPolicy(rules);
      expect(formatExitPolicy(p)).toEqual(rules);
      expect(parseExitPolicy(formatExitPolicy(p))).toEqual(p);
    }));
  });

  it('random strings either parse or throw EXIT_POLICY_MALFORMED', () => {
    fc.assert(fc.property(fc.string({ maxLength: 40 }), (s) => {
      const c = code(() => parseExitPolicy([s]));
      expect(c === undefined || c === 'EXIT_POLICY_MALFORMED').toBe(true);
    }));
  });

  it('the client answer agrees with the exit check for addresses', () => {
    fc.assert(fc.property(fc.array(rule, { maxLength: 6 }), fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 65535 }), (rules, v, port) => {
      const p = parseExitPolicy(rules);
      const ip = formatIp({ family: 4, value: v });
      const unresolved = exitPolicyAllows(p, null, port);
      const exact = exitPolicyAllowsAddress(p, ip, port);
      if (!isPrivateAddress(parseIp(ip)!)) {
        if (unresolved === 'yes') expect(exact).toBe(true);
        if (unresolved === 'no') expect(exact).toBe(false);
      }
    }));
  });
});
