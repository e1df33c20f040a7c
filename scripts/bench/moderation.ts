// Bench: the cost of moderation on a storage node (SPEC.md §10.6) beside what the node does anyway
// for the same request (hashing the share, §9.6.3), and the cost of accepting a large policy.
import { blake2b, ed25519Generate, randomBytes } from '../../src/crypto/primitives';
import { fingerprint } from '../../src/crypto/keys';
import { shareId } from '../../src/storage/share';
import { signPolicy } from '../../src/moderation/policy';
import { denyEntry } from '../../src/moderation/denylist';
import { advancePolicy, nextPolicyContent } from '../../src/moderation/chain';
import { makePolicyCheck, staticSubscriptions } from '../../src/moderation/enforce';
import type { BenchModule, BenchRow } from './types';

function rate(f: () => void, minMs: number): number {
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < minMs) { f(); n++; }
  return n / ((performance.now() - t0) / 1000);
}

const bench: BenchModule = {
  name: 'moderation',
  async run({ quick }) {
    const ms = quick ? 300 : 1500;
    const entries = quick ? 10_000 : 100_000;
    const key = ed25519Generate();
    const fp = fingerprint(key.publicKey);
    const now = Date.now();
    const deny = Array.from({ length: entries }, (_, i) => { const b = Buffer.alloc(32); b.writeUInt32BE(i); return denyEntry(b); });
    const raw = signPolicy(nextPolicyContent(null, { name: 'bench', classes: [{ name: 'encrypted-private', maxShareBytes: 0 }], maxShareBytes: 0, deny }), key, { validAfter: now - 1000, validUntil: now + 3_600_000 });
    const t0 = performance.now();
    const state = advancePolicy(null, [raw], { moderator: fp, now }).state;
    const acceptMs = performance.now() - t0;
    const check = makePolicyCheck(staticSubscriptions(new Map([[fp, state]])));
    const share = randomBytes(256 * 1024);
    const put = { type: 'put' as const, id: shareId(share), data: share, leaseSeconds: 0 };
    const get = { type: 'get' as const, id: randomBytes(32), offset: 0, length: 0 };
    const ctx = { viaCircuit: true };
    const rows: BenchRow[] = [
      {
        group: 'moderation', name: `policy check of a 256 KiB put (${entries} denied entries)`, value: rate(() => void check(put, ctx), ms), unit: 'ops/s',
        baseline: { name: 'BLAKE2b-256 of the same share (the node hashes it anyway)', value: rate(() => void blake2b(share, 32), ms), unit: 'ops/s' },
      },
      {
        group: 'moderation', name: `policy check of a get (${entries} denied entries)`, value: rate(() => void check(get, ctx), ms), unit: 'ops/s',
        baseline: { name: 'BLAKE2b-256 of 48 bytes', value: rate(() => void blake2b(Buffer.alloc(48), 32), ms), unit: 'ops/s' },
      },
      {
        group: 'moderation', name: `verify and accept a ${entries}-entry snapshot (${(raw.length / 1e6).toFixed(1)} MB)`, value: acceptMs, unit: 'ms',
        baseline: { name: 'BLAKE2b-256 of the same bytes', value: (() => { const s = performance.now(); blake2b(raw, 32); return performance.now() - s; })(), unit: 'ms' },
      },
    ];
    return rows;
  },
};

export default bench;
