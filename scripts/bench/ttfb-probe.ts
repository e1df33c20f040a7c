// quick TTFB probe: existing-circuit timings split by curl phases
import { randomBytes } from '../../src/crypto/primitives';
import { cpuSeconds, curl, startContentServer, startExtraProxy, startLocalNet, viaSocks } from '../../test/helpers/localnet';
const med = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const N = Number(process.env.N ?? 40);
const net = await startLocalNet({ relays: 6, exits: 2, period: 15 });
const web = await startContentServer(randomBytes(1 << 20));
const lean = await startExtraProxy(net, 'lean', { preemptiveCircuits: 0 });
try {
  const u = (i: number) => `http://127.0.0.1:${web.port}/bytes/${i}/1024`;
  const one = async (args: string[], i: number) => {
    const r = await curl(['-sS', '-o', '/dev/null', '-w', '%{time_connect} %{time_pretransfer} %{time_starttransfer}', ...args, u(i)], { timeoutMs: 60000 });
    return r.stdout.toString().trim().split(' ').map((x) => Number(x) * 1000);
  };
  await one(viaSocks(lean.socksPort, 'w'), 0);
  const rows: number[][] = [], cold: number[][] = [], direct: number[][] = [];
  for (let i = 0; i < N; i++) {
    cold.push(await one(viaSocks(lean.socksPort, `c${i}`), i));
    rows.push(await one(viaSocks(lean.socksPort, `c${i}`), i + 1));
    direct.push(await one([], i));
  }
  const show = (name: string, r: number[][]) => console.log(`${name}: connect ${med(r.map((x) => x[0])).toFixed(2)} socksdone ${med(r.map((x) => x[1])).toFixed(2)} ttfb ${med(r.map((x) => x[2])).toFixed(2)}  (ttfb-socksdone ${med(r.map((x) => x[2] - x[1])).toFixed(2)}) p10 ${[...r.map((x) => x[2])].sort((a, b) => a - b)[Math.floor(r.length / 10)].toFixed(2)}`);
  const pids = [...net.nodes.map((n) => ({ name: n.name, pid: n.pid })), { name: 'lean', pid: lean.daemon.pid }];
  const c0 = pids.map((p) => { try { return cpuSeconds(p.pid); } catch { return 0; } });
  const M = 100;
  for (let i = 0; i < M; i++) await one(viaSocks(lean.socksPort, 'c0'), i);
  const per = pids.map((p, j) => { try { return { name: p.name, ms: (cpuSeconds(p.pid) - c0[j]) / M * 1000 }; } catch { return { name: p.name, ms: 0 }; } });
  console.log('CPU ms per existing-circuit request: ' + per.filter((x) => x.ms > 0.05).map((x) => `${x.name} ${x.ms.toFixed(2)}`).join(', '));
  show('existing', rows); show('on demand', cold); show('direct', direct);
} finally { await lean.daemon.stop(); await net.stop(); await web.close(); }
