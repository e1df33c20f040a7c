// A receipt-upload flood at a real authority process (SPEC.md §8.4): one authority, two relays,
// a 5-second period. While attackers on several loopback addresses keep posting maximum-size
// uploads of records that name the listed relays (so each costs a signature check), the
// authority must go on publishing a consensus every period: uploads are bounded, verified in
// slices that yield to the event loop, limited per address and per relay pair.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import http from 'node:http';
import { randomBytes } from '../../src/crypto/primitives';
import { encodeReceiptBody } from '../../src/bandwidth/receipt';
import { httpRequest } from '../../src/dir/fetch';
import { eventually, stopAll, type Daemon } from '../helpers/daemon';
import { makeDirNet, makeRelay, startAuthority, startRelay, type DirNet } from '../helpers/dirnet';

const PERIOD = 5;
const P = PERIOD * 1000;
let net: DirNet;
let auth: Daemon;
const fps: string[] = [];

interface Status { consensus: null | { validAfter: number; relays: number } }
async function status(): Promise<Status> {
  const r = await httpRequest(`http://127.0.0.1:${net.authorities[0].port}/bitcloud/status`, { maxBytes: 1 << 20, timeoutMs: 30_000 });
  return JSON.parse(r.body.toString()) as Status;
}

beforeAll(async () => {
  net = await makeDirNet(1, PERIOD, { consensusLifetimePeriods: 6 });
  auth = startAuthority(net.authorities[0]);
  const relays = [await makeRelay(net, 'r0'), await makeRelay(net, 'r1')];
  const ds = relays.map(startRelay);
  await auth.waitForMsg('authority listening');
  for (const d of ds) fps.push((await d.waitForMsg('relay listening')).json!.identity as string);
}, 60_000);

afterAll(async () => {
  await stopAll();
  if (net) fs.rmSync(net.dir, { recursive: true, force: true });
}, 60_000);

/** `n` copies of one record for `epoch` between the two listed relays, with signatures that do not verify. */
function records(epoch: number, n: number): Buffer {
  const body = encodeReceiptBody({
    epoch, initiator: Buffer.from(fps[0], 'hex'), responder: Buffer.from(fps[1], 'hex'), cellsI2R: 1000, cellsR2I: 1000, serial: 7,
  });
  const one = Buffer.concat([body, randomBytes(64), randomBytes(64)]);
  return Buffer.concat(Array.from({ length: n }, () => one));
}

function post(body: Buffer, localAddress: string): Promise<number> {
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1', port: net.authorities[0].port, path: '/bitcloud/receipts', method: 'POST', localAddress,
      headers: { 'content-type': 'application/octet-stream', 'content-length': body.length },
    }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode ?? 0)); res.on('error', () => resolve(0)); });
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

describe('a receipt-upload flood during vote rounds (SPEC.md §8.4)', () => {
  it('the consensus is still published in every period while maximum-size uploads pour in', async () => {
    const first = await eventually(async () => { const s = await status(); return s.consensus && s.consensus.relays >= 2 ? s.consensus : null; }, 12 * P, 500);
    // Bodies for the previous epoch (its consensus is held and its upload window open), rebuilt
    // when the epoch moves on: the old maximum (100 000 records, 22.4 MB) and the current one (10 000).
    const bodies = new Map<string, Buffer>();
    const body = (n: number): Buffer => {
      const epoch = Math.floor(Date.now() / P) - 1;
      const k = `${epoch}:${n}`;
      if (!bodies.has(k)) { bodies.clear(); bodies.set(k, records(epoch, n)); }
      return bodies.get(k)!;
    };
    // (poll answered at, consensus valid_after) pairs: what the authority served (for the report).
    const seen: { at: number; validAfter: number }[] = [];
    const statuses = new Map<number, number>();
    let flooding = true;
    const attacker = async (addr: string, n: number) => {
      while (flooding) {
        const st = await post(body(n), addr);
        statuses.set(st, (statuses.get(st) ?? 0) + 1);
        if (st === 0) await new Promise((r) => setTimeout(r, 50));
      }
    };
    const attackers = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'].flatMap((a) => [attacker(a, 100_000), attacker(a, 10_000)]);
    // Watch the published consensus through four whole periods of flood.
    const from = first.validAfter + 2 * P;
    const to = first.validAfter + 6 * P;
    while (Date.now() < to) {
      const s = await status();
      if (s.consensus) seen.push({ at: Date.now(), validAfter: s.consensus.validAfter });
      await new Promise((r) => setTimeout(r, 250));
    }
    flooding = false;
    await Promise.all(attackers);
    // Each period [T, T + P) of the watch had its own consensus published before it ended: the
    // authority logged 'consensus published' for valid_after T (or later) at a time before T + P.
    // The time is the one the authority gave the line when it published, not when a poll (itself
    // slowed by the flood) first saw the consensus: the line is written as the consensus becomes
    // the one served (SPEC.md §6.8, §6.9).
    const published = () => auth.logs.filter((l) => l.json?.msg === 'consensus published')
      .map((l) => ({ at: Number(l.json!.time), validAfter: Date.parse(String(l.json!.validAfter)) }));
    const late = (): number[] => {
      const out: number[] = [];
      for (let t = from; t < to; t += P) if (!published().some((x) => x.at < t + P && x.validAfter >= t)) out.push(t);
      return out;
    };
    // The last lines may still be on their way from the process.
    await eventually(() => late().length === 0, 10_000, 250).catch(() => {});
    const rel = (xs: { at: number; validAfter: number }[]) => JSON.stringify(xs.map((x) => [x.at - first.validAfter, x.validAfter - first.validAfter]));
    expect(late(), `published ${rel(published())}, polls ${rel(seen)}`).toEqual([]);
    // The flood was served and refused (413 for the old maximum, or a reset when the
    // authority closes before reading it; 200 / 429 / 503 for the rest, 408 for a body that took
    // longer than the intake's deadline on a loaded machine, §8.4).
    expect(statuses.get(413) ?? 0).toBeGreaterThan(0);
    expect([...statuses.keys()].filter((k) => ![0, 200, 408, 413, 429, 503].includes(k)), JSON.stringify([...statuses])).toEqual([]);
  }, 180_000);
});
