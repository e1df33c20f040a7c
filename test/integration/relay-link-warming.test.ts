// SPEC.md §1.9, driven on real daemons: `npm start` brings up 3 authorities and 6 relays (each its
// own process); once the consensus lists them, every relay holds a link to every other relay,
// opened by the warming pass, and a client's circuits then extend only over links already open:
// no EXTEND2 opens a new one. Read from the relays' /metrics.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from '../../src/crypto/primitives';
import { eventually, stopAll } from '../helpers/daemon';
import {
  curl, deltas, metric, scrape, scrapeRelays, startContentServer, startExtraProxy, startLocalNet, viaSocks,
  type ContentServer, type LocalNet,
} from '../helpers/localnet';

let net: LocalNet;
let web: ContentServer;
let lean: { socksPort: number; metricsPort: number };

beforeAll(async () => {
  web = await startContentServer(randomBytes(1 << 20));
  net = await startLocalNet({ relays: 6, exits: 2 });
  const p = await startExtraProxy(net, 'lean-proxy', { preemptiveCircuits: 0 });
  lean = { socksPort: p.socksPort, metricsPort: p.metricsPort };
}, 240_000);

afterAll(async () => {
  await stopAll();
  await net?.stop();
  await web?.close();
}, 60_000);

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

describe('relay links warmed on a new consensus (SPEC.md §1.9)', () => {
  it('every relay gets a link to every other relay, most opened by warming', async () => {
    const n = net.relays.length;
    const got = await eventually(async () => {
      const m = await scrapeRelays(net.relays);
      // Each relay: links (either direction) to all n − 1 others; the warm set holds them all.
      const ok = [...m.values()].every((s) => metric(s, 'bitcloud_relay_links_open') >= n - 1 && metric(s, 'bitcloud_relay_warm_set_size') === n - 1);
      return ok ? m : null;
    }, 120_000, 500);
    const warmed = [...got.values()].reduce((a, s) => a + metric(s, 'bitcloud_relay_links_warmed_total', { result: 'opened' }), 0);
    const forExtend = [...got.values()].reduce((a, s) => a + metric(s, 'bitcloud_relay_extend_links_total', { link: 'opened' }), 0);
    // n(n−1)/2 relay pairs, each linked once: by the warming pass, or by an EXTEND2 of the
    // launcher's proxy that came first.
    expect(warmed + forExtend).toBeGreaterThanOrEqual(n * (n - 1) / 2);
    expect(warmed).toBeGreaterThan(0);
  }, 150_000);

  it("a client's new circuits extend over open links only: no EXTEND2 opens one", async () => {
    const before = await scrapeRelays(net.relays);
    const builtBefore = metric(await scrape(lean.metricsPort), 'bitcloud_client_circuits_built_total');
    for (let i = 0; i < 8; i++) {
      const r = await curl(['-sS', '-o', '/dev/null', '--max-time', '60', ...viaSocks(lean.socksPort, `warm-${i}`), `http://127.0.0.1:${web.port}/bytes/${i}/1024`], { timeoutMs: 70_000 });
      expect(r.code, r.stderr).toBe(0);
    }
    const after = await scrapeRelays(net.relays);
    const built = metric(await scrape(lean.metricsPort), 'bitcloud_client_circuits_built_total') - builtBefore;
    expect(built).toBeGreaterThanOrEqual(8);
    // Two extensions per 3-hop circuit, every one over a link that was already open.
    expect(sum(deltas(before, after, 'bitcloud_relay_extend_links_total', { link: 'reused' }))).toBeGreaterThanOrEqual(2 * built);
    expect(sum(deltas(before, after, 'bitcloud_relay_extend_links_total', { link: 'opened' }))).toBe(0);
    expect(sum(deltas(before, after, 'bitcloud_relay_extend_links_total', { link: 'waited' }))).toBe(0);
  }, 120_000);
});
