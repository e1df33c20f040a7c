// SPEC.md §7b.3 item 2, §6.10: a relay whose consensus does not list an EXTEND2 target fetches the
// consensus at once (coalesced, at most once per 10 s) and checks the target again before refusing.
// Real RelayCircuits behind TLS listeners; the relay's consensus comes from a real ConsensusMirror
// fetching from an HTTP directory source in this process.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { randomBytes } from 'node:crypto';
import { ConsensusMirror, EXTEND_MISS_FETCH_INTERVAL_MS } from '../../relay/mirror';
import { parseAuthorityList } from '../../src/dir/authorities';
import { buildDescriptor, verifyDescriptor } from '../../src/dir/descriptor';
import { servedConsensus, serveDocument, type ServedDocument } from '../../src/dir/http-serve';
import { silentLogger } from '../../src/ops/log';
import { createRegistry } from '../../src/ops/metrics';
import { fingerprint } from '../../src/crypto/keys';
import { ClientCircuit } from '../../src/client/client-circuit';
import type { VerifiedConsensus } from '../../src/dir/types';
import { metric, parsePrometheus } from '../helpers/localnet';
import { rawLink, startRelay, type TestRelay } from '../helpers/inprocess-relays';
import { consensusFor, E, epochStart, makeSigner, type RelayKey, voteOf } from './dirauth-measure-fixture';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanups.reverse()) await f();
  cleanups.length = 0;
  vi.useRealTimers();
});

/** The consensus entry of an in-process relay, as an authority would list it. */
function listed(r: TestRelay, i: number): RelayKey {
  const descriptor = verifyDescriptor(buildDescriptor({
    identity: r.keys.identity, onionKey: r.keys.onion.publicKey, nickname: `r${i}`, address: '127.0.0.1', orPort: r.info.orPort,
    declaredBandwidth: 1_000_000, family: [], roles: ['relay'], version: 'bitcloud-0.1.0',
    published: epochStart(E) - 60_000, lifetimeMs: 6 * 86_400_000,
  }), { now: epochStart(E) });
  return { key: r.keys.identity, fp: fingerprint(r.keys.identity.publicKey), descriptor };
}

describe('EXTEND2 to a target only a newer consensus lists (SPEC.md §7b.3 item 2)', () => {
  it('the relay fetches the newer consensus and extends; a second miss inside 10 s fetches nothing', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(epochStart(E) + 1000);
    const signer = makeSigner();
    const registry = createRegistry('mirror-extend-miss');
    // The directory source: serves A, later B; counts the requests.
    let doc: ServedDocument | null = null;
    let requests = 0;
    const server = http.createServer((req, res) => { requests++; serveDocument(req, res, doc, 'CONSENSUS_NOT_AVAILABLE', 'none'); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
    const auth = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: `127.0.0.1:${(server.address() as { port: number }).port}` }]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-extend-miss-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const mirror = new ConsensusMirror(auth, dir, silentLogger, 3_600_000, registry);
    cleanups.push(() => mirror.stop());

    const a = await startRelay('a', ['Guard'], {
      requireConsensusForExtend: true, consensus: () => mirror.current, refreshConsensus: () => mirror.refreshForExtend(),
    });
    cleanups.push(() => a.stop());
    const b = await startRelay('b', []);
    cleanups.push(() => b.stop());
    const [la, lb] = [listed(a, 1), listed(b, 2)];
    const consensusA = consensusFor(signer, E, [voteOf(signer, [la])]);
    const consensusB = consensusFor(signer, E + 1, [voteOf(signer, [la, lb])]);
    doc = servedConsensus(consensusA.raw, consensusA.info, epochStart(E) + 500);
    const got = new Promise<void>((r) => mirror.onConsensus(() => r()));
    await mirror.start();
    await got;
    expect(mirror.current!.relays.map((r) => r.fingerprint)).toEqual([la.fp]);
    expect(requests).toBe(1);

    // The network moves on: B (listing b) is published; the client has it, relay a does not yet.
    vi.setSystemTime(epochStart(E + 1) + 1000);
    doc = servedConsensus(consensusB.raw, consensusB.info, epochStart(E + 1) + 500);
    const c = ClientCircuit.allocate(await rawLink(a), 'tor1');
    await c.create(a.info);
    await c.extend(b.info);
    expect(mirror.current!.validAfter).toBe(consensusB.info.validAfter);
    expect(requests).toBe(2);
    c.destroy();

    // A made-up identity inside 10 s: refused without another fetch.
    vi.setSystemTime(epochStart(E + 1) + 1000 + EXTEND_MISS_FETCH_INTERVAL_MS - 1);
    const ghost = { ...b.info, identity: randomBytes(32) };
    ghost.fingerprint = fingerprint(ghost.identity);
    const c2 = ClientCircuit.allocate(await rawLink(a), 'tor1');
    await c2.create(a.info);
    await expect(c2.extend(ghost)).rejects.toThrow();
    expect(requests).toBe(2);
    c2.destroy();

    // Past 10 s, the next miss may fetch again (a conditional request: 304 here).
    vi.setSystemTime(epochStart(E + 1) + 1000 + EXTEND_MISS_FETCH_INTERVAL_MS + 1);
    // Two EXTEND2s at once wait for the same fetch.
    const [c3, c4] = [ClientCircuit.allocate(await rawLink(a), 'tor1'), ClientCircuit.allocate(await rawLink(a), 'tor1')];
    await Promise.all([c3.create(a.info), c4.create(a.info)]);
    const both = await Promise.allSettled([c3.extend(ghost), c4.extend(ghost)]);
    expect(both.map((x) => x.status)).toEqual(['rejected', 'rejected']);
    expect(requests).toBe(3);
    c3.destroy();
    c4.destroy();
    const m = parsePrometheus(await registry.metrics());
    expect(metric(m, 'bitcloud_relay_consensus_fetches_total', { reason: 'extend_miss' })).toBe(2);
    expect(metric(m, 'bitcloud_relay_consensus_fetches_total', { reason: 'schedule' })).toBe(1);
  });
});

describe('a circuit closed while its EXTEND2 waits for the consensus (SPEC.md §7b.3 item 2)', () => {
  it('is not extended once the fetch is done: no link is opened for it', async () => {
    const b = await startRelay('b', []);
    cleanups.push(() => b.stop());
    // Relay a's consensus lists b only once the fetch an EXTEND2 miss asks for is done.
    let consensus = { relays: [] as (typeof b.info)[] };
    let release!: () => void;
    let asked!: () => void;
    const fetchAsked = new Promise<void>((r) => { asked = r; });
    const a = await startRelay('a', ['Guard'], {
      requireConsensusForExtend: true,
      consensus: () => consensus as unknown as VerifiedConsensus,
      refreshConsensus: () => new Promise<void>((r) => { release = () => { consensus = { relays: [b.info] }; r(); }; asked(); }),
    });
    cleanups.push(() => a.stop());
    const c = ClientCircuit.allocate(await rawLink(a), 'tor1');
    await c.create(a.info);
    const extended = c.extend(b.info).then(() => 'extended', () => 'failed');
    await fetchAsked;
    c.destroy();
    await vi.waitFor(() => expect(a.rc.circuitCount).toBe(0));
    release();
    expect(await extended).toBe('failed');
    await new Promise((r) => setTimeout(r, 300));
    const m = parsePrometheus(await a.registry.metrics());
    for (const link of ['opened', 'waited', 'reused']) expect(metric(m, 'bitcloud_relay_extend_links_total', { link }) ?? 0).toBe(0);
    const mb = parsePrometheus(await b.registry.metrics());
    expect(metric(mb, 'bitcloud_relay_links_open', { direction: 'inbound' }) ?? 0).toBe(0);
  });
});
