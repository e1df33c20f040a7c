// SPEC.md §6.10: an uploader that goes away before its body has arrived in full is no failure of
// the authority. Its request is dropped without an answer, logged at debug and counted as status
// 499 of route "aborted"; not an error-level "HTTP handler failed" line and an error metric per
// aborted upload (which any client could cause at will, on routes without a rate limit too).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type http from 'node:http';
import net from 'node:net';
import pino from 'pino';
import { PATHS } from '../../src/dir/fetch';
import { listenAuthority, makeFixture, type Fixture } from './dirauth-measure-fixture';

let fx: Fixture;
beforeEach(() => { fx = makeFixture(); });
afterEach(() => { fx.cleanup(); });

/**
 * Sends the head of a POST announcing `length` bytes and `sent` of them, then closes the connection
 * once the server has the request, and returns once `handled` (the handler's outcome) has settled.
 */
async function abortedUpload(server: http.Server, handled: () => Promise<void>, p: string, length: number, sent: number): Promise<void> {
  const port = (server.address() as net.AddressInfo).port;
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => s.once('connect', () => r()));
  const received = new Promise<void>((r) => server.once('request', () => r()));
  const done = handled();
  s.write(`POST ${p} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${length}\r\n\r\n`);
  s.write(Buffer.alloc(sent));
  await received;
  s.destroy();
  await done;
}

/** The messages the server logs when a handler fails or its client went away. */
const OUTCOMES = ['client went away before its request body arrived', 'HTTP handler failed'];

describe('an upload whose client goes away mid-body (SPEC.md §6.10)', () => {
  it('is logged at debug and counted as 499, not as a handler failure, and the authority keeps serving', async () => {
    const lines: { level: number; msg: string }[] = [];
    let onOutcome: (() => void) | null = null;
    const log = pino({ level: 'debug' }, { write: (l: string) => {
      const line = JSON.parse(l) as { level: number; msg: string };
      lines.push(line);
      if (OUTCOMES.includes(line.msg)) onOutcome?.();
    } });
    const handled = () => new Promise<void>((r) => { onOutcome = r; });
    const made = fx.makeAuthority();
    const { server, port } = await listenAuthority(made, log);

    await abortedUpload(server, handled, PATHS.descriptor, 4000, 100);
    await abortedUpload(server, handled, `/bitcloud/policy/${'ab'.repeat(32)}`, 4000, 100);

    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    expect((await made.metrics.errors.get()).values).toEqual([]);
    const http = (await made.metrics.http.get()).values.filter((v) => v.labels.status === '499');
    expect(http.map((v) => [v.labels.route, v.value])).toEqual([['aborted', 2]]);
    expect(lines.filter((l) => l.msg === 'client went away before its request body arrived').length).toBe(2);
    const res = await fetch(`http://127.0.0.1:${port}${PATHS.status}`);
    expect(res.status).toBe(200);
  });
});
