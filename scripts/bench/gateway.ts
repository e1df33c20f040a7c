// `npm run bench -- --only gateway`: the `.bitcloud` gateway (SPEC.md §9.16) of the real SOCKS
// proxy of a local network (`npm start` as a child process, six storage nodes), measured with curl
// as a browser would fetch: time to first byte of a stored page (cold: the first request, which
// reads the root, the manifests, the listing and the page; warm: from the proxy's chunk cache) and
// seek latency in a 200 MiB file (a 64 KiB range at random offsets, each in a chunk not read
// before). Baselines from the same run: TTFB of a page fetched through the same proxy and an exit
// from a local web server, and the first byte of the large file (range 0-0).
import fs from 'node:fs';
import path from 'node:path';
import type { BenchModule, BenchRow } from './types';
import { randomBytes } from '../../src/crypto/primitives';
import { curl, startContentServer, startLocalNet, viaSocks } from '../../test/helpers/localnet';
import { runCli } from '../../test/helpers/daemon';

const MiB = 1024 * 1024;
const say = (s: string) => process.stderr.write(`bench gateway: ${s}\n`);

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Time to first byte (ms) of one request through the SOCKS proxy, as curl measures it. */
async function ttfb(socksPort: number, url: string, extra: string[] = []): Promise<number> {
  const r = await curl(['-sS', '-f', '-o', '/dev/null', '-w', '%{time_starttransfer}', ...viaSocks(socksPort), ...extra, url], { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`curl ${url}: exit ${r.code}: ${r.stderr}`);
  return Number(r.stdout.toString()) * 1000;
}

async function putJson(clientConfig: string, file: string): Promise<{ url: string }> {
  const put = await runCli('bitcloud', ['put', file, '--json', '--config', clientConfig], { timeoutMs: 1_800_000 });
  if (put.code !== 0) throw new Error(`bitcloud put ${file}: ${put.stderr}`);
  return JSON.parse(put.stdout.trim().split('\n').pop()!) as { url: string };
}

const mod: BenchModule = {
  name: 'gateway',
  async run({ quick }) {
    const size = (quick ? 32 : 200) * MiB;
    say('starting the local network (npm start as a child process, six storage nodes)...');
    const net = await startLocalNet({ relays: 4, exits: 1, storage: 6, timeoutMs: 240_000 });
    const web = await startContentServer(randomBytes(64 * 1024));
    const rows: BenchRow[] = [];
    try {
      const site = path.join(net.dir, 'bench-site');
      fs.mkdirSync(site);
      fs.writeFileSync(path.join(site, 'index.html'), `<!doctype html><title>bench</title>${'<p>page</p>'.repeat(100)}`);
      fs.writeFileSync(path.join(site, 'style.css'), 'p { color: red }');
      say('putting a small site...');
      const { url } = await putJson(net.clientConfig, site);
      const big = path.join(net.dir, 'big.bin');
      const fd = fs.openSync(big, 'w');
      for (let i = 0; i < size / MiB; i++) fs.writeSync(fd, randomBytes(MiB));
      fs.closeSync(fd);
      say(`putting a ${size / MiB} MiB file through circuits...`);
      const t0 = performance.now();
      const { url: bigUrl } = await putJson(net.clientConfig, big);
      say(`put took ${((performance.now() - t0) / 1000).toFixed(1)} s`);

      // Baseline: a 1 KiB page through the same proxy, an exit and a web server on this machine.
      await ttfb(net.socksPort, `http://127.0.0.1:${web.port}/bytes/0/1024`); // circuit built
      const exitTtfb: number[] = [];
      for (let i = 0; i < 5; i++) exitTtfb.push(await ttfb(net.socksPort, `http://127.0.0.1:${web.port}/bytes/0/1024`));
      const exitBase = { name: 'TTFB 1 KiB via exit (same proxy)', value: median(exitTtfb), unit: 'ms' };

      const cold = await ttfb(net.socksPort, url);
      const warm: number[] = [];
      for (let i = 0; i < 5; i++) warm.push(await ttfb(net.socksPort, url));
      rows.push({ group: 'gateway', name: 'TTFB of a .bitcloud page, first request (root, listing, page)', value: cold, unit: 'ms', baseline: exitBase });
      rows.push({ group: 'gateway', name: 'TTFB of a .bitcloud page, again (chunk cache)', value: median(warm), unit: 'ms', baseline: exitBase });

      const first = await ttfb(net.socksPort, bigUrl, ['-r', '0-0']);
      const seeks: number[] = [];
      const chunks = size / MiB;
      const used = new Set<number>([0]);
      for (let i = 0; i < (quick ? 5 : 10); i++) {
        let c: number;
        do c = 1 + Math.floor(Math.random() * (chunks - 1)); while (used.has(c));
        used.add(c);
        const off = c * MiB + Math.floor(Math.random() * (MiB - 65_536));
        seeks.push(await ttfb(net.socksPort, bigUrl, ['-r', `${off}-${off + 65_535}`]));
      }
      rows.push({
        group: 'gateway', name: `seek latency in a ${size / MiB} MiB file (64 KiB range, uncached chunk; median of ${seeks.length})`,
        value: median(seeks), unit: 'ms', baseline: { name: 'first byte of the same file (range 0-0)', value: first, unit: 'ms' },
        note: `max ${Math.max(...seeks).toFixed(0)} ms`,
      });
    } finally {
      await web.close();
      await net.stop();
    }
    return rows;
  },
};

export default mod;
