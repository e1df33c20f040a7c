// SPEC.md §6.4.1 against a real authority over HTTP: a descriptor without an identity proof, with a
// forged one, with one below the minimum, or anchored to an unknown consensus is refused with its
// IDENTITY_POW_* code; a good one is accepted; a real relay mines its own and gets listed.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ed25519Generate, x25519Generate } from '../../src/crypto/primitives';
import { parseAuthorityList } from '../../src/dir/authorities';
import { verifyConsensus } from '../../src/dir/consensus';
import { buildDescriptor } from '../../src/dir/descriptor';
import { httpRequest } from '../../src/dir/fetch';
import {
  GENESIS_ANCHOR, LOCAL_POW_PARAMS, PROOF_FILE, checkIdentityProofWork, mineIdentityProof, type PowAnchor,
} from '../../src/dir/identity-pow';
import { LIMITS, type IdentityProofMsg } from '../../src/wire/docs';
import { isBitcloudError } from '../../src/errors';
import { eventually } from '../helpers/daemon';
import { makeDirNet, makeRelay, startAuthority, startRelay, tearDownDirNet, type DirNet } from '../helpers/dirnet';

const PERIOD = 4;
let net: DirNet;
const url = (p: string) => `http://127.0.0.1:${net.authorities[0].port}${p}`;

/** Waits until the authorities' consensus lists relay `fp`. */
async function listedEventually(fp: string): Promise<void> {
  await eventually(async () => {
    const rr = await httpRequest(url('/bitcloud/consensus'), { maxBytes: LIMITS.consensusBytes, timeoutMs: 5000 });
    if (rr.status !== 200) return false;
    const c = verifyConsensus(rr.body, parseAuthorityList(net.authorityList, 'authorities'), Date.now(), 60_000);
    return c.relays.some((x) => x.fingerprint === fp);
  }, 90_000, 500);
}

async function post(body: Buffer): Promise<{ status: number; code?: string }> {
  const r = await httpRequest(url('/bitcloud/descriptor'), { method: 'POST', body, maxBytes: 1 << 16, timeoutMs: 10_000 });
  const j = JSON.parse(r.body.toString('utf8')) as { code?: string };
  return { status: r.status, code: j.code };
}

/** The authority's consensus as an anchor, or genesis while it has none. */
async function currentAnchor(): Promise<PowAnchor> {
  const r = await httpRequest(url('/bitcloud/consensus'), { maxBytes: LIMITS.consensusBytes, timeoutMs: 5000 });
  if (r.status !== 200) return GENESIS_ANCHOR;
  const c = verifyConsensus(r.body, parseAuthorityList(net.authorityList, 'authorities'), Date.now(), 60_000);
  return { validAfter: c.validAfter, digest: c.digest };
}

const descriptor = (identityProof?: IdentityProofMsg, id = ed25519Generate()) => buildDescriptor({
  identity: id, onionKey: x25519Generate().publicKey, nickname: 'powtest', address: '127.0.0.1', orPort: 1,
  declaredBandwidth: 1000, roles: ['relay'], version: 'bitcloud-test', published: Date.now(), identityProof,
});

beforeAll(async () => {
  net = await makeDirNet(1, PERIOD);
  const a = startAuthority(net.authorities[0]);
  await a.waitForMsg('authority listening', {}, 60_000);
}, 90_000);

afterAll(() => tearDownDirNet(net), 30_000);

describe('authority identity proof intake (SPEC.md §6.4.1)', () => {
  it('refuses a descriptor without a proof', async () => {
    expect(await post(descriptor())).toEqual({ status: 400, code: 'IDENTITY_POW_MISSING' });
  });

  it('refuses proofs below the minimum, anchored to an unknown consensus, or forged; accepts a good one', async () => {
    const id = ed25519Generate();
    await eventually(async () => {
      const anchor = await currentAnchor();
      const good = await mineIdentityProof(id.publicKey, anchor, LOCAL_POW_PARAMS);
      expect(await post(descriptor({ ...good, memoryKib: 1024 }, id))).toEqual({ status: 400, code: 'IDENTITY_POW_WEAK' });
      expect(await post(descriptor({ ...good, anchorValidAfter: Date.now() - 1000, anchorDigest: Buffer.alloc(32, 9) }, id)))
        .toEqual({ status: 400, code: 'IDENTITY_POW_STALE' });
      // A nonce whose output misses the difficulty.
      let bad: IdentityProofMsg | null = null;
      for (let n = good.nonce + 1; bad === null; n++) {
        try { await checkIdentityProofWork(id.publicKey, { ...good, nonce: n }); } catch (e) { if (isBitcloudError(e)) bad = { ...good, nonce: n }; else throw e; }
      }
      expect(await post(descriptor(bad, id))).toEqual({ status: 400, code: 'IDENTITY_POW_INVALID' });
      const ok = await post(descriptor(good, id));
      // The authority may publish its first consensus between our fetch and our upload: then retry.
      if (ok.code === 'IDENTITY_POW_STALE') return false;
      expect(ok).toEqual({ status: 200, code: undefined });
      return true;
    }, 60_000, 500);
  }, 90_000);

  it('the consensus carries the parameters the authorities voted; a relay configured otherwise mines at the consensus\'s and is listed', async () => {
    const c = await eventually(async () => {
      const rr = await httpRequest(url('/bitcloud/consensus'), { maxBytes: LIMITS.consensusBytes, timeoutMs: 5000 });
      return rr.status === 200 ? verifyConsensus(rr.body, parseAuthorityList(net.authorityList, 'authorities'), Date.now(), 60_000) : null;
    }, 60_000, 500);
    expect(c.identityPow).toEqual(LOCAL_POW_PARAMS);
    // Configured at 8× the network's memory: a proof at its own parameters would be refused
    // (IDENTITY_POW_WEAK, above 4× the minimum). It reads the consensus and mines at those.
    const r = await makeRelay(net, 'powreader', { identityPow: { memoryKib: 8 * LOCAL_POW_PARAMS.memoryKib, ops: 1, difficulty: 1 } });
    const d = startRelay(r);
    const up = await d.waitForMsg('relay listening', {}, 60_000);
    const fp = String(up.json!.identity);
    await d.waitForMsg('identity proof made', {}, 60_000);
    // The first proof may be mined before the relay holds a consensus (at its own parameters);
    // the one that gets it listed is at the consensus's.
    await listedEventually(fp);
    const proof = JSON.parse(fs.readFileSync(path.join(r.dataDir, PROOF_FILE), 'utf8')) as { memoryKib: number; difficulty: number };
    expect([proof.memoryKib, proof.difficulty]).toEqual([LOCAL_POW_PARAMS.memoryKib, LOCAL_POW_PARAMS.difficulty]);
  }, 150_000);

  it('a real relay mines its proof and is listed', async () => {
    const r = await makeRelay(net, 'powrelay');
    const d = startRelay(r);
    const up = await d.waitForMsg('relay listening', {}, 60_000);
    const fp = String(up.json!.identity);
    await d.waitForMsg('identity proof made', {}, 60_000);
    await listedEventually(fp);
  }, 150_000);
});
