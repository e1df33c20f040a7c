// SPEC.md §6.5–6.8: votes, deterministic consensus computation, and client verification.
import { describe, it, expect } from 'vitest';
import { ed25519Generate, randomBytes, sha256, x25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { buildDescriptor, verifyDescriptor, type VerifiedDescriptor } from '../../src/dir/descriptor';
import { makeKeyCertificate } from '../../src/dir/certificate';
import { parseAuthorityList, type AuthorityInfo } from '../../src/dir/authorities';
import { countSignatures, UncheckedConsensus, verifyConsensus } from '../../src/dir/consensus';
import { FLAG_BITS, flagsToMask } from '../../src/dir/types';
import { decodeConsensus, decodeEnvelope, decodeVote, encodeConsensus, encodeEnvelope, encodeVote, LIMITS } from '../../src/wire/docs';
import { makeBody, makeSignature, openEnvelope, sealEnvelope, DocType } from '../../src/wire/envelope';
import { CONSENSUS_BODY_MAX, computeConsensus, lowMedian, type ConsensusParams } from '../../directory/compute';
import { buildVote, verifyVote, type Signer, type VoteInput } from '../../directory/vote';
import { assignFlags } from '../../directory/flags';
import { isBitcloudError } from '../../src/errors';

const code = (f: () => unknown): string => {
  try { f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'NO_ERROR';
};

const NOW = 1_800_000_000_000;
const PERIOD = 60;
const PS = Math.floor(NOW / (PERIOD * 1000)) * PERIOD * 1000;
const params: ConsensusParams = { totalAuthorities: 3, periodStart: PS, periodSeconds: PERIOD, lifetimePeriods: 3 };

interface Auth { id: Ed25519KeyPair; signer: Signer }
function makeAuthority(): Auth {
  const id = ed25519Generate();
  const sk = ed25519Generate();
  return { id, signer: { identity: id.publicKey, signingKey: sk, certificate: makeKeyCertificate(id, sk.publicKey, NOW - 86_400_000, NOW + 86_400_000) } };
}
const auths = [makeAuthority(), makeAuthority(), makeAuthority()];
const list: AuthorityInfo[] = parseAuthorityList(auths.map((a, i) => ({ name: `a${i}`, identity: a.id.publicKey.toString('hex'), address: `127.0.0.1:${7000 + i}` })));

function relay(i: number, o: { published?: number; exit?: boolean; family?: string[]; bw?: number } = {}): VerifiedDescriptor {
  const id = ed25519Generate();
  return verifyDescriptor(buildDescriptor({
    identity: id, onionKey: x25519Generate().publicKey, nickname: `r${i}`, address: `10.0.${i >> 8}.${i & 255}`, orPort: 9000 + i,
    declaredBandwidth: o.bw ?? 1_000_000, exitPolicy: o.exit ? ['accept *:443', 'reject *:*'] : [], family: o.family ?? [],
    roles: o.exit ? ['relay', 'exit'] : ['relay'], version: 'bitcloud-0.1.0', published: o.published ?? PS - 1000,
  }));
}

const base = FLAG_BITS.Running | FLAG_BITS.Valid;
function vote(a: Auth, entries: { d: VerifiedDescriptor; flags?: number; measured?: number }[], knownFlags = 0x7f): VoteInput {
  return { authority: a.id.publicKey, knownFlags, entries: entries.map((e) => ({ descriptor: e.d, flags: e.flags ?? base, measured: e.measured ?? 100 })) };
}

function signAll(body: Buffer, who: Auth[]): Buffer {
  return sealEnvelope(body, who.map((a) => makeSignature(body, a.id.publicKey, a.signer.signingKey)), who.map((a) => a.signer.certificate));
}

describe('consensus computation (pure, deterministic)', () => {
  const rs = Array.from({ length: 6 }, (_, i) => relay(i, { exit: i % 2 === 0 }));

  it('is byte-identical whatever the order of votes and entries', () => {
    const votes = auths.map((a) => vote(a, rs.map((d) => ({ d }))));
    const c1 = computeConsensus(votes, params);
    const shuffled = [...votes].reverse().map((v) => ({ ...v, entries: [...v.entries].reverse() }));
    const c2 = computeConsensus(shuffled, params);
    expect(c1.body.equals(c2.body)).toBe(true);
    expect(c1.digest.equals(c2.digest)).toBe(true);
    expect(c1.relayCount).toBe(6);
  });

  it('uses the canonical encoding (decode then encode gives the same bytes)', () => {
    const c = computeConsensus(auths.map((a) => vote(a, rs.map((d) => ({ d })))), params);
    expect(encodeConsensus(decodeConsensus(c.content)).equals(c.content)).toBe(true);
  });

  it('a relay whose canonical policy breaks the consensus limits is left out, not the whole consensus (SPEC.md §6.7.1, §6.7.2)', () => {
    const five = 'reject *:1,reject *:2,reject *:3,reject *:4,reject *:5';
    // Past the descriptor check (which refuses it, SPEC.md §6.4): 320 rules once canonical.
    const big: VerifiedDescriptor = { ...relay(90, { exit: true }), exitPolicy: Array.from({ length: 64 }, () => five) };
    const full: VerifiedDescriptor = { ...relay(91, { exit: true }), exitPolicy: Array.from({ length: 64 }, (_, i) => `reject *:${i + 1}`) };
    const c = computeConsensus(auths.map((a) => vote(a, [...rs, big, full].map((d) => ({ d })))), params);
    const m = decodeConsensus(c.content);
    expect(c.relayCount).toBe(7);
    const listed = Array.from({ length: c.relayCount }, (_, i) => m.identities.subarray(32 * i, 32 * i + 32).toString('hex'));
    expect(listed).not.toContain(big.fingerprint);
    expect(listed).toContain(full.fingerprint);
  });

  it('leaves out the lowest-weight relays rather than exceed the size limit (SPEC.md §6.7.1)', () => {
    // 300 exits, each with a policy of 64 rules, 32 family keys and 16 moderators of its own:
    // about 3 KB each, 900 KB in all, against a limit of 256 KiB (the real one is 16 MiB less
    // room for signatures; the same code, 6,000 such relays).
    const base = relay(0, { exit: true });
    const fp = () => randomBytes(32).toString('hex');
    const big: VerifiedDescriptor[] = Array.from({ length: 300 }, (_, i) => {
      const identity = randomBytes(32);
      return {
        ...base, identity, fingerprint: identity.toString('hex'),
        exitPolicy: Array.from({ length: 64 }, (_, k) => `reject 1.${i >> 8}.${i & 255}.${k}:${k + 1}`),
        family: Array.from({ length: 32 }, fp).sort(), moderators: Array.from({ length: 16 }, fp).sort(),
      };
    });
    const votes = auths.map((a) => vote(a, big.map((d, i) => ({ d, measured: 1000 + i }))));
    expect(computeConsensus(votes, params).dropped).toBe(0);
    const limit = 256 * 1024;
    const c = computeConsensus(votes, { ...params, maxBodyBytes: limit });
    expect(c.dropped).toBeGreaterThan(0);
    expect(c.relayCount + c.dropped).toBe(300);
    expect(c.body.length).toBeLessThanOrEqual(limit);
    const m = decodeConsensus(c.content);
    // The ones left out are the lowest weights, and no fewer would do.
    expect(Math.min(...m.weights)).toBe(1000 + c.dropped);
    expect(computeConsensus(votes.map((v) => ({ ...v, entries: v.entries.filter((e) => e.measured >= 1000 + c.dropped - 1) })), params).body.length).toBeGreaterThan(limit);
    expect(CONSENSUS_BODY_MAX + 32 * (137 + 515)).toBeLessThanOrEqual(LIMITS.consensusBytes);
  });

  it('lists a relay only when more than half of ALL configured authorities list it', () => {
    const [r0, r1, r2] = rs;
    const votes = [vote(auths[0], [{ d: r0 }, { d: r1 }, { d: r2 }]), vote(auths[1], [{ d: r0 }, { d: r1 }]), vote(auths[2], [{ d: r0 }])];
    const c = verifyConsensus(signAll(computeConsensus(votes, params).body, auths), list, NOW);
    expect(c.relays.map((r) => r.fingerprint).sort()).toEqual([r0.fingerprint, r1.fingerprint].sort());
    // With only two votes in hand, a relay listed by one of them is still out (1 of 3 configured).
    const two = computeConsensus([votes[1], vote(auths[2], [{ d: r0 }])], params);
    const c2 = verifyConsensus(signAll(two.body, auths), list, NOW);
    expect(c2.relays.map((r) => r.fingerprint)).toEqual([r0.fingerprint]);
    expect(c2.voters).toHaveLength(2);
  });

  it('ignores a second vote from the same authority', () => {
    const votes = [vote(auths[0], [{ d: rs[0] }]), vote(auths[0], [{ d: rs[0] }])];
    expect(computeConsensus(votes, params).relayCount).toBe(0);
  });

  it('sets a flag by majority of the votes that vote on it', () => {
    const d = rs[0];
    const G = FLAG_BITS.Guard, S = FLAG_BITS.Stable;
    const votes = [
      vote(auths[0], [{ d, flags: base | G | S }]),
      vote(auths[1], [{ d, flags: base | S }], 0x7f & ~G), // does not vote on Guard
      vote(auths[2], [{ d, flags: base }]),
    ];
    const c = verifyConsensus(signAll(computeConsensus(votes, params).body, auths), list, NOW);
    const f = c.relays[0].flags;
    expect(f.has('Running') && f.has('Valid')).toBe(true);
    expect(f.has('Stable')).toBe(true); // 2 of 3
    expect(f.has('Guard')).toBe(false); // 1 of the 2 voting on it: not more than half
    const votes2 = [votes[0], votes[1], vote(auths[2], [{ d, flags: base | G }])];
    const c2 = verifyConsensus(signAll(computeConsensus(votes2, params).body, auths), list, NOW);
    expect(c2.relays[0].flags.has('Guard')).toBe(true); // 2 of 2
  });

  it('weight is the low median of measured values', () => {
    expect(lowMedian([300, 100, 200])).toBe(200);
    expect(lowMedian([100, 200])).toBe(100);
    expect(lowMedian([5])).toBe(5);
    const d = rs[1];
    const votes = [vote(auths[0], [{ d, measured: 900 }]), vote(auths[1], [{ d, measured: 100 }]), vote(auths[2], [{ d, measured: 400 }])];
    const c = verifyConsensus(signAll(computeConsensus(votes, params).body, auths), list, NOW);
    expect(c.relays[0].weight).toBe(400);
  });

  it('takes the descriptor most votes list; among equally common ones the newest (SPEC.md §6.7.1)', () => {
    const id = ed25519Generate();
    const mk = (published: number, port: number) => verifyDescriptor(buildDescriptor({
      identity: id, onionKey: x25519Generate().publicKey, nickname: 'n', address: '10.9.9.9', orPort: port, declaredBandwidth: 1, roles: ['relay'], version: 'v', published,
    }));
    const old = mk(PS - 10_000, 1), neu = mk(PS - 5_000, 2);
    // Two votes carry `old`, one carries `neu`: the newer one does not win by being newer.
    const votes = [vote(auths[0], [{ d: old }]), vote(auths[1], [{ d: neu }]), vote(auths[2], [{ d: old }])];
    const c = verifyConsensus(signAll(computeConsensus(votes, params).body, auths), list, NOW);
    expect(c.relays[0].orPort).toBe(1);
    // One each: the newest wins, whatever the order of the votes.
    for (const two of [[votes[0], votes[1]], [votes[1], votes[0]]]) {
      const c2 = verifyConsensus(signAll(computeConsensus(two, params).body, auths), list, NOW);
      expect(c2.relays[0].orPort).toBe(2);
    }
  });

  it('one authority alone cannot choose a relay\'s descriptor by listing a newer one (SPEC.md §6.7.1)', () => {
    // Five authorities, majority 3. One lists a newer descriptor of the relay (another address and
    // onion key, one the others never tested); four list the one they hold.
    const five = [...auths, makeAuthority(), makeAuthority()];
    const id = ed25519Generate();
    const mk = (published: number, address: string) => verifyDescriptor(buildDescriptor({
      identity: id, onionKey: x25519Generate().publicKey, nickname: 'n', address, orPort: 9001, declaredBandwidth: 1, roles: ['relay'], version: 'v', published,
    }));
    const held = mk(PS - 10_000, '198.51.100.7'), hostile = mk(PS - 1_000, '10.0.0.1');
    const votes = five.map((a, i) => vote(a, [{ d: i === 4 ? hostile : held }]));
    const m = decodeConsensus(computeConsensus(votes, { ...params, totalAuthorities: 5 }).content);
    expect(m.addresses.equals(held.addressBytes)).toBe(true);
    expect(m.onionKeys.equals(held.onionKey)).toBe(true);
  });

  it('carries every field consumers need, with shared tables', () => {
    const famA = relay(100), famB = relay(101, { family: [famA.fingerprint] });
    const votes = auths.map((a) => vote(a, [{ d: famA }, { d: famB }, { d: rs[0] }]));
    const c = verifyConsensus(signAll(computeConsensus(votes, params).body, auths), list, NOW);
    const b = c.relays.find((r) => r.fingerprint === famB.fingerprint)!;
    expect(b.family).toEqual([famA.fingerprint]);
    expect(b.nickname).toBe('r101');
    expect(b.address).toBe('10.0.0.101');
    expect(b.onionKey.equals(famB.onionKey)).toBe(true);
    expect(b.roles).toEqual(['relay']);
    expect(b.unmoderated).toBe(true);
    const e = c.relays.find((r) => r.fingerprint === rs[0].fingerprint)!;
    expect(e.exitPolicy).toEqual(['accept *:443', 'reject *:*']);
    expect(e.roles).toEqual(['relay', 'exit']);
    const ids = c.relays.map((r) => r.fingerprint);
    expect(ids).toEqual([...ids].sort());
  });
});

describe('authority flag assignment', () => {
  it('gives Exit to exits whose policy accepts web ports, Stable after the threshold, Guard to fast stable relays', () => {
    const ex = relay(1, { exit: true }), mid = relay(2), slow = relay(3);
    const f = assignFlags([
      { descriptor: ex, measured: 1000, runningSince: NOW - 10_000 },
      { descriptor: mid, measured: 1000, runningSince: NOW - 100 },
      { descriptor: slow, measured: 1, runningSince: NOW - 10_000 },
    ], { now: NOW, stableAfterMs: 5000 });
    expect(f[0] & FLAG_BITS.Exit).toBeTruthy();
    expect(f[1] & FLAG_BITS.Exit).toBeFalsy();
    expect(f[0] & FLAG_BITS.Stable).toBeTruthy();
    expect(f[1] & FLAG_BITS.Stable).toBeFalsy();
    expect(f[0] & FLAG_BITS.Guard).toBeTruthy();
    expect(f[1] & FLAG_BITS.Guard).toBeFalsy();
    expect(f.every((x) => (x & flagsToMask(['Running', 'Valid'])) === flagsToMask(['Running', 'Valid']))).toBe(true);
  });
});

describe('votes', () => {
  const rs = [relay(1), relay(2)];
  const entries = rs.map((d) => ({ descriptorRaw: d.raw, identity: d.identity, flags: base, measured: 50 }));

  it('round-trip through signing and verification', () => {
    const raw = buildVote(auths[0].signer, PS, PERIOD, 0x7f, entries);
    const v = verifyVote(raw, list, { periodStart: PS, periodSeconds: PERIOD });
    expect(v.fingerprint).toBe(list[0].fingerprint);
    expect(v.entries.map((e) => e.descriptor.fingerprint).sort()).toEqual(rs.map((r) => r.fingerprint).sort());
  });

  it('a vote is judged with the same skew on every authority (1 h), not each one\'s own: a descriptor 90 s ahead does not split them', () => {
    const ahead = relay(9, { published: PS + 90_000 });
    const raw = buildVote(auths[0].signer, PS, PERIOD, 0x7f, [{ descriptorRaw: ahead.raw, identity: ahead.identity, flags: base, measured: 50 }]);
    expect(verifyVote(raw, list, { periodStart: PS, periodSeconds: PERIOD }).entries).toHaveLength(1);
    const far = relay(10, { published: PS + 2 * 3_600_000 });
    const bad = buildVote(auths[0].signer, PS, PERIOD, 0x7f, [{ descriptorRaw: far.raw, identity: far.identity, flags: base, measured: 50 }]);
    expect(code(() => verifyVote(bad, list, { periodStart: PS, periodSeconds: PERIOD }))).toBe('VOTE_MALFORMED');
  });

  it('a vote over 100 000 relays leaves out the lowest measured (then lowest identity) and still decodes at a peer (SPEC.md §6.5 Bounds)', () => {
    const n = LIMITS.voteEntriesMax + 2;
    const id = (i: number) => { const b = Buffer.alloc(32); b.writeUInt32BE(i, 28); return b; };
    const tiny = Buffer.alloc(8, 1);
    // Relays 0 and 1 both measure 0: both ascend first, 0 (the lower identity) before 1; relay 2 measures 1.
    const many = Array.from({ length: n }, (_, i) => ({ descriptorRaw: tiny, identity: id(i), flags: base, measured: Math.max(0, i - 1) }));
    const raw = buildVote(auths[0].signer, PS, PERIOD, 0x7f, many);
    const v = decodeVote(openEnvelope(raw, DocType.VOTE, LIMITS.voteBytes).content);
    expect(v.entries).toHaveLength(LIMITS.voteEntriesMax);
    expect(v.entries.filter((e) => e.measured === 0)).toHaveLength(0);
    expect(v.entries[0].measured).toBe(1);
  });

  it('a vote over its byte bound leaves out the lowest measured relays, fits, and verifies at a peer (SPEC.md §6.5 Bounds)', () => {
    const rels = [relay(11), relay(12), relay(13), relay(14), relay(15)];
    const all = rels.map((d, i) => ({ descriptorRaw: d.raw, identity: d.identity, flags: base, measured: [40, 10, 50, 10, 30][i] }));
    const full = buildVote(auths[0].signer, PS, PERIOD, 0x7f, all);
    const bytes = full.length - 1;
    const raw = buildVote(auths[0].signer, PS, PERIOD, 0x7f, all, 0, undefined, { entries: LIMITS.voteEntriesMax, bytes });
    expect(raw.length).toBeLessThanOrEqual(bytes);
    const v = verifyVote(raw, list, { periodStart: PS, periodSeconds: PERIOD });
    // Of the two measuring 10, the lower identity goes first.
    const low = [rels[1], rels[3]].sort((a, b) => Buffer.compare(a.identity, b.identity));
    expect(v.entries.map((e) => e.descriptor.fingerprint).sort()).toEqual(rels.filter((r) => r !== low[0]).map((r) => r.fingerprint).sort());
    // A bound room for two: the two highest measured.
    const two = buildVote(auths[0].signer, PS, PERIOD, 0x7f, all, 0, undefined, { entries: 2, bytes: LIMITS.voteBytes });
    expect(verifyVote(two, list, { periodStart: PS, periodSeconds: PERIOD }).entries.map((e) => e.measured).sort()).toEqual([40, 50]);
  });

  it('refuse the wrong period, an unknown authority, and a bad signature', () => {
    const raw = buildVote(auths[0].signer, PS, PERIOD, 0x7f, entries);
    expect(code(() => verifyVote(raw, list, { periodStart: PS + PERIOD * 1000, periodSeconds: PERIOD }))).toBe('VOTE_WRONG_PERIOD');
    expect(code(() => verifyVote(buildVote(makeAuthority().signer, PS, PERIOD, 0x7f, entries), list, { periodStart: PS, periodSeconds: PERIOD }))).toBe('VOTE_UNKNOWN_AUTHORITY');
    const env = decodeEnvelope(raw, LIMITS.voteBytes);
    env.signatures[0].signature[3] ^= 1;
    expect(code(() => verifyVote(encodeEnvelope(env), list, { periodStart: PS, periodSeconds: PERIOD }))).toBe('DOC_BAD_SIGNATURE');
    // A signing key certified by someone else's identity does not count.
    const env2 = decodeEnvelope(raw, LIMITS.voteBytes);
    env2.certificates = [auths[1].signer.certificate];
    expect(code(() => verifyVote(encodeEnvelope(env2), list, { periodStart: PS, periodSeconds: PERIOD }))).toBe('DOC_WRONG_SIGNER');
  });

  it('refuses a vote signed with another validity than its period (SPEC.md §6.5: valid_until = valid_after + P)', () => {
    const signer = auths[0].signer;
    const content = encodeVote({
      authority: signer.identity, periodSeconds: PERIOD, knownFlags: 0x7f, provenEpoch: 0,
      entries: [...entries].sort((a, b) => Buffer.compare(a.identity, b.identity)).map((e) => ({ descriptor: e.descriptorRaw, flags: e.flags, measured: e.measured, proven: 0, stored: 0 })),
    });
    const signed = (validUntil: number): Buffer => {
      const body = makeBody(DocType.VOTE, PS, validUntil, content);
      return sealEnvelope(body, [makeSignature(body, signer.identity, signer.signingKey)], [signer.certificate]);
    };
    expect(verifyVote(signed(PS + PERIOD * 1000), list, { periodStart: PS, periodSeconds: PERIOD }).entries).toHaveLength(2);
    for (const validUntil of [PS + 10 * PERIOD * 1000, PS + PERIOD * 1000 - 1, PS + 1, Number.MAX_SAFE_INTEGER]) {
      expect(code(() => verifyVote(signed(validUntil), list, { periodStart: PS, periodSeconds: PERIOD }))).toBe('VOTE_WRONG_PERIOD');
    }
  });
});

describe('client verification', () => {
  it('countSignatures checks against a digest it is given, without hashing the body again (one hash per fetch of signatures)', () => {
    const body = computeConsensus([vote(auths[0], [{ d: relay(40) }])], params).body;
    const sigs = auths.map((a) => makeSignature(body, a.signer.identity, a.signer.signingKey));
    const certs = auths.map((a) => a.signer.certificate);
    // Given the digest, the body is not read: an empty one stands for it.
    const c = countSignatures(Buffer.alloc(0), sigs, certs, list, NOW, undefined, sha256(body));
    expect(c.valid).toHaveLength(3);
    expect(countSignatures(body, sigs, certs, list, NOW).valid).toHaveLength(3);
  });

  const rs = [relay(1), relay(2), relay(3)];
  const computed = computeConsensus(auths.map((a) => vote(a, rs.map((d) => ({ d })))), params);

  it('accepts a consensus signed by a majority, inside its window', () => {
    const c = verifyConsensus(signAll(computed.body, auths.slice(0, 2)), list, NOW);
    expect(c.signers).toEqual([list[0].fingerprint, list[1].fingerprint].sort());
    expect(c.validAfter).toBe(PS);
    expect(c.freshUntil).toBe(PS + PERIOD * 1000);
    expect(c.validUntil).toBe(PS + 3 * PERIOD * 1000);
    expect(c.digest.equals(computed.digest)).toBe(true);
    expect(c.relays).toHaveLength(3);
  });

  it('refuses a consensus whose window lies beyond what a Date holds with a typed error, not a RangeError', () => {
    // 9e15 ms is past a Date's range (8.64e15) and below 2^53: the message prints the number.
    const far = computeConsensus(auths.map((a) => vote(a, rs.map((d) => ({ d })))), { ...params, periodStart: 150_000_000_000 * PERIOD * 1000 });
    let msg = '';
    expect(code(() => { try { return verifyConsensus(signAll(far.body, auths), list, NOW); } catch (e) { msg = (e as Error).message; throw e; } })).toBe('CONSENSUS_NOT_YET_VALID');
    expect(msg).toMatch(/invalid time 9000000000000000/);
  });

  it('refuses too few signatures', () => {
    expect(code(() => verifyConsensus(signAll(computed.body, auths.slice(0, 1)), list, NOW))).toBe('CONSENSUS_TOO_FEW_SIGNATURES');
  });

  it('refuses outside the window', () => {
    const raw = signAll(computed.body, auths);
    expect(code(() => verifyConsensus(raw, list, PS + 3 * PERIOD * 1000 + 1))).toBe('CONSENSUS_EXPIRED');
    expect(code(() => verifyConsensus(raw, list, PS - 120_000, 60_000))).toBe('CONSENSUS_NOT_YET_VALID');
  });

  it('refuses a flipped byte in the signed body', () => {
    const env = decodeEnvelope(signAll(computed.body, auths), LIMITS.consensusBytes);
    const body = Buffer.from(env.body);
    body[body.length - 40] ^= 1; // inside the last relay's fields
    expect(code(() => verifyConsensus(encodeEnvelope({ ...env, body }), list, NOW))).toMatch(/^(CONSENSUS_TOO_FEW_SIGNATURES|DOC_MALFORMED|CONSENSUS_MALFORMED)$/);
  });

  it('refuses signatures by unknown keys, by uncertified keys, and by expired certificates', () => {
    const strangers = [makeAuthority(), makeAuthority()];
    expect(code(() => verifyConsensus(signAll(computed.body, strangers), list, NOW))).toBe('CONSENSUS_TOO_FEW_SIGNATURES');
    // Signed with the identity key itself (no certificate): not accepted.
    const direct = sealEnvelope(computed.body, auths.map((a) => makeSignature(computed.body, a.id.publicKey, a.id)));
    expect(code(() => verifyConsensus(direct, list, NOW))).toBe('CONSENSUS_TOO_FEW_SIGNATURES');
    // Certificates that expired.
    const old = auths.map((a) => ({ ...a, signer: { ...a.signer, certificate: makeKeyCertificate(a.id, a.signer.signingKey.publicKey, NOW - 10_000_000, NOW - 5_000_000) } }));
    expect(code(() => verifyConsensus(signAll(computed.body, old), list, NOW))).toBe('CONSENSUS_TOO_FEW_SIGNATURES');
  });

  it('refuses a truncated or oversize consensus with a DOC_* code', () => {
    const raw = signAll(computed.body, auths);
    for (const cut of [1, 10, Math.floor(raw.length / 2), raw.length - 70]) {
      expect(code(() => verifyConsensus(raw.subarray(0, cut), list, NOW))).toMatch(/^(DOC_MALFORMED|DOC_WRONG_TYPE|CONSENSUS_TOO_FEW_SIGNATURES)$/);
    }
    expect(code(() => UncheckedConsensus.parse(Buffer.alloc(LIMITS.consensusBytes + 1)))).toBe('DOC_TOO_LARGE');
  });

  it('refuses relays out of order even when signed (not canonical)', () => {
    const m = decodeConsensus(computed.content);
    const ids = Buffer.from(m.identities);
    ids.copy(m.identities, 0, 32, 64);
    ids.copy(m.identities, 32, 0, 32);
    const body = makeBody(DocType.CONSENSUS, PS, PS + 3 * PERIOD * 1000, encodeConsensus(m));
    expect(code(() => verifyConsensus(signAll(body, auths), list, NOW))).toBe('CONSENSUS_MALFORMED');
    // SPEC.md §6.7.2: the order is a decoding rule, so decoding alone refuses it: unsigned, or
    // before its window, the answer is the same CONSENSUS_MALFORMED.
    expect(code(() => UncheckedConsensus.parse(encodeEnvelope({ body, signatures: [], certificates: [] })))).toBe('CONSENSUS_MALFORMED');
    expect(code(() => verifyConsensus(signAll(body, auths), list, PS - 10 * PERIOD * 1000))).toBe('CONSENSUS_MALFORMED');
  });
});

describe('repeated fields are counted before the full decode (SPEC.md §6.2.5, §6.7.2)', () => {
  const refusal = (f: () => unknown): { code: string; message: string } => {
    try { f(); } catch (e) { if (isBitcloudError(e)) return { code: e.code, message: e.message.replace(`${e.code}: `, '') }; throw e; }
    return { code: 'NO_ERROR', message: '' };
  };
  // A field cut short at the end: the full decode would refuse it as "not valid protobuf", so a
  // refusal naming a count comes from the first pass, before any entry was decoded.
  const cutShort = Buffer.from([0x52, 0x05]);

  it('refuses 8 million empty policies (a 16 MiB consensus) by counting them', () => {
    const bomb = Buffer.concat([Buffer.alloc(LIMITS.consensusBytes - 2, Buffer.from([0x2a, 0x00])), cutShort]);
    expect(refusal(() => decodeConsensus(bomb))).toEqual({ code: 'DOC_MALFORMED', message: `consensus.policies: more than ${LIMITS.consensusRelaysMax + 1} entries` });
    // Once the pass has read identities, the bound is n's, with the reason the check after decoding gives.
    const ids = Buffer.concat([Buffer.from([0x52, 32]), Buffer.alloc(32, 1)]);
    expect(refusal(() => decodeConsensus(Buffer.concat([ids, Buffer.alloc(6, Buffer.from([0x2a, 0x00]))]))))
      .toEqual({ code: 'DOC_MALFORMED', message: 'consensus.policies: more than 2 entries' });
    expect(refusal(() => decodeConsensus(Buffer.concat([ids, Buffer.alloc(6, Buffer.from([0x2a, 0x00])), Buffer.from([0x52, 0x00])]))))
      .toEqual({ code: 'DOC_MALFORMED', message: 'consensus.policies: more than 1 entries' });
  });

  it('counts the rules inside a policy, and packed column values', () => {
    const rules = Buffer.alloc(130, Buffer.from([0x0a, 0x00]));
    expect(refusal(() => decodeConsensus(Buffer.concat([Buffer.from([0x2a, 0x82, 0x01]), rules, cutShort]))))
      .toEqual({ code: 'DOC_MALFORMED', message: `consensus.policies[0].rules: more than ${LIMITS.exitPolicyRules} entries` });
    const ids = Buffer.concat([Buffer.from([0x52, 32]), Buffer.alloc(32, 1)]);
    expect(refusal(() => decodeConsensus(Buffer.concat([ids, Buffer.from([0x6a, 5, 1, 2, 3, 4, 5])]))))
      .toEqual({ code: 'DOC_MALFORMED', message: 'consensus.or_ports: has 5 entries for 1 relays' });
    const column = Buffer.concat([Buffer.from([0x6a, 0x81, 0x80, 0x40]), Buffer.alloc((1 << 20) + 1, 1)]);
    expect(refusal(() => decodeConsensus(Buffer.concat([column, cutShort]))))
      .toEqual({ code: 'DOC_MALFORMED', message: `consensus.or_ports: more than ${LIMITS.consensusRelaysMax} entries` });
  });

  it('refuses too many vote entries and envelope signatures by counting them', () => {
    const entries = Buffer.alloc(2 * (LIMITS.voteEntriesMax + 1), Buffer.from([0x22, 0x00]));
    expect(refusal(() => decodeVote(Buffer.concat([entries, cutShort]))))
      .toEqual({ code: 'DOC_MALFORMED', message: `vote.entries: more than ${LIMITS.voteEntriesMax} entries` });
    const sigs = Buffer.alloc(2 * (LIMITS.maxSignatures + 1), Buffer.from([0x12, 0x00]));
    expect(refusal(() => decodeEnvelope(Buffer.concat([sigs, cutShort]), LIMITS.consensusBytes)))
      .toEqual({ code: 'DOC_MALFORMED', message: `envelope.signatures: more than ${LIMITS.maxSignatures} entries` });
  });

  it('a consensus inside its bounds still decodes', () => {
    const two = [relay(1), relay(2, { exit: true })];
    const c = computeConsensus(auths.map((a) => vote(a, two.map((d) => ({ d })))), params);
    expect(decodeConsensus(c.content).identities.length).toBe(64);
  });
});
