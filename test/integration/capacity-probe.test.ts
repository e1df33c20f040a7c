// SPEC.md §8.12 with real daemons on 127.0.0.1: three authorities that run capacity probes and three
// relays. Each authority probes every relay itself (a one-hop circuit of PROBE_ECHO cells), shows
// the figure on /bitcloud/status, counts the probe in its metrics, and the weights of the consensus
// it publishes come from those figures (the floor for unmeasured relays is 1 KB/s, no client
// traffic runs, so without a probe every relay would be weighted 1). No wall-clock thresholds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { httpRequest } from '../../src/dir/fetch';
import { parseAuthorityList } from '../../src/dir/authorities';
import { fetchVerifiedConsensus } from '../../src/dir/consensus-fetch';
import { probeCapacity } from '../../directory/bandwidth';
import { eventually, stopAll, type Daemon } from '../helpers/daemon';
import { makeDirNet, makeRelay, startAuthority, startRelay, type DirNet } from '../helpers/dirnet';

const PERIOD = 5;
let net: DirNet;
const fps: string[] = [];

interface ProbeStatus { bytesPerSecond: number; probes: Array<{ at: number; bytesPerSecond: number; bytes: number; ms: number }> }

async function probesAt(i: number): Promise<Record<string, ProbeStatus>> {
  const r = await httpRequest(`http://127.0.0.1:${net.authorities[i].port}/bitcloud/status`, { maxBytes: 1 << 20, timeoutMs: 5000 });
  return (JSON.parse(r.body.toString()) as { bandwidth: { probes: Record<string, ProbeStatus> | null } }).bandwidth.probes ?? {};
}

beforeAll(async () => {
  net = await makeDirNet(3, PERIOD, {
    consensusLifetimePeriods: 6, unmeasuredCapKBps: 1, bandwidthBounds: 'local',
    probe: { enabled: true, seconds: 1, maxBytes: 1 << 20, inFlight: 32, keepPeriods: 24 },
  });
  const auths: Daemon[] = net.authorities.map((a) => startAuthority(a));
  const relays = [];
  for (let i = 0; i < 3; i++) relays.push(await makeRelay(net, `relay${i}`, { roles: i === 0 ? ['relay', 'exit'] : ['relay'] }));
  const ds = relays.map((r) => startRelay(r));
  await Promise.all(auths.map((a) => a.waitForMsg('authority listening')));
  const up = await Promise.all(ds.map((d) => d.waitForMsg('relay listening')));
  for (const u of up) fps.push(u.json!.identity as string);
});

afterAll(async () => {
  await stopAll();
  if (net) fs.rmSync(net.dir, { recursive: true, force: true });
});

describe('capacity probes (SPEC §8.12, real daemons)', () => {
  it('every authority probes every relay and shows the figure; the published weights come from the figures', async () => {
    // Each authority holds a figure for each relay.
    const figures = await eventually(async () => {
      const all = await Promise.all(net.authorities.map((_, i) => probesAt(i)));
      return all.every((p) => fps.every((fp) => (p[fp]?.bytesPerSecond ?? 0) > 0)) ? all : null;
    }, 120_000, 500);
    for (const p of figures) {
      for (const fp of fps) {
        const s = p[fp];
        // The figure is the highest of its probes, each bytes × 1000 / ms of whole 514-byte cells.
        expect(s.bytesPerSecond).toBe(Math.max(...s.probes.map((x) => x.bytesPerSecond)));
        for (const x of s.probes) { expect(x.bytes % 514).toBe(0); expect(x.bytes).toBeLessThanOrEqual(1 << 20); }
      }
    }
    // A consensus made after that: every relay weighted above the 1 KB/s floor, at most its declared
    // 500 KB/s, and at most 4/3 of the highest figure any authority showed (no receipts: capacity = M).
    const auths = parseAuthorityList(net.authorityList);
    const c = await eventually(async () => {
      const got = await fetchVerifiedConsensus(auths.map((a) => a.url), auths, { timeoutMs: 5000 }).catch(() => null);
      const cons = got?.consensus;
      if (!cons) return null;
      const listed = fps.map((fp) => cons.relays.find((r) => r.fingerprint === fp));
      return listed.every((r) => r && r.weight > 1) ? { cons, listed } : null;
    }, 120_000, 500);
    const later = await Promise.all(net.authorities.map((_, i) => probesAt(i)));
    for (const [k, r] of c.listed.entries()) {
      const best = Math.max(...later.map((p) => p[fps[k]]?.bytesPerSecond ?? 0));
      expect(r!.weight).toBeLessThanOrEqual(500);
      expect(r!.weight).toBeLessThanOrEqual(Math.max(1, Math.floor(probeCapacity(best, 0) / 1000)));
    }
    // Counted in the authorities' metrics.
    const m = await httpRequest(`http://127.0.0.1:${net.authorities[0].metricsPort}/metrics`, { maxBytes: 1 << 22, timeoutMs: 5000 });
    expect(m.body.toString()).toMatch(/bitcloud_dirauth_capacity_probes_total\{result="ok"[^}]*\} [1-9]/);
  }, 300_000);
});
