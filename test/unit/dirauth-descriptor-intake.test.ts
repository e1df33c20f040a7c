// SPEC.md §6.4, §6.4.1: what an authority keeps of the descriptors uploaded to it. A descriptor
// published more than 24 hours ago is refused (Tor's ROUTER_MAX_AGE_TO_PUBLISH), and one not newer
// than the held one is answered 'unchanged' before its identity proof is evaluated.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Authority } from '../../directory/authority';
import { parseRelayConfig } from '../../relay/config';
import { ed25519Generate, x25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { buildDescriptor } from '../../src/dir/descriptor';
import { isBitcloudError } from '../../src/errors';
import { makeSigner, makeFixture, soloAuthority, epochStart, E } from './dirauth-measure-fixture';
import { GENESIS_ANCHOR, LOCAL_POW_PARAMS, mineIdentityProof } from '../../src/dir/identity-pow';
import type { IdentityProofMsg } from '../../src/wire/docs';

const HOUR = 3600_000;
let dir: string;
let authority: Authority;
const now = epochStart(E) + 5000;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-dirauth-intake-'));
  authority = soloAuthority(dir, makeSigner(), { now: () => now }, {}, 'dirauth-intake').authority;
});
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

const desc = (key: Ed25519KeyPair, published: number, o: { address?: string; lifetimeMs?: number } = {}): Buffer => buildDescriptor({
  identity: key, onionKey: x25519Generate().publicKey, nickname: 'intake', address: o.address ?? '10.0.0.1', orPort: 9001,
  declaredBandwidth: 1_000_000, roles: ['relay'], version: 'bitcloud-0.1.0', published, lifetimeMs: o.lifetimeMs ?? 7 * 24 * HOUR,
});
const codeOf = (f: () => unknown): string => {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `not typed: ${String(e)}`; }
  return 'accepted';
};

describe('descriptor age at an authority (SPEC.md §6.4 check 8)', () => {
  it('refuses a descriptor published more than 24 hours ago, though inside its lifetime, and keeps nothing of it', () => {
    const key = ed25519Generate();
    expect(codeOf(() => authority.acceptDescriptor(desc(key, now - 24 * HOUR - 1000)))).toBe('DOC_EXPIRED');
    expect(codeOf(() => authority.acceptDescriptor(desc(key, now - 6 * 24 * HOUR)))).toBe('DOC_EXPIRED');
    expect(authority.store.get(key.publicKey.toString('hex'))).toBeUndefined();
    // Up to 24 hours old it is taken.
    expect(authority.acceptDescriptor(desc(key, now - 24 * HOUR + 1000)).result).toBe('new');
  });

  it('an old descriptor replayed to an authority that lacks the newer one does not bring back the relay\'s former address', () => {
    const key = ed25519Generate();
    const old = desc(key, now - 3 * 24 * HOUR, { address: '10.0.0.9' });
    expect(codeOf(() => authority.acceptDescriptor(old))).toBe('DOC_EXPIRED');
    expect(authority.store.size).toBe(0);
  });

  it('a node republishes at least every 18 hours, so what it retries stays within the 24 hours', () => {
    const relay = { dataDir: 'r', orPort: 9001, authorities: [{ name: 'a', identity: 'ab'.repeat(32), address: '127.0.0.1:7000' }] };
    expect(parseRelayConfig({ ...relay, publishIntervalSeconds: 18 * 3600, descriptorLifetimeSeconds: 7 * 86_400 }, '/').publishIntervalSeconds).toBe(18 * 3600);
    expect(codeOf(() => parseRelayConfig({ ...relay, publishIntervalSeconds: 18 * 3600 + 1, descriptorLifetimeSeconds: 7 * 86_400 }, '/'))).toBe('CONFIG_INVALID');
  });
});

describe('a descriptor not newer than the held one (SPEC.md §6.4.1)', () => {
  it('is answered unchanged without an identity proof evaluation, and does not displace the relay\'s remembered proof', async () => {
    const fx = makeFixture();
    try {
      const { authority, registry } = fx.makeAuthority({ identityPow: 'local' });
      const now2 = fx.clock.now;
      const key = ed25519Generate();
      const onionKey = x25519Generate().publicKey;
      const first = await mineIdentityProof(key.publicKey, GENESIS_ANCHOR, LOCAL_POW_PARAMS);
      const other = await mineIdentityProof(key.publicKey, GENESIS_ANCHOR, LOCAL_POW_PARAMS, { startNonce: first.nonce + 1 });
      const build = (published: number, identityProof: IdentityProofMsg): Buffer => buildDescriptor({
        identity: key, onionKey, nickname: 'replayed', address: '10.0.0.1', orPort: 9001, declaredBandwidth: 1_000_000,
        roles: ['relay'], version: 'bitcloud-0.1.0', published, lifetimeMs: 24 * HOUR, identityProof,
      });
      const older = build(now2 - 2 * HOUR, other);
      const current = build(now2 - HOUR, first);
      const evaluations = async () => (await registry.getSingleMetric('bitcloud_dirauth_identity_proofs_total')!.get()).values
        .filter((v) => v.labels.result === 'ok').reduce((n, v) => n + v.value, 0);

      expect((await authority.acceptDescriptorWithProof(current)).result).toBe('new');
      expect(await evaluations()).toBe(1);
      // Anyone may send the older descriptor again (a vote lists it): kept out, at no evaluation.
      expect((await authority.acceptDescriptorWithProof(older)).result).toBe('unchanged');
      expect((await authority.acceptDescriptorWithProof(current)).result).toBe('unchanged');
      expect(await evaluations()).toBe(1);
      expect(authority.store.get(key.publicKey.toString('hex'))!.descriptor.raw.equals(current)).toBe(true);
    } finally {
      fx.cleanup();
    }
  });
});
