// SPEC.md §6.4.1 / §6.5 / §6.7: identity proof parameters travel in votes and the consensus; the
// consensus carries the low median of the votes' parameters when a majority of all authorities
// voted them; a relay's proof keeper mines at the consensus's parameters.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, it, expect, afterEach } from 'vitest';
import { sha256 } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import {
  DEFAULT_POW_PARAMS, IdentityProofKeeper, LOCAL_POW_PARAMS, PROOF_FILE, checkIdentityProofWork, mineIdentityProof, type PowParams,
} from '../../src/dir/identity-pow';
import { LIMITS, decodeConsensus, decodeVote, encodeConsensus, encodeVote, type ConsensusMsg } from '../../src/wire/docs';
import { DocType, openEnvelope } from '../../src/wire/envelope';
import { powVote } from '../../directory/compute';
import type { VoteInput } from '../../directory/vote';
import { CONSENSUS_FILE } from '../../directory/authority';
import { E, consensusFor, epochStart, makeFixture, makeRelay, makeSigner, voteOf } from './dirauth-measure-fixture';

const codeOf = (f: () => unknown): string => {
  try { f(); } catch (e) { if (isBitcloudError(e)) return e.code; throw e; }
  return 'NO_ERROR';
};
const pp = (memoryKib: number, ops: number, difficulty: number, anchorPeriods: number): PowParams => ({ memoryKib, ops, difficulty, anchorPeriods });
const vote = (identityPow?: PowParams): VoteInput => ({ authority: Buffer.alloc(32), knownFlags: 0, entries: [], identityPow });

describe('identity proof parameters in the consensus (SPEC.md §6.4.1, §6.7)', () => {
  it('each field is the low median of the votes that carry parameters, present only with a majority of all authorities', () => {
    const a = pp(65536, 3, 10, 24), b = pp(131072, 2, 12, 48), c = pp(8192, 1, 1, 24);
    expect(powVote([vote(a), vote(b), vote(c)], 2)).toEqual(pp(65536, 2, 10, 24));
    expect(powVote([vote(a), vote(b), vote()], 2)).toEqual(pp(65536, 2, 10, 24));
    // One of five configured authorities voting parameters decides nothing.
    expect(powVote([vote(b), vote(), vote()], 3)).toBeUndefined();
    expect(powVote([], 1)).toBeUndefined();
  });

  it('travel in the vote and the consensus wire form; absent stays absent; out of range is DOC_MALFORMED', () => {
    const v = { authority: Buffer.alloc(32, 1), periodSeconds: 60, knownFlags: 0x7f, entries: [], provenEpoch: 0 };
    expect(decodeVote(encodeVote({ ...v, identityPow: LOCAL_POW_PARAMS })).identityPow).toEqual(LOCAL_POW_PARAMS);
    expect(decodeVote(encodeVote(v)).identityPow).toBeUndefined();
    expect(codeOf(() => decodeVote(encodeVote({ ...v, identityPow: pp(4, 1, 1, 24) })))).toBe('DOC_MALFORMED');
    expect(codeOf(() => decodeVote(encodeVote({ ...v, identityPow: pp(8192, 1, 40, 24) })))).toBe('DOC_MALFORMED');
    const signer = makeSigner();
    const relays = [makeRelay(1), makeRelay(2)];
    const withPow = consensusFor(signer, E, [{ ...voteOf(signer, relays), identityPow: pp(16384, 2, 4, 12) }]);
    expect(withPow.info.identityPow).toEqual(pp(16384, 2, 4, 12));
    const without = consensusFor(signer, E, [voteOf(signer, relays)]);
    expect(without.info.identityPow).toBeNull();
    const base = decodeConsensus(openEnvelope(without.raw, DocType.CONSENSUS, LIMITS.consensusBytes).content);
    const m: ConsensusMsg = decodeConsensus(encodeConsensus({ ...base, identityPow: pp(8, 16, 32, 720) }));
    expect(m.identityPow).toEqual(pp(8, 16, 32, 720));
    expect(codeOf(() => decodeConsensus(encodeConsensus({ ...m, identityPow: pp(8, 17, 1, 24) })))).toBe('DOC_MALFORMED');
  });
});

describe('an authority checks against the consensus parameters (SPEC.md §6.4.1)', () => {
  it('its own configuration until it holds a consensus with parameters, then the consensus\'s', async () => {
    const fx = makeFixture();
    try {
      const { authority } = fx.makeAuthority({ identityPow: 'default' });
      expect(authority.powParams).toEqual(DEFAULT_POW_PARAMS);
      const c = consensusFor(fx.signer, E, [{ ...voteOf(fx.signer, fx.relays.slice(0, 2)), identityPow: LOCAL_POW_PARAMS }]);
      fs.writeFileSync(path.join(fx.dir, CONSENSUS_FILE), c.raw);
      fx.clock.now = epochStart(E) + 1000;
      authority.start();
      try {
        expect(authority.published?.info.identityPow).toEqual(LOCAL_POW_PARAMS);
        expect(authority.powParams).toEqual(LOCAL_POW_PARAMS);
      } finally {
        await authority.stop();
      }
    } finally {
      fx.cleanup();
    }
  });
});

describe('a relay mines at the consensus parameters (SPEC.md §6.4.1)', () => {
  const dirs: string[] = [];
  afterEach(() => { for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true }); });

  it('uses its configuration without them, the consensus\'s with them, and re-mines a proof above 4× the new minimum', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-pow-keeper-'));
    dirs.push(dataDir);
    const identity = Buffer.alloc(32, 7);
    const anchor = { validAfter: 1_800_000_000_000, digest: sha256(Buffer.from('c')), periodSeconds: 3600 };
    let consensus: PowParams | null = null;
    const keeper = new IdentityProofKeeper({
      identity, params: pp(64 * 1024, 1, 1, 24), consensusParams: () => consensus, dataDir, log: pino({ level: 'silent' }),
      anchors: { current: () => anchor }, now: () => anchor.validAfter + 1000,
    });
    const first = await keeper.proof();
    expect([first.memoryKib, first.ops, first.difficulty]).toEqual([64 * 1024, 1, 1]);
    expect(await keeper.proof()).toBe(first);
    consensus = LOCAL_POW_PARAMS; // 8 MiB: the held 64 MiB proof is more than 4× that
    expect(keeper.params()).toEqual(LOCAL_POW_PARAMS);
    const second = await keeper.proof();
    expect([second.memoryKib, second.ops, second.difficulty]).toEqual([LOCAL_POW_PARAMS.memoryKib, LOCAL_POW_PARAMS.ops, LOCAL_POW_PARAMS.difficulty]);
    keeper.stop();
  });

  it('re-mines on the newest consensus when an authority refuses the held proof as stale (it missed that consensus)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-pow-keeper-'));
    dirs.push(dataDir);
    const first = { validAfter: 1_800_000_000_000, digest: sha256(Buffer.from('a')), periodSeconds: 5 };
    let current = first;
    const keeper = new IdentityProofKeeper({
      identity: Buffer.alloc(32, 9), params: LOCAL_POW_PARAMS, dataDir, log: pino({ level: 'silent' }),
      anchors: { current: () => current }, now: () => current.validAfter + 1000,
    });
    const held = await keeper.proof();
    expect(held.anchorValidAfter).toBe(first.validAfter);
    // The next consensus arrives; the held proof is young enough to keep using...
    current = { validAfter: first.validAfter + 5000, digest: sha256(Buffer.from('b')), periodSeconds: 5 };
    expect(await keeper.proof()).toBe(held);
    // ...until an authority that never published the first consensus refuses it.
    keeper.refusedAsStale();
    const fresh = await keeper.proof();
    expect(fresh.anchorValidAfter).toBe(current.validAfter);
    expect(fresh.anchorDigest.equals(current.digest)).toBe(true);
    // Refused again while already on the newest anchor: nothing newer to mine on, the proof stays.
    keeper.refusedAsStale();
    expect(await keeper.proof()).toBe(fresh);
    keeper.stop();
  });

  it('checks the proof kept in its data directory once at start: a wrong nonce or a malformed field is discarded and a new proof mined; a good one is used as is', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-pow-keeper-'));
    dirs.push(dataDir);
    const identity = Buffer.alloc(32, 5);
    const anchor = { validAfter: 1_800_000_000_000, digest: sha256(Buffer.from('d')), periodSeconds: 3600 };
    const good = await mineIdentityProof(identity, anchor, LOCAL_POW_PARAMS);
    let wrong = good.nonce + 1;
    for (;;) { try { await checkIdentityProofWork(identity, { ...good, nonce: wrong }); wrong++; } catch { break; } }
    const file = (f: Record<string, unknown>) => fs.writeFileSync(path.join(dataDir, PROOF_FILE), JSON.stringify({
      identity: identity.toString('hex'), anchorValidAfter: good.anchorValidAfter, anchorDigest: good.anchorDigest.toString('hex'),
      memoryKib: good.memoryKib, ops: good.ops, difficulty: good.difficulty, nonce: good.nonce, ...f,
    }));
    const keeper = () => new IdentityProofKeeper({
      identity, params: LOCAL_POW_PARAMS, dataDir, log: pino({ level: 'silent' }),
      anchors: { current: () => anchor }, now: () => anchor.validAfter + 1000,
    });
    for (const bad of [{ nonce: wrong }, { nonce: 'x' }, { anchorDigest: 'ab'.repeat(16) }, { difficulty: -1 }, { memoryKib: 'many' }]) {
      file(bad);
      const k = keeper();
      const p = await k.proof();
      k.stop();
      expect(p.nonce).not.toBe(wrong);
      expect(p.anchorDigest.length).toBe(32);
      expect([p.memoryKib, p.ops, p.difficulty]).toEqual([LOCAL_POW_PARAMS.memoryKib, LOCAL_POW_PARAMS.ops, LOCAL_POW_PARAMS.difficulty]);
      await checkIdentityProofWork(identity, p);
    }
    file({});
    const k = keeper();
    expect(await k.proof()).toEqual(good);
    k.stop();
  });
});
