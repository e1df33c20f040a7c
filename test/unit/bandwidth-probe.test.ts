// SPEC.md §8.12: the capacity probe's accounting (only echoes identical to a body in flight are
// credited, each once; bad replies are refused with typed errors and counted), the weight rule
// (at most 4/3 of what the measurer counted), the authorities' slot schedule, and runProbe against
// the real RelayCircuits on 127.0.0.1 (an honest relay, and one that forges its echoes).
// No test asserts on time.
import { describe, it, expect, afterEach } from 'vitest';
import { ProbeAccount, PROBE_BODY_LEN, probeRate, runProbe } from '../../src/bandwidth/probe';
import { CELL_LEN } from '../../src/wire/cell';
import { RelayCommand } from '../../src/wire/relay-msg';
import { probeCapacity, probedSource } from '../../directory/bandwidth';
import { CapacityProbes, DEFAULT_PROBE_CONFIG } from '../../directory/probes';
import { silentLogger } from '../../src/ops/log';
import { RelayCircuit } from '../../src/circuit/relay-circuit';
import type { VerifiedDescriptor } from '../../src/dir/descriptor';
import { manualCircuit, startRelay, type TestRelay } from '../helpers/inprocess-relays';

const relays: TestRelay[] = [];
afterEach(async () => { for (const r of relays.splice(0)) await r.stop(); });

describe('probe accounting (SPEC §8.12)', () => {
  it('credits each echo identical to a body in flight once, one whole cell each', () => {
    const a = new ProbeAccount();
    const b1 = a.next(), b2 = a.next();
    expect(b1.length).toBe(PROBE_BODY_LEN);
    expect(a.inFlight).toBe(2);
    a.onEcho(Buffer.from(b2));
    a.onEcho(Buffer.from(b1));
    expect(a.figures).toEqual({ sent: 2, verified: 2, bytes: 2 * CELL_LEN, refused: 0 });
    expect(a.inFlight).toBe(0);
  });

  it('a replayed echo is refused (PROBE_REPLY_MALFORMED) and credits nothing', () => {
    const a = new ProbeAccount();
    const b = a.next();
    a.onEcho(Buffer.from(b));
    expect(() => a.onEcho(Buffer.from(b))).toThrow(expect.objectContaining({ code: 'PROBE_REPLY_MALFORMED' }));
    expect(a.figures.verified).toBe(1);
    expect(a.figures.refused).toBe(1);
  });

  it('forged data (right sequence number, other bytes) is PROBE_REPLY_MISMATCH and not credited', () => {
    const a = new ProbeAccount();
    const b = Buffer.from(a.next());
    b[PROBE_BODY_LEN - 1] ^= 1;
    expect(() => a.onEcho(b)).toThrow(expect.objectContaining({ code: 'PROBE_REPLY_MISMATCH' }));
    expect(a.figures).toMatchObject({ verified: 0, bytes: 0, refused: 1 });
    expect(a.firstRefusal).toBe('PROBE_REPLY_MISMATCH');
  });

  it('short, empty, unknown or garbage replies are PROBE_REPLY_MALFORMED, counted, never credited', () => {
    const a = new ProbeAccount();
    const b = a.next();
    for (const bad of [b.subarray(0, 100), Buffer.alloc(0), Buffer.alloc(PROBE_BODY_LEN, 0xff), Buffer.concat([b, Buffer.alloc(1)])]) {
      expect(() => a.onEcho(bad)).toThrow(expect.objectContaining({ code: 'PROBE_REPLY_MALFORMED' }));
    }
    const unknown = Buffer.from(b);
    unknown.writeUIntBE(12345, 2, 6);
    expect(() => a.onEcho(unknown)).toThrow(expect.objectContaining({ code: 'PROBE_REPLY_MALFORMED' }));
    expect(a.figures).toMatchObject({ verified: 0, bytes: 0, refused: 5 });
    expect(a.inFlight).toBe(1);
  });

  it('the rate is bytes over the burst', () => {
    expect(probeRate(514_000, 1000)).toBe(514_000);
    expect(probeRate(514, 0)).toBe(0);
  });
});

describe('probe figure in the weight (SPEC §8.12)', () => {
  it('capacity = M + min(proven / 2, M / 3): never above 4/3 of what the measurer counted', () => {
    expect(probeCapacity(300_000, 0)).toBe(300_000);
    expect(probeCapacity(300_000, 100_000)).toBe(350_000);
    expect(probeCapacity(300_000, 10 ** 12)).toBe(400_000);
    const src = probedSource(new Map([['a', 10 ** 12]]), (fp) => (fp === 'a' ? 300_000 : fp === 'b' ? 600_000 : undefined), 10);
    expect(src.measuredKBps('a', 10_000_000)).toBe(400); // receipts claim the moon: 4/3 × 300 KB/s
    expect(src.measuredKBps('b', 10_000_000)).toBe(600);
    expect(src.measuredKBps('b', 500_000)).toBe(500); // never above declared
    expect(src.measuredKBps('c', 10_000_000)).toBe(10); // no probe: the unmeasured floor, as before
  });
});

describe('probe schedule (SPEC §8.12)', () => {
  it('authorities never probe the same relay in one slot, and each reaches every relay', () => {
    const auths = ['aa', 'bb', 'cc'];
    const ds = Array.from({ length: 6 }, (_, i) => ({ fingerprint: `f${i}` }) as VerifiedDescriptor);
    const ps = auths.map((self) => new CapacityProbes({ config: DEFAULT_PROBE_CONFIG, periodSeconds: 30, self, authorities: auths, relays: () => ds, log: silentLogger }));
    const seen = auths.map(() => new Set<string>());
    for (let s = 1000; s < 1006; s++) {
      const picks = ps.map((p) => p.pick(s, ds).map((d) => d.fingerprint));
      expect(new Set(picks.flat()).size).toBe(3);
      picks.forEach((p, k) => p.forEach((fp) => seen[k].add(fp)));
    }
    for (const s of seen) expect(s.size).toBe(6);
  });
});

describe('runProbe against a real relay (SPEC §8.12)', () => {
  it('an honest relay echoes every body; the figure counts exactly the verified cells', async () => {
    const r = await startRelay('probe', ['Running']);
    relays.push(r);
    const res = await runProbe(r.info, { durationMs: 60_000, maxBytes: 200 * CELL_LEN, inFlight: 16 });
    expect(res.refused).toBe(0);
    expect(res.verified).toBe(200);
    expect(res.bytes).toBe(200 * CELL_LEN);
    expect(res.bytesPerSecond).toBe(probeRate(res.bytes, res.ms));
  });

  it('a relay that forges its echoes is refused with a typed error and credited nothing', async () => {
    const r = await startRelay('liar', ['Running']);
    relays.push(r);
    // The relay under test answers PROBE_ECHO with a body it did not receive (e.g. to skip reading).
    const orig = RelayCircuit.prototype.sendRelay;
    RelayCircuit.prototype.sendRelay = function (this: RelayCircuit, command: number, streamId: number, data: Uint8Array) {
      if (command === RelayCommand.PROBE_ECHO) { const f = Buffer.from(data); f[100] ^= 0xff; return orig.call(this, command, streamId, f); }
      return orig.call(this, command, streamId, data);
    };
    try {
      await expect(runProbe(r.info, { durationMs: 60_000, maxBytes: 50 * CELL_LEN, inFlight: 4 })).rejects.toMatchObject({ code: 'PROBE_REPLY_MISMATCH' });
    } finally {
      RelayCircuit.prototype.sendRelay = orig;
    }
  });

  it('a relay that echoes short data (saving its bandwidth) is refused with PROBE_REPLY_MALFORMED', async () => {
    const r = await startRelay('short', ['Running']);
    relays.push(r);
    const orig = RelayCircuit.prototype.sendRelay;
    RelayCircuit.prototype.sendRelay = function (this: RelayCircuit, command: number, streamId: number, data: Uint8Array) {
      return orig.call(this, command, streamId, command === RelayCommand.PROBE_ECHO ? data.subarray(0, 16) : data);
    };
    try {
      await expect(runProbe(r.info, { durationMs: 60_000, maxBytes: 50 * CELL_LEN, inFlight: 4 })).rejects.toMatchObject({ code: 'PROBE_REPLY_MALFORMED' });
    } finally {
      RelayCircuit.prototype.sendRelay = orig;
    }
  });

  it('the relay refuses a PROBE_ECHO of the wrong length (RELAY_PROTOCOL ends the circuit)', async () => {
    const r = await startRelay('strict', ['Running']);
    relays.push(r);
    const c = await manualCircuit([r]);
    const closed = new Promise<unknown>((res) => c.once('close', res));
    c.sendControl(RelayCommand.PROBE_ECHO, Buffer.alloc(10));
    await closed;
    expect(c.isOpen).toBe(false);
  });

  it('bad probe bounds are PROBE_BAD_PARAMS', async () => {
    const r = await startRelay('params', ['Running']);
    relays.push(r);
    await expect(runProbe(r.info, { durationMs: 0, maxBytes: 10_000, inFlight: 1 })).rejects.toMatchObject({ code: 'PROBE_BAD_PARAMS' });
    await expect(runProbe(r.info, { durationMs: 1000, maxBytes: 10_000, inFlight: 0 })).rejects.toMatchObject({ code: 'PROBE_BAD_PARAMS' });
  });
});
