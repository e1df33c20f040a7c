// Three authorities' reward ledgers (SPEC.md §8.7) on 127.0.0.1 for the ledger tests: each a real
// RewardLedger behind a real node:http server answering the real routes (GET /bitcloud/rewards,
// /bitcloud/rewards/pending, /bitcloud/keys/certificate, POST /bitcloud/transfers and its pending
// list). The tests drive the ledgers by hand: `onConsensus` on each, then `rounds()`.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import { makeKeyCertificate } from '../../src/dir/certificate';
import { httpRequest, PATHS } from '../../src/dir/fetch';
import type { AuthorityInfo } from '../../src/dir/authorities';
import { prom } from '../../src/ops/metrics';
import { RewardLedger } from '../../directory/rewards';
import { RewardBundles, serveEscrowCancel, serveRewards, serveTransfers } from '../../directory/reward-http';
import type { Signer } from '../../directory/vote';

/** A node's reward chain answers (SPEC.md §8.7.5): one RewardBundles per running ledger, as directory/http.ts keeps it. */
const bundles = new WeakMap<RewardLedger, RewardBundles>();
function bundlesOf(n: TrioNode): RewardBundles | undefined {
  if (!n.ledger) return undefined;
  let b = bundles.get(n.ledger);
  if (!b) bundles.set(n.ledger, (b = new RewardBundles(n.ledger)));
  return b;
}

export interface TrioNode {
  name: string;
  signer: Signer;
  dir: string;
  server: http.Server;
  port: number;
  /** null while the authority is down: its routes answer 404 and its certificate is not served. */
  ledger: RewardLedger | null;
  /** The registry of the running ledger (a new one at each start). */
  reg: prom.Registry;
  /** The ledger's log lines at `logLevel` and above, parsed (kept across restarts). */
  logs: Record<string, unknown>[];
}

export interface LedgerTrioOptions {
  /** Identity key seeds are `seed + i`, signing key seeds `seed + 10 + i` (one byte each). */
  seed: number;
  periodSeconds: number;
  /** Prefix of the temporary folder. */
  tmpPrefix: string;
  /** Level of the lines kept in `logs` (default 'info'). */
  logLevel?: 'info' | 'warn' | 'silent';
  /** Start the three ledgers at once (default true). */
  startAll?: boolean;
  /** Give the ledgers a clock that each round moves on by one period (the catch-up interval passes). */
  clock?: number;
  /** Called after a ledger is made and loaded (e.g. to give it an escrow source). */
  onStart?: (n: TrioNode, index: number) => void;
  /** An extra route; answers and returns true when it took the request. */
  route?: (n: TrioNode, url: URL, req: http.IncomingMessage, res: http.ServerResponse) => boolean;
}

export interface LedgerTrio {
  nodes: TrioNode[];
  authorities: AuthorityInfo[];
  /** The ledgers' clock (only with `clock`). */
  clock: number;
  /** (Re)start a node's ledger from its data folder. */
  start(n: TrioNode): RewardLedger;
  /** Stop a node's ledger; its server stays and answers 404. */
  stop(n: TrioNode): Promise<void>;
  /** Waits for writes queued so far, ticks every running ledger and waits for the fetches it started, `times` times. */
  rounds(times?: number): Promise<void>;
  running(): RewardLedger[];
  /** POST /bitcloud/transfers to a node. */
  postTransfer(n: TrioNode, body: Buffer): ReturnType<typeof httpRequest>;
  /** POST /bitcloud/escrow/cancel to a node. */
  postCancel(n: TrioNode, body: Buffer): ReturnType<typeof httpRequest>;
  /** Close the ledgers and servers and remove the folder. */
  close(): Promise<void>;
}

export async function startLedgerTrio(o: LedgerTrioOptions): Promise<LedgerTrio> {
  const P = o.periodSeconds;
  const now = Date.now();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), o.tmpPrefix));
  const nodes: TrioNode[] = [];
  const trio: LedgerTrio = {
    nodes,
    authorities: [],
    clock: o.clock ?? now,
    start(n) {
      n.reg = new prom.Registry();
      const level = o.logLevel ?? 'info';
      const log = pino({ level }, { write: (s: string) => { n.logs.push(JSON.parse(s) as Record<string, unknown>); } });
      n.ledger = new RewardLedger({
        dataDir: n.dir, signer: n.signer, authorities: trio.authorities, periodSeconds: P, skewMs: 60_000, log, registry: n.reg,
        fetchTimeoutMs: 2000, proposerWaitMs: 0, ...(o.clock !== undefined ? { now: () => trio.clock } : {}),
      });
      n.ledger.load();
      o.onStart?.(n, nodes.indexOf(n));
      return n.ledger;
    },
    async stop(n) {
      await n.ledger?.close();
      n.ledger = null;
    },
    async rounds(times = 3) {
      for (let i = 0; i < times; i++) {
        // Writes queued since the last round (a pending.blk is served only once stored) land first.
        await Promise.all(nodes.map((n) => n.ledger?.whenIdle()));
        if (o.clock !== undefined) trio.clock += P * 1000;
        for (const n of nodes) n.ledger?.tick();
        await Promise.all(nodes.map((n) => n.ledger?.whenIdle()));
      }
    },
    running: () => nodes.filter((n) => n.ledger).map((n) => n.ledger!),
    postTransfer: (n, body) => httpRequest(`http://127.0.0.1:${n.port}${PATHS.transfers}`, { method: 'POST', body, maxBytes: 4096, timeoutMs: 5000 }),
    postCancel: (n, body) => httpRequest(`http://127.0.0.1:${n.port}${PATHS.escrowCancel}`, { method: 'POST', body, maxBytes: 4096, timeoutMs: 5000 }),
    async close() {
      for (const n of nodes) {
        await n.ledger?.close();
        await new Promise<void>((r) => { n.server.close(() => r()); n.server.closeAllConnections(); });
      }
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  for (let i = 0; i < 3; i++) {
    const id = ed25519FromSeed(Buffer.alloc(32, o.seed + i));
    const sk = ed25519FromSeed(Buffer.alloc(32, o.seed + 10 + i));
    const signer: Signer = { identity: id.publicKey, signingKey: sk, certificate: makeKeyCertificate(id, sk.publicKey, now - 86_400_000, now + 86_400_000) };
    const n: TrioNode = { name: `auth${i}`, signer, dir: path.join(root, `a${i}`), server: null as unknown as http.Server, port: 0, ledger: null, reg: new prom.Registry(), logs: [] };
    n.server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === PATHS.certificate && n.ledger) { res.writeHead(200, { 'content-length': signer.certificate.length }); res.end(signer.certificate); return; }
      if (o.route?.(n, url, req, res)) return;
      void (async () => (await serveTransfers(n.ledger, req, res, url)) ?? (await serveEscrowCancel(n.ledger, req, res, url)) ?? (await serveRewards(bundlesOf(n), req, res, url)))()
        .then((r) => { if (!r) { res.writeHead(404); res.end(); } });
    });
    await new Promise<void>((r) => n.server.listen(0, '127.0.0.1', () => r()));
    n.port = (n.server.address() as { port: number }).port;
    nodes.push(n);
  }
  trio.authorities = nodes.map((n) => ({
    name: n.name, identity: n.signer.identity, fingerprint: n.signer.identity.toString('hex'), host: '127.0.0.1', port: n.port, url: `http://127.0.0.1:${n.port}`,
  }));
  if (o.startAll ?? true) for (const n of nodes) trio.start(n);
  return trio;
}
