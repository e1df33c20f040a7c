// SPEC.md §2.3–2.4, §2.7: cell bodies and relay message bodies.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { codeOf, onlyBitcloudErrors } from '../helpers/errors';
import { CELL_PAYLOAD_LEN } from '../../src/wire/cell';
import { RELAY_DATA_MAX } from '../../src/wire/relay-msg';
import { formatIPv6, parseIPv4, parseIPv6 } from '../../src/wire/addr';
import {
  BeginFlag, DestroyReason, EndReason, HandshakeType, LinkSpecType, ResolvedType, VERSIONS_MAX,
  decodeBegin, decodeBeginDir, decodeBeginStorage, decodeConnected, decodeCreate2, decodeCreated2, decodeDestroy,
  decodeEnd, decodeExtend2, decodeExtended2, decodeResolve, decodeResolved, decodeSendme, decodeTruncate,
  decodeTruncated, decodeVersions, encodeBegin, encodeBeginDir, encodeBeginStorage, encodeConnected, encodeCreate2,
  encodeCreated2, encodeDestroy, encodeEnd, encodeExtend2, encodeExtended2, encodeResolve, encodeResolved,
  encodeSendme, encodeTruncate, encodeTruncated, encodeVersions,
  type LinkSpecifier, type ResolvedAnswer,
} from '../../src/wire/messages';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
/** A cell body as it arrives: inside a zero-padded 509-byte payload. */
const inPayload = (body: Uint8Array) => { const p = Buffer.alloc(CELL_PAYLOAD_LEN); p.set(body); return p; };
const ip6 = (s: string) => parseIPv6(s)!.toString('hex');
const ED = Buffer.alloc(32, 0xed);

// ---- arbitraries ----
const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const port = fc.integer({ min: 1, max: 0xffff });
const bytes = (max: number, min = 0) => fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a));
const hostname = fc.domain().filter((d) => d.length <= 255);
const ipv4 = fc.ipV4().filter((a) => a !== '0.0.0.0');
const addrSpec: fc.Arbitrary<LinkSpecifier> = fc.oneof(
  fc.record({ type: fc.constant('ipv4' as const), addr: fc.ipV4(), port }),
  fc.record({ type: fc.constant('ipv6' as const), addr: fc.ipV6(), port }),
);
const unknownSpec: fc.Arbitrary<LinkSpecifier> = fc.record({
  type: fc.constant('unknown' as const),
  lstype: u8.filter((t) => t !== 0 && t !== 1 && t !== 3),
  data: bytes(40),
});
const extend2 = fc.record({
  addrs: fc.array(addrSpec, { minLength: 1, maxLength: 3 }),
  unknown: fc.array(unknownSpec, { maxLength: 2 }),
  id: bytes(32, 32),
  htype: u16,
  hdata: bytes(300),
}).chain(({ addrs, unknown, id, htype, hdata }) =>
  fc.shuffledSubarray([...addrs, ...unknown, { type: 'ed25519' as const, id }], { minLength: addrs.length + unknown.length + 1 })
    .map((linkSpecifiers) => ({ linkSpecifiers, htype, hdata })));
const resolvedAnswers: fc.Arbitrary<ResolvedAnswer[]> = fc.oneof(
  fc.record({ type: fc.constantFrom('error-transient' as const, 'error-nontransient' as const), value: fc.constant(''), ttl: u32 }).map((a) => [a]),
  fc.array(fc.oneof(
    fc.record({ type: fc.constant('ipv4' as const), value: fc.ipV4(), ttl: u32 }),
    fc.record({ type: fc.constant('ipv6' as const), value: fc.ipV6(), ttl: u32 }),
    fc.record({ type: fc.constant('hostname' as const), value: fc.domain().filter((d) => d.length <= 60), ttl: u32 }),
  ), { minLength: 1, maxLength: 5 }),
);

/** Text forms compare by the bytes they stand for (the decoder prints canonical IPv6). */
function normSpec(ls: LinkSpecifier): unknown {
  return ls.type === 'ipv6' ? { ...ls, addr: ip6(ls.addr) } : ls;
}
function normAnswer(a: ResolvedAnswer): unknown {
  return a.type === 'ipv6' ? { ...a, value: ip6(a.value) } : a;
}

describe('addresses (SPEC.md §2.7.1)', () => {
  it('prints IPv6 in RFC 5952 form, as the WHATWG URL parser does', () => {
    fc.assert(fc.property(fc.ipV6(), (a) => {
      expect(`[${formatIPv6(parseIPv6(a)!)}]`).toBe(new URL(`http://[${a}]/`).hostname);
    }), { numRuns: 1000 });
  });
  it('refuses zone ids, leading-zero octets and junk', () => {
    for (const a of ['fe80::1%eth0', '1:2:3:4:5:6:7:8:9', ':::', '1::2::3', 'g::1', '::1.2.3.256', '']) expect(parseIPv6(a)).toBeNull();
    for (const a of ['1.2.3', '01.2.3.4', '1.2.3.4.5', '256.1.1.1', ' 1.2.3.4']) expect(parseIPv4(a)).toBeNull();
  });
});

describe('VERSIONS (SPEC.md §2.3)', () => {
  it('is count u16 then the versions, rest of the payload zero', () => {
    expect(encodeVersions([1, 2])).toEqual(hex('0002 0001 0002'));
    expect(decodeVersions(inPayload(hex('0001 0001')))).toEqual([1]);
  });
  it('refuses count 0, count > 253, version 0, a count past the end, and non-zero padding', () => {
    expect(codeOf(() => decodeVersions(inPayload(hex('0000'))))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeVersions(inPayload(hex('00fe'))))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeVersions(inPayload(hex('0001 0000'))))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeVersions(hex('0002 0001')))).toBe('MSG_TRUNCATED');
    expect(codeOf(() => decodeVersions(hex('00')))).toBe('MSG_TRUNCATED');
    const p = inPayload(hex('0001 0001'));
    p[508] = 1;
    expect(codeOf(() => decodeVersions(p))).toBe('MSG_MALFORMED');
    expect(decodeVersions(inPayload(encodeVersions(new Array(VERSIONS_MAX).fill(3)))).length).toBe(253);
  });
  it('refuses to encode an empty list, 254 versions or a version out of u16', () => {
    expect(codeOf(() => encodeVersions([]))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeVersions(new Array(254).fill(1)))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeVersions([0x10000]))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeVersions([0]))).toBe('MSG_MALFORMED');
  });
});

describe('CREATE2 / CREATED2 / EXTENDED2 (SPEC.md §2.4)', () => {
  it('CREATE2 is htype u16 | hlen u16 | hdata', () => {
    expect(encodeCreate2({ htype: HandshakeType.NTOR, hdata: hex('aabb') })).toEqual(hex('0002 0002 aabb'));
    expect(decodeCreate2(inPayload(hex('0002 0002 aabb')))).toEqual({ htype: 2, hdata: hex('aabb') });
  });
  it('CREATE2 carries any htype (the circuit layer chooses) and copies hdata', () => {
    const p = inPayload(hex('0003 0001 ff'));
    const c = decodeCreate2(p);
    expect(c.htype).toBe(3);
    p[4] = 0;
    expect(c.hdata).toEqual(hex('ff'));
  });
  it('CREATE2 refuses hlen past the payload, non-zero padding, and hdata > 505 on encode', () => {
    expect(codeOf(() => decodeCreate2(inPayload(hex('0002 01fa'))))).toBe('MSG_TRUNCATED'); // 506
    expect(decodeCreate2(inPayload(hex('0002 01f9'))).hdata.length).toBe(505);
    expect(codeOf(() => decodeCreate2(inPayload(hex('0002 0001 ff 01'))))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeCreate2({ htype: 2, hdata: Buffer.alloc(506) }))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeCreate2({ htype: 0x10000, hdata: Buffer.alloc(1) }))).toBe('MSG_MALFORMED');
  });
  it('CREATED2 is hlen u16 | hdata, padded with zero', () => {
    expect(encodeCreated2({ hdata: hex('01020304') })).toEqual(hex('0004 01020304'));
    expect(decodeCreated2(inPayload(hex('0001 09')))).toEqual({ hdata: hex('09') });
    expect(codeOf(() => decodeCreated2(inPayload(hex('01fc'))))).toBe('MSG_TRUNCATED'); // 508
    expect(codeOf(() => encodeCreated2({ hdata: Buffer.alloc(508) }))).toBe('MSG_MALFORMED');
  });
  it('EXTENDED2 has the CREATED2 layout as exact relay data (no trailing bytes, hdata <= 496)', () => {
    expect(encodeExtended2({ hdata: hex('0102') })).toEqual(hex('0002 0102'));
    expect(decodeExtended2(hex('0002 0102'))).toEqual({ hdata: hex('0102') });
    expect(codeOf(() => decodeExtended2(hex('0002 0102 00')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeExtended2({ hdata: Buffer.alloc(497) }))).toBe('MSG_MALFORMED');
  });
});

describe('DESTROY / TRUNCATE / TRUNCATED (SPEC.md §2.4.3)', () => {
  it("keeps Tor's reason numbers", () => {
    expect(DestroyReason).toEqual({
      NONE: 0, PROTOCOL: 1, INTERNAL: 2, REQUESTED: 3, HIBERNATING: 4, RESOURCELIMIT: 5, CONNECTFAILED: 6,
      OR_IDENTITY: 7, CHANNEL_CLOSED: 8, FINISHED: 9, TIMEOUT: 10, DESTROYED: 11, NOSUCHSERVICE: 12,
    });
  });
  it('DESTROY is one reason byte; unknown reasons still decode', () => {
    expect(encodeDestroy(DestroyReason.FINISHED)).toEqual(hex('09'));
    expect(decodeDestroy(inPayload(hex('c8')))).toBe(200);
    expect(codeOf(() => decodeDestroy(Buffer.alloc(0)))).toBe('MSG_TRUNCATED');
    expect(codeOf(() => decodeDestroy(hex('0101')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeDestroy(256))).toBe('MSG_MALFORMED');
  });
  it('TRUNCATE is empty; TRUNCATED is exactly one reason byte', () => {
    expect(encodeTruncate().length).toBe(0);
    expect(codeOf(() => decodeTruncate(hex('00')))).toBe('MSG_MALFORMED');
    expect(decodeTruncated(encodeTruncated(DestroyReason.CONNECTFAILED))).toBe(6);
    expect(codeOf(() => decodeTruncated(hex('0600')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeTruncated(Buffer.alloc(0)))).toBe('MSG_TRUNCATED');
  });
});

describe('EXTEND2 and link specifiers (SPEC.md §2.7.4)', () => {
  const body = {
    linkSpecifiers: [{ type: 'ipv4', addr: '10.0.0.1', port: 443 }, { type: 'ed25519', id: ED }] as LinkSpecifier[],
    htype: 2,
    hdata: hex('abcd'),
  };
  it('is nspec u8 | (lstype u8 | lslen u8 | lspec)* | htype u16 | hlen u16 | hdata', () => {
    const e = encodeExtend2(body);
    expect(e).toEqual(Buffer.concat([hex('02 00 06 0a000001 01bb 03 20'), ED, hex('0002 0002 abcd')]));
    expect(decodeExtend2(e)).toEqual(body);
  });
  it('decodes IPv6 and keeps unknown types (incl. legacy id 2) opaque', () => {
    const e = Buffer.concat([hex('03 01 12 20010db8000000000000000000000001 0050 02 03 aabbcc 03 20'), ED, hex('0002 0000')]);
    expect(decodeExtend2(e).linkSpecifiers).toEqual([
      { type: 'ipv6', addr: '2001:db8::1', port: 80 },
      { type: 'unknown', lstype: LinkSpecType.LEGACY_ID, data: hex('aabbcc') },
      { type: 'ed25519', id: ED },
    ]);
  });
  it('needs exactly one Ed25519 identity and at least one address', () => {
    const v4 = { type: 'ipv4', addr: '1.2.3.4', port: 1 } as const;
    const id = { type: 'ed25519', id: ED } as const;
    expect(codeOf(() => encodeExtend2({ ...body, linkSpecifiers: [v4] }))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeExtend2({ ...body, linkSpecifiers: [v4, id, id] }))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeExtend2({ ...body, linkSpecifiers: [id] }))).toBe('MSG_MALFORMED');
    const twoIds = Buffer.concat([hex('03 00 06 01020304 0001 03 20'), ED, hex('03 20'), ED, hex('0002 0000')]);
    expect(codeOf(() => decodeExtend2(twoIds))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeExtend2(Buffer.concat([hex('01 03 20'), ED, hex('0002 0000')])))).toBe('MSG_MALFORMED');
  });
  it('refuses a known type with the wrong length, port 0, trailing bytes and a short body', () => {
    const tail = Buffer.concat([hex('03 20'), ED, hex('0002 0000')]);
    expect(codeOf(() => decodeExtend2(Buffer.concat([hex('02 00 05 0102030405'), tail])))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeExtend2(Buffer.concat([hex('02 00 06 01020304 0000'), tail])))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeExtend2(Buffer.concat([hex('02 00 06 01020304 0001'), tail, hex('00')])))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeExtend2(Buffer.concat([hex('02 00 06 01020304 0001'), tail.subarray(0, 20)])))).toBe('MSG_TRUNCATED');
    expect(codeOf(() => decodeExtend2(Buffer.concat([hex('02 00 06 01020304 0001'), tail, hex('00')]).subarray(0, 45)))).toBe('MSG_TRUNCATED');
  });
  it('refuses to encode bad specifiers and bodies over 498 bytes', () => {
    const id = { type: 'ed25519', id: ED } as const;
    const enc = (ls: LinkSpecifier) => codeOf(() => encodeExtend2({ ...body, linkSpecifiers: [ls, { type: 'ipv4', addr: '1.1.1.1', port: 1 }, id] }));
    expect(enc({ type: 'unknown', lstype: 3, data: ED })).toBe('MSG_MALFORMED');
    expect(enc({ type: 'ipv4', addr: '1.2.3.4.5', port: 1 })).toBe('MSG_MALFORMED');
    expect(enc({ type: 'ipv6', addr: '1.2.3.4', port: 1 })).toBe('MSG_MALFORMED');
    expect(enc({ type: 'ipv4', addr: '1.2.3.4', port: 0 })).toBe('MSG_MALFORMED');
    expect(enc({ type: 'ed25519', id: Buffer.alloc(31) })).toBe('MSG_MALFORMED');
    expect(enc({ type: 'unknown', lstype: 9, data: Buffer.alloc(256) })).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeExtend2({ ...body, hdata: Buffer.alloc(460) }))).toBe('MSG_MALFORMED');
  });
});

describe('BEGIN (SPEC.md §2.7.2)', () => {
  it('is "host:port" NUL then flags u32', () => {
    expect(encodeBegin({ host: 'example.com', port: 443 })).toEqual(Buffer.concat([Buffer.from('example.com:443\0'), hex('00000000')]));
    expect(encodeBegin({ host: '2001:db8::1', port: 80, flags: BeginFlag.IPV6_OK })).toEqual(Buffer.concat([Buffer.from('[2001:db8::1]:80\0'), hex('00000001')]));
    expect(decodeBegin(Buffer.from('[::1]:8080\0\0\0\0\x05', 'latin1'))).toEqual({ host: '::1', port: 8080, flags: 5 });
    expect(decodeBegin(Buffer.from('10.1.2.3:1\0', 'latin1'))).toEqual({ host: '10.1.2.3', port: 1, flags: 0 });
  });
  it('refuses a missing NUL, bad ports, bad hosts and stray bytes', () => {
    const bad = ['example.com:443', 'example.com:0\0', 'example.com:65536\0', 'example.com:080\0', 'example.com:\0',
      'example.com\0', ':80\0', '::1:80\0', '[::1]80\0', '[1.2.3.4]:80\0', 'exa mple.com:80\0', 'ex\xe9.com:80\0',
      'a.com:80\0\0\0', 'a.com:80\0\0\0\0\0\0', 'a.com:+80\0', 'a.com:80:81\0'];
    for (const b of bad) expect(codeOf(() => decodeBegin(Buffer.from(b, 'latin1'))), JSON.stringify(b)).toBe('MSG_MALFORMED');
  });
  it('refuses to encode bad hosts, ports and flags', () => {
    for (const host of ['', '[::1]', 'a b', 'a:b', 'x'.repeat(256), 'ünï.com']) {
      expect(codeOf(() => encodeBegin({ host, port: 80 })), host).toBe('MSG_MALFORMED');
    }
    for (const p of [0, 65536, 1.5, -1]) expect(codeOf(() => encodeBegin({ host: 'a', port: p }))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeBegin({ host: 'a', port: 1, flags: 2 ** 32 }))).toBe('MSG_MALFORMED');
  });
});

describe('CONNECTED (SPEC.md §2.7.2)', () => {
  it('is empty, IPv4 | ttl, or zero[4] | 6 | IPv6 | ttl', () => {
    expect(encodeConnected({}).length).toBe(0);
    expect(decodeConnected(Buffer.alloc(0))).toEqual({});
    expect(encodeConnected({ addr: '1.2.3.4', ttl: 60 })).toEqual(hex('01020304 0000003c'));
    expect(encodeConnected({ addr: '::1', ttl: 1 })).toEqual(hex('00000000 06 00000000000000000000000000000001 00000001'));
    expect(decodeConnected(hex('00000000 06 20010db8000000000000000000000001 00000002'))).toEqual({ addr: '2001:db8::1', ttl: 2 });
    expect(decodeConnected(encodeConnected({ addr: '9.9.9.9' }))).toEqual({ addr: '9.9.9.9', ttl: 0 });
  });
  it('refuses other lengths and address types', () => {
    expect(codeOf(() => decodeConnected(hex('01020304')))).toBe('MSG_TRUNCATED');
    expect(codeOf(() => decodeConnected(hex('01020304 00000001 00')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeConnected(hex('00000000 04 01020304 00000001')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeConnected({ addr: '0.0.0.0' }))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeConnected({ addr: 'example.com' }))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeConnected({ ttl: 5 }))).toBe('MSG_MALFORMED');
  });
});

describe('END (SPEC.md §2.7.2)', () => {
  it("keeps Tor's reason numbers", () => {
    expect(EndReason).toEqual({
      MISC: 1, RESOLVEFAILED: 2, CONNECTREFUSED: 3, EXITPOLICY: 4, DESTROY: 5, DONE: 6, TIMEOUT: 7, NOROUTE: 8,
      HIBERNATING: 9, INTERNAL: 10, RESOURCELIMIT: 11, CONNRESET: 12, TORPROTOCOL: 13, NOTDIRECTORY: 14,
    });
  });
  it('is a reason byte, with an address and ttl only for EXITPOLICY', () => {
    expect(encodeEnd(EndReason.DONE)).toEqual(hex('06'));
    expect(encodeEnd({ reason: EndReason.DONE })).toEqual(hex('06'));
    expect(encodeEnd(EndReason.EXITPOLICY, { addr: '1.2.3.4', ttl: 7 })).toEqual(hex('04 01020304 00000007'));
    expect(decodeEnd(hex('04 20010db8000000000000000000000001 00000007'))).toEqual({ reason: 4, addr: '2001:db8::1', ttl: 7 });
    expect(decodeEnd(Buffer.alloc(0))).toEqual({ reason: EndReason.MISC });
    expect(decodeEnd(hex('99'))).toEqual({ reason: 0x99 });
  });
  it('refuses data after other reasons, odd EXITPOLICY lengths and misuse on encode', () => {
    expect(codeOf(() => decodeEnd(hex('06 01020304 00000007')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeEnd(hex('04 010203')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeEnd(EndReason.DONE, { addr: '1.2.3.4' }))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeEnd(EndReason.EXITPOLICY, { addr: 'host' }))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeEnd(300))).toBe('MSG_MALFORMED');
  });
});

describe('SENDME (SPEC.md §2.7.5)', () => {
  const digest = Buffer.alloc(20, 0x5a);
  it('v0 is the empty body; v1 is 01 | 0014 | digest[20]', () => {
    expect(encodeSendme({ version: 0 }).length).toBe(0);
    expect(decodeSendme(Buffer.alloc(0))).toEqual({ version: 0 });
    expect(encodeSendme({ version: 1, digest })).toEqual(Buffer.concat([hex('01 0014'), digest]));
    expect(decodeSendme(Buffer.concat([hex('01 0014'), digest]))).toEqual({ version: 1, digest });
    expect(decodeSendme(hex('00 0002 abcd'))).toEqual({ version: 0 });
  });
  it('refuses v1 with another length, unknown versions (MSG_UNSUPPORTED), short and long bodies', () => {
    expect(codeOf(() => decodeSendme(Buffer.concat([hex('01 0013'), digest.subarray(1)])))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeSendme(hex('02 0000')))).toBe('MSG_UNSUPPORTED');
    expect(codeOf(() => decodeSendme(hex('01 0014 00')))).toBe('MSG_TRUNCATED');
    expect(codeOf(() => decodeSendme(hex('01')))).toBe('MSG_TRUNCATED');
    expect(codeOf(() => decodeSendme(Buffer.concat([hex('01 0014'), digest, hex('00')])))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeSendme({ version: 1, digest: Buffer.alloc(19) }))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeSendme({ version: 2 } as never))).toBe('MSG_MALFORMED');
  });
});

describe('RESOLVE / RESOLVED (SPEC.md §2.7.3)', () => {
  it('RESOLVE is host NUL', () => {
    expect(encodeResolve('example.org')).toEqual(Buffer.from('example.org\0'));
    expect(decodeResolve(Buffer.from('4.3.2.1.in-addr.arpa\0'))).toBe('4.3.2.1.in-addr.arpa');
    for (const b of ['example.org', 'exa\0mple.org\0', '\0', 'a b\0', 'a.org\0\0']) {
      expect(codeOf(() => decodeResolve(Buffer.from(b, 'latin1'))), JSON.stringify(b)).toBe('MSG_MALFORMED');
    }
    expect(codeOf(() => encodeResolve(''))).toBe('MSG_MALFORMED');
  });
  it('RESOLVED is (type u8 | len u8 | value | ttl u32)*', () => {
    const answers: ResolvedAnswer[] = [
      { type: 'ipv4', value: '1.2.3.4', ttl: 60 },
      { type: 'ipv6', value: '::1', ttl: 61 },
      { type: 'hostname', value: 'a.b', ttl: 62 },
    ];
    const e = encodeResolved(answers);
    expect(e).toEqual(hex(`04 04 01020304 0000003c 06 10 ${'00'.repeat(15)}01 0000003d 00 03 612e62 0000003e`));
    expect(decodeResolved(e)).toEqual(answers);
    expect(encodeResolved([{ type: 'error-transient', value: '', ttl: 0 }])).toEqual(hex('f0 00 00000000'));
    expect(decodeResolved(hex('f1 02 abcd 00000005'))).toEqual([{ type: 'error-nontransient', value: '', ttl: 5 }]);
    expect(ResolvedType).toEqual({ HOSTNAME: 0, IPV4: 4, IPV6: 6, ERROR_TRANSIENT: 0xf0, ERROR_NONTRANSIENT: 0xf1 });
  });
  it('refuses no answers, an error beside other answers, unknown types and wrong lengths', () => {
    expect(codeOf(() => decodeResolved(Buffer.alloc(0)))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeResolved(hex('f0 00 00000000 04 04 01020304 00000000')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeResolved(hex('05 00 00000000')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeResolved(hex('04 03 010203 00000000')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeResolved(hex('00 03 612062 00000000')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeResolved(hex('04 04 01020304 000000')))).toBe('MSG_TRUNCATED');
    expect(codeOf(() => encodeResolved([]))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeResolved([{ type: 'error-transient', value: 'x', ttl: 0 }]))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeResolved([{ type: 'ipv4', value: '1.2.3.4', ttl: 0 }, { type: 'error-transient', value: '', ttl: 0 }]))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeResolved([{ type: 'ipv4', value: '::1', ttl: 0 }]))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeResolved([{ type: 'ipv4', value: '1.2.3.4', ttl: -1 }]))).toBe('MSG_MALFORMED');
    expect(codeOf(() => encodeResolved(new Array(50).fill({ type: 'ipv6', value: '::1', ttl: 0 })))).toBe('MSG_MALFORMED');
  });
});

describe('BEGIN_DIR / BEGIN_STORAGE (SPEC.md §2.7.2)', () => {
  it('have empty bodies and refuse any byte', () => {
    expect(encodeBeginDir().length).toBe(0);
    expect(encodeBeginStorage().length).toBe(0);
    expect(() => decodeBeginDir(Buffer.alloc(0))).not.toThrow();
    expect(() => decodeBeginStorage(Buffer.alloc(0))).not.toThrow();
    expect(codeOf(() => decodeBeginDir(hex('00')))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeBeginStorage(hex('00')))).toBe('MSG_MALFORMED');
  });
});

// ---- properties --------------------------------------------------------------------------
interface Codec<T> { name: string; arb: fc.Arbitrary<T>; enc: (v: T) => Buffer; dec: (b: Buffer) => unknown; norm?: (v: T) => unknown; cell?: boolean }
const codec = <T>(c: Codec<T>) => c as Codec<unknown>;

const CODECS: Codec<unknown>[] = [
  codec({ name: 'VERSIONS', cell: true, arb: fc.array(fc.integer({ min: 1, max: 0xffff }), { minLength: 1, maxLength: VERSIONS_MAX }), enc: encodeVersions, dec: decodeVersions }),
  codec({ name: 'CREATE2', cell: true, arb: fc.record({ htype: u16, hdata: bytes(505) }), enc: encodeCreate2, dec: decodeCreate2 }),
  codec({ name: 'CREATED2', cell: true, arb: fc.record({ hdata: bytes(507) }), enc: encodeCreated2, dec: decodeCreated2 }),
  codec({ name: 'DESTROY', cell: true, arb: u8, enc: encodeDestroy, dec: decodeDestroy }),
  codec({ name: 'EXTEND2', arb: extend2, enc: encodeExtend2, dec: decodeExtend2,
    norm: (v) => ({ ...v, linkSpecifiers: v.linkSpecifiers.map(normSpec) }) }),
  codec({ name: 'EXTENDED2', arb: fc.record({ hdata: bytes(496) }), enc: encodeExtended2, dec: decodeExtended2 }),
  codec({ name: 'TRUNCATED', arb: u8, enc: encodeTruncated, dec: decodeTruncated }),
  codec({ name: 'BEGIN', arb: fc.record({ host: fc.oneof(hostname, fc.ipV4(), fc.ipV6()), port, flags: u32 }), enc: encodeBegin, dec: decodeBegin }),
  codec<{ addr?: string; ttl?: number }>({ name: 'CONNECTED', arb: fc.oneof(fc.constant({}), fc.record({ addr: fc.oneof(ipv4, fc.ipV6()), ttl: u32 })),
    enc: encodeConnected, dec: decodeConnected, norm: (v) => (v.addr ? { ...v, addr: parseIPv4(v.addr)?.toString('hex') ?? ip6(v.addr) } : v) }),
  codec({ name: 'END', arb: fc.oneof(fc.record({ reason: u8 }), fc.record({ reason: fc.constant(EndReason.EXITPOLICY as number), addr: fc.oneof(fc.ipV4(), fc.ipV6()), ttl: u32 })),
    enc: (v) => encodeEnd(v), dec: decodeEnd,
    norm: (v) => ('addr' in v ? { ...v, addr: parseIPv4(v.addr)?.toString('hex') ?? ip6(v.addr) } : v) }),
  codec({ name: 'SENDME', arb: fc.oneof(fc.constant({ version: 0 as const }), fc.record({ version: fc.constant(1 as const), digest: bytes(20, 20) })), enc: encodeSendme, dec: decodeSendme }),
  codec({ name: 'RESOLVE', arb: hostname, enc: encodeResolve, dec: decodeResolve }),
  codec({ name: 'RESOLVED', arb: resolvedAnswers, enc: encodeResolved, dec: decodeResolved, norm: (v) => v.map(normAnswer) }),
  codec({ name: 'TRUNCATE', arb: fc.constant(undefined), enc: encodeTruncate, dec: decodeTruncate }),
  codec({ name: 'BEGIN_DIR', arb: fc.constant(undefined), enc: encodeBeginDir, dec: decodeBeginDir }),
  codec({ name: 'BEGIN_STORAGE', arb: fc.constant(undefined), enc: encodeBeginStorage, dec: decodeBeginStorage }),
];

/** Mutations: overwrite bytes, truncate, append. */
const mutation = fc.record({
  flips: fc.array(fc.tuple(fc.nat(), u8), { maxLength: 4 }),
  cut: fc.option(fc.nat(), { nil: undefined }),
  extra: bytes(4),
});
function mutate(b: Buffer, m: { flips: [number, number][]; cut?: number; extra: Buffer }): Buffer {
  let out = Buffer.from(b);
  if (out.length > 0) for (const [i, v] of m.flips) out[i % out.length] = v;
  if (m.cut !== undefined && out.length > 0) out = out.subarray(0, m.cut % out.length);
  return Buffer.concat([out, m.extra]);
}

describe('properties: every message body', () => {
  for (const c of CODECS) {
    describe(c.name, () => {
      const norm = c.norm ?? ((v: unknown) => v);
      it('encode → decode round-trips (inside a zero-padded payload for cell bodies)', () => {
        fc.assert(fc.property(c.arb, (v) => {
          const e = c.enc(v);
          expect(e.length).toBeLessThanOrEqual(c.cell ? CELL_PAYLOAD_LEN : RELAY_DATA_MAX);
          const d = c.dec(c.cell ? inPayload(e) : e);
          expect(norm(d)).toEqual(norm(v));
        }), { numRuns: 500 });
      });
      it('decoding random bytes returns a value or throws BitcloudError', () => {
        fc.assert(fc.property(bytes(c.cell ? CELL_PAYLOAD_LEN : RELAY_DATA_MAX), (b) => onlyBitcloudErrors(() => c.dec(b))), { numRuns: 1000 });
      });
      it('decoding a mutated valid encoding returns a value or throws BitcloudError', () => {
        fc.assert(fc.property(c.arb, mutation, (v, m) => onlyBitcloudErrors(() => c.dec(mutate(c.enc(v), m)))), { numRuns: 1000 });
      });
    });
  }
});
