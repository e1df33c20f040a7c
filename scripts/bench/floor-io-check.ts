// `node bin/run-ts.js scripts/bench/floor-io-check.ts`: exercises the floor bench's reads, writes
// and CPU loops (floor-io.ts) and prints what it saw as JSON, for test/unit/bench-floor-io.test.ts
// (tests start scripts as processes). The floor must stay a lower bound (docs/cpu.md, "The floor").
import net from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { cpuOf, leastOf, plainConnect, TurnWriter } from './floor-io';

/** plainConnect over loopback: how many distinct buffers the reads landed in, bytes, their sum, 'data' listeners. */
async function reads(): Promise<Record<string, number>> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const accepted = once(srv, 'connection') as Promise<[net.Socket]>;
  const buffers = new Set<Buffer>();
  let got = 0, sum = 0, dataListeners = -1;
  const total = 512 * 1024;
  const done = new Promise<void>((resolve) => {
    const s = plainConnect((srv.address() as AddressInfo).port, 16 * 1024, (buf, n) => {
      buffers.add(buf);
      for (let i = 0; i < n; i++) sum += buf[i];
      got += n;
      if (got >= total) { s.destroy(); resolve(); }
    });
    dataListeners = s.listenerCount('data');
  });
  const [w] = await accepted;
  for (let i = 0; i < 8; i++) w.write(Buffer.alloc(total / 8, 1));
  await done;
  w.destroy();
  await new Promise((r) => srv.close(r));
  return { buffers: buffers.size, got, sum, dataListeners };
}

/** TurnWriter: the writes one turn's reservations make, and whether they share one buffer. */
async function turn(): Promise<Record<string, unknown>> {
  const writes: Buffer[] = [];
  const tw = new TurnWriter((b) => writes.push(b), 64);
  const a = tw.reserve(10);
  a.buf.fill(1, a.at, a.at + 10);
  const b = tw.reserve(20);
  b.buf.fill(2, b.at, b.at + 20);
  const sameBuffer = a.buf === b.buf, secondAt = b.at, beforeTurn = writes.length;
  await new Promise((r) => setImmediate(r));
  const firstTurn = writes.map((w) => [...w]);
  tw.reserve(40);
  tw.reserve(40); // does not fit: the first 40 leave before it
  const overflowBeforeTurn = writes.length - firstTurn.length;
  await new Promise((r) => setImmediate(r));
  return { sameBuffer, secondAt, beforeTurn, firstTurn, overflowBeforeTurn, lengths: writes.map((w) => w.length) };
}

/** cpuOf and leastOf with a fake clock: calls made and the figure kept. */
async function loops(): Promise<Record<string, number>> {
  let calls = 0, k = 0;
  const ticks = [0, 5, 10, 12, 20, 27]; // repetitions cost 5, 2, 7
  const least = cpuOf(() => { calls++; }, 100, 3, () => ticks[k++]);
  const costs = [9, 4, 1, 3];
  let runs = 0;
  const leastRun = await leastOf(3, async () => costs[runs++]);
  return { calls, least, leastRun, runs };
}

process.stdout.write(`${JSON.stringify({ reads: await reads(), turn: await turn(), loops: await loops() })}\n`);
