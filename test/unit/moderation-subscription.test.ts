// SPEC.md §10.6.1, §10.7: the node's subscription manager, the authority-side store, the DHT
// transport, and the moderator's workspace.
import { describe, it, expect, afterEach, vi } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import DHT from 'bittorrent-dht';
import pino from 'pino';
import { Writable } from 'node:stream';
import { ed25519Generate, randomBytes } from '../../src/crypto/primitives';
import { fingerprint } from '../../src/crypto/keys';
import { isBitcloudError } from '../../src/errors';
import { dhtOptions } from '../../src/storage/dht';
import { shareId } from '../../src/storage/share';
import * as policyModule from '../../src/moderation/policy';
import { signPolicy } from '../../src/moderation/policy';
import { denyEntry } from '../../src/moderation/denylist';
import { advancePolicy, encodeBundle, nextPolicyContent, stateBundle, type PolicyState } from '../../src/moderation/chain';
import { makePolicyCheck } from '../../src/moderation/enforce';
import { PolicySubscriptions } from '../../src/moderation/subscription';
import type { PolicySource } from '../../src/moderation/sources';
import { PolicyStore } from '../../src/moderation/store';
import { decodeHead, dhtSource, encodeHead, headTarget, publishPolicyToDht, splitBundle, DHT_MAX_BUNDLE_BYTES, type DhtLike } from '../../src/moderation/dht';
import { ModeratorWorkspace } from '../../src/moderation/workspace';

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => { for (const f of cleanup.splice(0).reverse()) await f(); });

function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-modsub-'));
  cleanup.push(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function captureLog(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write(c, _e, cb) { for (const l of String(c).split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
  return { log: pino({ level: 'debug' }, sink), lines };
}

/** Bytes of every Buffer a policy's kept versions reference (envelopes and decoded entries), by backing store. */
function retainedBytes(s: PolicyState): number {
  const backing = new Set<ArrayBufferLike>();
  for (const v of s.chain) {
    backing.add(v.raw.buffer);
    for (const e of [...v.content.denyAdd, ...v.content.denyRemove]) backing.add(e.buffer);
  }
  let retained = 0;
  for (const b of backing) retained += b.byteLength;
  return retained;
}

const NOW = Date.now();
const W = { validAfter: NOW - 1000, validUntil: NOW + 3_600_000 };

/** A moderator that publishes versions in memory. */
function moderator() {
  const key = ed25519Generate();
  const fp = fingerprint(key.publicKey);
  let state: PolicyState | null = null;
  const versions: Buffer[] = [];
  return {
    key, fp,
    get state() { return state!; },
    versions,
    publish(deny: Buffer[], classes = [{ name: 'encrypted-private', maxShareBytes: 0 }]): Buffer {
      const c = nextPolicyContent(state, { name: 'm', classes, maxShareBytes: 0, deny: deny.map(denyEntry) });
      const raw = signPolicy(c, key, W);
      state = advancePolicy(state, [...(c.previous ? state!.chain.map((v) => v.raw) : []), raw], { moderator: fp, now: NOW }).state;
      versions.push(raw);
      return stateBundle(state);
    },
  };
}

/** A source that hands out whatever bundle it is told to. */
function fixedSource(name: string): PolicySource & { bundle: Buffer | null } {
  const s = { name, bundle: null as Buffer | null, fetch: async () => s.bundle };
  return s;
}

const cipher = randomBytes(4096);
const cipherId = shareId(cipher);

describe('PolicySubscriptions', () => {
  it('a newer version takes effect at the next refresh; enforcement follows', async () => {
    const m = moderator();
    const src = fixedSource('auth');
    const subs = PolicySubscriptions.open({ moderators: [m.fp], sources: [src], now: () => NOW });
    cleanup.push(() => subs.close());
    const check = makePolicyCheck(subs);
    const get = { type: 'get' as const, id: cipherId, offset: 0, length: 0 };
    src.bundle = m.publish([]);
    await subs.refresh();
    expect(subs.policy(m.fp)?.seq).toBe(1);
    await expect(Promise.resolve(check(get, { viaCircuit: true }))).resolves.toBeUndefined();
    src.bundle = m.publish([cipherId]);
    await subs.refresh();
    expect(subs.policy(m.fp)?.seq).toBe(2);
    try { await check(get, { viaCircuit: true }); expect.unreachable(); } catch (e) {
      expect(isBitcloudError(e, 'POLICY_DENIED')).toBe(true);
    }
    expect(subs.status()[0]).toMatchObject({ moderator: m.fp, seq: 2, denylistEntries: 1 });
  });

  it('an expired policy is still enforced, but warned about and shown on a gauge (SPEC.md §10.6.1)', async () => {
    const { Registry } = await import('prom-client');
    const m = moderator();
    const src = fixedSource('auth');
    const { log, lines } = captureLog();
    const registry = new Registry();
    let now = NOW;
    const subs = PolicySubscriptions.open({ moderators: [m.fp], sources: [src], now: () => now, log, registry });
    cleanup.push(() => subs.close());
    src.bundle = m.publish([cipherId]);
    await subs.refresh();
    const gauge = async () => (await registry.getSingleMetric('bitcloud_moderation_policy_expired')!.get()).values.find((v) => v.labels.moderator === m.fp)?.value;
    expect(await gauge()).toBe(0);
    // SPEC.md §6.2.4: valid_until itself is inside the window.
    now = W.validUntil;
    src.bundle = null; // the moderator published nothing newer
    await subs.refresh();
    expect(await gauge()).toBe(0);
    expect(subs.status()[0]).toMatchObject({ seq: 1, expired: false });
    now = W.validUntil + 1;
    await subs.refresh();
    expect(await gauge()).toBe(1);
    expect(lines.some((l) => l.msg === 'moderator policy expired; still enforced until the moderator publishes a newer one' && l.level === 40)).toBe(true);
    expect(subs.status()[0]).toMatchObject({ seq: 1, expired: true });
    // Still enforced.
    try { await makePolicyCheck(subs)({ type: 'get', id: cipherId, offset: 0, length: 0 }, { viaCircuit: true }); expect.unreachable(); } catch (e) {
      expect(isBitcloudError(e, 'POLICY_DENIED')).toBe(true);
    }
  });

  it('ignores a forged policy and a replayed older one, with a log line', async () => {
    const m = moderator();
    const { log, lines } = captureLog();
    const good = fixedSource('good');
    const evil = fixedSource('evil');
    const subs = PolicySubscriptions.open({ moderators: [m.fp], sources: [good, evil], log, now: () => NOW });
    const v1 = m.publish([]);
    good.bundle = m.publish([cipherId]);
    await subs.refresh();
    expect(subs.policy(m.fp)?.seq).toBe(2);

    evil.bundle = v1; // replay of version 1
    good.bundle = null;
    await subs.refresh();
    expect(subs.policy(m.fp)?.seq).toBe(2);
    expect(lines.find((l) => l.msg === 'policy refused' && l.code === 'POLICY_REPLAYED' && l.source === 'evil')).toBeTruthy();

    const forgedKey = ed25519Generate();
    const forgedBody = signPolicy({ ...m.state.chain[0].content, seq: 3, previous: null, denyAdd: [], denyRemove: [] }, forgedKey, W);
    // Put the real moderator's key into the forged content: the signature cannot match it.
    const forged = Buffer.from(forgedBody);
    const at = forged.indexOf(forgedKey.publicKey);
    m.key.publicKey.copy(forged, at);
    evil.bundle = encodeBundle([forged]);
    await subs.refresh();
    expect(subs.policy(m.fp)?.seq).toBe(2);
    expect(lines.some((l) => l.msg === 'policy refused' && l.source === 'evil' && (l.code === 'POLICY_BAD_SIGNATURE' || l.code === 'POLICY_WRONG_MODERATOR'))).toBe(true);

    evil.bundle = encodeBundle([signPolicy(nextPolicyContent(null, { name: 'x', classes: [], maxShareBytes: 0, deny: [] }), forgedKey, W)]);
    await subs.refresh();
    expect(lines.some((l) => l.msg === 'policy refused' && l.code === 'POLICY_WRONG_MODERATOR')).toBe(true);
    expect(subs.policy(m.fp)?.deny.deniesId(cipherId)).toBe(true);
  });

  it('keeps policies on disk and enforces them at once after a restart', async () => {
    const dir = tmp();
    const m = moderator();
    const src = fixedSource('a');
    src.bundle = m.publish([cipherId]);
    const a = PolicySubscriptions.open({ moderators: [m.fp], sources: [src], dataDir: dir, now: () => NOW });
    await a.refresh();
    expect(fs.statSync(path.join(dir, 'policies', `${m.fp}.bundle`)).mode & 0o077).toBe(0);
    const b = PolicySubscriptions.open({ moderators: [m.fp], sources: [], dataDir: dir, now: () => NOW + 10 * 3_600_000 });
    expect(b.policy(m.fp)?.seq).toBe(1);
    expect(b.policy(m.fp)?.deny.deniesId(cipherId)).toBe(true);
  });

  it('a failing source does not stop the others', async () => {
    const m = moderator();
    const broken: PolicySource = { name: 'down', fetch: async () => { throw new Error('ECONNREFUSED'); } };
    const src = fixedSource('up');
    src.bundle = m.publish([]);
    const subs = PolicySubscriptions.open({ moderators: [m.fp], sources: [broken, src], now: () => NOW });
    await subs.refresh();
    expect(subs.policy(m.fp)?.seq).toBe(1);
  });

  it('the versions it keeps hold no more than their own bytes: a source that serves, at every refresh, the deltas the node already holds with the new one does not stay in memory with each delta (SPEC.md §10.6.1)', async () => {
    const m = moderator();
    const src = fixedSource('whole');
    const subs = PolicySubscriptions.open({ moderators: [m.fp], sources: [src], now: () => NOW });
    cleanup.push(() => subs.close());
    const big = Array.from({ length: 2000 }, (_, i) => { const b = Buffer.alloc(32); b.writeUInt32BE(i); return b; });
    m.publish([]);
    src.bundle = m.publish(big);
    await subs.refresh();
    for (let i = 0; i < 8; i++) {
      const extra = Buffer.alloc(32, 0xff); extra.writeUInt32BE(i);
      m.publish([...big, extra]);
      // No snapshot, so the node continues its chain (§10.4 step 5): only the newest delta is taken
      // from this answer, which is about as large as the first.
      src.bundle = encodeBundle(m.versions.slice(1));
      await subs.refresh();
    }
    const s = subs.policy(m.fp)!;
    expect(s.seq).toBe(10);
    expect(retainedBytes(s)).toBeLessThanOrEqual(stateBundle(s).length);
  });

  it('is unmoderated with no moderators, and refuses both at once', () => {
    expect(PolicySubscriptions.open({ moderators: [] }).unmoderated).toBe(true);
    let code = '';
    try { PolicySubscriptions.open({ moderators: ['ab'.repeat(32)], unmoderated: true }); } catch (e) { code = (e as { code: string }).code; }
    expect(code).toBe('CONFIG_INVALID');
  });
});

describe('PolicyStore (authority side)', () => {
  it('keeps the newest verified chain, serves deltas after a held version, 304 when current', () => {
    const dir = tmp();
    const m = moderator();
    const store = new PolicyStore(dir);
    expect(store.serve(m.fp)).toEqual({ status: 404 });
    expect(store.accept(m.fp, m.publish([])).result).toBe('updated');
    const held = m.state;
    m.publish([cipherId]);
    expect(store.accept(m.fp, encodeBundle([m.versions[1]])).seq).toBe(2);
    const ans = store.serve(m.fp, held.seq, held.digest);
    expect(ans.status).toBe(200);
    if (ans.status === 200) expect(advancePolicy(held, ans.bundle, { moderator: m.fp, now: NOW }).state.seq).toBe(2);
    expect(store.serve(m.fp, 2)).toEqual({ status: 304 });
    let code = '';
    try { store.accept(m.fp, encodeBundle([m.versions[0]])); } catch (e) { code = (e as { code: string }).code; }
    expect(code).toBe('POLICY_REPLAYED');
    expect(new PolicyStore(dir).get(m.fp)?.seq).toBe(2);
  });

  it('answers a re-upload of the bundle held, or of an older one, before opening any version (SPEC.md §10.7.1)', () => {
    const m = moderator();
    const store = new PolicyStore(null, { now: () => NOW });
    const first = m.publish([]);
    const second = m.publish([cipherId]);
    expect(store.accept(m.fp, second).result).toBe('updated');
    const spy = vi.spyOn(policyModule, 'verifyPolicyVersion');
    cleanup.push(() => spy.mockRestore());
    expect(store.accept(m.fp, second)).toEqual({ result: 'unchanged', seq: 2 });
    let code = '';
    try { store.accept(m.fp, first); } catch (e) { code = (e as { code: string }).code; }
    expect(code).toBe('POLICY_REPLAYED');
    expect(spy).not.toHaveBeenCalled();
  });

  it('serves one bundle Buffer per state held, built again only after an update (SPEC.md §10.7.1)', () => {
    const m = moderator();
    const store = new PolicyStore(null, { now: () => NOW });
    store.accept(m.fp, m.publish([]));
    const a = store.serve(m.fp), b = store.serve(m.fp);
    expect(a.status === 200 && b.status === 200 && a.bundle === b.bundle).toBe(true);
    store.accept(m.fp, m.publish([cipherId]));
    const c = store.serve(m.fp), d = store.serve(m.fp, 5_000);
    expect(c.status === 200 && a.status === 200 && c.bundle !== a.bundle && c.bundle.equals(stateBundle(m.state))).toBe(true);
    // An `after` the chain does not hold answers the whole bundle: the same Buffer.
    expect(d.status).toBe(304);
    const e = store.serve(m.fp, 1, Buffer.alloc(32));
    expect(e.status === 200 && c.status === 200 && e.bundle === c.bundle).toBe(true);
  });

  it('serves the versions after a held one as a view of the whole bundle held: every reader of the same tail shares one Buffer, and nothing is copied per request (SPEC.md §10.5, §10.7.1)', () => {
    const m = moderator();
    const store = new PolicyStore(null, { now: () => NOW });
    m.publish([]);
    m.publish([cipherId]);
    store.accept(m.fp, m.publish([cipherId, Buffer.alloc(32, 7)]));
    expect(m.state.chain.length).toBe(3);
    const whole = store.serve(m.fp), a = store.serve(m.fp, 1), b = store.serve(m.fp, 1), c = store.serve(m.fp, 2);
    if (whole.status !== 200 || a.status !== 200 || b.status !== 200 || c.status !== 200) throw new Error('expected 200');
    expect(a.bundle).toBe(b.bundle);
    expect(a.bundle.equals(encodeBundle(m.versions.slice(1)))).toBe(true);
    expect(c.bundle.equals(encodeBundle(m.versions.slice(2)))).toBe(true);
    // Views of the one whole bundle: its bytes, not copies of them.
    for (const t of [a.bundle, c.bundle]) {
      expect(t.buffer).toBe(whole.bundle.buffer);
      expect(t.byteOffset + t.length).toBe(whole.bundle.byteOffset + whole.bundle.length);
    }
    // An update drops the views with the bundle they were taken from.
    m.publish([cipherId, Buffer.alloc(32, 7), Buffer.alloc(32, 8)]);
    expect(m.state.chain.length).toBe(4);
    expect(store.accept(m.fp, encodeBundle([m.versions[3]])).seq).toBe(4);
    const d = store.serve(m.fp, 1);
    expect(d.status === 200 && d.bundle !== a.bundle && d.bundle.equals(encodeBundle(m.versions.slice(1)))).toBe(true);
  });

  it('keeps at most maxBytes of bundles in all: the moderator that would pass it is POLICY_STORE_FULL, before its bundle is opened, and a restart loads no more (SPEC.md §10.7.1)', () => {
    const dir = tmp();
    const a = moderator(), b = moderator();
    const bundleA = a.publish([cipherId]);
    const bundleB = b.publish([cipherId]);
    // An accepted state holds its versions and the bundle served, one copy each (counted twice).
    const store = new PolicyStore(dir, { now: () => NOW, maxBytes: 2 * (bundleA.length + bundleB.length) - 1 });
    expect(store.accept(a.fp, bundleA).result).toBe('updated');
    expect(store.bytes).toBe(2 * bundleA.length);
    const spy = vi.spyOn(policyModule, 'verifyPolicyVersion');
    cleanup.push(() => spy.mockRestore());
    let code = '';
    try { store.accept(b.fp, bundleB); } catch (e) { code = (e as { code: string }).code; }
    expect(code).toBe('POLICY_STORE_FULL');
    expect(spy).not.toHaveBeenCalled();
    expect(store.accept(a.fp, bundleA).result).toBe('unchanged');
    expect(store.moderators()).toEqual([a.fp]);
    spy.mockRestore();
    // Both bundles saved (as by an authority with a larger budget): a restart keeps within its own.
    expect(new PolicyStore(dir, { now: () => NOW }).accept(b.fp, bundleB).result).toBe('updated');
    // A state reloaded holds one copy: its versions are views of the saved bundle, which is served.
    const reloaded = new PolicyStore(dir, { now: () => NOW, maxBytes: bundleA.length + bundleB.length - 1 });
    expect(reloaded.size).toBe(1);
    expect(reloaded.bytes).toBe(bundleA.length);
  });

  it('counts the whole bundle it serves next to the versions kept: after an upload both copies are in the budget, and a store at its budget refuses the next (SPEC.md §10.7.1)', () => {
    const a = moderator(), b = moderator();
    const bundleA = a.publish([cipherId]);
    const bundleB = b.publish([cipherId]);
    expect(bundleA.length).toBe(bundleB.length);
    // Room for A's two copies and one of B's: B, which would hold two as well, is refused.
    const store = new PolicyStore(null, { now: () => NOW, maxBytes: 3 * bundleA.length });
    expect(store.accept(a.fp, bundleA).result).toBe('updated');
    const served = store.serve(a.fp);
    expect(served.status === 200 && served.bundle.length).toBe(bundleA.length);
    expect(store.bytes).toBe(2 * bundleA.length);
    let code = '';
    try { store.accept(b.fp, bundleB); } catch (e) { code = (e as { code: string }).code; }
    expect(code).toBe('POLICY_STORE_FULL');
    expect(store.bytes).toBe(2 * bundleA.length);
  });

  it('the versions it keeps hold no more than their own bytes: an upload that adds one delta does not stay in memory with it (SPEC.md §10.7.1)', () => {
    const m = moderator();
    const store = new PolicyStore(null, { now: () => NOW });
    const big = Array.from({ length: 2000 }, (_, i) => { const b = Buffer.alloc(32); b.writeUInt32BE(i); return b; });
    m.publish([]);
    // A large delta, then small ones, each uploaded with the deltas before it (no snapshot: the
    // store continues its chain, §10.4) so that every upload is about as large as the first.
    expect(store.accept(m.fp, m.publish(big)).result).toBe('updated');
    for (let i = 0; i < 8; i++) {
      const extra = Buffer.alloc(32, 0xff); extra.writeUInt32BE(i);
      m.publish([...big, extra]);
      expect(store.accept(m.fp, encodeBundle(m.versions.slice(1))).result).toBe('updated');
    }
    const s = store.get(m.fp)!;
    expect(s.chain.length).toBe(10);
    expect(retainedBytes(s)).toBeLessThanOrEqual(store.bytes);
  });
});

describe('chain limits at the holders (SPEC.md §10.5)', () => {
  it('an authority refuses a delta past 256 versions (POLICY_CHAIN_TOO_LONG) and reloads what it holds after a restart', () => {
    const dir = tmp();
    const m = moderator();
    const store = new PolicyStore(dir);
    let held: PolicyState | null = null;
    const entry = (i: number) => { const b = Buffer.alloc(32); b.writeUInt32BE(i); return denyEntry(b); };
    const sign = (i: number) => signPolicy({
      seq: i, previous: held?.digest ?? null, classes: [], maxShareBytes: 0, name: 'm',
      denyAdd: [entry(i)], denyRemove: [], approveAdd: [], approveRemove: [], allowAdd: [], allowRemove: [],
    }, m.key, W);
    for (let i = 1; i <= 256; i++) {
      const raw = sign(i);
      expect(store.accept(m.fp, encodeBundle([raw])).result).toBe('updated');
      held = advancePolicy(held, [raw], { moderator: m.fp, now: NOW }).state;
    }
    let code = '';
    try { store.accept(m.fp, encodeBundle([sign(257)])); } catch (e) { code = (e as { code: string }).code; }
    expect(code).toBe('POLICY_CHAIN_TOO_LONG');
    expect(store.get(m.fp)?.seq).toBe(256);
    expect(new PolicyStore(dir).get(m.fp)?.seq).toBe(256);
  });

  it('publish refuses a policy too large for one version (POLICY_LIST_TOO_LARGE) before signing or saving anything', async () => {
    const dir = tmp();
    const ws = await ModeratorWorkspace.create(dir, 'Mod');
    const n = 135_000;
    ws.working.deny = Array.from({ length: n }, (_, i) => { const b = Buffer.alloc(32); b.writeUInt32BE(i); return denyEntry(b).toString('hex'); });
    let e: unknown = null;
    try { await ws.signNext(); } catch (x) { e = x; }
    expect(isBitcloudError(e, 'POLICY_LIST_TOO_LARGE')).toBe(true);
    expect((e as Error).message).toContain(`${n} denylist entries`);
    expect((e as Error).message).toContain(`limit of ${4 * 1024 * 1024} bytes`);
    expect(fs.existsSync(path.join(dir, 'published.bundle'))).toBe(false);
    expect(ws.published).toBeNull();
  });
});

describe('policies on the DHT (BEP 44)', () => {
  it('head encoding round-trips; oversized bundles are refused', () => {
    const { head } = splitBundle(randomBytes(2000));
    const d = decodeHead(encodeHead(head));
    expect(d.length).toBe(2000);
    expect(d.parts).toHaveLength(3);
    expect(() => splitBundle(Buffer.alloc(DHT_MAX_BUNDLE_BYTES + 1))).toThrow(/POLICY_TOO_LARGE_FOR_DHT/);
    expect(() => decodeHead(Buffer.alloc(37))).toThrow(/POLICY_MALFORMED/);
  });

  it('a moderator publishes; a node reads the newest version; a delta re-fetches only the tail', async () => {
    const nodes: DHT[] = [];
    for (let i = 0; i < 3; i++) {
      const d = new DHT(dhtOptions(i === 0 ? [] : [{ host: '127.0.0.1', port: nodes[0].address().port }]));
      await new Promise<void>((r) => d.listen(0, '127.0.0.1', () => r()));
      nodes.push(d);
      cleanup.push(() => new Promise<void>((r) => d.destroy(() => r())));
    }
    for (const d of nodes) for (const e of nodes) if (d !== e) d.addNode({ host: '127.0.0.1', port: e.address().port });
    // addNode pings first; wait until every routing table knows the two others.
    while (!nodes.every((d) => d.toJSON().nodes.length >= 2)) await new Promise((r) => setTimeout(r, 20));
    const m = moderator();
    const many = Array.from({ length: 60 }, (_, i) => Buffer.alloc(32, i + 1));
    const b1 = m.publish(many);
    await publishPolicyToDht(nodes[1] as unknown as DhtLike, m.key, b1, 1);
    let gets = 0;
    const reader = nodes[2] as unknown as DhtLike;
    const counting: DhtLike = { put: reader.put.bind(reader), get: (k, o, cb) => { gets++; reader.get(k, o, cb); } };
    const src = dhtSource(counting);
    const got = await src.fetch(m.fp, null);
    expect(got?.equals(b1)).toBe(true);
    const first = gets;
    const held = advancePolicy(null, got!, { moderator: m.fp, now: NOW }).state;
    expect(await src.fetch(m.fp, held)).toBeNull(); // nothing newer: only the head is read
    const b2 = m.publish([...many, cipherId]);
    await publishPolicyToDht(nodes[1] as unknown as DhtLike, m.key, b2, 2);
    gets = 0;
    const got2 = await src.fetch(m.fp, held);
    expect(got2?.equals(b2)).toBe(true);
    expect(gets).toBeLessThan(first); // head + the changed tail, not every part
    expect(advancePolicy(held, got2!, { moderator: m.fp, now: NOW }).state.deny.deniesId(cipherId)).toBe(true);
  });
});

describe('policies on the DHT: lookups that never end', () => {
  /**
   * A DHT whose lookups of the targets in `hang` never answer (a hostile peer keeps them walking)
   * until `end()` ends them with nothing found, as the library does on its own; the rest answer from `items`.
   */
  function stubDht(items: Map<string, { v: Buffer; k?: Buffer; seq?: number }>, hang: Set<string>): DhtLike & { gets: string[]; end(): void } {
    const gets: string[] = [];
    const hung: Array<() => void> = [];
    return {
      gets,
      end: () => { for (const f of hung.splice(0)) f(); },
      put: () => undefined,
      get: (key: Buffer, _o: unknown, cb: (e: Error | null, v: unknown) => void) => {
        const hex = key.toString('hex');
        gets.push(hex);
        if (hang.has(hex)) { hung.push(() => cb(null, null)); return; }
        setImmediate(() => cb(null, items.get(hex) ?? null));
      },
    };
  }

  /** `p`, or 'still waiting' when it has not settled within `ms`. */
  const settledWithin = <T>(p: Promise<T>, ms: number): Promise<T | 'still waiting'> =>
    Promise.race([p, new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), ms))]);

  it('a head lookup that never answers fails the fetch with POLICY_FETCH_FAILED, and the refresh goes on to the next moderator', async () => {
    const m1 = moderator();
    const m2 = moderator();
    const head1 = headTarget(m1.key.publicKey).toString('hex');
    const dht = stubDht(new Map(), new Set([head1]));
    const src = dhtSource(dht, { getMs: 50 });
    const r = await settledWithin(src.fetch(m1.fp, null).then(() => 'answered', (e: unknown) => (e as { code?: string }).code), 2000);
    expect(r).toBe('POLICY_FETCH_FAILED');

    const auth = fixedSource('auth');
    auth.bundle = m2.publish([cipherId]);
    const subs = PolicySubscriptions.open({ moderators: [m1.fp, m2.fp], sources: [dhtSource(dht, { getMs: 50 }), auth], now: () => NOW });
    cleanup.push(() => subs.close());
    expect(await settledWithin(subs.refresh().then(() => 'done'), 2000)).toBe('done');
    expect(subs.policy(m2.fp)?.seq).toBe(1);
  });

  it('a refresh asks the authorities for every moderator before a DHT lookup that hangs (SPEC.md §10.6.1)', async () => {
    const m1 = moderator();
    const m2 = moderator();
    const dht = stubDht(new Map(), new Set([headTarget(m1.key.publicKey).toString('hex'), headTarget(m2.key.publicKey).toString('hex')]));
    const b1 = m1.publish([cipherId]);
    const b2 = m2.publish([cipherId]);
    const byModerator: PolicySource = { name: 'auth', fetch: async (fp) => (fp === m1.fp ? b1 : fp === m2.fp ? b2 : null) };
    // The DHT source comes after the authority, as storage/main.ts adds it; its lookups take their whole deadline.
    const lookups = dhtSource(dht, { getMs: 800, fetchMs: 800 });
    // What was installed, and whether the round had ended, when moderator 1's DHT lookup ended at its deadline.
    let roundDone = false;
    let atDeadline: { m1?: number; m2?: number; roundDone: boolean } | null = null;
    const timed: PolicySource = {
      name: lookups.name,
      fetch: (fp, held) => lookups.fetch(fp, held).finally(() => {
        if (fp === m1.fp) atDeadline ??= { m1: subs.policy(m1.fp)?.seq, m2: subs.policy(m2.fp)?.seq, roundDone };
      }),
    };
    const subs = PolicySubscriptions.open({ moderators: [m1.fp, m2.fp], sources: [byModerator, timed], now: () => NOW });
    cleanup.push(() => subs.close());
    const round = subs.refresh().finally(() => { roundDone = true; });
    await vi.waitFor(() => {
      expect(subs.policy(m1.fp)?.seq).toBe(1);
      expect(subs.policy(m2.fp)?.seq).toBe(1);
    }, { timeout: 10_000, interval: 5 });
    expect(roundDone).toBe(false); // installed while the DHT lookups were still under way
    await round;
    // Not held back behind moderator 1's DHT lookup: installed before its deadline.
    expect(atDeadline).toEqual({ m1: 1, m2: 1, roundDone: false });
  }, 15_000);

  it('ten refreshes with a DHT that never answers start one library lookup per target, not ten (SPEC.md §10.7.2)', async () => {
    const m1 = moderator();
    const m2 = moderator();
    const heads = [headTarget(m1.key.publicKey).toString('hex'), headTarget(m2.key.publicKey).toString('hex')];
    const dht = stubDht(new Map(), new Set(heads));
    const subs = PolicySubscriptions.open({ moderators: [m1.fp, m2.fp], sources: [dhtSource(dht, { getMs: 10, fetchMs: 10 })], now: () => NOW });
    cleanup.push(() => subs.close());
    for (let i = 0; i < 10; i++) expect(await settledWithin(subs.refresh().then(() => 'done'), 2000)).toBe('done');
    expect(dht.gets.filter((t) => t === heads[0])).toHaveLength(1);
    expect(dht.gets.filter((t) => t === heads[1])).toHaveLength(1);
    expect(dht.gets).toHaveLength(2);
  });

  it('beyond maxLookups running, a DHT lookup is refused at once and counted; the refresh completes from the authority (SPEC.md §10.7.2)', async () => {
    const { Registry } = await import('prom-client');
    const registry = new Registry();
    const ms = [moderator(), moderator(), moderator()];
    const heads = ms.map((m) => headTarget(m.key.publicKey).toString('hex'));
    const dht = stubDht(new Map(), new Set(heads));
    const bundles = new Map(ms.map((m) => [m.fp, m.publish([cipherId])]));
    const auth: PolicySource = { name: 'auth', fetch: async (fp) => bundles.get(fp) ?? null };
    const src = dhtSource(dht, { getMs: 10, fetchMs: 10, maxLookups: 2, registry });
    const subs = PolicySubscriptions.open({ moderators: ms.map((m) => m.fp), sources: [src, auth], now: () => NOW });
    cleanup.push(() => subs.close());
    const value = async (name: string) => (await registry.getSingleMetric(name)!.get()).values[0]?.value;
    expect(await settledWithin(subs.refresh().then(() => 'done'), 2000)).toBe('done');
    expect(dht.gets).toEqual(heads.slice(0, 2)); // the third was never started
    expect(await value('bitcloud_moderation_dht_lookups')).toBe(2);
    expect(await value('bitcloud_moderation_dht_lookups_refused_total')).toBe(1);
    for (const m of ms) expect(subs.policy(m.fp)?.seq).toBe(1);
    // Once the lookups end, a request is no longer refused.
    dht.end();
    await new Promise((r) => setImmediate(r));
    expect(await value('bitcloud_moderation_dht_lookups')).toBe(0);
    await expect(src.fetch(ms[2].fp, null)).rejects.toMatchObject({ code: 'POLICY_FETCH_FAILED' }); // its own deadline
    expect(dht.gets).toEqual([...heads.slice(0, 2), heads[2]]);
    expect(await value('bitcloud_moderation_dht_lookups_refused_total')).toBe(1);
  });

  it('a part lookup that never answers ends the fetch at its deadline; the parts fetched by then are kept', async () => {
    const m = moderator();
    const bundle = m.publish(Array.from({ length: 60 }, (_, i) => Buffer.alloc(32, i + 1)));
    const { head, parts } = splitBundle(bundle);
    expect(parts.length).toBeGreaterThan(2);
    const items = new Map<string, { v: Buffer; k?: Buffer; seq?: number }>();
    items.set(headTarget(m.key.publicKey).toString('hex'), { v: encodeHead(head), k: m.key.publicKey, seq: 1 });
    parts.forEach((p, i) => items.set(head.parts[i].toString('hex'), { v: p }));
    const last = head.parts[parts.length - 1].toString('hex');
    const hang = new Set([last]);
    const dht = stubDht(items, hang);
    const src = dhtSource(dht, { getMs: 10_000, fetchMs: 100 });
    const r = await settledWithin(src.fetch(m.fp, null).then(() => 'answered', (e: unknown) => (e as { code?: string }).code), 2000);
    expect(r).toBe('POLICY_FETCH_FAILED');
    // The lookup given up on still runs in the library (a new request would join it) until it ends.
    hang.clear();
    dht.end();
    await new Promise((r) => setImmediate(r));
    dht.gets.length = 0;
    const got = await settledWithin(src.fetch(m.fp, null), 2000);
    expect(Buffer.isBuffer(got) && got.equals(bundle)).toBe(true);
    expect(dht.gets).toEqual([headTarget(m.key.publicKey).toString('hex'), last]);
  });
});

describe('ModeratorWorkspace', () => {
  it('keygen, deny, allow, publish: deltas chain; the key file is 0600 and never replaced', async () => {
    const dir = tmp();
    const ws = await ModeratorWorkspace.create(dir, 'Mod');
    expect(fs.statSync(path.join(dir, 'moderator.key')).mode & 0o777).toBe(0o600);
    await expect(ModeratorWorkspace.create(dir)).rejects.toMatchObject({ code: 'MODERATOR_KEY_EXISTS' });
    expect(ws.addDeny([cipherId, cipherId])).toBe(1);
    ws.allow('public-video', 1000);
    await ws.saveWorking();
    expect(fs.readFileSync(path.join(dir, 'policy.json'), 'utf8')).not.toContain(cipherId.toString('hex'));
    const s1 = await ws.signNext();
    expect(s1.seq).toBe(1);
    const again = await ModeratorWorkspace.open(dir);
    again.addDeny([Buffer.alloc(32, 5)]);
    const s2 = await again.signNext();
    expect(s2.seq).toBe(2);
    expect(s2.chain[1].content.previous?.equals(s1.digest)).toBe(true);
    expect(s2.chain[1].content.denyAdd).toHaveLength(1);
    expect(s2.classes.map((c) => c.name)).toEqual(['encrypted-private', 'public-video']);
    expect(again.removeDeny([cipherId])).toBe(1);
    const s3 = await again.signNext();
    expect(s3.deny.deniesId(cipherId)).toBe(false);
    await expect(ModeratorWorkspace.open(tmp())).rejects.toMatchObject({ code: 'MODERATOR_NO_KEY' });
  });

  it('two keygens at once on one folder: one makes the key, the other refuses, and the key on disk is the one made (SPEC.md §10.9)', async () => {
    for (let round = 0; round < 5; round++) {
      const dir = tmp();
      const tries = await Promise.allSettled([ModeratorWorkspace.create(dir, 'A'), ModeratorWorkspace.create(dir, 'B')]);
      const made = tries.filter((t): t is PromiseFulfilledResult<ModeratorWorkspace> => t.status === 'fulfilled');
      expect(made).toHaveLength(1);
      expect(tries.find((t) => t.status === 'rejected')).toMatchObject({ reason: { code: 'MODERATOR_KEY_EXISTS' } });
      expect((await ModeratorWorkspace.open(dir)).fingerprint).toBe(made[0].value.fingerprint);
    }
  });

  it('publish refuses a lifetime over 366 days, or not above 0, before signing or saving anything (SPEC.md §10.2)', async () => {
    const dir = tmp();
    const ws = await ModeratorWorkspace.create(dir);
    for (const lifetimeDays of [367, 36_500, 0, -1, Number.NaN]) {
      let c = '';
      try { await ws.signNext({ lifetimeDays }); } catch (e) { c = (e as { code: string }).code; }
      expect(c).toBe('CONFIG_INVALID');
    }
    expect(fs.existsSync(path.join(dir, 'published.bundle'))).toBe(false);
    expect((await ws.signNext({ lifetimeDays: 366 })).validUntil - (await ModeratorWorkspace.open(dir)).published!.validAfter).toBe(366 * 86_400_000);
  });

  it('allow refuses a share limit that is not 0..4294967295 before saving it (CONFIG_INVALID)', async () => {
    const dir = tmp();
    const ws = await ModeratorWorkspace.create(dir, 'Mod');
    for (const bad of [-1, 1.5, 5e9, NaN]) {
      expect(() => ws.allow('public-any', bad)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
    await ws.saveWorking();
    const again = await ModeratorWorkspace.open(dir);
    expect(again.working.classes.map((c) => c.name)).toEqual(['encrypted-private']);
    again.allow('public-any', 0xffff_ffff);
    await again.saveWorking();
    expect((await ModeratorWorkspace.open(dir)).working.classes.find((c) => c.name === 'public-any')?.maxShareBytes).toBe(0xffff_ffff);
  });

  it('approve refuses more than 16 distinct tags (POLICY_BAD_TAG); a working file with more opens, and publish names the file and the entry until it is approved again (SPEC.md §10.2)', async () => {
    const dir = tmp();
    const ws = await ModeratorWorkspace.create(dir, 'Mod');
    const id = Buffer.alloc(32, 7);
    const tags = Array.from({ length: 17 }, (_, i) => `t${i}`);
    expect(() => ws.approve(id, 'public-any', [id], tags)).toThrow(expect.objectContaining({ code: 'POLICY_BAD_TAG' }));
    expect(ws.working.approved ?? []).toHaveLength(0);
    // 16, or 17 with one repeated, are 16 distinct tags.
    expect(ws.approve(id, 'public-any', [id], [...tags.slice(0, 16), 't0'])).toBe(true);
    await ws.saveWorking();
    const file = path.join(dir, 'policy.json');
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { approved: Array<{ tags: string[] }> };
    j.approved[0].tags = [...tags].sort();
    fs.writeFileSync(file, JSON.stringify(j));
    // Saved before the bound existed: the workspace opens (other edits go on), publish refuses
    // before signing anything, naming the file, the entry and the way out.
    const old = await ModeratorWorkspace.open(dir);
    const refused = await old.signNext().then(() => null, (e: unknown) => e);
    expect(refused).toMatchObject({ code: 'CONFIG_INVALID', detail: { file, manifestId: id.toString('hex') } });
    expect(String((refused as Error).message)).toContain(file);
    expect(String((refused as Error).message)).toContain(id.toString('hex'));
    expect(String((refused as Error).message)).toContain('moderator approve');
    expect(fs.existsSync(path.join(dir, 'published.bundle'))).toBe(false);
    // A bad tag in the file names the file and the entry at open.
    fs.writeFileSync(file, JSON.stringify({ ...j, approved: [{ ...j.approved[0], tags: ['Bad Tag'] }] }));
    const badTag = await ModeratorWorkspace.open(dir).then(() => null, (e: unknown) => e);
    expect(badTag).toMatchObject({ code: 'CONFIG_INVALID', detail: { file } });
    expect(String((badTag as Error).message)).toContain(id.toString('hex'));
    // The way out: approving the file again with at most 16 tags replaces the entry; publish goes on.
    fs.writeFileSync(file, JSON.stringify(j));
    const again = await ModeratorWorkspace.open(dir);
    expect(again.approve(id, 'public-any', [id], tags.slice(0, 3))).toBe(false);
    await again.saveWorking();
    const s1 = await (await ModeratorWorkspace.open(dir)).signNext();
    expect(s1.approvals.get(id.toString('hex'))?.tags).toEqual(['t0', 't1', 't2']);
  });

  it('close() while policy-status.json is being written: once close() resolves the write has ended and the file is gone, not left behind naming the node (SPEC.md §10.6.1)', async () => {
    const dir = tmp();
    const m = fingerprint(ed25519Generate().publicKey);
    const subs = PolicySubscriptions.open({ moderators: [m], dataDir: dir, sources: [] });
    const started = subs.start();
    // Wait until the first write has its temporary file open (between open and rename), then stop.
    for (let i = 0; i < 10_000 && !fs.readdirSync(dir).some((f) => f.startsWith('.policy-status.json.')); i++) await new Promise((r) => setImmediate(r));
    expect(fs.readdirSync(dir).some((f) => f.startsWith('.policy-status.json.'))).toBe(true);
    // close() resolves only once that write has ended and removed what it renamed into place.
    await subs.close();
    expect(fs.readdirSync(dir).filter((f) => f.includes('policy-status'))).toEqual([]);
    await started;
    expect(fs.readdirSync(dir).filter((f) => f.includes('policy-status'))).toEqual([]);
  });
});
