// What the launcher checks and shows: free ports, a verified consensus, and a download through
// the SOCKS proxy (so through a 3-hop circuit) from a local HTTP server, hash compared.
import { execFile } from 'node:child_process';
import fsSync from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import net from 'node:net';
import { SocksClient } from 'socks';
import { parseAuthorityList } from '../../src/dir/authorities';
import { fetchVerifiedConsensus } from '../../src/dir/consensus-fetch';
import { createHash, randomBytes } from '../../src/crypto/primitives';
import type { LocalNetProcesses } from './processes';

export async function checkPortsFree(ports: number[]): Promise<number[]> {
  const busy: number[] = [];
  for (const port of ports) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (!ok) busy.push(port);
  }
  return busy;
}

/**
 * Poll until a consensus verifies, lists `relays` relays with Running, and can give a 3-hop path
 * (a Guard, an Exit: the first consensus after start lists relays before they are Stable, so
 * without the Guard flag) — read from every one of `sources` (the client's mirrors, which the
 * proxy asks first), else from the authorities. Ready then means curl works at once.
 */
export async function waitForConsensus(
  list: { name: string; identity: string; address: string }[], relays: number, procs: LocalNetProcesses, timeoutMs: number,
  sources?: string[], storage = 0,
): Promise<{ relays: number; storage: number; signers: number }> {
  const authorities = parseAuthorityList(list);
  const from = sources?.length ? sources : authorities.map((a) => a.url);
  const until = Date.now() + timeoutMs;
  let last = 'no answer yet';
  while (Date.now() < until) {
    const dead = procs.dead();
    if (dead.length) throw new Error(`${dead.join(', ')} exited during start-up`);
    let good: { relays: number; storage: number; signers: number } | null = null;
    for (const src of from) {
      const out = await fetchVerifiedConsensus([src], authorities, { timeoutMs: 3000 }).catch((e: Error) => { last = e.message; return null; });
      const c = out?.consensus;
      if (!c) { if (out?.failures.length) last = String(out.failures[0].reason); good = null; break; }
      const stores = c.relays.filter((r) => r.flags.has('Running') && r.flags.has('Storage')).length;
      const up = c.relays.filter((r) => r.flags.has('Running') && r.roles.includes('relay'));
      const guards = up.filter((r) => r.flags.has('Guard')).length;
      const exits = up.filter((r) => r.flags.has('Exit')).length;
      last = `${up.length} running relays (${guards} guards, ${exits} exits) and ${stores} storage nodes listed by ${src}`;
      if (up.length < relays || guards < 1 || exits < 1 || stores < storage) { good = null; break; }
      good = { relays: up.length, storage: stores, signers: c.signers.length };
    }
    if (good) return good;
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error(`no consensus listing ${relays} relays in time (${last})`);
}

/** Serve `size` random bytes on `host` (127.0.0.1, or the bridge with --hosts) and fetch them through the SOCKS proxy. */
export async function runDemo(socksPort: number, host = '127.0.0.1', size = 4 << 20): Promise<{ bytes: number; ms: number; sha256: string }> {
  const body = randomBytes(size);
  const want = createHash('sha256').update(body).digest('hex');
  const server = http.createServer((_req, res) => { res.writeHead(200, { 'content-length': body.length }); res.end(body); });
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as net.AddressInfo).port;
  const t0 = Date.now();
  try {
    let lastErr: Error | null = null;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const got = await fetchThroughSocks(socksPort, host, port);
        const sha = createHash('sha256').update(got).digest('hex');
        if (sha !== want) throw new Error(`hash mismatch after ${got.length} bytes`);
        return { bytes: got.length, ms: Date.now() - t0, sha256: sha };
      } catch (e) {
        lastErr = e as Error;
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
    throw new Error(`demo download failed: ${lastErr?.message}`);
  } finally {
    server.close();
  }
}

async function fetchThroughSocks(socksPort: number, host: string, port: number): Promise<Buffer> {
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: socksPort, type: 5 },
    command: 'connect',
    destination: { host, port },
    timeout: 60_000,
  });
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', reject);
    socket.on('end', () => {
      const all = Buffer.concat(chunks);
      const sep = all.indexOf('\r\n\r\n');
      if (sep < 0 || !all.subarray(0, 12).toString().startsWith('HTTP/1.1 200')) return reject(new Error('bad HTTP response'));
      resolve(all.subarray(sep + 4));
    });
    socket.write(`GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`);
  });
}

/**
 * The storage half of the demo, run as a user would: `bitcloud put FILE --json` (through circuits,
 * the default) and `bitcloud get CAP -o OUT --json`, then compare the bytes.
 */
export async function runStorageDemo(repo: string, dir: string, clientConfig: string, size = 1 << 20): Promise<{ bytes: number; putMs: number; getMs: number; capability: string }> {
  const demoDir = path.join(dir, 'demo');
  await fsp.mkdir(demoDir, { recursive: true });
  const file = path.join(demoDir, 'hello.bin');
  const out = path.join(demoDir, 'hello.out');
  const body = randomBytes(size);
  await fsp.writeFile(file, body);
  const cli = path.join(repo, 'bin', 'bitcloud.js');
  let lastErr = '';
  for (let attempt = 0; attempt < 4; attempt++) {
    const t0 = Date.now();
    const put = await run(process.execPath, [cli, 'put', file, '--json', '--config', clientConfig]);
    if (put.code !== 0) { lastErr = `put: ${put.stderr.trim() || put.stdout.trim()}`; await new Promise((r) => setTimeout(r, 3000)); continue; }
    const putMs = Date.now() - t0;
    const capability = String((JSON.parse(put.stdout.trim().split('\n').pop()!) as { capability: string }).capability);
    const t1 = Date.now();
    await fsp.rm(out, { force: true });
    const get = await run(process.execPath, [cli, 'get', capability, '-o', out, '--json', '--config', clientConfig]);
    if (get.code !== 0) { lastErr = `get: ${get.stderr.trim() || get.stdout.trim()}`; await new Promise((r) => setTimeout(r, 3000)); continue; }
    const getMs = Date.now() - t1;
    const back = await fsp.readFile(out);
    if (!back.equals(body)) throw new Error('storage demo: the bytes read back differ from the bytes stored');
    return { bytes: back.length, putMs, getMs, capability };
  }
  throw new Error(`storage demo failed: ${lastErr}`);
}

/**
 * SPEC.md §9.20.4: a paid upload. `bitcloud keep contract CAP --pay 0.5 --epochs 12` audits the demo
 * file, hands the contract to every authority and funds its escrow from the demo wallet; it returns
 * once a block carries the funding.
 */
export async function runPaidContractDemo(repo: string, clientConfig: string, capability: string, pay = '0.5', epochs = 12): Promise<{ ok: boolean; contract: string; pay: string; epochs: number; detail: string }> {
  const cli = path.join(repo, 'bin', 'bitcloud.js');
  const r = await run(process.execPath, [cli, 'keep', 'contract', capability, '--pay', pay, '--epochs', String(epochs), '--json', '--config', clientConfig]);
  let j: { ok?: boolean; contract?: string; funding?: { ok?: boolean; included?: { height: number } | null; error?: { code?: string; message?: string } } | null } = {};
  try { j = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as typeof j; } catch { /* reported below */ }
  const f = j.funding;
  const detail = f?.ok ? (f.included ? `funding in block ${f.included.height}` : 'funding pending') : `${f?.error?.code ?? `exit ${r.code}`} ${f?.error?.message ?? r.stderr.trim().split('\n').pop() ?? ''}`.trim();
  return { ok: r.code === 0 && j.ok === true && f?.ok === true, contract: j.contract ?? '', pay, epochs, detail };
}

function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 << 20, timeout: 180_000 }, (e, stdout, stderr) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? (e as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** The newest `policy updated` seq a node's log shows (0 when none). */
function policySeqInLog(log: string): number {
  let seq = 0;
  let text = '';
  try { text = fsSync.readFileSync(log, 'utf8'); } catch { return 0; }
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const j = JSON.parse(line) as { msg?: string; seq?: number };
      if (j.msg === 'policy updated' && typeof j.seq === 'number') seq = Math.max(seq, j.seq);
    } catch { /* partial line */ }
  }
  return seq;
}

/** Wait until every log shows a policy of at least `seq` (SPEC.md §10.6.1). */
export async function waitForPolicy(logs: string[], seq: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (logs.every((l) => policySeqInLog(l) >= seq)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`moderated storage nodes did not take policy version ${seq} within ${timeoutMs} ms`);
}

/**
 * The moderation demo (SPEC.md §10.3, §10.8): a public file of class public-any stored with
 * k = 1, n = 1 lands on a moderated node (unmoderated nodes take encrypted-private only); every
 * moderator denies it by content and publishes; once the moderated nodes have the new policy, the
 * same bytes under another name are refused, and so is the original.
 */
export async function runModerationDemo(repo: string, dir: string, clientConfig: string, moderators: { dir: string }[], moderatedLogs: string[], refreshMs: number): Promise<{ refusal: string; getRefusal: string; capability: string }> {
  const demoDir = path.join(dir, 'demo');
  await fsp.mkdir(demoDir, { recursive: true });
  const body = randomBytes(64 * 1024);
  const file = path.join(demoDir, 'public.bin');
  const renamed = path.join(demoDir, 'same-bytes-other-name.bin');
  await fsp.writeFile(file, body);
  await fsp.writeFile(renamed, body);
  const cli = path.join(repo, 'bin', 'bitcloud.js');
  const json = (s: string) => JSON.parse(s.trim().split('\n').pop() || '{}') as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  let put = { code: 1, stdout: '', stderr: '' };
  for (let attempt = 0; attempt < 4; attempt++) {
    put = await run(process.execPath, [cli, 'put', file, '--class', 'public-any', '--k', '1', '--n', '1', '--json', '--config', clientConfig]);
    if (put.code === 0) break;
    await new Promise((r) => setTimeout(r, 3000));
  }
  if (put.code !== 0) throw new Error(`moderation demo: put failed: ${put.stdout.trim() || put.stderr.trim()}`);
  const capability = String(json(put.stdout).capability);
  for (const m of moderators) {
    const d = await run(process.execPath, [cli, 'moderator', 'deny-content', capability, '--data-dir', m.dir, '--config', clientConfig, '--json']);
    if (d.code !== 0) throw new Error(`moderation demo: deny-content failed: ${d.stdout.trim() || d.stderr.trim()}`);
    const p = await run(process.execPath, [cli, 'moderator', 'publish', '--data-dir', m.dir, '--config', clientConfig, '--skip-dht', '--json']);
    if (p.code !== 0) throw new Error(`moderation demo: publish failed: ${p.stdout.trim() || p.stderr.trim()}`);
  }
  await waitForPolicy(moderatedLogs, 2, 10 * refreshMs + 30_000);
  const again = await run(process.execPath, [cli, 'put', renamed, '--class', 'public-any', '--k', '1', '--n', '1', '--json', '--config', clientConfig]);
  const e = json(again.stdout).error as { code?: string; message?: string } | undefined;
  if (again.code === 0 || !e || !/POLICY_DENIED/.test(`${e.code} ${e.message}`)) {
    throw new Error(`moderation demo: the denied bytes were not refused under another name: ${again.stdout.trim() || again.stderr.trim()}`);
  }
  const out = path.join(demoDir, 'public.out');
  const g = await run(process.execPath, [cli, 'get', capability, '-o', out, '--json', '--config', clientConfig]);
  const ge = json(g.stdout).error as { code?: string } | undefined;
  return { refusal: `${e.code}: ${e.message}`, getRefusal: g.code === 0 ? 'served (another node holds a copy)' : String(ge?.code), capability };
}

/**
 * SPEC.md §8.11: fund the client's demo wallet. Once some relay of the local network holds at
 * least 2 coins in the verified reward chain, it sends 1 coin from its identity key to the wallet
 * key in the client's data folder (made if missing) — what an operator does with
 * `bitcloud wallet send --key <relay data dir>/identity.key`. Polls every period; resolves with
 * the relay's name, the wallet address and the block height, or null when `stop()` says to give up.
 */
export async function fundDemoWallet(
  list: { name: string; identity: string; address: string }[], periodSeconds: number, clientDir: string,
  relays: readonly { name: string; dataDir: string }[], stop: () => boolean,
): Promise<{ relay: string; wallet: string; height: number } | null> {
  const authorities = parseAuthorityList(list);
  const { fetchRewardChain } = await import('../../src/client/rewards');
  const { loadWalletKey, submitTransfer, findTransfer } = await import('../../src/client/wallet');
  const { loadEd25519Secret, IDENTITY_KEY_FILE } = await import('../../src/crypto/keys');
  const { signTransfer } = await import('../../src/bandwidth/transfer');
  const { key: wallet } = await loadWalletKey(clientDir);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let sent: { t: ReturnType<typeof signTransfer>; relay: string } | null = null;
  while (!stop()) {
    await sleep(periodSeconds * 1000);
    const c = await fetchRewardChain({ authorities, periodSeconds, timeoutMs: 10_000 }).catch(() => null);
    if (!c) continue;
    if (sent) {
      const b = findTransfer(c.blocks, sent.t);
      if (b) return { relay: sent.relay, wallet: wallet.publicKey.toString('hex'), height: b.block.height };
      if ((c.state.nonces.get(sent.t.from.toString('hex')) ?? 0) >= sent.t.nonce) sent = null; // spent otherwise: try again
      continue;
    }
    for (const r of relays) {
      const key = await loadEd25519Secret(path.join(r.dataDir, IDENTITY_KEY_FILE)).catch(() => null);
      if (!key) continue;
      const fp = key.publicKey.toString('hex');
      if ((c.state.balances.get(fp) ?? 0n) < 200_000_000n || !c.state.chainId) continue;
      const t = signTransfer(key, wallet.publicKey, 100_000_000n, (c.state.nonces.get(fp) ?? 0) + 1, c.state.chainId);
      const res = await submitTransfer(authorities, t);
      if (res.accepted.length) { sent = { t, relay: r.name }; break; }
    }
  }
  return null;
}
