// SPEC.md §9.21.7 on an authority: a receipt between a hidden node's registered pseudonym and its
// guard is accepted (§8.4 check 4) and measured as the hidden node's (§8.5): the vote carries the
// node's proven cells and none for the pseudonym. The registration and the receipt survive a
// restart: the registrations are loaded before the stored receipts are re-judged.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ed25519Generate, x25519Generate } from '../../src/crypto/primitives';
import { buildDescriptor, verifyDescriptor } from '../../src/dir/descriptor';
import { hsPeriodOf } from '../../src/crypto/blind';
import { makePseudonymRegistration, sealPseudonymUpload } from '../../src/hidden/pseudonym';
import { E, consensusFor, epochStart, makeFixture, receipt, record, voteOf, type Fixture, type RelayKey } from './dirauth-measure-fixture';

let fx: Fixture;
beforeEach(() => { fx = makeFixture(); });
afterEach(() => fx.cleanup());

function hiddenNode(): RelayKey {
  const key = ed25519Generate();
  const descriptor = verifyDescriptor(buildDescriptor({
    identity: key, onionKey: x25519Generate().publicKey, nickname: 'hidden1', address: '0.0.0.0', orPort: 0, storagePort: 0,
    declaredBandwidth: 1_000_000, family: [], roles: ['storage', 'hidden'], version: 'bitcloud-0.1.0',
    published: epochStart(E) - 60_000, lifetimeMs: 6 * 86_400_000,
  }), { now: epochStart(E) });
  return { key, fp: key.publicKey.toString('hex'), descriptor };
}

describe('an authority measures a hidden node by its pseudonym\'s receipts (SPEC.md §9.21.7)', () => {
  it('accepts the guard\'s receipt naming P, credits the hidden node, and does so again after a restart', async () => {
    const H = hiddenNode();
    const guard = fx.relays[0];
    const consensus = consensusFor(fx.signer, E, [voteOf(fx.signer, [fx.relays[0], fx.relays[1], H])]);
    expect(consensus.info.relays.find((r) => r.fingerprint === H.fp)!.roles).toContain('hidden');
    const made = () => {
      const { authority } = fx.makeAuthority({ bandwidthBounds: 'local' });
      for (const r of [...fx.relays, H]) authority.acceptDescriptor(r.descriptor.raw);
      return authority;
    };
    const a = made();
    await a.measurement.onConsensus(consensus.info);
    const P = ed25519Generate();
    const pkey = { key: P, fp: P.publicKey.toString('hex'), descriptor: H.descriptor };
    const rec = record(receipt(pkey, guard, { cellsI2R: 1500, cellsR2I: 2500 }));
    // Unregistered, P is nobody.
    expect((await a.measurement.accept(rec)).body).toMatchObject({ code: 'RECEIPT_UNKNOWN_RELAY' });
    const period = hsPeriodOf(fx.clock.now);
    expect(period).toBe(hsPeriodOf(epochStart(E)));
    expect(await a.pseudonyms.accept(sealPseudonymUpload(makePseudonymRegistration(H.key, P, period), [fx.signer.signingKey.publicKey])))
      .toEqual({ result: 'new', period });
    expect((await a.measurement.accept(rec)).status).toBe(200);

    fx.clock.now = epochStart(E + 2) + 10;
    const vote = a.measurement.measureForVote(epochStart(E + 2));
    expect(vote.provenEpoch).toBe(E);
    expect(vote.proven.get(H.fp)).toBe(4000);
    expect(vote.proven.get(guard.fp)).toBe(4000);
    expect(vote.proven.has(pkey.fp)).toBe(false);

    // Restarted: registrations first (as Authority.start does), then the stored receipts.
    const b = made();
    expect(b.pseudonyms.load()).toBe(1);
    expect(b.measurement.load()).toEqual({ consensuses: 1, receipts: 1 });
    expect([...b.measurement.measureForVote(epochStart(E + 2)).proven].sort()).toEqual([...vote.proven].sort());
    // Without the registrations the stored receipt would not be re-judged as accepted.
    const c = made();
    expect(c.measurement.load()).toEqual({ consensuses: 1, receipts: 0 });
  });
});
