// The signing round the directory authorities run for the consensus (SPEC.md §6.8) and for each
// reward block (§8.7), directory/signing-round.ts: own signature, fetching the other authorities'
// signatures over real HTTP on 127.0.0.1, merging, publishing exactly at a majority of ALL
// configured authorities (not before, and again when more arrive), one body per slot, and peers
// that are down or slow.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AuthorityInfo } from '../../src/dir/authorities';
import { httpRequest } from '../../src/dir/fetch';
import { SigningRound, peerFetchTimeoutMs, type SigningRoundHooks } from '../../directory/signing-round';

/** A test signature: who signed which body. */
interface Sig { signer: string; body: string }

const fp = (c: string) => c.repeat(64);
const BODY = Buffer.from('body one');
const OTHER = Buffer.from('body two');

/** What each peer serves at GET /sigs: the body it holds and the signatures on it. null: 503. */
const serving = new Map<string, { body: string; sigs: Sig[] } | null>();
const servers: http.Server[] = [];
const slowSockets = new Set<import('node:net').Socket>();
let authorities: AuthorityInfo[] = [];
const [A, B, C, D, E] = ['a', 'b', 'c', 'd', 'e'].map(fp);

function info(name: string, fingerprint: string, port: number): AuthorityInfo {
  return { name, identity: Buffer.from(fingerprint, 'hex'), fingerprint, host: '127.0.0.1', port, url: `http://127.0.0.1:${port}` };
}

async function listen(handler: http.RequestListener): Promise<number> {
  const s = http.createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return (s.address() as AddressInfo).port;
}

beforeAll(async () => {
  const peer = (who: string): http.RequestListener => (_req, res) => {
    const held = serving.get(who);
    if (!held) { res.writeHead(503); res.end(); return; }
    const body = Buffer.from(JSON.stringify(held));
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  };
  const portA = await listen(peer(A));
  const portB = await listen(peer(B));
  const portC = await listen(peer(C));
  // D is down: a port that was listening and is closed again (connection refused).
  const down = http.createServer();
  await new Promise<void>((r) => down.listen(0, '127.0.0.1', () => r()));
  const portD = (down.address() as AddressInfo).port;
  await new Promise<void>((r) => down.close(() => r()));
  // E is slow: it accepts the connection and never answers.
  const slow = http.createServer(() => {});
  slow.on('connection', (s) => { slowSockets.add(s); s.on('close', () => slowSockets.delete(s)); });
  servers.push(slow);
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
  const portE = (slow.address() as AddressInfo).port;
  authorities = [info('a', A, portA), info('b', B, portB), info('c', C, portC), info('d', D, portD), info('e', E, portE)];
});

afterAll(async () => {
  for (const s of slowSockets) s.destroy();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

interface Recorder {
  hooks: SigningRoundHooks<Sig>;
  published: { first: boolean; signers: string[] }[];
  failed: string[];
  fetched: string[];
  publishOk: boolean;
}

/** Hooks as an owner writes them: fetch over HTTP, keep only signatures over our body. */
function recorder(ourBody: Buffer): Recorder {
  const r: Recorder = {
    published: [], failed: [], fetched: [], publishOk: true,
    hooks: {
      async fetch(peer, round, timeoutMs) {
        r.fetched.push(peer.name);
        const res = await httpRequest(`${peer.url}/sigs`, { maxBytes: 4096, timeoutMs });
        if (res.status !== 200) return [];
        const held = JSON.parse(res.body.toString()) as { body: string; sigs: Sig[] };
        if (held.body !== ourBody.toString()) return [];
        return held.sigs.filter((s) => s.body === ourBody.toString() && !round.has(s.signer)).map((s) => [s.signer, s] as const);
      },
      publish(round, first) {
        if (!r.publishOk) return false;
        r.published.push({ first, signers: round.signers() });
        return true;
      },
      fetchFailed(peer) { r.failed.push(peer.name); },
    },
  };
  return r;
}

function start(rec: Recorder, slot = 1, body = BODY): SigningRound<Sig> {
  const { round, decision } = SigningRound.begin<Sig>(null, {
    slot, bodyId: body, authorities, self: A, timeoutMs: 300, hooks: rec.hooks,
  }, () => ({ signer: A, body: body.toString() }));
  expect(decision).toBe('sign');
  return round!;
}

const sig = (signer: string, body = BODY): Sig => ({ signer, body: body.toString() });

describe('signing round (SPEC §6.8, §8.7)', () => {
  it('holds its own signature from the start, and does not publish alone below a majority', () => {
    const rec = recorder(BODY);
    const round = start(rec);
    expect(round.signers()).toEqual([A]);
    expect(round.signatures()).toEqual([sig(A)]);
    expect(round.majority).toBe(3);
    expect(round.complete).toBe(false);
    expect(round.publish()).toBe(false);
    expect(rec.published).toEqual([]);
    expect(round.published).toBe(false);
  });

  it('fetches the missing signatures, merges them, and publishes exactly at a majority, not before', async () => {
    const rec = recorder(BODY);
    const round = start(rec);
    serving.set(B, { body: BODY.toString(), sigs: [sig(B)] });
    serving.set(C, null); // C has not signed yet
    await round.fetchMissing();
    expect(round.signers()).toEqual([A, B]);
    expect(rec.fetched.sort()).toEqual(['b', 'c', 'd', 'e']); // never itself
    expect(rec.published).toEqual([]); // 2 of 5: not yet

    serving.set(C, { body: BODY.toString(), sigs: [sig(C)] });
    rec.fetched = [];
    await round.fetchMissing();
    expect(rec.fetched.sort()).toEqual(['c', 'd', 'e']); // only the missing ones are asked
    expect(round.size).toBe(3);
    expect(rec.published).toEqual([{ first: true, signers: [A, B, C] }]);
    expect(round.published).toBe(true);

    // Nothing new: not published again.
    expect(round.publish()).toBe(false);
    await round.fetchMissing();
    expect(rec.published.length).toBe(1);
  });

  it('merges signatures a peer holds from others, once each, and publishes again when more arrive', async () => {
    const rec = recorder(BODY);
    const round = start(rec);
    // B relays C's signature too; C serves its own again: C is counted once.
    serving.set(B, { body: BODY.toString(), sigs: [sig(B), sig(C)] });
    serving.set(C, { body: BODY.toString(), sigs: [sig(C)] });
    await round.fetchMissing();
    expect(round.signers()).toEqual([A, B, C]);
    expect(rec.published).toEqual([{ first: true, signers: [A, B, C] }]);
    // A late signature (E's, relayed by B) is merged and published again, not as the first time.
    serving.set(B, { body: BODY.toString(), sigs: [sig(B), sig(C), sig(E)] });
    expect(round.add(B, sig(B))).toBe(false);
    round.add(E, sig(E));
    expect(round.publish()).toBe(true);
    expect(rec.published[1]).toEqual({ first: false, signers: [A, B, C, E] });
  });

  it('never merges signatures over another body', async () => {
    const rec = recorder(BODY);
    const round = start(rec);
    serving.set(B, { body: OTHER.toString(), sigs: [sig(B, OTHER)] });
    serving.set(C, { body: OTHER.toString(), sigs: [sig(C, OTHER)] });
    await round.fetchMissing();
    expect(round.signers()).toEqual([A]);
    expect(rec.published).toEqual([]);
    expect(round.firstTime('b')).toBe(true);
    expect(round.firstTime('b')).toBe(false);
  });

  it('refuses to sign two different bodies at one slot (height or period)', () => {
    const rec = recorder(BODY);
    const held = start(rec, 7, BODY);
    let signed = 0;
    const sign = () => { signed++; return sig(A, OTHER); };
    const o = { authorities, self: A, timeoutMs: 300, hooks: rec.hooks };
    const other = SigningRound.begin<Sig>(held, { ...o, slot: 7, bodyId: OTHER }, sign);
    expect(other).toEqual({ round: held, decision: 'refuse' });
    const same = SigningRound.begin<Sig>(held, { ...o, slot: 7, bodyId: Buffer.from(BODY) }, sign);
    expect(same).toEqual({ round: held, decision: 'already-signed' });
    expect(signed).toBe(0);
    const next = SigningRound.begin<Sig>(held, { ...o, slot: 8, bodyId: OTHER }, sign);
    expect(next.decision).toBe('sign');
    expect(next.round).not.toBe(held);
    expect(next.round!.signatures()).toEqual([sig(A, OTHER)]);
    expect(signed).toBe(1);
    expect(SigningRound.decide(null, 7, BODY)).toBe('sign');
  });

  it('a peer that is down or slow is reported and costs one timeout; the others are merged', async () => {
    const rec = recorder(BODY);
    const round = start(rec);
    serving.set(B, { body: BODY.toString(), sigs: [sig(B)] });
    serving.set(C, { body: BODY.toString(), sigs: [sig(C)] });
    const pass = round.fetchMissing();
    expect(round.fetchInFlight).toBe(true);
    await round.fetchMissing(); // a second pass while one runs returns at once and asks no one
    expect(rec.fetched.sort()).toEqual(['b', 'c', 'd', 'e']);
    await pass;
    expect(round.fetchInFlight).toBe(false);
    expect(rec.failed.sort()).toEqual(['d', 'e']);
    expect(round.signers()).toEqual([A, B, C]);
    expect(rec.published).toEqual([{ first: true, signers: [A, B, C] }]);
    // They are asked again on the next pass.
    rec.fetched = [];
    await round.fetchMissing();
    expect(rec.fetched.sort()).toEqual(['d', 'e']);
  });

  it('a publish that fails is tried again; a body published elsewhere is not published again', async () => {
    const rec = recorder(BODY);
    rec.publishOk = false;
    const round = start(rec);
    round.add(B, sig(B));
    round.add(C, sig(C));
    expect(round.publish()).toBe(false);
    expect(round.published).toBe(false);
    rec.publishOk = true;
    expect(round.publish()).toBe(true);
    expect(rec.published).toEqual([{ first: true, signers: [A, B, C] }]);

    const caught = start(recorder(BODY));
    caught.add(B, sig(B));
    caught.add(C, sig(C));
    caught.markPublished();
    expect(caught.published).toBe(true);
    expect(caught.publish()).toBe(false);
  });

  it('starts from signatures restored from disk', () => {
    const rec = recorder(BODY);
    const round = new SigningRound<Sig>({ slot: 3, bodyId: BODY, authorities, self: A, own: sig(A), held: [[B, sig(B)], [A, sig(A)]], timeoutMs: 300, hooks: rec.hooks });
    expect(round.signers()).toEqual([A, B]);
    expect(round.publish()).toBe(false);
  });

  it('every authority bounds a peer fetch the same way: an eighth of the period, within 1 to 10 s', () => {
    expect(peerFetchTimeoutMs(5)).toBe(1000);
    expect(peerFetchTimeoutMs(16)).toBe(2000);
    expect(peerFetchTimeoutMs(3600)).toBe(10_000);
  });

  it('a failed fetch is reported with the error the owner threw', async () => {
    const errors: unknown[] = [];
    const round = new SigningRound<Sig>({
      slot: 1, bodyId: BODY, authorities, self: A, own: sig(A), timeoutMs: 300,
      hooks: {
        async fetch(peer) { if (peer.name === 'b') throw Object.assign(new Error('bad answer'), { code: 'DIR_BAD_RESPONSE' }); return []; },
        publish: () => true,
        fetchFailed: (_p, e) => errors.push(e),
      },
    });
    await round.fetchMissing();
    expect(errors).toHaveLength(1);
    expect((errors[0] as { code: string }).code).toBe('DIR_BAD_RESPONSE');
  });
});
