// Shared fixtures of the reward chain read tests (SPEC.md §8.7.5): three authorities' keys, and an
// HTTP server on 127.0.0.1 that answers GET /bitcloud/rewards?from=H as a test says.
import http from 'node:http';
import { ed25519FromSeed, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { makeKeyCertificate } from '../../src/dir/certificate';
import { PATHS } from '../../src/dir/fetch';

/**
 * Three authorities' identity keys (from seeds `idSeed`, `idSeed + 1`, `idSeed + 2`), signing keys
 * (from `signingSeed` on) and key certificates valid from a day before `now` to a day after.
 */
export function rewardAuthorityKeys(idSeed: number, signingSeed: number, now: number): { ids: Ed25519KeyPair[]; sks: Ed25519KeyPair[]; certs: Buffer[] } {
  const ids = [0, 1, 2].map((i) => ed25519FromSeed(Buffer.alloc(32, idSeed + i)));
  const sks = [0, 1, 2].map((i) => ed25519FromSeed(Buffer.alloc(32, signingSeed + i)));
  const certs = ids.map((id, i) => makeKeyCertificate(id, sks[i].publicKey, now - 86_400_000, now + 86_400_000));
  return { ids, sks, certs };
}

/**
 * A server of GET /bitcloud/rewards?from=H (anything else is 404); `answer` writes the response.
 * Its close (which also drops open connections) is pushed on `closers`, for the file's afterAll.
 * Returns its URL and the heights asked so far.
 */
export async function rewardServer(closers: (() => Promise<void>)[], answer: (from: number, res: http.ServerResponse) => void): Promise<{ url: string; asked: number[] }> {
  const asked: number[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== PATHS.rewards) { res.writeHead(404); res.end(); return; }
    const from = Number(url.searchParams.get('from') ?? 0);
    asked.push(from);
    answer(from, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  closers.push(() => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, asked };
}
