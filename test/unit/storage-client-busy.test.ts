// SPEC.md §9.6.1: a node over its frame budget answers STORAGE_BUSY on request id 0 and ends the
// stream. The requester fails what was pending with that code, and its next request to the node
// opens a new session: one such answer must not leave the node unusable for the rest of the run.
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { StorageClient } from '../../src/client/storage-client';
import { FrameDecoder } from '../../src/storage/framing';
import { decodeRequest, encodeResponseFrame } from '../../src/storage/protocol';

describe('storage client: a node\'s framing error (request id 0)', () => {
  it('fails the pending request with the node\'s code; the next request opens a new session and is answered', async () => {
    let connections = 0;
    const server = net.createServer((sock) => {
      const n = ++connections;
      const dec = new FrameDecoder();
      sock.on('error', () => {});
      sock.on('data', (d) => {
        for (const f of dec.push(d)) {
          const { reqId } = decodeRequest(f);
          if (n === 1) sock.write(encodeResponseFrame(0, { type: 'error', code: 'STORAGE_BUSY', message: 'over the frame budget' }));
          else sock.write(encodeResponseFrame(reqId, { type: 'stat', capacity: 100, used: 1, shares: 1, maxLeaseSeconds: 60, maxShareBytes: 1024 }));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    const fp = 'ab'.repeat(32);
    const client = new StorageClient({
      nodes: [{ fingerprint: fp } as never],
      open: () => new Promise((resolve, reject) => { const s = net.connect(port, '127.0.0.1', () => resolve(s)); s.once('error', reject); }),
      requestTimeoutMs: 10_000,
    });
    try {
      await expect(client.stat(fp)).rejects.toMatchObject({ code: 'STORAGE_BUSY' });
      await expect(client.stat(fp)).resolves.toMatchObject({ type: 'stat', capacity: 100 });
      expect(connections).toBe(2);
    } finally {
      await client.close();
      await new Promise((r) => server.close(r));
    }
  });
});
