// Hidden storage nodes (SPEC.md §9.21) with real daemons: `npm start -- --hidden-storage` makes
// every storage node hidden; the consensus and every descriptor a client sees name no address of
// them; `bitcloud put` / `get` work through rendezvous circuits; and the attacks of issue 17 are
// refused with their codes: a forged and a replayed introduction (counted by the node), a
// rendezvous cookie reused (refused by the relay), a descriptor signed by another key or for
// another period (refused by the authority and by the client). Names work on such a network
// through relays' name mirrors (SPEC.md §9.14.2), with no UDP socket in the client process.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalNet, scrape, metric, curl, viaSocks, type LocalNet } from '../helpers/localnet';
import { runCli, eventually, startDaemon, type Daemon } from '../helpers/daemon';
import { randomBytes, x25519Generate, ed25519Generate, ed25519Sign } from '../../src/crypto/primitives';
import { IDENTITY_KEY_FILE, loadEd25519Secret } from '../../src/crypto/keys';
import { RelayCommand } from '../../src/wire/relay-msg';
import { CircuitManager } from '../../src/client/circuit-manager';
import type { ConsensusRelay, VerifiedConsensus } from '../../src/dir/types';
import { connectHidden, establishRendezvous, fetchHiddenDescriptor, mirrorDescriptorFetcher, sendIntroduce1 } from '../../src/hidden/client';
import { sealIntroduce } from '../../src/hidden/introduce';
import { makeHsDescriptor, openHsDescriptor } from '../../src/hidden/descriptor';
import { HS_DESC_PATH } from '../../src/hidden/store';
import { blindPublicKey, hsPeriodOf } from '../../src/crypto/blind';
import { ntorClientCreate } from '../../src/crypto/ntor';
import { relayCryptoHandshake } from '../../src/crypto/relay-crypto';
import { encodeEstablishIntro, encodeIntroduce, establishIntroSignedBytes, IntroduceAckStatus, type HsDescriptorInner } from '../../src/wire/hidden';
import { httpRequest } from '../../src/dir/fetch';
import { isBitcloudError } from '../../src/errors';
import { formatName } from '../../src/storage/name';
import { DGRAM_HOOK, watchedCommand, type Watched } from '../helpers/udp-watch';

let net: LocalNet;
let c: VerifiedConsensus;
let manager: CircuitManager;
/** A cookie the forged/replay test spent at `spentAt` (a full rendezvous joined under it). */
let spent: { cookie: Buffer; at: ConsensusRelay } | null = null;
/** The capability the put/get test stored, its bytes and its .bitcloud url. */
let storedCap = '';
let storedBody: Buffer | null = null;
let storedUrl = '';

async function codeOf(p: Promise<unknown>): Promise<string> {
  try { await p; return 'none'; } catch (e) { return isBitcloudError(e) ? e.code : `other: ${(e as Error).message}`; }
}

/**
 * SPEC.md §9.21.8 witness: a preload hook in every storage node process records each TCP connect
 * (port) and each HTTP request it makes (method, port, path, and whether it went over a TCP
 * connection of its own or a circuit stream). Relays and authorities log nothing.
 */
const HOOK = `
const fs = require('node:fs');
const net = require('node:net');
const http = require('node:http');
if (process.argv.some((a) => a.includes('bitcloud-storage'))) {
  const log = (o) => fs.appendFileSync(process.env.BC_NET_LOG, JSON.stringify({ pid: process.pid, ...o }) + '\\n');
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (...a) {
    const o = a[0];
    const port = typeof o === 'object' && o !== null ? (Array.isArray(o) ? o[0] && o[0].port : o.port) : o;
    if (port !== undefined) log({ what: 'connect', port: Number(port) });
    return connect.apply(this, a);
  };
  const request = http.request;
  http.request = function (url, opts, ...rest) {
    try {
      const u = typeof url === 'string' ? new URL(url) : null;
      const o = (u ? opts : url) || {};
      log({ what: 'http', method: o.method || 'GET', port: Number(u ? u.port || 80 : o.port), path: u ? u.pathname : o.path, via: o.createConnection ? 'stream' : 'tcp' });
    } catch { /* never break the daemon */ }
    return request.call(this, url, opts, ...rest);
  };
}
`;
let netLog = '';
let hookEnv: Record<string, string> = {};
/** store2 started again by the restart test (stopped in afterAll). */
let restarted: Daemon | null = null;
interface NetEvent { pid: number; what: 'connect' | 'http'; port: number; method?: string; path?: string; via?: string }
const netEvents = (): NetEvent[] => fs.readFileSync(netLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as NetEvent);

beforeAll(async () => {
  const hookDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-hook-'));
  const hookFile = path.join(hookDir, 'net-hook.cjs');
  netLog = path.join(hookDir, 'net.log');
  fs.writeFileSync(hookFile, HOOK);
  fs.writeFileSync(netLog, '');
  hookEnv = { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${hookFile}`.trim(), BC_NET_LOG: netLog };
  net = await startLocalNet({
    // store1 is moderated (it follows mod1): its policy fetches must not reach an authority either.
    relays: 4, exits: 1, storage: 6, moderators: 1, hiddenStorage: true, timeoutMs: 240_000,
    env: hookEnv,
  });
  c = await net.consensus();
  manager = new CircuitManager({ relays: () => c.relays, enforceDistinctSubnets: false, preemptiveCircuits: 0 });
}, 300_000);

afterAll(async () => {
  await restarted?.stop(15_000);
  await manager?.close();
  await net?.stop();
  if (netLog) fs.rmSync(path.dirname(netLog), { recursive: true, force: true });
}, 60_000);

const relaysOf = () => c.relays;
const buildTo = (r: ConsensusRelay) => manager.buildCircuitTo(r);
const hiddenNodes = () => c.relays.filter((r) => r.roles.includes('hidden'));
/** Every port a storage node was configured with (none of them is ever used, or published). */
const storagePorts = () => new Set(net.storage.flatMap((n) => Object.values(n.ports)));
const authorityPorts = () => new Set(net.authorities.map((a) => a.ports.http));
/** A hidden node's consensus fetches by way out (SPEC.md §9.21.1): guard, circuit, direct, none. */
async function nodeFetches(nodes: readonly { ports: Record<string, number> }[], via: string): Promise<number> {
  let n = 0;
  for (const s of nodes) n += metric(await scrape(s.ports.metrics), 'bitcloud_consensus_fetches_total', { via });
  return n;
}
/** Direct consensus fetches that declared themselves `client`, as the authorities count them (SPEC.md §6.10.1). */
async function clientFetchesAtAuthorities(): Promise<number> {
  let n = 0;
  for (const a of net.authorities) n += metric(await scrape(a.ports.metrics), 'bitcloud_dirauth_consensus_fetches_total', { fetcher: 'client' });
  return n;
}
/**
 * The authorities' `client` count, unless the launcher's own proxy fetched directly meanwhile (its
 * consensus lapsed on a slow machine): then the count cannot be laid at the nodes' door, and the
 * hook's record of their connections is what shows they asked no authority.
 */
async function proxyDirectFetches(): Promise<number> {
  return metric(await scrape(net.proxy.ports.metrics), 'bitcloud_consensus_fetches_total', { via: 'direct' });
}
async function expectNoClientFetchesSince(client0: number, proxy0: number): Promise<void> {
  if ((await proxyDirectFetches()) !== proxy0) return;
  expect(await clientFetchesAtAuthorities()).toBe(client0);
}
const isAlive = (pid: number): boolean => { try { process.kill(pid, 0); return true; } catch { return false; } };

describe('npm start -- --hidden-storage (SPEC.md §9.21)', () => {
  it('the consensus lists every storage node hidden: identity, flags and capacity, but address 0.0.0.0 and no port', () => {
    const hidden = hiddenNodes();
    expect(hidden.map((r) => r.nickname).sort()).toEqual(['store1', 'store2', 'store3', 'store4', 'store5', 'store6']);
    for (const r of hidden) {
      expect(r.roles).toEqual(['storage', 'hidden']);
      expect(r.address).toBe('0.0.0.0');
      expect([r.orPort, r.dirPort, r.storagePort]).toEqual([0, 0, 0]);
      expect(r.flags.has('Storage') && r.flags.has('Running') && r.flags.has('Valid')).toBe(true);
      expect(r.identity.toString('hex')).toBe(net.storage.find((n) => n.name === r.nickname)!.identity);
    }
    const ports = storagePorts();
    for (const r of c.relays) for (const p of [r.orPort, r.dirPort, r.storagePort]) expect(ports.has(p)).toBe(false);
  });

  it('a hidden node uploads its relay and hidden descriptors only through relay mirrors over circuits: no upload from it reaches an authority, nor any connection after bootstrap (SPEC.md §9.21.8)', async () => {
    const authPorts = new Set(net.authorities.map((a) => a.ports.http));
    const pids = new Set(net.storage.map((n) => n.pid));
    const sources = async (kind: string, via: string) => {
      let n = 0;
      for (const a of net.authorities) n += metric(await scrape(a.ports.metrics), 'bitcloud_dirauth_upload_sources_total', { kind, via });
      return n;
    };
    // The hook works: the nodes' own requests are there (bootstrap consensus GETs, uploads over streams).
    const all = netEvents().filter((e) => pids.has(e.pid));
    expect(all.some((e) => e.what === 'http' && e.method === 'POST' && e.via === 'stream' && e.path === HS_DESC_PATH)).toBe(true);
    expect(all.some((e) => e.what === 'http' && e.method === 'POST' && e.via === 'stream' && e.path === '/bitcloud/descriptor')).toBe(true);
    // Not one request to an authority's port carried an upload; those that went there were consensus GETs (bootstrap).
    const toAuthorities = all.filter((e) => e.what === 'http' && e.via === 'tcp' && authPorts.has(e.port));
    for (const e of toAuthorities) expect([e.method, e.path]).toEqual(['GET', '/bitcloud/consensus']); // no policy fetch either
    // The authorities agree: every hidden node's upload came from a mirror.
    expect(await sources('hidden_descriptor', 'mirror')).toBeGreaterThanOrEqual(6);
    expect(await sources('hs_desc', 'mirror')).toBeGreaterThanOrEqual(12); // six nodes, periods N and N+1
    expect(await sources('hidden_descriptor', 'direct')).toBe(0);
    expect(await sources('hs_desc', 'direct')).toBe(0);
    // From now on, while the nodes republish (through mirrors), no connection at all from them reaches an authority.
    const mark = netEvents().length;
    const before = await sources('hidden_descriptor', 'mirror');
    await eventually(async () => ((await sources('hidden_descriptor', 'mirror')) >= before + 2 * 6 * net.authorities.length ? true : null), 120_000, 1000);
    const later = netEvents().slice(mark).filter((e) => pids.has(e.pid));
    expect(later.some((e) => e.what === 'http' && e.path === '/bitcloud/descriptor' && e.via === 'stream')).toBe(true);
    // The moderated node's policy refreshes went through mirrors too (and found its moderator's policy: the launcher waited for it).
    const store1 = net.storage.find((n) => n.name === 'store1')!.pid;
    expect(all.concat(later).some((e) => e.pid === store1 && e.what === 'http' && e.method === 'GET' && e.via === 'stream' && (e.path ?? '').startsWith('/bitcloud/policy/'))).toBe(true);
    expect(later.filter((e) => authPorts.has(e.port))).toEqual([]);
  }, 180_000);

  it('after bootstrap a hidden node fetches the consensus only through its guards\' mirrors over circuits: no fetch of it reaches an authority (SPEC.md §6.10.1, §9.21.1)', async () => {
    const authPorts = authorityPorts();
    const pids = new Set(net.storage.map((n) => n.pid));
    const tunnelled = async () => (await nodeFetches(net.storage, 'guard')) + (await nodeFetches(net.storage, 'circuit'));
    const mark = netEvents().length;
    const direct0 = await nodeFetches(net.storage, 'direct');
    const client0 = await clientFetchesAtAuthorities();
    const proxy0 = await proxyDirectFetches();
    const t0 = await tunnelled();
    // Every node refreshes a few times (the consensus period is short here).
    await eventually(async () => ((await tunnelled()) >= t0 + 3 * net.storage.length ? true : null), 150_000, 1000);
    const later = netEvents().slice(mark).filter((e) => pids.has(e.pid));
    // The hook saw the fetches: GET /bitcloud/consensus on circuit streams (BEGIN_DIR), none over a TCP connection of their own.
    expect(later.some((e) => e.what === 'http' && e.method === 'GET' && e.path === '/bitcloud/consensus' && e.via === 'stream')).toBe(true);
    expect(later.filter((e) => e.what === 'http' && e.path === '/bitcloud/consensus' && e.via === 'tcp')).toEqual([]);
    expect(later.filter((e) => authPorts.has(e.port))).toEqual([]);
    // The nodes' own counters: no direct fetch since bootstrap. The authorities': no direct client fetch meanwhile.
    expect(await nodeFetches(net.storage, 'direct')).toBe(direct0);
    await expectNoClientFetchesSince(client0, proxy0);
  }, 200_000);

  it('every descriptor the client sees names only relays as introduction points, no address or port of a hidden node', async () => {
    const fetchDescriptor = mirrorDescriptorFetcher({ relays: relaysOf, buildTo });
    const relayIds = new Set(c.relays.filter((r) => !r.roles.includes('storage')).map((r) => r.fingerprint));
    const ports = storagePorts();
    for (const node of hiddenNodes()) {
      // One reading of the clock for the key asked for and the check of the answer: the period is
      // a UTC day (SPEC.md §9.21.3), and a descriptor of period N is of another period to a reader
      // already in N+1.
      const now = Date.now();
      const key = blindPublicKey(node.identity, hsPeriodOf(now)).toString('hex');
      const bytes = await fetchDescriptor(key);
      // The store's view: a blinded key and a sealed blob; neither the identity nor a port in clear.
      expect(bytes.includes(node.identity)).toBe(false);
      const { inner } = openHsDescriptor(bytes, node.identity, now);
      expect(inner.intros.length).toBeGreaterThan(0);
      for (const ip of inner.intros) {
        for (const ls of ip.linkSpecifiers) {
          if (ls.type === 'ed25519') expect(relayIds.has(ls.id.toString('hex'))).toBe(true);
          if (ls.type === 'ipv4') expect(ports.has(ls.port)).toBe(false);
        }
      }
    }
  }, 120_000);

  it('bitcloud put and get store and read a file through the hidden nodes', async () => {
    const file = path.join(net.dir, 'hidden-in.bin');
    const out = path.join(net.dir, 'hidden-out.bin');
    const body = randomBytes(1536 * 1024 + 5);
    fs.writeFileSync(file, body);
    const put = await runCli('bitcloud', ['put', file, '--json', '--config', net.clientConfig], { timeoutMs: 240_000 });
    expect(put.code, put.stderr + put.stdout).toBe(0);
    const pj = JSON.parse(put.stdout.trim().split('\n').pop()!) as { capability: string; url: string };
    const cap = storedCap = pj.capability;
    storedUrl = pj.url;
    storedBody = body;
    const get = await runCli('bitcloud', ['get', cap, '-o', out, '--json', '--config', net.clientConfig], { timeoutMs: 240_000 });
    expect(get.code, get.stderr + get.stdout).toBe(0);
    expect(fs.readFileSync(out).equals(body)).toBe(true);
    // The hidden nodes hold the shares: bytes stored, and rendezvous circuits served.
    let stored = 0;
    let rendezvous = 0;
    for (const n of net.storage) {
      const s = await scrape(n.ports.metrics);
      stored += metric(s, 'bitcloud_storage_bytes_stored');
      rendezvous += metric(s, 'bitcloud_storage_hidden_events_total', { event: 'rendezvous' });
    }
    expect(stored).toBeGreaterThan(body.length);
    expect(rendezvous).toBeGreaterThanOrEqual(6);
  }, 480_000);

  it('the SOCKS proxy\'s .bitcloud gateway serves the file from the hidden nodes (rendezvous, SPEC.md §9.16, §9.21.5)', async () => {
    expect(storedUrl).toMatch(/\.bitcloud\/$/);
    const r = await curl(['-sS', '-f', ...viaSocks(net.socksPort), storedUrl], { timeoutMs: 240_000 });
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(r.stdout.equals(storedBody!)).toBe(true);
  }, 300_000);

  it('the authorities\' storage audits reach the hidden nodes through rendezvous circuits and pass (SPEC.md §9.20, §9.21)', async () => {
    expect(storedCap).not.toBe('');
    const k = await runCli('bitcloud', ['keep', 'contract', storedCap, '--epochs', '100', '--json', '--config', net.clientConfig], { timeoutMs: 240_000 });
    expect(k.code, k.stderr + k.stdout).toBe(0);
    const kj = JSON.parse(k.stdout.trim().split('\n').pop()!) as { ok: boolean; startEpoch: number; entries: number };
    expect(kj.ok).toBe(true);
    const hiddenFps = new Set(hiddenNodes().map((r) => r.fingerprint));
    const authority = net.authorities[0];
    // An epoch whose signed report audited every contracted share, each at a hidden node, all passed.
    const report = await eventually(async () => {
      for (let e = kj.startEpoch; e < kj.startEpoch + 40; e++) {
        const r = await httpRequest(`http://127.0.0.1:${authority.ports.http}/bitcloud/storage/audits?epoch=${e}`, { maxBytes: 64 << 20, timeoutMs: 5000 }).catch(() => null);
        if (!r || r.status !== 200) continue;
        // SPEC.md §9.20.3: a signed summary naming one page per node, each fetched on its own.
        const signed = JSON.parse(r.body.toString('utf8')) as { body: string };
        const nodes = Object.keys((JSON.parse(signed.body) as { nodes: Record<string, unknown> }).nodes);
        const results: { node: string; ok: boolean; code?: string }[] = [];
        for (const fp of nodes) {
          const p = await httpRequest(`http://127.0.0.1:${authority.ports.http}/bitcloud/storage/audits?epoch=${e}&node=${fp}`, { maxBytes: 16 << 20, timeoutMs: 5000 }).catch(() => null);
          if (!p || p.status !== 200) { results.length = 0; break; }
          results.push(...(JSON.parse(p.body.toString('utf8')) as { results: { node: string; ok: boolean; code?: string }[] }).results);
        }
        if (results.length > 0 && results.every((x) => x.ok)) return results;
      }
      return null;
    }, 180_000, 2000);
    for (const r of report) expect(hiddenFps.has(r.node)).toBe(true);
    expect(new Set(report.map((r) => r.node)).size).toBeGreaterThanOrEqual(4);
  }, 480_000);

  it('a forged introduction (not sealed to the introduction\'s key) and a replayed one are dropped by the node with their codes', async () => {
    const node = hiddenNodes().find((r) => r.nickname === 'store1')!;
    const nodeMetrics = net.storage.find((n) => n.name === 'store1')!.ports.metrics;
    const count = async (code: string) => metric(await scrape(nodeMetrics), 'bitcloud_storage_hidden_events_total', { event: code });
    const fetchDescriptor = mirrorDescriptorFetcher({ relays: relaysOf, buildTo });
    const desc = await fetchHiddenDescriptor({ node, fetchDescriptor });
    const ip = desc.intros[0];
    const ipRelay = c.relays.find((r) => ip.linkSpecifiers.some((s) => s.type === 'ed25519' && s.id.equals(r.identity)))!;
    const rp = c.relays.find((r) => r.roles.includes('relay') && r.fingerprint !== ipRelay.fingerprint)!;
    const hs = relayCryptoHandshake('tor1');
    const plaintext = (cookie: Buffer) => ({
      cookie, rpOnionKey: rp.onionKey, onionskin: ntorClientCreate({ id: node.identity, onionKey: desc.ntorKey, protoid: hs.protoid }).onionskin,
      rpLinkSpecifiers: [{ type: 'ipv4' as const, addr: rp.address, port: rp.orPort }, { type: 'ed25519' as const, id: rp.identity }],
    });
    const introduce = async (body: Buffer) => {
      const circ = await buildTo(ipRelay);
      try { return await sendIntroduce1(circ, body); } finally { circ.destroy(); }
    };

    // Forged: the right auth key, sealed to a key that is not the introduction's.
    const forgedBefore = await count('HIDDEN_INTRO_FORGED');
    const forged = encodeIntroduce(sealIntroduce(ip.authKey, x25519Generate().publicKey, plaintext(randomBytes(20))));
    expect(await introduce(forged)).toBe(IntroduceAckStatus.SENT); // the introduction point cannot tell
    await eventually(async () => (await count('HIDDEN_INTRO_FORGED')) > forgedBefore, 30_000, 250);

    // A genuine introduction: the node meets us at the rendezvous point…
    const rpCirc = await buildTo(rp);
    const cookie = randomBytes(20);
    await establishRendezvous(rpCirc, cookie);
    const genuine = encodeIntroduce(sealIntroduce(ip.authKey, ip.encKey, plaintext(cookie)));
    // The node's RENDEZVOUS2 on *our* circuit (the node's rendezvous counter would not do: the
    // authorities' audits of a contracted file make rendezvous with it too).
    const joined = new Promise<void>((resolve) => {
      rpCirc.onControl = (cmd) => { if (cmd === RelayCommand.RENDEZVOUS2) resolve(); };
    });
    const rendezvousBefore = await count('rendezvous');
    expect(await introduce(genuine)).toBe(IntroduceAckStatus.SENT);
    await Promise.race([joined, new Promise((_, reject) => setTimeout(() => reject(new Error('no RENDEZVOUS2 within 60 s')), 60_000).unref())]);
    expect(await count('rendezvous')).toBeGreaterThan(rendezvousBefore);
    spent = { cookie, at: rp };
    // …and the same INTRODUCE1 again (as a hostile introduction point would replay it) is refused.
    const replayBefore = await count('HIDDEN_INTRO_REPLAY');
    expect(await introduce(genuine)).toBe(IntroduceAckStatus.SENT);
    await eventually(async () => (await count('HIDDEN_INTRO_REPLAY')) > replayBefore, 30_000, 250);
    rpCirc.destroy();

    // An unknown auth key: the introduction point itself answers status 1.
    const unknown = encodeIntroduce(sealIntroduce(ed25519Generate().publicKey, ip.encKey, plaintext(randomBytes(20))));
    expect(await introduce(unknown)).toBe(IntroduceAckStatus.UNKNOWN_KEY);
  }, 240_000);

  it('a rendezvous cookie reused (pending, or already spent) is refused with HIDDEN_COOKIE_REUSED', async () => {
    const rp = c.relays.find((r) => r.roles.includes('relay'))!;
    const cookie = randomBytes(20);
    const a = await buildTo(rp);
    await establishRendezvous(a, cookie);
    const b = await buildTo(rp);
    expect(await codeOf(establishRendezvous(b, cookie))).toBe('HIDDEN_COOKIE_REUSED');
    a.destroy();
    b.destroy();
    // A cookie spent by a completed rendezvous is refused for an hour.
    expect(spent).not.toBeNull();
    const d = await buildTo(spent!.at);
    expect(await codeOf(establishRendezvous(d, spent!.cookie))).toBe('HIDDEN_COOKIE_REUSED');
    d.destroy();
    // And a full connection in this process: rendezvous, virtual hop, BEGIN_STORAGE accepted.
    const node = hiddenNodes()[1];
    const joined = await connectHidden({ node, relays: relaysOf, buildTo, fetchDescriptor: mirrorDescriptorFetcher({ relays: relaysOf, buildTo }) });
    const { stream } = await joined.openStream({ kind: 'begin_storage' });
    stream.destroy();
    joined.destroy();
  }, 180_000);

  it('an introduction the node drops costs the client one introduction wait, not the whole attempt: the next introduction point is tried (SPEC.md §9.21.5)', async () => {
    // A hostile (or broken) introduction point: this process establishes one at a relay, answers
    // nothing to the INTRODUCE2s it gets, and a descriptor signed by the node's own identity key
    // (read from its data dir) lists it beside one of the node's genuine introduction points.
    const node = hiddenNodes().find((r) => r.nickname === 'store3')!;
    const identity = await loadEd25519Secret(path.join(net.storage.find((n) => n.name === 'store3')!.dataDir, IDENTITY_KEY_FILE));
    const real = await fetchHiddenDescriptor({ node, fetchDescriptor: mirrorDescriptorFetcher({ relays: relaysOf, buildTo }) });
    const realIds = new Set(real.intros.map((ip) => ip.linkSpecifiers.find((l) => l.type === 'ed25519')!.id.toString('hex')));
    const dropper = c.relays.find((r) => r.roles.includes('relay') && !realIds.has(r.fingerprint))!;
    const auth = ed25519Generate();
    const ipCirc = await buildTo(dropper);
    let dropped = 0;
    await new Promise<void>((resolve) => {
      ipCirc.onControl = (cmd) => {
        if (cmd === RelayCommand.INTRO_ESTABLISHED) resolve();
        if (cmd === RelayCommand.INTRODUCE2) dropped++;
      };
      const ts = Date.now();
      ipCirc.sendControl(RelayCommand.ESTABLISH_INTRO, encodeEstablishIntro({ authKey: auth.publicKey, timestamp: ts, signature: ed25519Sign(establishIntroSignedBytes(dropper.identity, auth.publicKey, ts), auth.secretKey) }));
    });
    const fake = { linkSpecifiers: [{ type: 'ipv4' as const, addr: dropper.address, port: dropper.orPort }, { type: 'ed25519' as const, id: dropper.identity }], authKey: auth.publicKey, encKey: x25519Generate().publicKey };
    // The descriptor of the period whose blinded key the client asks for: the client takes its
    // period from the clock at each attempt, and the loop may run across a UTC midnight (SPEC.md §9.21.3).
    const descs = new Map<string, Buffer>();
    const descFor = async (key: string): Promise<Buffer> => {
      const n = hsPeriodOf(Date.now());
      const period = [n, n - 1, n + 1].find((p) => blindPublicKey(identity.publicKey, p).toString('hex') === key);
      if (period === undefined) throw new Error(`no period near ${n} has the blinded key ${key}`);
      if (!descs.has(key)) descs.set(key, makeHsDescriptor({ identity, period, revision: Date.now(), inner: { ntorKey: real.ntorKey, intros: [fake, real.intros[0]] } }));
      return descs.get(key)!;
    };
    // The order is random: connect until the dropping introduction point was tried first (each try
    // halves the chance it never was). A 60 s whole-attempt bound and a 4 s wait per introduction:
    // without the fallback, a dropped introduction ends the attempt with HIDDEN_RENDEZVOUS_TIMEOUT.
    let viaFallback = 0;
    for (let i = 0; i < 12 && viaFallback === 0; i++) {
      const tried: string[] = [];
      const joined = await connectHidden({
        node, relays: relaysOf, buildTo, fetchDescriptor: descFor, timeoutMs: 60_000, introWaitMs: 4_000,
        onIntroduced: (ip) => tried.push(ip.fingerprint),
      });
      const { stream } = await joined.openStream({ kind: 'begin_storage' });
      stream.destroy();
      joined.destroy();
      if (tried[0] === dropper.fingerprint) {
        expect(tried).toHaveLength(2); // then the genuine one, which joined
        viaFallback++;
      } else {
        expect(tried).toHaveLength(1);
      }
    }
    expect(viaFallback).toBe(1);
    expect(dropped).toBeGreaterThanOrEqual(1);
    ipCirc.destroy();
  }, 600_000);

  it('an introduction point enforces the rate the service asked for in ESTABLISH_INTRO: INTRODUCE1s past the burst get ACK 3 and never reach the service (SPEC.md §9.21.4)', async () => {
    const relay = c.relays.find((r) => r.roles.includes('relay'))!;
    const relayMetrics = net.relays.find((n) => n.identity === relay.fingerprint)!.ports.metrics;
    const refusedBefore = metric(await scrape(relayMetrics), 'bitcloud_dos_refusals_total', { kind: 'intro_rate_limited' });
    const auth = ed25519Generate();
    const dos = { ratePerSec: 1, burst: 2 };
    const svcCirc = await buildTo(relay);
    let introduce2 = 0;
    await new Promise<void>((resolve) => {
      svcCirc.onControl = (cmd) => {
        if (cmd === RelayCommand.INTRO_ESTABLISHED) resolve();
        if (cmd === RelayCommand.INTRODUCE2) introduce2++;
      };
      const ts = Date.now();
      svcCirc.sendControl(RelayCommand.ESTABLISH_INTRO, encodeEstablishIntro({ authKey: auth.publicKey, timestamp: ts, signature: ed25519Sign(establishIntroSignedBytes(relay.identity, auth.publicKey, ts, dos), auth.secretKey), dos }));
    });
    // Eight INTRODUCE1s in one burst (a flooding client), one per circuit as the relay allows
    // (SPEC.md §9.21.5 step 2): only the burst (2, plus what the rate refilled meanwhile) goes through.
    const clients = await Promise.all(Array.from({ length: 8 }, () => buildTo(relay)));
    const acks: number[] = [];
    const all = new Promise<void>((resolve) => {
      for (const client of clients) {
        client.onControl = (cmd, data) => { if (cmd === RelayCommand.INTRODUCE_ACK) { acks.push(data[0]); if (acks.length === 8) resolve(); } };
      }
    });
    const body = Buffer.concat([auth.publicKey, randomBytes(32), randomBytes(24), randomBytes(80)]);
    for (const client of clients) client.sendControl(RelayCommand.INTRODUCE1, body);
    await all;
    // The circuits take different paths back, so the ACKs may come in any order.
    expect(acks.filter((a) => a === IntroduceAckStatus.SENT).length).toBeGreaterThanOrEqual(2);
    const limited = acks.filter((a) => a === IntroduceAckStatus.RATE_LIMITED).length;
    expect(limited).toBeGreaterThan(0);
    expect(limited + acks.filter((a) => a === IntroduceAckStatus.SENT).length).toBe(8);
    // The service got exactly the introductions acknowledged as sent; the relay counted the rest.
    await eventually(async () => (introduce2 === 8 - limited ? true : null), 30_000, 100);
    await eventually(async () => (metric(await scrape(relayMetrics), 'bitcloud_dos_refusals_total', { kind: 'intro_rate_limited' }) >= refusedBefore + limited ? true : null), 30_000, 250);
    for (const client of clients) client.destroy();
    svcCirc.destroy();
  }, 120_000);

  it('an authority refuses a descriptor signed by another key or for another period; a client refuses another node\'s descriptor', async () => {
    const node = hiddenNodes()[0];
    const other = hiddenNodes()[1];
    const authority = net.authorities[0];
    const post = (body: Buffer) => eventually(async () => {
      const r = await httpRequest(`http://127.0.0.1:${authority.ports.http}${HS_DESC_PATH}`, { method: 'POST', body, maxBytes: 65536, timeoutMs: 10_000 });
      // The hidden nodes upload from the same address: wait out its rate limit.
      return r.status === 429 ? null : { status: r.status, code: (JSON.parse(r.body.toString('utf8')) as { code?: string }).code };
    }, 60_000, 1000);
    const inner: HsDescriptorInner = {
      ntorKey: x25519Generate().publicKey,
      intros: [{ linkSpecifiers: [{ type: 'ipv4', addr: '127.0.0.1', port: 1 }, { type: 'ed25519', id: randomBytes(32) }], authKey: randomBytes(32), encKey: randomBytes(32) }],
    };
    // The period N is a UTC day (SPEC.md §9.21.3), judged by the authority on its own clock: a try
    // during which midnight passed (its N moved on) starts over in the new period.
    let at = 0;
    let n = 0;
    let forgedAnswer: Awaited<ReturnType<typeof post>>;
    do {
      at = Date.now();
      n = hsPeriodOf(at);
      // Another key signs a descriptor, then claims the node's blinded key for it.
      const forged = makeHsDescriptor({ identity: ed25519Generate(), period: n, revision: Date.now() + 60_000, inner });
      blindPublicKey(node.identity, n).copy(forged, 6);
      forgedAnswer = await post(forged);
    } while (hsPeriodOf(Date.now()) !== n);
    expect(forgedAnswer).toEqual({ status: 400, code: 'HIDDEN_DESC_BAD_SIGNATURE' });
    // A descriptor for a past period, properly signed by its own key.
    const stale = makeHsDescriptor({ identity: ed25519Generate(), period: n - 1, revision: Date.now(), inner });
    expect(await post(stale)).toEqual({ status: 400, code: 'HIDDEN_DESC_WRONG_PERIOD' });
    // A mirror that hands out another node's (valid) descriptor: the client derives another key
    // (the client judges as of `at`, in period n, as the key it was handed was chosen).
    const fetchOther = mirrorDescriptorFetcher({ relays: relaysOf, buildTo });
    const otherBytes = await fetchOther(blindPublicKey(other.identity, n).toString('hex'));
    expect(await codeOf(fetchHiddenDescriptor({ node, fetchDescriptor: async () => otherBytes, now: () => at }))).toBe('HIDDEN_DESC_WRONG_KEY');
    // The node's own descriptor is still the one served.
    const mine = await fetchHiddenDescriptor({ node, fetchDescriptor: fetchOther });
    expect(mine.intros.length).toBeGreaterThan(0);
  }, 120_000);

  it('on a network of hidden nodes only, bitcloud publish then resolve work through the name mirrors of relays, with no UDP socket in the client process (SPEC.md §9.14.2)', async () => {
    expect(storedCap).not.toBe('');
    const dataDir = path.join(net.dir, 'names-client');
    const hookFile = path.join(net.dir, 'dgram-hook.cjs');
    fs.writeFileSync(hookFile, DGRAM_HOOK);
    const run = (args: string[], log: string): Promise<Watched> => watchedCommand(hookFile, 'bitcloud', [...args, '--json', '--config', net.clientConfig, '--data-dir', dataDir], path.join(net.dir, log));
    const last = (r: Watched) => JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
    const stored = async (): Promise<number> => {
      let n = 0;
      for (const r of net.relays) n += metric(await scrape(r.ports.metrics), 'bitcloud_relay_name_records_total', { result: 'stored' });
      return n;
    };
    const stored0 = await stored();

    const p = await run(['publish', 'site', storedCap, '--log-level', 'debug'], 'names-publish.log');
    expect(p.code, p.stderr + p.stdout).toBe(0);
    expect(last(p), p.stderr).toMatchObject({ ok: true, via: 'mirrors', nodes: 3 });
    const name = String(last(p).name);
    expect(p.hook).toBe('');
    expect(p.samples).toBeGreaterThan(0); // the sampler saw the process's (TCP) sockets
    expect(p.udpSeen).toBe(0);
    // Three relays' mirrors took the record (a retried POST is counted twice).
    expect(await stored()).toBeGreaterThanOrEqual(stored0 + 3);

    const r = await run(['resolve', name], 'names-resolve.log');
    expect(r.code, r.stderr + r.stdout).toBe(0);
    expect(last(r)).toMatchObject({ ok: true, name, capability: storedCap, seq: last(p).seq });
    expect(r.hook).toBe('');
    expect(r.udpSeen).toBe(0);

    // A newer publication wins; a stale --seq is refused; a name never published is NAME_NOT_FOUND.
    const capB = `bitcloud:${'b'.repeat(51)}q#${'b'.repeat(51)}q`;
    const p2 = await run(['publish', 'site', capB], 'names-publish2.log');
    expect(p2.code, p2.stderr + p2.stdout).toBe(0);
    expect(Number(last(p2).seq)).toBeGreaterThan(Number(last(p).seq));
    const stale = await run(['publish', 'site', storedCap, '--seq', String(last(p).seq)], 'names-stale.log');
    expect(stale.code).toBe(1);
    expect(last(stale)).toMatchObject({ ok: false, error: { code: 'DHT_SEQ_STALE' } });
    const r2 = await run(['resolve', name], 'names-resolve2.log');
    expect(last(r2)).toMatchObject({ ok: true, capability: capB });
    const none = await run(['resolve', formatName({ publisher: randomBytes(32), label: 'site' }), '--log-level', 'debug'], 'names-none.log');
    expect(none.code).toBe(1);
    expect(last(none), none.stdout + none.stderr).toMatchObject({ ok: false, error: { code: 'NAME_NOT_FOUND' } });
    expect(p2.hook + stale.hook + r2.hook + none.hook).toBe('');
    expect(p2.udpSeen + stale.udpSeen + r2.udpSeen + none.udpSeen).toBe(0);
  }, 400_000);

  it('on a network of hidden nodes only, `bitcloud moderator publish` skips its DHT step with a warning (no DHT; name mirrors keep signed names only) and opens no UDP socket (SPEC.md §9.14.2)', async () => {
    const modDir = path.join(net.dir, 'moderator-names');
    const k = await runCli('bitcloud', ['moderator', 'keygen', '--data-dir', modDir, '--name', 'hid', '--json']);
    expect(k.code, k.stderr + k.stdout).toBe(0);
    expect((await runCli('bitcloud', ['moderator', 'add-deny', 'aa'.repeat(32), '--data-dir', modDir, '--json'])).code).toBe(0);
    const hookFile = path.join(net.dir, 'dgram-hook.cjs');
    fs.writeFileSync(hookFile, DGRAM_HOOK);
    const p = await watchedCommand(hookFile, 'bitcloud', ['moderator', 'publish', '--data-dir', modDir, '--config', net.clientConfig, '--json'], path.join(net.dir, 'names-modpub.log'));
    expect(p.stderr).toMatch(/not publishing to the DHT: the consensus lists no storage node with a public address/);
    const out = JSON.parse(p.stdout.trim().split('\n').pop()!) as { results: { target: string }[] };
    expect(out.results.some((r) => r.target === 'dht')).toBe(false);
    expect(p.hook).toBe('');
    expect(p.udpSeen).toBe(0);
  }, 200_000);

  it('a hidden node restarted with its cached consensus fetches the next one through its guards or relay mirrors over circuits, never from an authority (SPEC.md §9.21.1)', async () => {
    const n = net.storage.find((x) => x.name === 'store2')!;
    const authPorts = authorityPorts();
    const client0 = await clientFetchesAtAuthorities();
    const proxy0 = await proxyDirectFetches();
    process.kill(n.pid, 'SIGTERM');
    await eventually(() => (isAlive(n.pid) ? null : true), 60_000, 200);
    expect(fs.existsSync(path.join(n.dataDir, 'cached-consensus'))).toBe(true);
    restarted = startDaemon('bitcloud-storage', ['run', '--config', n.config], { env: hookEnv });
    await restarted.waitForMsg('hidden descriptor published', {}, 240_000);
    const me = [{ ports: n.ports }];
    await eventually(async () => ((await nodeFetches(me, 'guard')) + (await nodeFetches(me, 'circuit')) >= 1 ? true : null), 120_000, 1000);
    const mine = netEvents().filter((e) => e.pid === restarted!.pid);
    expect(mine.some((e) => e.what === 'http' && e.method === 'GET' && e.path === '/bitcloud/consensus' && e.via === 'stream')).toBe(true);
    // Not one connection to an authority, not even at start: the cached consensus built the circuits.
    expect(mine.filter((e) => authPorts.has(e.port))).toEqual([]);
    expect(await nodeFetches(me, 'direct')).toBe(0);
    // The authorities agree: no direct fetch declared `client` reached them meanwhile.
    await expectNoClientFetchesSince(client0, proxy0);
  }, 400_000);
});
