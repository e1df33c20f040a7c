// Hostile-load helpers shared by the flood tests and `npm run bench -- --only hostile`: the CREATE2
// flooder as its own process (create2-flooder.ts) and one honest 3-hop download from a chosen
// local address, checked byte for byte against the content server's body.
import path from 'node:path';
import { spawn } from 'node:child_process';
import { connectLink } from '../../src/link';
import { ClientCircuit, ClientLink, type HopTarget } from '../../src/client/client-circuit';
import type { ConsensusRelay } from '../../src/dir/types';
import { REPO_ROOT } from './daemon';

export function hopOf(r: ConsensusRelay): HopTarget {
  return { identity: r.identity, fingerprint: r.fingerprint, onionKey: r.onionKey, address: r.address, orPort: r.orPort };
}

export interface FloodCounts { sent: number; created: number; refused: number; other: number; closed: number }

export interface Flooder {
  pid: number;
  /** Resolves once the links are open and the first report came. */
  started: Promise<void>;
  /** The last counts the flooder reported (once a second). */
  counts(): FloodCounts;
  /** The counts of the flooder's next report. */
  nextReport(): Promise<FloodCounts>;
  /** SIGTERM, wait for exit; the final counts. */
  stop(): Promise<FloodCounts>;
}

/** Start a CREATE2 flooder process at `relay` (links from `localAddress`; valid or random onionskins). */
export function startFlooder(relay: ConsensusRelay, o: { localAddress?: string; links?: number; valid?: boolean } = {}): Flooder {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin', 'run-ts.js'), path.join(REPO_ROOT, 'test', 'helpers', 'create2-flooder.ts'), JSON.stringify({
    host: relay.address, port: relay.orPort, identity: relay.identity.toString('hex'), onionKey: relay.onionKey.toString('hex'), ...o,
  })], { stdio: ['ignore', 'pipe', 'inherit'] });
  let last: FloodCounts = { sent: 0, created: 0, refused: 0, other: 0, closed: 0 };
  let buf = '';
  let firstLine: () => void = () => {};
  let waiters: Array<(c: FloodCounts) => void> = [];
  const first = new Promise<void>((r) => { firstLine = r; });
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      last = JSON.parse(buf.slice(0, i)) as FloodCounts;
      buf = buf.slice(i + 1);
      firstLine();
      const w = waiters;
      waiters = [];
      for (const f of w) f(last);
    }
  });
  let exited = false;
  const exit = new Promise<void>((r) => child.once('exit', () => { exited = true; r(); }));
  return {
    pid: child.pid!,
    started: Promise.race([first, exit.then(() => { throw new Error('the flooder exited before it started'); })]),
    counts: () => last,
    nextReport: () => new Promise<FloodCounts>((r) => { if (exited) r(last); else waiters.push(r); }),
    async stop() {
      if (!exited) child.kill('SIGTERM');
      await exit;
      return last;
    },
  };
}

export interface DownloadResult { ok: boolean; bytes: number; code?: string }

/**
 * One honest download: a link from `localAddress` to `first`, a circuit first → middle → exit,
 * GET /raw/0/SIZE from the content server on 127.0.0.1:`webPort`; ok when the body matches `expect`.
 */
export async function honestDownload(hops: [ConsensusRelay, ConsensusRelay, ConsensusRelay], localAddress: string, webPort: number, expect: Buffer): Promise<DownloadResult> {
  const [first, middle, exit] = hops;
  let l: ClientLink | null = null;
  try {
    l = new ClientLink(await connectLink({ host: first.address, port: first.orPort, expectedIdentity: first.identity, localAddress, timeoutMs: 60_000 }));
    const c = ClientCircuit.allocate(l);
    await c.create(hopOf(first));
    await c.extend(hopOf(middle));
    await c.extend(hopOf(exit));
    const { stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: webPort });
    stream.write(`GET /raw/0/${expect.length} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    const got = await new Promise<Buffer>((resolve, reject) => {
      const parts: Buffer[] = [];
      stream.on('data', (d: Buffer) => { parts.push(Buffer.from(d)); });
      stream.on('end', () => resolve(Buffer.concat(parts)));
      stream.on('error', reject);
    });
    c.destroy();
    const at = got.indexOf('\r\n\r\n');
    const bodyGot = at >= 0 ? got.subarray(at + 4) : Buffer.alloc(0);
    return { ok: bodyGot.equals(expect), bytes: bodyGot.length, code: bodyGot.equals(expect) ? undefined : 'BODY_MISMATCH' };
  } catch (e) {
    return { ok: false, bytes: 0, code: (e as { code?: string }).code ?? 'ERROR' };
  } finally {
    l?.ch.close();
  }
}
