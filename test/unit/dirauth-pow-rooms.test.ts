// SPEC.md §6.4.1 "Authority intake": an authority places each identity proof waiting to be checked
// by whether its newest consensus lists the identity, and by the address group of the uploader's
// socket address (src/dir/identity-pow.ts IdentityProofVerifier).
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CONSENSUS_FILE } from '../../directory/authority';
import { PATHS, httpRequest } from '../../src/dir/fetch';
import type { IdentityProofVerifier, ProofSource } from '../../src/dir/identity-pow';
import { err } from '../../src/errors';
import { listenAuthority, makeFixture, makeRelay, type Fixture } from './dirauth-measure-fixture';

let fx: Fixture;
beforeEach(() => { fx = makeFixture(); });
afterEach(() => { fx.cleanup(); });

/** An authority holding the fixture's consensus (relays 0 and 1 listed), its proof checks recorded and passed. */
function authorityWithConsensus(): { made: ReturnType<Fixture['makeAuthority']>; sources: (ProofSource | undefined)[] } {
  fs.writeFileSync(path.join(fx.dir, CONSENSUS_FILE), fx.consensus.raw);
  const made = fx.makeAuthority();
  (made.authority as unknown as { loadPublished(now: number): void }).loadPublished(fx.clock.now);
  expect(made.authority.published?.info.relays).toHaveLength(2);
  const sources: (ProofSource | undefined)[] = [];
  const verifier = (made.authority as unknown as { powVerifier: IdentityProofVerifier }).powVerifier;
  vi.spyOn(verifier, 'verify').mockImplementation((_id, _proof, _ctx, from) => { sources.push(from); return Promise.resolve(); });
  return { made, sources };
}

describe('where an authority places an identity proof waiting to be checked (SPEC.md §6.4.1)', () => {
  it('a listed identity\'s proof goes to the listed room; another identity\'s to its address group\'s share', async () => {
    const { made, sources } = authorityWithConsensus();
    await made.authority.acceptDescriptorWithProof(fx.relays[0].descriptor.raw, '2001:db8:5:1::7');
    await made.authority.acceptDescriptorWithProof(makeRelay(9).descriptor.raw, '::ffff:198.51.100.20');
    expect(sources).toEqual([{ listed: true, group: '20010db80005::/48' }, { listed: false, group: '198.51.100.0/24' }]);
  });

  it('the HTTP intake passes on the socket\'s remote address', async () => {
    const { made, sources } = authorityWithConsensus();
    const { url } = await listenAuthority(made);
    const r = await httpRequest(url + PATHS.descriptor, { method: 'POST', body: makeRelay(9).descriptor.raw, maxBytes: 65536, timeoutMs: 10_000 });
    expect(r.status).toBe(200);
    expect(sources).toEqual([{ listed: false, group: '127.0.0.0/24' }]);
  });

  it('counts a proof evicted from its room as result "evicted", apart from the BUSY answered to a newcomer', async () => {
    const made = fx.makeAuthority();
    const verifier = (made.authority as unknown as { powVerifier: IdentityProofVerifier }).powVerifier;
    vi.spyOn(verifier, 'verify')
      .mockRejectedValueOnce(err('IDENTITY_POW_BUSY', 'evicted', { evicted: true }))
      .mockRejectedValueOnce(err('IDENTITY_POW_BUSY', 'full'));
    await expect(made.authority.acceptDescriptorWithProof(makeRelay(8).descriptor.raw, '192.0.2.1')).rejects.toMatchObject({ code: 'IDENTITY_POW_BUSY' });
    await expect(made.authority.acceptDescriptorWithProof(makeRelay(9).descriptor.raw, '192.0.2.1')).rejects.toMatchObject({ code: 'IDENTITY_POW_BUSY' });
    const values = (await made.registry.getSingleMetric('bitcloud_dirauth_identity_proofs_total')!.get()).values;
    expect(Object.fromEntries(values.map((v) => [v.labels.result, v.value]))).toEqual({ evicted: 1, IDENTITY_POW_BUSY: 1 });
  });
});
