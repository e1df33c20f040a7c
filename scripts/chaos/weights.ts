// Scenario 10 of the fault suite: do the consensus weights that come from bandwidth proofs follow
// the relays' real capacities? Several clients (the launcher's proxy and extra `bitcloud proxy`
// processes, each with its own guards) load the network for a bounded time and a bounded number of
// bytes; the consensus's `proven` cells (SPEC.md §8.5, §8.6) over the loaded epochs are then set
// against each relay's tc cap. Needs --hosts (the caps are tc tbf on each relay's link).
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { parseAuthorityList } from '../../src/dir/authorities';
import { fetchVerifiedConsensus } from '../../src/dir/consensus-fetch';
import type { VerifiedConsensus } from '../../src/dir/types';
import { fetchVia, poll, runCli, sleep } from './net';
import type { Ctx, Scenario } from './scenarios';

const MiB = 1 << 20;

async function consensusNow(ctx: Ctx): Promise<VerifiedConsensus | null> {
  const cfg = JSON.parse(fs.readFileSync(ctx.net.nj.clientConfig, 'utf8')) as { authorities: unknown };
  const auths = parseAuthorityList(cfg.authorities);
  const got = await fetchVerifiedConsensus(auths.map((a) => a.url), auths, { timeoutMs: 5000 }).catch(() => null);
  return got?.consensus ?? null;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
}

/** Ranks (1 = largest), ties sharing their mean rank. */
function ranks(xs: number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => b[0] - a[0]);
  const r = new Array<number>(xs.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
    for (let k = i; k <= j; k++) r[order[k][1]] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return r;
}

function spearman(a: number[], b: number[]): number {
  const ra = ranks(a), rb = ranks(b);
  const mean = (v: number[]) => v.reduce((x, y) => x + y, 0) / v.length;
  const ma = mean(ra), mb = mean(rb);
  let num = 0, da = 0, db = 0;
  for (let i = 0; i < a.length; i++) { num += (ra[i] - ma) * (rb[i] - mb); da += (ra[i] - ma) ** 2; db += (rb[i] - mb) ** 2; }
  return da && db ? num / Math.sqrt(da * db) : 0;
}

const s10: Scenario = {
  id: '10', name: 'weights follow capacity', needsHosts: true,
  expected: 'after a few loaded epochs the relays\' proven cells in the consensus (SPEC.md §8.5) rank them in the order of their tc caps (relays with equal caps in either order); reported: each relay\'s proven share against its cap share and the median relative error',
  async run(ctx) {
    const n = ctx.net;
    const P = ctx.period * 1000;
    const relays = n.byRole('relay', 'exit');
    // Extra clients, each with its own data folder (so its own sampled guards, SPEC.md §7.2).
    const base = JSON.parse(fs.readFileSync(n.nj.clientConfig, 'utf8')) as Record<string, unknown>;
    const proxies: Array<{ socksPort: number; child: ChildProcess | null; done: Promise<unknown> }> = [];
    for (let i = 0; i < 3; i++) {
      const socksPort = await freePort();
      const file = path.join(n.dir, `chaos-s10-client${i}.json`);
      fs.writeFileSync(file, JSON.stringify({ ...base, dataDir: path.join(n.dir, `chaos-s10-client${i}`), socksPort, metricsPort: await freePort() }, null, 2));
      const p: { socksPort: number; child: ChildProcess | null; done: Promise<unknown> } = { socksPort, child: null, done: Promise.resolve() };
      p.done = runCli(ctx.repo, ['proxy', '--config', file], { maxMs: 30 * 60_000, onStart: (c) => { p.child = c; } });
      proxies.push(p);
    }
    const stopProxies = async (): Promise<void> => {
      for (const p of proxies) { try { process.kill(p.child!.pid!, 'SIGTERM'); } catch { /* gone */ } }
      await Promise.race([Promise.all(proxies.map((p) => p.done)), sleep(20_000)]);
      for (const p of proxies) { try { process.kill(p.child!.pid!, 'SIGKILL'); } catch { /* gone */ } }
    };
    try {
      const ports = [n.socksPort, ...proxies.map((p) => p.socksPort)];
      const up = await Promise.all(ports.map((port, i) => poll(async () => (await fetchVia(port, `http://${n.webAddress}:${ctx.web.port}/bytes/0/1024`, `chaos-s10-warm-${i}-${Date.now()}`, { maxMs: 30_000 })).code === 0, 90_000, 2000)));
      if (up.some((x) => !x)) return { done: 'extra clients did not come up', observed: `clients answering: ${up.filter(Boolean).length} of ${ports.length}`, recoverySeconds: null, bytesLost: 0, passed: false };
      // Load: per client 3 downloads at a time, each at most 128 MiB and at most until the end,
      // for 8 periods; every download on fresh credentials (a new circuit, so paths spread).
      const loadMs = 8 * P;
      const t0 = Date.now();
      const end = t0 + loadMs;
      let bytes = 0, downloads = 0;
      const worker = async (port: number, w: number): Promise<void> => {
        for (let k = 0; Date.now() < end - 1000; k++) {
          const r = await fetchVia(port, `http://${n.webAddress}:${ctx.web.port}/raw/${k}/${128 * MiB}`, `chaos-s10-${port}-${w}-${k}`, { maxMs: Math.max(1000, end - Date.now()) });
          bytes += r.bytes;
          downloads++;
          if (r.code !== 0 && !r.timedOut) await sleep(500);
        }
      };
      // Consensuses seen during and after the load (proven_epoch lags valid_after by two periods).
      const seen = new Map<number, VerifiedConsensus>();
      const watch = (async () => {
        while (Date.now() < end + 4 * P) {
          const c = await consensusNow(ctx);
          if (c && c.provenEpoch !== null) seen.set(c.provenEpoch, c);
          await sleep(1000);
        }
      })();
      await Promise.all(ports.flatMap((port) => [0, 1, 2].map((w) => worker(port, w))));
      await watch;
      const firstEpoch = Math.floor(t0 / P) + 1, lastEpoch = Math.floor(end / P) - 1;
      const loaded = [...seen.values()].filter((c) => c.provenEpoch! >= firstEpoch && c.provenEpoch! <= lastEpoch);
      if (loaded.length === 0) return { done: `load ${Math.round(bytes / MiB)} MiB`, observed: `no consensus measured a loaded epoch (epochs seen: ${[...seen.keys()].join(',')})`, recoverySeconds: null, bytesLost: 0, passed: false };
      const proven = relays.map((r) => loaded.reduce((a, c) => a + (c.relays.find((x) => x.fingerprint === r.identity)?.proven ?? 0), 0));
      const weight = relays.map((r) => loaded.at(-1)!.relays.find((x) => x.fingerprint === r.identity)?.weight ?? 0);
      const caps = relays.map((r) => r.host?.capBytesPerSec ?? 0);
      const sum = (v: number[]) => v.reduce((a, b) => a + b, 0);
      const provenShare = proven.map((v) => v / Math.max(1, sum(proven)));
      const capShare = caps.map((v) => v / Math.max(1, sum(caps)));
      const relErr = provenShare.map((s, i) => Math.abs(s - capShare[i]) / capShare[i]).sort((a, b) => a - b);
      const median = relErr.length % 2 ? relErr[(relErr.length - 1) / 2] : (relErr[relErr.length / 2 - 1] + relErr[relErr.length / 2]) / 2;
      // In cap order: every relay with a larger cap has more proven cells.
      const inOrder = relays.every((_, i) => relays.every((__, j) => !(caps[i] > caps[j]) || proven[i] > proven[j]));
      const rho = spearman(proven, caps);
      const cellBytes = 514;
      const table = relays.map((r, i) => `${r.name} cap ${caps[i] / 1e6} MB/s (${(capShare[i] * 100).toFixed(0)}%) proven ${Math.round(proven[i] * cellBytes / MiB)} MiB (${(provenShare[i] * 100).toFixed(0)}%) weight ${weight[i]}`).join('; ');
      ctx.log(`scenario 10 table: ${table}`);
      return {
        done: `${ports.length} clients × 3 downloads for ${loadMs / 1000} s (${downloads} downloads, ${Math.round(bytes / MiB)} MiB); proven cells of epochs ${firstEpoch}..${lastEpoch} from ${loaded.length} consensuses`,
        observed: `${table}; Spearman(proven, cap) ${rho.toFixed(2)}; median relative error of proven share against cap share ${(median * 100).toFixed(0)}%; ranking ${inOrder ? 'in cap order' : 'NOT in cap order'}`,
        recoverySeconds: null, bytesLost: 0, passed: inOrder,
      };
    } finally {
      await stopProxies();
    }
  },
};

export const WEIGHT_SCENARIOS: Scenario[] = [s10];
