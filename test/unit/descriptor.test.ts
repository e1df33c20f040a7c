// SPEC.md §6.4: relay descriptors — building, verifying, and every refusal.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { ed25519Generate, x25519Generate } from '../../src/crypto/primitives';
import { buildDescriptor, verifyDescriptor, type DescriptorInput } from '../../src/dir/descriptor';
import { decodeEnvelope, encodeEnvelope, encodeRelayDescriptor, LIMITS } from '../../src/wire/docs';
import { DocType, signDocument } from '../../src/wire/envelope';
import { isBitcloudError } from '../../src/errors';

const code = (f: () => unknown): string => {
  try { f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'NO_ERROR';
};

const NOW = 1_800_000_000_000;
const id = ed25519Generate();
const input = (o: Partial<DescriptorInput> = {}): DescriptorInput => ({
  identity: id, onionKey: x25519Generate().publicKey, nickname: 'relay1', address: '10.1.2.3', orPort: 9001, dirPort: 9030,
  declaredBandwidth: 2_500_000, exitPolicy: ['reject private:*', 'accept *:443'], family: [ed25519Generate().publicKey.toString('hex')],
  roles: ['relay', 'exit'], moderators: [], version: 'bitcloud-0.1.0', published: NOW, ...o,
});

describe('relay descriptor', () => {
  it('round-trips every field and is checked against its window', () => {
    const i = input({ storagePort: 7000, roles: ['relay', 'exit', 'storage'], moderators: [ed25519Generate().publicKey.toString('hex')] });
    const d = verifyDescriptor(buildDescriptor(i), { now: NOW + 1000 });
    expect(d.fingerprint).toBe(id.publicKey.toString('hex'));
    expect(d.onionKey.equals(i.onionKey)).toBe(true);
    expect(d.address).toBe('10.1.2.3');
    expect([d.orPort, d.dirPort, d.storagePort]).toEqual([9001, 9030, 7000]);
    expect(d.declaredBandwidth).toBe(2_500_000);
    expect(d.exitPolicy).toEqual(i.exitPolicy);
    expect(d.family).toEqual(i.family);
    expect(d.moderators).toEqual(i.moderators);
    expect(d.roles).toEqual(['relay', 'exit', 'storage']);
    expect(d.version).toBe('bitcloud-0.1.0');
    expect(d.published).toBe(NOW);
    expect(d.expires).toBeGreaterThan(NOW);
  });

  it('leaves the relay itself out of its family, so one family list serves every node (SPEC.md §6.4)', () => {
    const other = ed25519Generate().publicKey.toString('hex');
    const d = verifyDescriptor(buildDescriptor(input({ family: [other, id.publicKey.toString('hex')] })), { now: NOW + 1000 });
    expect(d.family).toEqual([other]);
    expect(verifyDescriptor(buildDescriptor(input({ family: [id.publicKey.toString('hex')] })), { now: NOW + 1000 }).family).toEqual([]);
    // One list of 33: the node itself and the 32 a descriptor lists.
    const others = Array.from({ length: 32 }, () => ed25519Generate().publicKey.toString('hex')).sort();
    expect(verifyDescriptor(buildDescriptor(input({ family: [id.publicKey.toString('hex'), ...others] })), { now: NOW + 1000 }).family).toEqual(others);
  });

  it('refuses a bad signature', () => {
    const raw = buildDescriptor(input());
    const env = decodeEnvelope(raw, LIMITS.descriptorBytes);
    env.signatures[0].signature[0] ^= 1;
    expect(code(() => verifyDescriptor(encodeEnvelope(env)))).toBe('DOC_BAD_SIGNATURE');
  });

  it('refuses a descriptor signed by another key than the identity it names', () => {
    const other = ed25519Generate();
    const content = encodeRelayDescriptor({
      identity: id.publicKey, onionKey: Buffer.alloc(32, 1), nickname: 'x', address: Buffer.from([1, 2, 3, 4]), orPort: 1, dirPort: 0,
      storagePort: 0, declaredBandwidth: 0, exitPolicy: [], family: [], roles: 1, moderators: [], version: 'v',
    });
    const raw = signDocument({ type: DocType.RELAY_DESCRIPTOR, validAfter: NOW, validUntil: NOW + 1000, content }, { identity: other.publicKey, keyPair: other });
    expect(code(() => verifyDescriptor(raw))).toBe('DOC_WRONG_SIGNER');
  });

  it('refuses expired and future descriptors', () => {
    const raw = buildDescriptor(input({ lifetimeMs: 3600_000 }));
    expect(code(() => verifyDescriptor(raw, { now: NOW + 3600_001 }))).toBe('DOC_EXPIRED');
    expect(code(() => verifyDescriptor(raw, { now: NOW - 120_000, skewMs: 60_000 }))).toBe('DOC_NOT_YET_VALID');
    expect(code(() => verifyDescriptor(raw, { now: NOW - 30_000, skewMs: 60_000 }))).toBe('NO_ERROR');
  });

  it('refuses a lifetime beyond 7 days', () => {
    expect(code(() => verifyDescriptor(buildDescriptor(input({ lifetimeMs: 8 * 86_400_000 }))))).toBe('DOC_MALFORMED');
  });

  it('refuses another document type', () => {
    const raw = signDocument({ type: DocType.VOTE, validAfter: NOW, validUntil: NOW + 1, content: Buffer.alloc(0) }, { identity: id.publicKey, keyPair: id });
    expect(code(() => verifyDescriptor(raw))).toBe('DOC_WRONG_TYPE');
  });

  it('refuses oversize descriptors before parsing', () => {
    expect(code(() => verifyDescriptor(Buffer.alloc(LIMITS.descriptorBytes + 1)))).toBe('DOC_TOO_LARGE');
  });

  it('refuses every truncation with a DOC_* code', () => {
    const raw = buildDescriptor(input());
    for (let i = 0; i < raw.length; i++) expect(code(() => verifyDescriptor(raw.subarray(0, i)))).toMatch(/^DOC_/);
  });

  it('refuses fields outside their limits', () => {
    expect(code(() => verifyDescriptor(buildDescriptor(input({ nickname: 'has space' }))))).toBe('DOC_MALFORMED');
    expect(code(() => verifyDescriptor(buildDescriptor(input({ nickname: 'x'.repeat(20) }))))).toBe('DOC_MALFORMED');
    expect(code(() => verifyDescriptor(buildDescriptor(input({ version: 'v'.repeat(33) }))))).toBe('DOC_MALFORMED');
    const fam = Array.from({ length: 33 }, () => ed25519Generate().publicKey.toString('hex'));
    expect(code(() => verifyDescriptor(buildDescriptor(input({ family: fam }))))).toBe('DOC_MALFORMED');
    expect(code(() => verifyDescriptor(buildDescriptor(input({ exitPolicy: ['accept *:99999'] }))))).toBe('DOC_MALFORMED');
    // A reader refuses a family that lists the relay itself (the builder leaves it out, below).
    const selfFamily = encodeRelayDescriptor({
      identity: id.publicKey, onionKey: Buffer.alloc(32, 1), nickname: 'x', address: Buffer.from([1, 2, 3, 4]), orPort: 1, dirPort: 0,
      storagePort: 0, declaredBandwidth: 0, exitPolicy: [], family: [id.publicKey], roles: 1, moderators: [], version: 'v',
    });
    expect(code(() => verifyDescriptor(signDocument({ type: DocType.RELAY_DESCRIPTOR, validAfter: NOW, validUntil: NOW + 1000, content: selfFamily }, { identity: id.publicKey, keyPair: id })))).toBe('DOC_MALFORMED');
    expect(code(() => verifyDescriptor(buildDescriptor(input({ roles: ['storage'], storagePort: 0, exitPolicy: [] }))))).toBe('DOC_MALFORMED');
    expect(code(() => buildDescriptor(input({ address: '::1' })))).toBe('DOC_MALFORMED');
    // SPEC.md §6.4: 0..16 moderators; the builder refuses a descriptor no reader would take.
    const mods = (n: number) => Array.from({ length: n }, () => ed25519Generate().publicKey.toString('hex'));
    expect(verifyDescriptor(buildDescriptor(input({ storagePort: 7000, roles: ['relay', 'exit', 'storage'], moderators: mods(16) })), { now: NOW + 1000 }).moderators).toHaveLength(16);
    expect(code(() => buildDescriptor(input({ storagePort: 7000, roles: ['relay', 'storage'], moderators: mods(17) })))).toBe('DOC_MALFORMED');
    // 0..32 family keys, likewise.
    expect(verifyDescriptor(buildDescriptor(input({ family: mods(32) })), { now: NOW + 1000 }).family).toHaveLength(32);
    expect(code(() => buildDescriptor(input({ family: mods(33) })))).toBe('DOC_MALFORMED');
    // 0..64 exit rules, likewise.
    const rules = (n: number) => Array.from({ length: n }, (_, i) => `accept *:${i + 1}`);
    expect(verifyDescriptor(buildDescriptor(input({ exitPolicy: rules(64) })), { now: NOW + 1000 }).exitPolicy).toHaveLength(64);
    expect(code(() => buildDescriptor(input({ exitPolicy: rules(65) })))).toBe('DOC_MALFORMED');
  });

  it('a descriptor without the exit role carries an empty exit policy (SPEC.md §6.4)', () => {
    let e: unknown;
    try { verifyDescriptor(buildDescriptor(input({ roles: ['relay'], exitPolicy: ['accept *:*'] })), { now: NOW + 1000 }); } catch (x) { e = x; }
    expect(e).toMatchObject({ code: 'DOC_MALFORMED', message: expect.stringMatching(/exit_policy/) });
    expect(verifyDescriptor(buildDescriptor(input({ roles: ['relay'], exitPolicy: [] })), { now: NOW + 1000 }).exitPolicy).toEqual([]);
    expect(verifyDescriptor(buildDescriptor(input({ roles: ['relay', 'exit'], exitPolicy: ['accept *:*'] })), { now: NOW + 1000 }).exitPolicy).toEqual(['accept *:*']);
  });

  it('counts exit rules, not elements: 64 elements of five comma-separated rules are refused (SPEC.md §6.4, §7.6.1)', () => {
    const five = 'reject *:1,reject *:2,reject *:3,reject *:4,reject *:5';
    const raw = buildDescriptor(input({ family: [], exitPolicy: Array.from({ length: 64 }, () => five) }));
    expect(raw.length).toBeLessThanOrEqual(LIMITS.descriptorBytes);
    let e: unknown;
    try { verifyDescriptor(raw, { now: NOW + 1000 }); } catch (x) { e = x; }
    expect(e).toMatchObject({ code: 'DOC_MALFORMED', message: expect.stringMatching(/exit_policy.*320 rules/) });
    // 64 rules in fewer elements are fine.
    const d = verifyDescriptor(buildDescriptor(input({ exitPolicy: Array.from({ length: 12 }, () => five).concat(['reject *:61,reject *:62', 'reject *:63,accept *:*']) })), { now: NOW + 1000 });
    expect(d.exitPolicy).toHaveLength(14);
  });

  it('verification only ever throws DOC_* codes on arbitrary bytes (property)', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
      try { verifyDescriptor(b); } catch (e) { return isBitcloudError(e) && e.code.startsWith('DOC_'); }
      return false;
    }), { numRuns: 3000 });
  });

  it('verification never accepts a mutated descriptor (property)', () => {
    const raw = buildDescriptor(input());
    fc.assert(fc.property(fc.nat(raw.length - 1), fc.integer({ min: 1, max: 255 }), (at, x) => {
      const m = Buffer.from(raw);
      m[at] ^= x;
      try { verifyDescriptor(m); } catch (e) { return isBitcloudError(e) && e.code.startsWith('DOC_'); }
      // Only a change to unsigned framing that leaves body and signature intact may pass.
      return decodeEnvelope(m, LIMITS.descriptorBytes).body.equals(decodeEnvelope(raw, LIMITS.descriptorBytes).body);
    }), { numRuns: 1500 });
  });
});

describe('hidden storage node descriptors (SPEC.md §9.21.1)', () => {
  const hidden = (o: Partial<DescriptorInput> = {}) => input({ address: '0.0.0.0', orPort: 0, dirPort: 0, storagePort: 0, exitPolicy: [], roles: ['storage', 'hidden'], ...o });
  it('roles 12, address 0.0.0.0 and no port: valid, and read back as such', () => {
    const d = verifyDescriptor(buildDescriptor(hidden()), { now: NOW + 1000 });
    expect(d.roles).toEqual(['storage', 'hidden']);
    expect(d.address).toBe('0.0.0.0');
    expect([d.orPort, d.dirPort, d.storagePort]).toEqual([0, 0, 0]);
  });
  it('refuses a hidden node with an address or a port, hidden without storage or with relay, and or_port 0 when not hidden', () => {
    expect(code(() => verifyDescriptor(buildDescriptor(hidden({ address: '10.1.2.3' }))))).toBe('DOC_MALFORMED');
    expect(code(() => verifyDescriptor(buildDescriptor(hidden({ orPort: 9001 }))))).toBe('DOC_MALFORMED');
    expect(code(() => verifyDescriptor(buildDescriptor(hidden({ storagePort: 7000 }))))).toBe('DOC_MALFORMED');
    expect(code(() => verifyDescriptor(buildDescriptor(hidden({ roles: ['hidden'] }))))).toBe('DOC_MALFORMED');
    expect(code(() => verifyDescriptor(buildDescriptor(hidden({ roles: ['relay', 'storage', 'hidden'] }))))).toBe('DOC_MALFORMED');
    expect(code(() => verifyDescriptor(buildDescriptor(input({ orPort: 0 }))))).toBe('DOC_MALFORMED');
  });
});
