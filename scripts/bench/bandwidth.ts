// Bench 'bandwidth' (issue 5): what an authority spends on proof of bandwidth per epoch.
//  - receipts accepted per second by ReceiptVerifier (decode, window, membership, dedupe, two
//    Ed25519 verifications), a batch of 100 000; baseline: raw Ed25519 verifications per second;
//  - measure() over those receipts; baseline: the time the same receipts took to verify;
//  - one reward block for 10 000 relays (allocate + canonical encoding + BLAKE2b-256 + one signature);
//    baseline: BLAKE2b-256 of the same body alone.
import { performance } from 'node:perf_hooks';
import type { BenchModule, BenchRow } from './types';
import { blake2b, ed25519FromSeed, ed25519Verify, randomBytes } from '../../src/crypto/primitives';
import { countersign, encodeReceipt, signReceipt, RECEIPT_DOMAIN_INITIATOR } from '../../src/bandwidth/receipt';
import { ReceiptVerifier } from '../../src/bandwidth/verify';
import { DEFAULT_BOUNDS, measure, type RelayFacts } from '../../src/bandwidth/measure';
import { nextRewardBlock, signRewardBlock } from '../../src/bandwidth/reward-chain';

function makeReceipts(n: number, relayCount: number): Buffer[] {
  const keys = Array.from({ length: relayCount }, (_, i) => {
    const seed = Buffer.alloc(32);
    seed.writeUInt32BE(i + 1);
    return ed25519FromSeed(seed);
  });
  const out: Buffer[] = [];
  for (let k = 0; k < n; k++) {
    const a = keys[k % relayCount];
    const b = keys[(k * 7 + 1 + Math.floor(k / relayCount)) % relayCount];
    const res = b === a ? keys[(k + 1) % relayCount] : b;
    const cells = 1000 + (k % 5000);
    const p = signReceipt({ epoch: 10, initiator: a.publicKey, responder: res.publicKey, cellsI2R: cells, cellsR2I: 2 * cells, serial: k }, a);
    const r = countersign(p, { cellsI2R: cells, cellsR2I: 2 * cells }, res, 0);
    if (!r.ok) throw new Error('bench setup: countersign failed');
    out.push(encodeReceipt(r.receipt));
  }
  return out;
}

const bench: BenchModule = {
  name: 'bandwidth',
  async run({ quick }): Promise<BenchRow[]> {
    const n = quick ? 10_000 : 100_000;
    const relayCount = quick ? 1_000 : 10_000;
    const receipts = makeReceipts(n, Math.min(relayCount, 2_000));
    const now = Date.now();
    const verifier = new ReceiptVerifier({ membership: () => true, window: () => ({ opens: now - 1, closes: now + 3_600_000 }) });

    // Baseline: raw Ed25519 verifications of the initiators' signatures over the same bytes.
    const msgs = receipts.map((r) => ({ msg: Buffer.concat([RECEIPT_DOMAIN_INITIATOR, r.subarray(0, 96)]), sig: r.subarray(96, 160), key: r.subarray(8, 40) }));
    let t = performance.now();
    for (const m of msgs) if (!ed25519Verify(m.sig, m.msg, m.key)) throw new Error('bench: bad signature');
    const rawPerSec = n / ((performance.now() - t) / 1000);

    t = performance.now();
    for (const r of receipts) if (!verifier.accept(r, now).ok) throw new Error('bench: receipt refused');
    const acceptMs = performance.now() - t;

    const relays = new Map<string, RelayFacts>();
    for (const a of verifier.accepted(10)) {
      for (const fp of [a.pair.initiator, a.pair.responder]) {
        if (!relays.has(fp)) relays.set(fp, { declaredBandwidth: 1e9, history: 100, ipv4: `10.${relays.size % 250}.${Math.floor(relays.size / 250)}.1` });
      }
    }
    const prev = new Map([...relays.keys()].map((fp, i) => [fp, 1e6 * (1 + (i % 13))]));
    const pairs = verifier.pairs(10);
    t = performance.now();
    measure({ receipts: pairs, relays, previousWeights: prev, params: { ...DEFAULT_BOUNDS, epochSeconds: 3600 } });
    const measureMs = performance.now() - t;

    // A reward block for 10 000 relays.
    const proven = new Map<string, number>();
    for (let i = 0; i < relayCount; i++) proven.set(randomBytes(32).toString('hex'), 1 + Math.floor(Math.random() * 1e9));
    const authority = ed25519FromSeed(Buffer.alloc(32, 7));
    const runs = quick ? 3 : 10;
    let blockMs = Infinity, hashMs = Infinity;
    for (let i = 0; i < runs; i++) {
      t = performance.now();
      const { body } = nextRewardBlock(null, 1, proven);
      signRewardBlock(body, authority.publicKey, authority);
      blockMs = Math.min(blockMs, performance.now() - t);
      t = performance.now();
      blake2b(body);
      hashMs = Math.min(hashMs, performance.now() - t);
    }

    return [
      {
        group: 'bandwidth', name: `receipts accepted by an authority (batch of ${n})`, value: n / (acceptMs / 1000), unit: 'receipts/s',
        baseline: { name: 'raw Ed25519 verifications', value: rawPerSec, unit: 'verifications/s' },
        note: 'two signatures per receipt, so ~0.5 of the baseline is the ceiling',
      },
      {
        group: 'bandwidth', name: `measure() of ${n} receipts (${relays.size} relays)`, value: measureMs, unit: 'ms',
        baseline: { name: 'accepting the same receipts', value: acceptMs, unit: 'ms' },
      },
      {
        group: 'bandwidth', name: `reward block for ${relayCount} relays (allocate, encode, hash, sign)`, value: blockMs, unit: 'ms',
        baseline: { name: 'BLAKE2b-256 of the same body', value: hashMs, unit: 'ms' },
      },
    ];
  },
};

export default bench;
