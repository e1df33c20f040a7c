// SPEC.md §6.5, §6.7.1, §6.7.2: consensus parameters. Votes carry the authority's configured
// `consensusParams`; the consensus carries a name when a majority of ALL configured authorities voted
// it, with the low median of their values; a network whose authorities set none computes the same
// bytes as before the field existed.
import { describe, it, expect } from 'vitest';
import { isBitcloudError } from '../../src/errors';
import { parseAuthorityList } from '../../src/dir/authorities';
import { LIMITS, decodeConsensus, decodeVote, encodeConsensus, encodeVote, type ParamMsg } from '../../src/wire/docs';
import { DocType, openEnvelope } from '../../src/wire/envelope';
import { computeConsensus, paramsVote } from '../../directory/compute';
import { buildVote, verifyVote, type VoteInput } from '../../directory/vote';
import { parseAuthorityConfig } from '../../directory/config';
import { E, P, consensusFor, epochStart, makeFixture, makeRelay, makeSigner, voteOf } from './dirauth-measure-fixture';

const codeOf = (f: () => unknown): string => {
  try { f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'NO_ERROR';
};
const vote = (params?: ParamMsg[]): VoteInput => ({ authority: Buffer.alloc(32), knownFlags: 0, entries: [], ...(params ? { params } : {}) });
const p = (name: string, value: number): ParamMsg => ({ name, value });

describe('consensus parameters in the consensus (SPEC.md §6.7.1)', () => {
  it('a name is present iff a majority of ALL configured authorities voted it, with the low median of their values, sorted by name', () => {
    const votes = [
      vote([p('a-b', 7), p('funding-v2', 1), p('zz', 3)]),
      vote([p('funding-v2', 0), p('zz', 9)]),
      vote([p('funding-v2', 1)]),
      vote(),
      vote(),
    ];
    // N = 5: a majority is 3. funding-v2: three votes (0, 1, 1) → low median 1; zz: two votes; a-b: one.
    expect(paramsVote(votes, 3)).toEqual([p('funding-v2', 1)]);
    // N = 3: a majority is 2. zz: (3, 9) → low median 3.
    expect(paramsVote(votes, 2)).toEqual([p('funding-v2', 1), p('zz', 3)]);
    // Low median of (0, 1) is 0: an even split does not switch a parameter on.
    expect(paramsVote([vote([p('funding-v2', 1)]), vote([p('funding-v2', 0)])], 2)).toEqual([p('funding-v2', 0)]);
    expect(paramsVote([vote([p('x', 1)])], 2)).toEqual([]);
    expect(paramsVote([], 1)).toEqual([]);
  });

  it('travels in the signed consensus: VerifiedConsensus.params; absent, the body is byte-identical to one from votes without params', () => {
    const signer = makeSigner();
    const relays = [makeRelay(1), makeRelay(2)];
    const plain = voteOf(signer, relays);
    const withParams = consensusFor(signer, E, [{ ...plain, params: [p('funding-v2', 1), p('other', 12)] }]);
    expect([...withParams.info.params]).toEqual([['funding-v2', 1], ['other', 12]]);
    const content = decodeConsensus(openEnvelope(withParams.raw, DocType.CONSENSUS, LIMITS.consensusBytes).content);
    expect(content.params).toEqual([p('funding-v2', 1), p('other', 12)]);

    const without = consensusFor(signer, E, [plain]);
    expect(without.info.params.size).toBe(0);
    const at = { totalAuthorities: 1, periodStart: epochStart(E), periodSeconds: P, lifetimePeriods: 3 };
    const base = computeConsensus([plain], at);
    // Votes carrying an empty list, or params short of a majority, compute the very same bytes.
    expect(computeConsensus([{ ...plain, params: [] }], at).body.equals(base.body)).toBe(true);
    const other = { ...voteOf(makeSigner(), relays), params: [p('funding-v2', 1)] };
    const threeAuthorities = { ...at, totalAuthorities: 3 };
    const withOther = computeConsensus([plain, other], threeAuthorities);
    const withoutOther = computeConsensus([plain, { ...other, params: undefined }], threeAuthorities);
    expect(withOther.body.equals(withoutOther.body)).toBe(true);
    // No field 28 in a body without params: the content is the encoding of the message without it.
    const { params: none, ...rest } = decodeConsensus(base.content);
    expect(none).toEqual([]);
    expect(encodeConsensus(rest).equals(base.content)).toBe(true);
  });
});

describe('consensus parameters on the wire (SPEC.md §6.5, §6.7.2)', () => {
  const v = { authority: Buffer.alloc(32, 1), periodSeconds: 60, knownFlags: 0x7f, entries: [], provenEpoch: 0 };
  const malformed: [string, ParamMsg[]][] = [
    ['unsorted', [p('b', 1), p('a', 1)]],
    ['repeated', [p('a', 1), p('a', 2)]],
    ['an upper-case name', [p('Funding', 1)]],
    ['a name of 33 characters', [p('a'.repeat(33), 1)]],
    ['an empty name', [p('', 1)]],
    ['a value above 2^31 − 1', [p('a', 2 ** 31)]],
    ['33 of them', Array.from({ length: 33 }, (_, i) => p(`p${String(i).padStart(2, '0')}`, 1))],
  ];

  it('a vote carries its params; absent stays absent; malformed params are DOC_MALFORMED', () => {
    expect(decodeVote(encodeVote({ ...v, params: [p('funding-v2', 1), p('x', 2 ** 31 - 1)] })).params).toEqual([p('funding-v2', 1), p('x', 2 ** 31 - 1)]);
    expect(decodeVote(encodeVote({ ...v, params: [p('zero', 0)] })).params).toEqual([p('zero', 0)]);
    expect(decodeVote(encodeVote(v)).params).toBeUndefined();
    for (const [why, params] of malformed) expect(codeOf(() => decodeVote(encodeVote({ ...v, params }))), why).toBe('DOC_MALFORMED');
  });

  it('a consensus with malformed params is DOC_MALFORMED', () => {
    const signer = makeSigner();
    const c = consensusFor(signer, E, [voteOf(signer, [makeRelay(1)])]);
    const base = decodeConsensus(openEnvelope(c.raw, DocType.CONSENSUS, LIMITS.consensusBytes).content);
    expect(base.params).toEqual([]);
    expect(decodeConsensus(encodeConsensus({ ...base, params: [p('funding-v2', 1)] })).params).toEqual([p('funding-v2', 1)]);
    for (const [why, params] of malformed) expect(codeOf(() => decodeConsensus(encodeConsensus({ ...base, params }))), why).toBe('DOC_MALFORMED');
  });

  it('a signed vote keeps its params through verifyVote', () => {
    const signer = makeSigner();
    const list = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const r = makeRelay(1);
    const entries = [{ descriptorRaw: r.descriptor.raw, identity: r.descriptor.identity, flags: 3, measured: 10 }];
    const ps = epochStart(E);
    const raw = buildVote(signer, ps, P, 0x7f, entries, 0, undefined, undefined, [p('funding-v2', 1)]);
    expect(verifyVote(raw, list, { periodStart: ps, periodSeconds: P }).params).toEqual([p('funding-v2', 1)]);
  });
});

describe('the authority\'s consensusParams (SPEC.md §6.5)', () => {
  const FP = 'ab'.repeat(32);
  const good = (extra: Record<string, unknown> = {}) => ({
    identity: FP, dataDir: 'd', listen: { port: 7000 }, period: 15,
    authorities: [{ name: 'a', identity: FP, address: '127.0.0.1:7000' }], ...extra,
  });
  const message = (f: () => unknown): string => { try { f(); } catch (e) { return (e as Error).message; } return ''; };

  it('defaults to none; is sorted by name; refuses bad names, values and funding-v2 other than 0 or 1, naming the key', () => {
    expect(parseAuthorityConfig(good(), '/').consensusParams).toEqual([]);
    expect(parseAuthorityConfig(good({ consensusParams: { zz: 5, 'funding-v2': 1 } }), '/').consensusParams).toEqual([p('funding-v2', 1), p('zz', 5)]);
    expect(message(() => parseAuthorityConfig(good({ consensusParams: [] }), '/'))).toMatch(/^CONFIG_INVALID: consensusParams:/);
    expect(message(() => parseAuthorityConfig(good({ consensusParams: { Bad: 1 } }), '/'))).toMatch(/^CONFIG_INVALID: consensusParams\.Bad:/);
    expect(message(() => parseAuthorityConfig(good({ consensusParams: { x: 1.5 } }), '/'))).toMatch(/^CONFIG_INVALID: consensusParams\.x: must be an integer/);
    expect(message(() => parseAuthorityConfig(good({ consensusParams: { x: 2 ** 31 } }), '/'))).toMatch(/^CONFIG_INVALID: consensusParams\.x:/);
    expect(message(() => parseAuthorityConfig(good({ consensusParams: { 'funding-v2': 2 } }), '/'))).toMatch(/^CONFIG_INVALID: consensusParams\.funding-v2: must be between 0 and 1/);
    // A name that is also a property of every object (Object.prototype.constructor) is an ordinary name.
    expect(parseAuthorityConfig(good({ consensusParams: { constructor: 7 } }), '/').consensusParams).toEqual([p('constructor', 7)]);
    const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`p${i}`, 1]));
    expect(message(() => parseAuthorityConfig(good({ consensusParams: many }), '/'))).toMatch(/^CONFIG_INVALID: consensusParams: at most 32/);
  });

  it('the authority\'s vote carries them', async () => {
    const fx = makeFixture();
    try {
      const { authority } = fx.makeAuthority({ consensusParams: { 'funding-v2': 1 } });
      const K = E + 2;
      fx.clock.now = epochStart(K) + (P * 1000) / 4 + 1; // ready to vote at once
      for (const r of fx.relays.slice(0, 2)) authority.store.recordTest(r.descriptor, true, fx.clock.now);
      authority.start();
      try {
        const list = parseAuthorityList([{ name: 'a', identity: fx.signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
        const own = verifyVote(authority.currentVote!.raw, list, { periodStart: epochStart(K), periodSeconds: P });
        expect(own.params).toEqual([p('funding-v2', 1)]);
      } finally {
        await authority.stop();
      }
    } finally {
      fx.cleanup();
    }
  });
});
