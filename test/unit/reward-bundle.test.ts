// SPEC.md §8.7.3, §8.7.5: the chain bundle codec (GET /bitcloud/rewards) and the certificate-based
// verifier: which signatures count, and how certificate windows apply to old blocks.
import { afterEach, describe, it, expect, vi } from 'vitest';
import fc from 'fast-check';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import * as certificate from '../../src/dir/certificate';
import {
  certifiedRewardAuthorities, MAX_PENDING_CERTIFICATES, MAX_PENDING_CERTIFICATES_PER_KEY, MAX_SEEN_CERTIFICATES, MAX_UNNAMED_CERTIFICATES_PER_IDENTITY, REWARD_SIGNING_SPAN_PERIODS, RewardCertificateSet,
} from '../../src/dir/reward-authorities';
import {
  decodeRewardChainBundle, encodeRewardChainBundle, encodeSignedRewardBlock, nextRewardBlock, signRewardBlock, verifyChain,
  type ChainTip,
} from '../../src/bandwidth/reward-chain';
import { rewardBlockHeader, rewardPageBytes, splitRewardChainBundle, splitSignedRewardBlock } from '../../src/wire/reward-block';
import { codeOf, onlyBitcloudErrors } from '../helpers/errors';

const P = 10; // seconds
const fp = (n: number) => n.toString(16).padStart(64, '0');
const ids = [1, 2, 3].map((i) => ed25519FromSeed(Buffer.alloc(32, i)));
const sks = [1, 2, 3].map((i) => ed25519FromSeed(Buffer.alloc(32, 40 + i)));
const configured = ids.map((k) => ({ identity: k.publicKey }));
// Certificates valid for epochs 100..199 (ms window).
const cert = (i: number, fromEpoch = 100, toEpoch = 200) => certificate.makeKeyCertificate(ids[i], sks[i].publicKey, fromEpoch * P * 1000, toEpoch * P * 1000);

function chain(n: number, who = [0, 1, 2], firstEpoch = 120): Buffer[] {
  const out: Buffer[] = [];
  let tip: ChainTip | null = null;
  for (let h = 0; h < n; h++) {
    const { block, body, hash } = nextRewardBlock(tip, firstEpoch + h, new Map([[fp(1), 5 + h], [fp(2), 7]]));
    out.push(encodeSignedRewardBlock(body, who.map((i) => signRewardBlock(body, ids[i].publicKey, sks[i]))));
    tip = { height: block.height, hash, epoch: block.epoch };
  }
  return out;
}

describe('reward chain bundle codec (SPEC §8.7.5)', () => {
  it('round-trips certificates, blocks and the chain length', () => {
    const blocks = chain(3);
    const certs = [cert(0), cert(1)];
    const raw = encodeRewardChainBundle(7, certs, blocks);
    expect(raw.subarray(0, 4).toString('ascii')).toBe('BCRW');
    expect(raw[4]).toBe(1);
    const b = decodeRewardChainBundle(raw);
    expect(b.chainLength).toBe(7);
    expect(b.certificates.map((c) => c.toString('hex'))).toEqual(certs.map((c) => c.toString('hex')));
    expect(b.blocks.map((x) => x.block.height)).toEqual([0, 1, 2]);
    expect(b.blocks[2].signatures).toHaveLength(3);
    expect(encodeRewardChainBundle(7, b.certificates, blocks).equals(raw)).toBe(true);
  });

  it('encodes an empty chain as zero blocks', () => {
    const b = decodeRewardChainBundle(encodeRewardChainBundle(0, [], []));
    expect(b).toEqual({ chainLength: 0, certificates: [], blocks: [] });
  });

  it('refuses truncation, bad magic, bad version, lying counts and trailing bytes with REWARD_MALFORMED', () => {
    const raw = encodeRewardChainBundle(2, [cert(0)], chain(2));
    for (let cut = 0; cut < raw.length; cut += 7) expect(codeOf(() => decodeRewardChainBundle(raw.subarray(0, cut)))).toBe('REWARD_MALFORMED');
    const bad = (f: (b: Buffer) => void) => { const c = Buffer.from(raw); f(c); return codeOf(() => decodeRewardChainBundle(c)); };
    expect(bad((b) => { b[0] = 0x58; })).toBe('REWARD_MALFORMED');
    expect(bad((b) => { b[4] = 2; })).toBe('REWARD_MALFORMED');
    expect(bad((b) => { b.writeUInt32BE(5000, 13); })).toBe('REWARD_MALFORMED'); // certificate count beyond the limit
    expect(bad((b) => { b.writeUInt32BE(0xffffffff, 17); })).toBe('REWARD_MALFORMED'); // first certificate length
    expect(codeOf(() => decodeRewardChainBundle(Buffer.concat([raw, Buffer.from([0])])))).toBe('REWARD_MALFORMED');
    // A block count far beyond what the bytes can hold is refused before looping.
    const empty = encodeRewardChainBundle(0, [], []);
    empty.writeUInt32BE(0xffffffff, empty.length - 4);
    expect(codeOf(() => decodeRewardChainBundle(empty))).toBe('REWARD_MALFORMED');
  });

  it('splits a bundle of a million 9-byte block entries without an object per entry (SPEC §8.7.5)', () => {
    // A hostile source's page: 1 000 000 entries `len = 5 | body_len = 0 | n = 0`, within 64 MiB.
    const n = 1_000_000;
    const head = encodeRewardChainBundle(n, [], []);
    const raw = Buffer.alloc(head.length + n * 9);
    head.copy(raw);
    raw.writeUInt32BE(n, head.length - 4);
    for (let i = 0; i < n; i++) raw.writeUInt32BE(5, head.length + i * 9);
    const before = process.memoryUsage().heapUsed;
    const bundle = splitRewardChainBundle(raw);
    const grown = process.memoryUsage().heapUsed - before;
    expect(bundle.blocks.length).toBe(n);
    expect(rewardPageBytes(bundle.blocks)).toBe(5 * n);
    expect([...bundle.blocks.at(n - 1)!]).toEqual([0, 0, 0, 0, 0]);
    expect(bundle.blocks.at(n)).toBeUndefined();
    // An object per entry (a copy or a view, ~100 bytes of heap each) would be ~100 MiB held here.
    expect(grown).toBeLessThan(32 * 1024 * 1024);
    // The reader refuses the first block, as before.
    expect(codeOf(() => rewardBlockHeader(splitSignedRewardBlock(bundle.blocks.at(0)!).body))).toBe('REWARD_MALFORMED');
  }, 60_000);

  it('passes on the block codes: a block whose sum is off is REWARD_SUM_MISMATCH', () => {
    const blocks = chain(1);
    const b = Buffer.from(blocks[0]);
    b.writeBigUInt64BE(b.readBigUInt64BE(4 + 61 + 32) + 1n, 4 + 61 + 32); // first allocation + 1
    expect(codeOf(() => decodeRewardChainBundle(encodeRewardChainBundle(1, [], [b])))).toBe('REWARD_SUM_MISMATCH');
  });

  it('throws only typed errors on any input (property)', () => {
    const raw = encodeRewardChainBundle(2, [cert(0)], chain(2));
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (x) => onlyBitcloudErrors(() => decodeRewardChainBundle(x))));
    fc.assert(fc.property(fc.nat(raw.length - 1), fc.integer({ min: 0, max: 255 }), (i, v) => {
      const c = Buffer.from(raw);
      c[i] = v;
      return onlyBitcloudErrors(() => decodeRewardChainBundle(c));
    }));
  });
});

describe('certified reward authorities (SPEC §8.7.3)', () => {
  const verifier = (certs: Buffer[]) => certifiedRewardAuthorities(configured, certs, { periodSeconds: P, skewMs: 0 });

  it('counts signatures through certificates of configured authorities', () => {
    const s = verifyChain(chain(3), verifier([cert(0), cert(1), cert(2)]));
    expect(s.height).toBe(2);
    // Two of three certified is still a majority.
    expect(verifyChain(chain(3), verifier([cert(0), cert(1)])).height).toBe(2);
  });

  it('ignores signatures without a certificate: below the majority is REWARD_TOO_FEW_SIGNATURES', () => {
    expect(codeOf(() => verifyChain(chain(2), verifier([cert(0)])))).toBe('REWARD_TOO_FEW_SIGNATURES');
  });

  it('does not count a signature made directly with an identity key (as for the consensus, SPEC §6.8)', () => {
    const { body } = nextRewardBlock(null, 120, new Map([[fp(1), 1]]));
    const direct = encodeSignedRewardBlock(body, [0, 1].map((i) => signRewardBlock(body, ids[i].publicKey, ids[i])));
    // Even a certificate that "certifies" the identity key itself does not make it count.
    const selfCert = certificate.makeKeyCertificate(ids[0], ids[0].publicKey, 0, 300 * P * 1000);
    expect(codeOf(() => verifyChain([direct], verifier([selfCert, cert(0), cert(1)])))).toBe('REWARD_TOO_FEW_SIGNATURES');
  });

  it('ignores certificates of identities that are not configured', () => {
    const v = certifiedRewardAuthorities(configured.slice(0, 2), [cert(0), cert(1), cert(2)], { periodSeconds: P });
    expect(v.configured).toBe(2);
    expect(v.certificateFor(ids[2].publicKey, sks[2].publicKey, 120)).toBeNull();
    expect(v.certificateFor(ids[0].publicKey, sks[0].publicKey, 120)).not.toBeNull();
  });

  it('a certificate counts for a block when its window meets [e·P, (e+4)·P]: old blocks stay valid after expiry, keys certified later do not vouch for earlier epochs', () => {
    const v = verifier([cert(0, 100, 200)]);
    const at = (e: number) => v.certificateFor(ids[0].publicKey, sks[0].publicKey, e) !== null;
    expect(at(150)).toBe(true);
    expect(at(200)).toBe(true); // window ends at the epoch's start
    expect(at(201)).toBe(false); // expired before the epoch began
    expect(at(100 - REWARD_SIGNING_SPAN_PERIODS)).toBe(true); // certified during the signing span
    expect(at(100 - REWARD_SIGNING_SPAN_PERIODS - 1)).toBe(false); // certified only after the block was signed
    // Verification does not depend on the wall clock: the same chain verifies "years later".
    expect(verifyChain(chain(2, [0, 1, 2], 150), verifier([cert(0), cert(1), cert(2)])).height).toBe(1);
  });

  describe('certificates are checked only when a signature names them (SPEC §8.7.5)', () => {
    afterEach(() => { vi.restoreAllMocks(); });
    const forger = ed25519FromSeed(Buffer.alloc(32, 99));
    /** Decodes as a certificate of configured identity `i` for `signingKey`, but `i` never signed it. */
    const forged = (i: number, signingKey: Buffer) => certificate.makeKeyCertificate({ publicKey: ids[i].publicKey, secretKey: forger.secretKey }, signingKey, 100 * P * 1000, 200 * P * 1000);
    const key = (n: number) => { const k = Buffer.alloc(32, 0xee); k.writeUInt32BE(n); return k; };

    it('1024 forged certificates of configured identities for keys no block names cost no signature check', () => {
      const set = new RewardCertificateSet(configured, { periodSeconds: P, skewMs: 0 });
      const bundle = [...Array.from({ length: 1024 }, (_, n) => forged(n % 3, key(n))), cert(0), cert(1), cert(2)];
      const checks = vi.spyOn(certificate, 'verifyKeyCertificate');
      for (const c of bundle) set.add(c);
      for (const c of bundle) set.add(c); // the next page repeats them
      expect(verifyChain(chain(3), set.verifier).height).toBe(2);
      expect(checks).toHaveBeenCalledTimes(3); // one per (identity, signing key) pair the signatures name, once
    });

    it('a forged certificate for a pair a signature names is checked and does not vouch; the real one beside it does', () => {
      const set = new RewardCertificateSet(configured, { periodSeconds: P, skewMs: 0 });
      for (const c of [forged(0, sks[0].publicKey), forged(2, sks[2].publicKey), cert(0)]) set.add(c);
      expect(set.verifier.certificateFor(ids[2].publicKey, sks[2].publicKey, 120)).toBeNull();
      expect(codeOf(() => verifyChain(chain(1), set.verifier))).toBe('REWARD_TOO_FEW_SIGNATURES');
      set.add(cert(1)); // a later page brings the missing certificate
      expect(verifyChain(chain(1), set.verifier).height).toBe(0);
      expect(set.verifier.certificateFor(ids[0].publicKey, sks[0].publicKey, 120)?.raw.equals(cert(0))).toBe(true);
    });

    it('a pair whose waiting list is full is checked on the next add: forged certificates of a failing source never crowd out the real ones of the next', () => {
      const set = new RewardCertificateSet(configured, { periodSeconds: P, skewMs: 0 });
      // Distinct forged envelopes for the real pairs of authorities 0 and 1 (different windows).
      const forgeries = [0, 1].flatMap((i) => Array.from({ length: MAX_PENDING_CERTIFICATES_PER_KEY }, (_, n) =>
        certificate.makeKeyCertificate({ publicKey: ids[i].publicKey, secretKey: forger.secretKey }, sks[i].publicKey, 100 * P * 1000, (200 + n) * P * 1000)));
      for (const c of forgeries) set.add(c);
      const checks = vi.spyOn(certificate, 'verifyKeyCertificate');
      const taken = [cert(0), cert(1), cert(2)].map((c) => set.add(c));
      expect(verifyChain(chain(3), set.verifier).height).toBe(2);
      expect(taken).toEqual([true, true, true]);
      for (const c of forgeries) expect(set.add(c)).toBe(false); // seen: a forged envelope costs at most one check
      expect(checks.mock.calls.length).toBeLessThanOrEqual(forgeries.length + 3);
    });

    it('the envelopes remembered as seen are bounded: 100,000 distinct junk envelopes leave it within its cap', () => {
      const set = new RewardCertificateSet(configured, { periodSeconds: P, skewMs: 0 });
      for (let n = 0; n < 100_000; n++) {
        const junk = Buffer.alloc(64, 0xab);
        junk.writeUInt32BE(n);
        expect(set.add(junk)).toBe(false);
      }
      expect(set.remembered).toBeLessThanOrEqual(MAX_SEEN_CERTIFICATES);
      for (const c of [cert(0), cert(1), cert(2)]) expect(set.add(c)).toBe(true);
      for (const c of [cert(0), cert(1), cert(2)]) expect(set.add(c)).toBe(false);
      expect(verifyChain(chain(3), set.verifier).height).toBe(2);
    });

    it('past the cap of envelopes remembered, a new one is not remembered and a repeat of one waiting or kept is still dropped', () => {
      const set = new RewardCertificateSet(configured, { periodSeconds: P, skewMs: 0 });
      // Envelopes whose layout reads (a certificate of an identity not configured, its signature bytes varied).
      const stranger = certificate.makeKeyCertificate(forger, key(1), 100 * P * 1000, 200 * P * 1000);
      for (let n = 0; n < MAX_SEEN_CERTIFICATES + 2000; n++) {
        const c = Buffer.from(stranger);
        c.writeUInt32BE(n, c.length - 4);
        expect(set.add(c)).toBe(false);
      }
      expect(set.remembered).toBe(MAX_SEEN_CERTIFICATES);
      const waiting = forged(0, key(2)); // a pair no block names: it waits unchecked
      expect([set.add(waiting), set.add(waiting)]).toEqual([true, false]);
      expect(set.unchecked).toBe(1);
      for (const c of [cert(0), cert(1), cert(2)]) expect(set.add(c)).toBe(true);
      for (const c of [cert(0), cert(1), cert(2)]) expect(set.add(c)).toBe(false);
      expect(verifyChain(chain(3), set.verifier).height).toBe(2);
      expect(set.size).toBe(3);
      for (const c of [cert(0), cert(1), cert(2)]) expect(set.add(c)).toBe(false); // kept now
      expect(set.size).toBe(3);
      expect(set.remembered).toBe(MAX_SEEN_CERTIFICATES);
    });

    it('the unchecked envelopes are bounded in total: forgeries naming random signing keys are checked on add beyond the cap', () => {
      const set = new RewardCertificateSet(configured, { periodSeconds: P, skewMs: 0 });
      for (let n = 0; n < 10_000; n++) {
        set.add(forged(n % 3, key(n)));
        expect(set.unchecked).toBeLessThanOrEqual(MAX_PENDING_CERTIFICATES);
      }
      expect(set.unchecked).toBe(MAX_PENDING_CERTIFICATES);
      expect(set.size).toBe(0);
      for (const c of [cert(0), cert(1), cert(2)]) set.add(c);
      expect(verifyChain(chain(3), set.verifier).height).toBe(2);
    });

    it('the checked certificates kept are bounded per identity: a configured authority signing 10,000 valid ones keeps those a block named and at most 64 others', () => {
      const set = new RewardCertificateSet(configured, { periodSeconds: P, skewMs: 0 });
      set.add(cert(0));
      set.add(cert(1));
      expect(verifyChain(chain(2, [0, 1]), set.verifier).height).toBe(1); // names the real certificates of 0 and 1
      // Authority 0 certifies 10,000 fresh signing keys with its own identity key: every one verifies.
      for (let n = 0; n < 10_000; n++) set.add(certificate.makeKeyCertificate(ids[0], key(n), 100 * P * 1000, 200 * P * 1000));
      expect(set.size).toBeLessThanOrEqual(2 + MAX_UNNAMED_CERTIFICATES_PER_IDENTITY);
      set.add(cert(2)); // another identity's certificate is still taken
      expect(verifyChain(chain(3), set.verifier).height).toBe(2);
    });

    it('a real certificate dropped by the bound is taken again when a source sends it again, so a flood of an authority\'s other certificates cannot make a later block fail', () => {
      const set = new RewardCertificateSet(configured, { periodSeconds: P, skewMs: 0 });
      for (let n = 0; n < MAX_PENDING_CERTIFICATES; n++) set.add(forged(0, key(n))); // from now on each envelope is checked on add
      expect(set.add(cert(1))).toBe(true); // authority 1's real certificate, kept, named by no block yet
      // A hostile source relays 65 other genuine certificates of authority 1 (public, from elsewhere):
      // the bound drops the unnamed ones, the real one among them.
      for (let n = 0; n <= MAX_UNNAMED_CERTIFICATES_PER_IDENTITY; n++) set.add(certificate.makeKeyCertificate(ids[1], key(50_000 + n), 100 * P * 1000, 200 * P * 1000));
      set.add(cert(0));
      expect(set.add(cert(1))).toBe(true); // an honest source sends it again: taken again
      expect(verifyChain(chain(2, [0, 1]), set.verifier).height).toBe(1);
    });
  });

  it('a certified key whose signature does not verify fails the block (REWARD_BAD_SIGNATURE)', () => {
    const blocks = chain(1);
    const b = Buffer.from(blocks[0]);
    b[b.length - 1] ^= 1; // last byte of the last signature
    expect(codeOf(() => verifyChain([b], verifier([cert(0), cert(1), cert(2)])))).toBe('REWARD_BAD_SIGNATURE');
  });
});
