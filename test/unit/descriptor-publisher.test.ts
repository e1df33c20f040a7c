// SPEC.md §6.4 / §6.4.1: the descriptor publisher retries failed authorities and, when one refuses
// the identity proof as stale, tells the proof keeper before signing the next descriptor.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import pino from 'pino';
import { DescriptorPublisher } from '../../src/dir/publish';
import type { AuthorityInfo } from '../../src/dir/authorities';

describe('DescriptorPublisher', () => {
  const servers: http.Server[] = [];
  afterEach(async () => { await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r)))); });

  it('reports IDENTITY_POW_STALE to the keeper and uploads a newly built descriptor', async () => {
    const bodies: string[] = [];
    let refuse = true;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        bodies.push(Buffer.concat(chunks).toString());
        if (refuse) {
          refuse = false;
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ code: 'IDENTITY_POW_STALE', reason: 'identity proof anchor names no consensus this authority knows' }));
        } else {
          res.writeHead(200); res.end('ok');
        }
      });
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const auth = { name: 'auth1', fingerprint: 'f'.repeat(40), url: `http://127.0.0.1:${port}` } as unknown as AuthorityInfo;
    let builds = 0;
    let staleCalls = 0;
    const pub = new DescriptorPublisher([auth], () => Buffer.from(`descriptor ${++builds} (stale reported ${staleCalls})`), pino({ level: 'silent' }), {
      intervalMs: 60_000, retryMs: 100, onPowStale: () => { staleCalls++; },
    });
    const first = await pub.republishNow();
    expect(first[0].ok).toBe(false);
    expect(first[0].detail).toContain('IDENTITY_POW_STALE');
    expect(staleCalls).toBe(1);
    const second = await pub.republishNow();
    pub.stop();
    expect(second[0].ok).toBe(true);
    expect(bodies).toEqual(['descriptor 1 (stale reported 0)', 'descriptor 2 (stale reported 1)']);
  });
});
