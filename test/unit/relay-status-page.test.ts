// SPEC.md §6.10 "MetricsPort": the relay's own status page — per epoch the countersigned cells
// (bandwidth.json), the proven cells (consensus), the units earned (reward chain); bounded, saved
// atomically, read back after a restart; served beside /metrics over real (in-process) HTTP.
import fsp from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_EPOCHS, RELAY_STATUS_FILE, RelayStatus } from '../../relay/status-page';
import { createRegistry, startMetricsServer } from '../../src/ops/metrics';
import type { VerifiedConsensus } from '../../src/dir/types';

const FP = 'ab'.repeat(32);
const consensus = (provenEpoch: number | null, proven: number) =>
  ({ provenEpoch, relays: [{ fingerprint: FP, proven }, { fingerprint: 'cd'.repeat(32), proven: 7 }] } as unknown as VerifiedConsensus);

function get(port: number, p: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: p }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body: Buffer.concat(chunks).toString('utf8') }));
    }).on('error', reject);
  });
}

describe('relay status page', () => {
  it('joins countersigned, proven and earned per epoch, is bounded, survives a restart, and is served on the MetricsPort', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-relay-status-'));
    await fsp.writeFile(path.join(dir, 'bandwidth.json'), JSON.stringify({ identity: FP, epochs: [
      { epoch: 10, cellsSent: 100, cellsReceived: 50, receipts: 2, peers: 1 },
      { epoch: 11, cellsSent: 3, cellsReceived: 4, receipts: 1, peers: 1 },
    ] }));
    let cur: VerifiedConsensus | null = consensus(10, 140);
    let rewardsUp = true;
    const s = new RelayStatus({
      dataDir: dir, fingerprint: () => FP, consensus: () => cur, refreshMs: 0,
      rewards: async () => {
        if (!rewardsUp) throw new Error('no authority');
        return { allocations: [{ height: 4, epoch: 10, units: 900n }, { height: 5, epoch: 10, units: 100n }], balance: 1000n };
      },
    }).load();
    await s.refresh();
    s.onConsensus(consensus(11, 6));
    s.onConsensus(consensus(null, 0)); // no measured epoch: nothing to record
    let j = s.toJSON();
    expect(j.fingerprint).toBe(FP);
    expect(j.balance).toBe('1000');
    expect(j.epochs).toEqual([
      { epoch: 10, countersigned: 150, proven: 140, earned: '1000', blocks: [4, 5] },
      { epoch: 11, countersigned: 7, proven: 6, earned: null, blocks: [] },
    ]);

    // An unreachable reward chain keeps what was read before.
    rewardsUp = false; cur = null;
    await s.refresh();
    expect(s.toJSON().epochs[0].earned).toBe('1000');

    // Bounded to the newest MAX_EPOCHS.
    for (let e = 100; e < 100 + MAX_EPOCHS + 3; e++) s.onConsensus(consensus(e, e));
    j = s.toJSON();
    expect(j.epochs.length).toBe(MAX_EPOCHS);
    expect(j.epochs[0].epoch).toBe(103);
    await s.flush();
    const again = new RelayStatus({ dataDir: dir, fingerprint: () => FP, consensus: () => null }).load();
    expect(again.toJSON().epochs).toEqual(j.epochs);
    expect(JSON.parse(await fsp.readFile(path.join(dir, RELAY_STATUS_FILE), 'utf8')).epochs.length).toBe(MAX_EPOCHS);

    // Served beside /metrics; nothing else.
    const srv = await startMetricsServer(createRegistry('relay'), 0, '127.0.0.1', again.pages);
    try {
      const port = (srv.address() as AddressInfo).port;
      const page = await get(port, '/');
      expect(page.status).toBe(200);
      expect(page.type).toMatch(/^text\/html/);
      expect(page.body).toContain('<table id="epochs">');
      expect(page.body).toContain(`<td>${103 + MAX_EPOCHS - 1}</td>`);
      const js = await get(port, '/status.json');
      expect(js.status).toBe(200);
      expect(JSON.parse(js.body)).toMatchObject({ fingerprint: FP, epochs: expect.any(Array) });
      expect((await get(port, '/static/uplot.min.js')).status).toBe(200);
      expect((await get(port, '/static/relay-status.js')).status).toBe(200);
      expect((await get(port, '/metrics')).body).toContain('daemon="relay"');
      expect((await get(port, '/bitcloud/consensus')).status).toBe(404);
      expect((await get(port, '/static/nothing.js')).status).toBe(404);
    } finally {
      await new Promise<void>((r) => srv.close(() => r()));
      await again.flush();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
