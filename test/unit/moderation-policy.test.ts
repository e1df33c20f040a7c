// SPEC.md §10.2–10.3: policy documents and double-hashed denylists.
import { describe, it, expect, vi } from 'vitest';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { ed25519Generate, blake2b } from '../../src/crypto/primitives';
import { fingerprint } from '../../src/crypto/keys';
import { isBitcloudError } from '../../src/errors';
import { DocType, makeBody, makeSignature, openEnvelope, sealEnvelope, signDocument } from '../../src/wire/envelope';
import { formatCapability } from '../../src/storage/capability';
import {
  checkPolicyWindow, decodePolicyContent, encodePolicyContent, signPolicy, verifyPolicyVersion, parseModerator,
  type PolicyContent, NO_APPROVALS, PolicyMessage,
} from '../../src/moderation/policy';
import { allowEntry, denyEntry, DenySet, packEntries, parseDenyTarget, splitEntries } from '../../src/moderation/denylist';

const code = (f: () => unknown): string => {
  try { f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'NO_ERROR';
};

const mod = ed25519Generate();
const FP = fingerprint(mod.publicKey);
const W = { validAfter: 1_000_000, validUntil: 2_000_000 };
const e1 = denyEntry(Buffer.alloc(32, 1));
const e2 = denyEntry(Buffer.alloc(32, 2));

function content(o: Partial<PolicyContent> = {}): Omit<PolicyContent, 'moderator'> {
  return { seq: 1, previous: null, classes: [{ name: 'encrypted-private', maxShareBytes: 0 }], maxShareBytes: 0, denyAdd: [e1, e2], denyRemove: [], name: 'test mod', ...NO_APPROVALS, ...o } as Omit<PolicyContent, 'moderator'>;
}

describe('double-hashed denylist (SPEC.md §10.3)', () => {
  it('entry = BLAKE2b-256("bitcloud-deny-v1" | id)', () => {
    const id = Buffer.alloc(32, 0xaa);
    expect(denyEntry(id).equals(blake2b([Buffer.from('bitcloud-deny-v1'), id], 32))).toBe(true);
    expect(denyEntry(id).equals(id)).toBe(false);
  });

  it('known answer for id = 32 × 0xaa', () => {
    expect(denyEntry(Buffer.alloc(32, 0xaa)).toString('hex')).toBe('3e9d2112eaef6567fe3f024643fbb070bfc71763fb2798e3b961c18dd376e245');
  });

  it('known answers of SPEC.md §10.1 and §10.7.2: public content key, DHT head and part targets', async () => {
    const { PUBLIC_CONTENT_KEY } = await import('../../src/moderation/policy');
    const { headTarget, immutableTarget } = await import('../../src/moderation/dht');
    expect(PUBLIC_CONTENT_KEY.toString('hex')).toBe('c796420735eddbd5e31dfce745a9e93d0eb790053be05536da59cffbf828a488');
    expect(headTarget(Buffer.alloc(32, 1)).toString('hex')).toBe('e299ca76351858ca42111d0a1fd20274848ec7cd');
    expect(immutableTarget(Buffer.from('abc')).toString('hex')).toBe('7ac1b65bee717261fd2b947f0cc5ef99c55f3c18');
  });

  it('a DenySet matches raw ids through the double hash, never the raw id itself', () => {
    const id = Buffer.alloc(32, 7);
    const s = DenySet.of([denyEntry(id)]);
    expect(s.deniesId(id)).toBe(true);
    expect(s.deniesId(Buffer.alloc(32, 8))).toBe(false);
    expect(DenySet.of([id]).deniesId(id)).toBe(false);
    expect(s.hasEntry(denyEntry(id))).toBe(true);
  });

  it('apply adds and removes; entries come out sorted', () => {
    const s = DenySet.of([e1]).apply([e2], [e1]);
    expect(s.hasEntry(e1)).toBe(false);
    expect(s.hasEntry(e2)).toBe(true);
    expect(DenySet.of([e2, e1]).entries().map((b) => b.toString('hex'))).toEqual([e1, e2].map((b) => b.toString('hex')).sort());
  });

  it('packed entries must be 32-byte multiples, ascending and distinct', () => {
    const packed = packEntries([e2, e1, e2]);
    expect(splitEntries(packed, 'x')).toHaveLength(2);
    expect(code(() => splitEntries(Buffer.alloc(33), 'x'))).toBe('POLICY_MALFORMED');
    expect(code(() => splitEntries(Buffer.concat([packed.subarray(32), packed.subarray(0, 32)]), 'x'))).toBe('POLICY_MALFORMED');
    expect(code(() => splitEntries(Buffer.concat([e1, e1]), 'x'))).toBe('POLICY_MALFORMED');
  });

  it('parses deny targets: hex id, base32 manifest id, capability (key dropped)', () => {
    const id = Buffer.alloc(32, 0xaa);
    expect(parseDenyTarget(id.toString('hex')).equals(id)).toBe(true);
    const cap = formatCapability({ manifestId: id, fileKey: Buffer.alloc(32, 0x42) });
    expect(parseDenyTarget(cap).equals(id)).toBe(true);
    expect(parseDenyTarget(cap.slice('bitcloud:'.length, cap.indexOf('#'))).equals(id)).toBe(true);
    for (const bad of ['', 'xyz', 'AA'.repeat(32), 'bitcloud:nope', '00'.repeat(31)]) expect(code(() => parseDenyTarget(bad))).toBe('POLICY_BAD_ID');
  });
});

describe('policy content (policy.proto)', () => {
  it('round-trips every field, canonically sorted', () => {
    const c: PolicyContent = {
      moderator: mod.publicKey, seq: 7, previous: Buffer.alloc(32, 9),
      classes: [{ name: 'public-video', maxShareBytes: 1000 }, { name: 'encrypted-private', maxShareBytes: 0 }],
      maxShareBytes: 5000, denyAdd: [e2, e1], denyRemove: [denyEntry(Buffer.alloc(32, 3))], name: 'Moderator A',
      approveAdd: [
        { manifestId: Buffer.alloc(32, 7), contentClass: 'public-any', tags: ['music', 'education'] },
        { manifestId: Buffer.alloc(32, 5), contentClass: 'public-video', tags: [] },
      ],
      approveRemove: [Buffer.alloc(32, 6)], allowAdd: [allowEntry(Buffer.alloc(32, 1))], allowRemove: [allowEntry(Buffer.alloc(32, 2))],
    };
    const d = decodePolicyContent(encodePolicyContent(c));
    expect(d.seq).toBe(7);
    expect(d.previous!.equals(c.previous!)).toBe(true);
    expect(d.classes.map((x) => x.name)).toEqual(['encrypted-private', 'public-video']);
    expect(d.classes[1].maxShareBytes).toBe(1000);
    expect(d.maxShareBytes).toBe(5000);
    expect(d.denyAdd).toHaveLength(2);
    expect(Buffer.compare(d.denyAdd[0], d.denyAdd[1])).toBe(-1);
    expect(d.denyRemove).toHaveLength(1);
    expect(d.name).toBe('Moderator A');
    // Approvals (SPEC.md §10.3.2): sorted by manifest id, tags sorted.
    expect(d.approveAdd.map((a) => a.manifestId[0])).toEqual([5, 7]);
    expect(d.approveAdd[1]).toMatchObject({ contentClass: 'public-any', tags: ['education', 'music'] });
    expect(d.approveRemove[0].equals(Buffer.alloc(32, 6))).toBe(true);
    expect(d.allowAdd[0].equals(allowEntry(Buffer.alloc(32, 1)))).toBe(true);
    expect(d.allowRemove[0].equals(allowEntry(Buffer.alloc(32, 2)))).toBe(true);
  });

  it('refuses bad approvals with POLICY_MALFORMED', () => {
    const base: PolicyContent = { ...content(), moderator: mod.publicKey, previous: Buffer.alloc(32, 1), seq: 2 };
    const ap = (o: object) => ({ manifestId: Buffer.alloc(32, 1), contentClass: 'public-any', tags: ['music'], ...o });
    const bad: Array<Partial<PolicyContent>> = [
      { approveAdd: [ap({ manifestId: Buffer.alloc(31) })] },
      { approveAdd: [ap({ contentClass: 'Bad Class' })] },
      { approveAdd: [ap({ tags: ['No Caps'] })] },
      { approveAdd: [ap({ tags: Array.from({ length: 17 }, (_, i) => `t${i}`) })] },
      { approveAdd: [ap({})], approveRemove: [Buffer.alloc(32, 1)] },
      { allowAdd: [Buffer.alloc(32, 1)], allowRemove: [Buffer.alloc(32, 1)] },
      { previous: null, seq: 1, allowRemove: [Buffer.alloc(32, 1)] },
    ];
    for (const o of bad) expect(code(() => encodePolicyContent({ ...base, ...o }))).toBe('POLICY_MALFORMED');
  });

  it('refuses rule violations with POLICY_MALFORMED', () => {
    const base: PolicyContent = { ...content(), moderator: mod.publicKey };
    const bad: Array<Partial<PolicyContent>> = [
      { seq: 0 },
      { moderator: Buffer.alloc(31) },
      { previous: Buffer.alloc(32), seq: 1 },
      { previous: null, denyRemove: [e1] },
      { previous: Buffer.alloc(32), seq: 2, denyAdd: [e1], denyRemove: [e1] },
      { classes: [{ name: 'Bad Class', maxShareBytes: 0 }] },
      { classes: [{ name: 'a', maxShareBytes: 0 }, { name: 'a', maxShareBytes: 0 }] },
      { name: 'x'.repeat(65) },
      { name: 'tab\there' },
    ];
    for (const b of bad) expect(code(() => encodePolicyContent({ ...base, ...b }))).toBe('POLICY_MALFORMED');
  });

  it('refuses counts over the §10.2 bounds before the full decode (no per-item objects for a flood)', () => {
    const spy = vi.spyOn(PolicyMessage, 'decode');
    try {
      const good = encodePolicyContent({ ...content(), moderator: mod.publicKey });
      const flood = (item: number[], n: number): Buffer => Buffer.concat([good, ...Array<Buffer>(n).fill(Buffer.from(item))]);
      const field = (no: number, body: Buffer): Buffer => Buffer.from(protobuf.Writer.create().uint32(no << 3 | 2).bytes(body).finish());
      const approval = (tags: number): Buffer => Buffer.concat([
        field(1, Buffer.alloc(32, 1)), field(2, Buffer.from('public-any')),
        ...Array.from({ length: tags }, (_, i) => field(3, Buffer.from(`t${String(i).padStart(2, '0')}`))),
      ]);
      const bad: Buffer[] = [
        // 2 000 000 empty Approvals (4 MB): each too short to hold its 32-byte manifest id.
        Buffer.concat(Array<Buffer>(2_000_000).fill(Buffer.from([0x4a, 0]))),
        flood([0x4a, 0], 1),
        // ClassRules as varints: the full decode would read each as a message all the same.
        flood([0x20, 0], 1),
        // 65 ClassRules (at most 64), even empty ones; then 2 000 000 of them.
        flood([0x22, 0], 65),
        Buffer.concat(Array<Buffer>(2_000_000).fill(Buffer.from([0x22, 0]))),
        // A manifest id of 31 or 33 bytes; an approval of 17 tags (at most 16).
        Buffer.concat([good, field(9, Buffer.concat([field(1, Buffer.alloc(31, 1)), field(2, Buffer.from('public-any')), Buffer.alloc(3)]))]),
        Buffer.concat([good, field(9, Buffer.concat([field(1, Buffer.alloc(33, 1)), field(2, Buffer.from('public-any'))]))]),
        Buffer.concat([good, field(9, approval(17))]),
      ];
      for (const b of bad) expect(code(() => decodePolicyContent(b))).toBe('POLICY_MALFORMED');
      expect(spy).not.toHaveBeenCalled();
      // At the bounds: 16 tags decode.
      const ok = Buffer.concat([good, field(9, approval(16))]);
      expect(decodePolicyContent(ok).approveAdd[0].tags).toHaveLength(16);
      expect(spy).toHaveBeenCalledTimes(1);
    } finally {
      spy.mockRestore();
    }
  });

  it('property: random bytes decode to a policy or POLICY_MALFORMED, nothing else', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
      const c = code(() => decodePolicyContent(b));
      expect(['NO_ERROR', 'POLICY_MALFORMED']).toContain(c);
    }), { numRuns: 2000 });
  });

  it('property: mutated valid encodings decode or fail with POLICY_MALFORMED only', () => {
    const good = encodePolicyContent({ ...content({ seq: 3, previous: Buffer.alloc(32, 1), denyRemove: [denyEntry(Buffer.alloc(32, 5))] }), moderator: mod.publicKey });
    fc.assert(fc.property(fc.nat(good.length - 1), fc.integer({ min: 0, max: 255 }), fc.nat(good.length), (i, v, cut) => {
      const m = Buffer.from(good);
      m[i] = v;
      for (const b of [m, m.subarray(0, cut)]) expect(['NO_ERROR', 'POLICY_MALFORMED']).toContain(code(() => decodePolicyContent(b)));
    }), { numRuns: 2000 });
  });
});

describe('signed policy versions (SPEC.md §10.2)', () => {
  const raw = signPolicy(content(), mod, W);

  it('is a POLICY envelope that verifies, naming its moderator', () => {
    expect(openEnvelope(raw, DocType.POLICY, 1 << 20).type).toBe(DocType.POLICY);
    const v = verifyPolicyVersion(raw, { moderator: FP });
    expect(v.moderator).toBe(FP);
    expect(v.content.seq).toBe(1);
    expect(v.validAfter).toBe(W.validAfter);
    expect(v.raw.equals(raw)).toBe(true);
  });

  it('refuses a forged signature (POLICY_BAD_SIGNATURE)', () => {
    const forged = Buffer.from(raw);
    forged[forged.length - 5] ^= 1; // inside the signature
    expect(code(() => verifyPolicyVersion(forged))).toBe('POLICY_BAD_SIGNATURE');
  });

  it('refuses a policy naming one key but signed by another', () => {
    const other = ed25519Generate();
    const body = makeBody(DocType.POLICY, W.validAfter, W.validUntil, encodePolicyContent({ ...content(), moderator: mod.publicKey }));
    const byOther = sealEnvelope(body, [makeSignature(body, other.publicKey, other)]);
    expect(code(() => verifyPolicyVersion(byOther))).toBe('POLICY_BAD_SIGNATURE');
    const twoSigs = sealEnvelope(body, [makeSignature(body, mod.publicKey, mod), makeSignature(body, other.publicKey, other)]);
    expect(code(() => verifyPolicyVersion(twoSigs))).toBe('POLICY_BAD_SIGNATURE');
  });

  it('checks the signature before decoding the content (SPEC.md §10.2)', () => {
    const spy = vi.spyOn(PolicyMessage, 'decode');
    try {
      const other = ed25519Generate();
      const body = makeBody(DocType.POLICY, W.validAfter, W.validUntil, encodePolicyContent({ ...content(), moderator: mod.publicKey }));
      const sig = makeSignature(body, mod.publicKey, mod);
      const unsigned = sealEnvelope(body, [{ ...sig, signature: makeSignature(body, other.publicKey, other).signature }]);
      expect(code(() => verifyPolicyVersion(unsigned, { moderator: FP }))).toBe('POLICY_BAD_SIGNATURE');
      expect(code(() => verifyPolicyVersion(sealEnvelope(body, []), { moderator: FP }))).toBe('POLICY_BAD_SIGNATURE');
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it('refuses another moderator than the one asked for (POLICY_WRONG_MODERATOR)', () => {
    expect(code(() => verifyPolicyVersion(raw, { moderator: 'ab'.repeat(32) }))).toBe('POLICY_WRONG_MODERATOR');
  });

  it('refuses another document type (domain separation)', () => {
    const vote = signDocument({ type: DocType.VOTE, ...W, content: encodePolicyContent({ ...content(), moderator: mod.publicKey }) }, { identity: mod.publicKey, keyPair: mod });
    expect(code(() => verifyPolicyVersion(vote))).toBe('POLICY_MALFORMED');
  });

  it('checks the validity window', () => {
    const v = verifyPolicyVersion(raw);
    expect(code(() => checkPolicyWindow(v, 1_500_000, 0))).toBe('NO_ERROR');
    expect(code(() => checkPolicyWindow(v, 2_000_001, 0))).toBe('POLICY_EXPIRED');
    expect(code(() => checkPolicyWindow(v, 900_000, 0))).toBe('POLICY_NOT_YET_VALID');
  });

  it('a window past the dates JavaScript can print is still POLICY_NOT_YET_VALID, not a RangeError', () => {
    const far = signPolicy(content(), mod, { validAfter: 2 ** 53 - 2, validUntil: 2 ** 53 - 1 });
    const v = verifyPolicyVersion(far);
    expect(code(() => checkPolicyWindow(v, 1_500_000, 60_000))).toBe('POLICY_NOT_YET_VALID');
  });

  it('property: random bytes as an envelope give POLICY_MALFORMED or POLICY_BAD_SIGNATURE only', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => {
      expect(['POLICY_MALFORMED', 'POLICY_BAD_SIGNATURE']).toContain(code(() => verifyPolicyVersion(b)));
    }), { numRuns: 2000 });
    fc.assert(fc.property(fc.nat(raw.length - 1), fc.integer({ min: 0, max: 255 }), (i, v) => {
      const m = Buffer.from(raw);
      if (m[i] === v) return;
      m[i] = v;
      expect(['POLICY_MALFORMED', 'POLICY_BAD_SIGNATURE', 'POLICY_WRONG_MODERATOR']).toContain(code(() => verifyPolicyVersion(m, { moderator: FP })));
    }), { numRuns: 2000 });
  });

  it('moderator fingerprints are 64 lowercase hex', () => {
    expect(parseModerator(FP).equals(mod.publicKey)).toBe(true);
    expect(code(() => parseModerator(FP.toUpperCase()))).toBe('POLICY_BAD_MODERATOR');
  });
});
