// Issue 4, driven as a user would: `npm start` brings a network up (3 authorities, 6 relays of
// which 2 exits, a SOCKS proxy, each its own process), curl fetches from an HTTP server in this
// process through the proxy, and what the relays did is read from their /metrics.
// SPEC.md §7b (circuits, streams, flow control), §7.7 (isolation), §7.8 (SOCKS).
// Refusals and abuse are in circuits-refusals.test.ts (its own network).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from '../../src/crypto/primitives';
import { eventually, stopAll } from '../helpers/daemon';
import {
  curl, deltas, expectedBytes, metric, scrape, scrapeRelays, startContentServer, startExtraProxy, receivedBytesByPeerPort,
  startLocalNet, viaSocks, type ContentServer, type LocalNet, type NetNode,
} from '../helpers/localnet';

const MiB = 1 << 20;
/** Data bytes in one RELAY_DATA cell (tor-spec 6.1, SPEC.md §7b). */
const CELL_DATA = 498;

let net: LocalNet;
let web: ContentServer;
let body: Buffer;
/** A second proxy that builds no preemptive circuits: its built-circuit counter counts only circuits requests needed. */
let lean: { socksPort: number; metricsPort: number; logs: () => string };

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const url = (path: string) => `http://127.0.0.1:${web.port}${path}`;
const alive = (pid: number) => { try { process.kill(pid, 0); return true; } catch { return false; } };

beforeAll(async () => {
  body = randomBytes(64 * MiB);
  web = await startContentServer(body);
  net = await startLocalNet({ relays: 6, exits: 2 });
  const p = await startExtraProxy(net, 'lean-proxy', { preemptiveCircuits: 0 });
  lean = { socksPort: p.socksPort, metricsPort: p.metricsPort, logs: () => p.daemon.logs.slice(-20).map((l) => l.text).join('\n') };
}, 240_000);

afterAll(async () => {
  await stopAll();
  await net?.stop();
  await web?.close();
}, 60_000);

/** curl one URL through a proxy; resolves with curl's exit code and the sha256 and length of what it got. */
async function fetchHash(socksPort: number, path: string, user?: string, onBytes?: (total: number) => void, onSpawn?: (pid: number) => void) {
  const h = createHash('sha256');
  let n = 0;
  const r = await curl([...viaSocks(socksPort, user), '-sS', '--max-time', '300', url(path)], {
    timeoutMs: 320_000, onSpawn,
    onStdout: (d) => { h.update(d); n += d.length; onBytes?.(n); },
  });
  return { code: r.code, stderr: r.stderr, bytes: n, sha256: h.digest('hex') };
}

/** For failure messages: what the lean proxy counted and logged. */
async function leanDiagnosis(): Promise<string> {
  const m = await scrape(lean.metricsPort);
  const rows = m.filter((x) => /client_(streams|circuit_build_failures)|socks_replies/.test(x.name)).map((x) => `${x.name}${JSON.stringify(x.labels)} ${x.value}`);
  return `\n${rows.join('\n')}\n${lean.logs()}`;
}

async function builtCircuits(): Promise<number> {
  return metric(await scrape(lean.metricsPort), 'bitcloud_client_circuits_built_total');
}

describe('a 3-hop download through the SOCKS proxy', () => {
  it('curl gets 64 MiB intact, and exactly three relays carried it', async () => {
    const before = await scrapeRelays(net.relays);
    const got = await fetchHash(net.socksPort, `/bytes/0/${body.length}`, 'bulk');
    expect(got.code, got.stderr).toBe(0);
    expect(got.bytes).toBe(body.length);
    expect(got.sha256).toBe(sha(body));

    const after = await scrapeRelays(net.relays);
    const cells = deltas(before, after, 'bitcloud_cells_relayed_total');
    const full = body.length / CELL_DATA;
    const carriers = [...cells].filter(([, v]) => v >= 0.9 * full).map(([k]) => k);
    expect(carriers, JSON.stringify([...cells])).toHaveLength(3);
    // Nobody else saw more than stray traffic (directory fetches, preemptive circuits).
    for (const [k, v] of cells) if (!carriers.includes(k)) expect(v, k).toBeLessThan(0.1 * full);
    // One of the three is an exit that made the TCP connection.
    const connects = deltas(before, after, 'bitcloud_exit_connects_total', { result: 'ok' });
    const exits = carriers.filter((k) => (connects.get(k) ?? 0) >= 1);
    expect(exits).toHaveLength(1);
    expect(net.exits.map((e) => e.name)).toContain(exits[0]);
  }, 330_000);
});

describe('streams multiplexed on circuits', () => {
  const slice = (i: number) => ({ off: i * 3 * MiB + 12_345, len: MiB + i * 1000 });

  async function concurrent(users: string[]) {
    const runs = users.map((u, i) => {
      const { off, len } = slice(i);
      return fetchHash(lean.socksPort, `/bytes/${off}/${len}`, u).then((r) => ({ ...r, want: sha(expectedBytes(body, off, len)), len }));
    });
    for (const r of await Promise.all(runs)) {
      expect(r.code, r.stderr + await leanDiagnosis()).toBe(0);
      expect(r.bytes).toBe(r.len);
      expect(r.sha256).toBe(r.want);
    }
  }

  it('20 concurrent streams with the same credentials share one circuit, all intact', async () => {
    const b0 = await builtCircuits();
    await concurrent(Array.from({ length: 20 }, () => 'one-circuit'));
    expect(await builtCircuits() - b0).toBe(1);
  }, 330_000);

  it('20 concurrent streams under 4 credentials use 4 circuits, all intact', async () => {
    const b0 = await builtCircuits();
    await concurrent(Array.from({ length: 20 }, (_, i) => `several-${i % 4}`));
    expect(await builtCircuits() - b0).toBe(4);
  }, 330_000);
});

describe('stream isolation by SOCKS credentials (SPEC.md §7.7)', () => {
  it('different credentials get different circuits; the same credentials reuse one', async () => {
    const small = `/bytes/7/${4096}`;
    const want = sha(expectedBytes(body, 7, 4096));
    const step = async (user: string) => {
      const b0 = await builtCircuits();
      const r = await fetchHash(lean.socksPort, small, user);
      expect(r.code, r.stderr + await leanDiagnosis()).toBe(0);
      expect(r.sha256).toBe(want);
      return (await builtCircuits()) - b0;
    };
    expect(await step('alice')).toBe(1); // a new key: a new circuit
    expect(await step('alice')).toBe(0); // the same key: the same circuit
    expect(await step('bob')).toBe(1);
    expect(await step('alice')).toBe(0);
    expect(await step('bob')).toBe(0);
    expect(await step('carol')).toBe(1);
    // The proxy holds one circuit per key it served (and no preemptive ones).
    const open = metric(await scrape(lean.metricsPort), 'bitcloud_client_circuits_open');
    expect(open).toBeGreaterThanOrEqual(3);
  }, 120_000);
});

describe('stream isolation by destination port, when the config enables it (SPEC.md §7.7)', () => {
  it('with "isolateDestPort": true, one host\'s two ports get two circuits and each port reuses its own', async () => {
    const web2 = await startContentServer(body);
    const iso = await startExtraProxy(net, 'isolate-port-proxy', { preemptiveCircuits: 0, isolateDestPort: true });
    try {
      const built = async () => metric(await scrape(iso.metricsPort), 'bitcloud_client_circuits_built_total');
      const want = sha(expectedBytes(body, 3, 4096));
      const step = async (port: number) => {
        const b0 = await built();
        const r = await curl([...viaSocks(iso.socksPort, 'same-user'), '-sS', '--max-time', '120', `http://127.0.0.1:${port}/bytes/3/4096`], { timeoutMs: 130_000 });
        expect(r.code, r.stderr).toBe(0);
        expect(sha(r.stdout)).toBe(want);
        return (await built()) - b0;
      };
      expect(await step(web.port)).toBe(1);
      expect(await step(web2.port)).toBe(1); // same credentials, another port: another circuit
      expect(await step(web.port)).toBe(0);
      expect(await step(web2.port)).toBe(0);
    } finally {
      await iso.daemon.stop();
      await web2.close();
    }
  }, 180_000);
});

describe('a bound on open circuits, when the config sets one (SPEC.md §7b.11 Open circuits)', () => {
  it('with "maxOpenCircuits": 2, four credentials one after another each get their bytes and the idle circuits are closed', async () => {
    const capped = await startExtraProxy(net, 'max-open-proxy', { preemptiveCircuits: 0, maxOpenCircuits: 2 });
    try {
      const want = sha(expectedBytes(body, 11, 4096));
      for (const user of ['cap-0', 'cap-1', 'cap-2', 'cap-3']) {
        const r = await curl([...viaSocks(capped.socksPort, user), '-sS', '--max-time', '120', url('/bytes/11/4096')], { timeoutMs: 130_000 });
        expect(r.code, `${user}: ${r.stderr}`).toBe(0);
        expect(r.stdout.length, user).toBe(4096);
        expect(sha(r.stdout), user).toBe(want);
      }
      // Each credential built its own circuit; from the third on, each new one closed an idle one.
      const m = await scrape(capped.metricsPort);
      expect(metric(m, 'bitcloud_client_circuits_built_total')).toBeGreaterThanOrEqual(4);
      expect(metric(m, 'bitcloud_client_circuits_evicted_total')).toBeGreaterThanOrEqual(2);
    } finally {
      await capped.daemon.stop();
    }
  }, 180_000);
});

describe('a relay dies under a transfer', () => {
  it('killing the middle relay ends the stream with an error; the next request succeeds on a new circuit', async () => {
    const proxyPid = net.proxy.pid;
    const before = await scrapeRelays(net.relays);
    // Close-delimited body, far longer than the test lasts: only a reset can tell curl it was cut.
    let received = 0;
    let curlPid = 0;
    const transfer = fetchHash(net.socksPort, `/raw/0/${2048 * MiB}`, 'doomed', (n) => { received = n; }, (pid) => { curlPid = pid; });
    await eventually(() => received >= 4 * MiB, 120_000, 100);

    // Who carries it: the three relays whose cell counters moved with the bytes.
    const mid = await scrapeRelays(net.relays);
    const cells = deltas(before, mid, 'bitcloud_cells_relayed_total');
    const carriers = net.relays.filter((r) => (cells.get(r.name) ?? 0) >= 0.5 * (4 * MiB) / CELL_DATA);
    expect(carriers.map((r) => r.name), JSON.stringify([...cells])).toHaveLength(3);
    // The exit made the TCP connection; the guard is the carrier the proxy process holds a TCP connection to.
    const connects = deltas(before, mid, 'bitcloud_exit_connects_total', { result: 'ok' });
    const exit = carriers.filter((r) => (connects.get(r.name) ?? 0) >= 1);
    expect(exit).toHaveLength(1);
    // The proxy may also hold an idle link to another carrier (a second guard, a directory
    // fetch): the guard is the one whose link received the transfer's bytes.
    const proxyPeers = receivedBytesByPeerPort(proxyPid);
    const guard = carriers.filter((r) => r !== exit[0] && (proxyPeers.get(r.ports.or) ?? 0) >= 2 * MiB);
    expect(guard, JSON.stringify([...proxyPeers])).toHaveLength(1);
    const middle = carriers.find((r) => r !== exit[0] && r !== guard[0]) as NetNode;

    process.kill(middle.pid, 'SIGKILL');
    const got = await transfer;
    // No silent truncation: curl reports an error (a reset), never a clean end of a short body.
    expect(got.code, `curl pid ${curlPid} ended cleanly after ${got.bytes} bytes`).not.toBe(0);
    expect(got.bytes).toBeLessThan(2048 * MiB);
    expect(got.stderr).toMatch(/reset|Recv failure|transfer closed|partial/i);

    // The same proxy (not restarted), the same credentials: a new circuit, without the dead relay.
    const liveRelays = net.relays.filter((r) => r !== middle);
    const b2 = await scrapeRelays(liveRelays);
    const again = await fetchHash(net.socksPort, `/bytes/0/${8 * MiB}`, 'doomed');
    expect(again.code, again.stderr).toBe(0);
    expect(again.sha256).toBe(sha(body.subarray(0, 8 * MiB)));
    expect(alive(proxyPid)).toBe(true);
    expect(net.read().nodes.find((n) => n.name === 'proxy')?.pid).toBe(proxyPid);
    const a2 = await scrapeRelays(liveRelays);
    const cells2 = deltas(b2, a2, 'bitcloud_cells_relayed_total');
    expect([...cells2].filter(([, v]) => v >= 0.9 * (8 * MiB) / CELL_DATA)).toHaveLength(3);
  }, 330_000);
});
