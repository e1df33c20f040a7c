// Proof-of-bandwidth receipts for hidden storage nodes (SPEC.md §9.21.7) with real daemons:
// `npm start -- --hidden-storage` with two hidden nodes. Each node authenticates its guard links
// under a pseudonym key P and registers P (sealed to each authority) through a relay mirror; its
// guards countersign and upload the receipts naming P; the authorities count them as the hidden
// node's (the `proven` cells they publish in the consensus); and nothing they publish names P or
// an address or port of a hidden node. A registration an attacker makes for a node it does not
// hold, or replays, is refused by a real authority with its code.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalNet, scrape, metric, type LocalNet } from '../helpers/localnet';
import { eventually } from '../helpers/daemon';
import { ed25519Generate } from '../../src/crypto/primitives';
import { IDENTITY_KEY_FILE, loadEd25519Secret } from '../../src/crypto/keys';
import { authoritySigningKeys } from '../../src/dir/consensus';
import { parseAuthorityList } from '../../src/dir/authorities';
import { httpRequest } from '../../src/dir/fetch';
import { hsPeriodOf } from '../../src/crypto/blind';
import { HS_PSEUDONYM_PATH, makePseudonymRegistration, sealPseudonymUpload } from '../../src/hidden/pseudonym';
import type { BandwidthStatus } from '../../src/bandwidth/node-bandwidth';
import type { VerifiedConsensus } from '../../src/dir/types';

let net: LocalNet;

beforeAll(async () => {
  net = await startLocalNet({ relays: 4, exits: 1, storage: 2, hiddenStorage: true, timeoutMs: 240_000 });
}, 300_000);

afterAll(async () => {
  await net?.stop();
}, 60_000);

const hiddenIds = () => net.storage.map((n) => n.identity!);
const sumOver = async (ports: number[], name: string, labels: Record<string, string>) => {
  let n = 0;
  for (const p of ports) n += metric(await scrape(p), name, labels);
  return n;
};
/** Peers in the relays' bandwidth.json (SPEC.md §8.10) that the consensus does not list: the pseudonyms. */
function relayPeers(): Set<string> {
  const out = new Set<string>();
  for (const r of net.relays) {
    let s: BandwidthStatus;
    try { s = JSON.parse(fs.readFileSync(path.join(r.dataDir, 'bandwidth.json'), 'utf8')) as BandwidthStatus; } catch { continue; }
    for (const e of s.epochs) for (const p of e.byPeer) out.add(p.peer);
  }
  return out;
}

describe('receipts for hidden storage nodes (SPEC.md §9.21.7)', () => {
  it('every authority accepts each hidden node\'s pseudonym registration through a mirror, never directly', async () => {
    const auth = net.authorities.map((a) => a.ports.metrics);
    await eventually(async () => ((await sumOver(auth, 'bitcloud_dirauth_pseudonym_registrations_total', { result: 'new' })) >= 2 * net.authorities.length ? true : null), 180_000, 1000);
    expect(await sumOver(auth, 'bitcloud_dirauth_upload_sources_total', { kind: 'hs_pseudonym', via: 'direct' })).toBe(0);
    expect(await sumOver(auth, 'bitcloud_dirauth_upload_sources_total', { kind: 'hs_pseudonym', via: 'mirror' })).toBeGreaterThanOrEqual(2 * net.authorities.length);
    // Kept on disk for a restart (SPEC.md §9.21.7), mode 0600.
    for (const a of net.authorities) {
      const st = fs.statSync(path.join(a.dataDir, 'hs-pseudonyms.bin'));
      expect(st.size % 200).toBe(0);
      expect(st.size).toBeGreaterThanOrEqual(2 * 200);
      expect(st.mode & 0o777).toBe(0o600);
    }
  }, 200_000);

  it('a hidden node\'s guard links carry receipts under P: the node proposes, the guard countersigns; the guard never sees the identity', async () => {
    const stores = net.storage.map((n) => n.ports.metrics);
    for (const p of stores) {
      await eventually(async () => (metric(await scrape(p), 'bitcloud_storage_hidden_receipts_total', { event: 'countersigned' }) > 0 ? true : null), 120_000, 1000);
    }
    // The guards (relays) hold receipts with peers the consensus does not list — the pseudonyms —
    // and none with a hidden node's identity.
    const c = await net.consensus();
    const listed = new Set(c.relays.map((r) => r.fingerprint));
    await eventually(async () => ([...relayPeers()].some((p) => !listed.has(p)) ? true : null), 60_000, 1000);
    const peers = relayPeers();
    for (const id of hiddenIds()) expect(peers.has(id)).toBe(false);
    // The node uploads none of its receipts itself (the guard's copy suffices).
    for (const p of stores) expect(metric(await scrape(p), 'bitcloud_receipt_upload_attempts_total')).toBe(0);
  }, 200_000);

  it('the authorities count them as the hidden node\'s: its proven cells in the consensus are above 0, and the consensus names no pseudonym, address or port of it', async () => {
    let got: VerifiedConsensus | null = null;
    await eventually(async () => {
      const c = await net.consensus();
      const hidden = c.relays.filter((r) => r.roles.includes('hidden'));
      if (hidden.length === 2 && hidden.every((r) => r.proven > 0)) { got = c; return true; }
      return null;
    }, 180_000, 2000);
    const c = got!;
    const pseudonyms = [...relayPeers()].filter((p) => !c.relays.some((r) => r.fingerprint === p));
    expect(pseudonyms.length).toBeGreaterThan(0);
    for (const r of c.relays) expect(pseudonyms).not.toContain(r.fingerprint);
    for (const r of c.relays.filter((x) => x.roles.includes('hidden'))) {
      expect(r.address).toBe('0.0.0.0');
      expect([r.orPort, r.dirPort, r.storagePort]).toEqual([0, 0, 0]);
    }
    // No byte of the consensus the authorities published is a pseudonym key.
    for (const p of pseudonyms) expect(c.envelopeBytes.includes(Buffer.from(p, 'hex'))).toBe(false);
    // Every port a hidden node was configured with is absent from the consensus.
    const ports = new Set(net.storage.flatMap((n) => Object.values(n.ports)));
    for (const r of c.relays) for (const p of [r.orPort, r.dirPort, r.storagePort]) expect(ports.has(p)).toBe(false);
  }, 200_000);

  it('a real authority refuses a registration signed by another key, one replayed for another period, and a P claimed by a second identity', async () => {
    const c = await net.consensus();
    const authorities = parseAuthorityList(JSON.parse(fs.readFileSync(net.clientConfig, 'utf8')).authorities);
    // The signing keys of the authorities that signed this consensus (a majority, maybe not all).
    const byFp = authoritySigningKeys(c, authorities, Date.now());
    expect(byFp.size).toBeGreaterThanOrEqual(Math.floor(net.authorities.length / 2) + 1);
    const keys = [...byFp.values()];
    const target = authorities.find((a) => byFp.has(a.fingerprint))!;
    const post = async (body: Buffer) => {
      const r = await httpRequest(`${target.url}${HS_PSEUDONYM_PATH}`, { method: 'POST', body, maxBytes: 4096, timeoutMs: 10_000 });
      return { status: r.status, code: (JSON.parse(r.body.toString('utf8')) as { code?: string }).code };
    };
    const node = await loadEd25519Secret(path.join(net.storage[0].dataDir, IDENTITY_KEY_FILE));
    const other = await loadEd25519Secret(path.join(net.storage[1].dataDir, IDENTITY_KEY_FILE));
    const N = hsPeriodOf(Date.now());
    const P = ed25519Generate();
    // Signed by another key: the attacker signs "node's" registration with its own key.
    const forged = makePseudonymRegistration(ed25519Generate(), P, N);
    const asNode = { ...forged, identity: node.publicKey, bodyBytes: Buffer.from(forged.bodyBytes) };
    node.publicKey.copy(asNode.bodyBytes, 8);
    expect(await post(sealPseudonymUpload(asNode, keys))).toEqual({ status: 400, code: 'HIDDEN_PSEUDONYM_BAD_SIGNATURE' });
    // Replayed for another period.
    expect(await post(sealPseudonymUpload(makePseudonymRegistration(node, P, N - 3), keys))).toEqual({ status: 400, code: 'HIDDEN_PSEUDONYM_STALE' });
    // Sealed to no authority of this network.
    expect(await post(sealPseudonymUpload(makePseudonymRegistration(node, P, N), [ed25519Generate().publicKey]))).toEqual({ status: 400, code: 'HIDDEN_PSEUDONYM_UNSEALED' });
    // A node that is not hidden (a relay's identity) cannot register.
    const relayKey = await loadEd25519Secret(path.join(net.relays[0].dataDir, IDENTITY_KEY_FILE));
    expect(await post(sealPseudonymUpload(makePseudonymRegistration(relayKey, P, N), keys))).toEqual({ status: 403, code: 'HIDDEN_PSEUDONYM_UNKNOWN_NODE' });
    // P claimed by two identities: the first holds it, the second is refused.
    expect((await post(sealPseudonymUpload(makePseudonymRegistration(node, P, N), keys))).status).toBe(200);
    expect(await post(sealPseudonymUpload(makePseudonymRegistration(other, P, N), keys))).toEqual({ status: 409, code: 'HIDDEN_PSEUDONYM_TAKEN' });
    // A listed relay's identity as P.
    expect(await post(sealPseudonymUpload(makePseudonymRegistration(node, relayKey, N), keys))).toEqual({ status: 409, code: 'HIDDEN_PSEUDONYM_TAKEN' });
  }, 60_000);
});
