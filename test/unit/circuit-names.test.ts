// SPEC.md §9.14.1: names over circuits. The client checks every item a storage node hands back:
// another key, another salt, a bad signature or a rolled-back seq is dropped and counted by its code.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { ed25519Generate } from '../../src/crypto/primitives';
import { CircuitNames } from '../../src/client/circuit-names';
import { loadOrCreatePublisherKey } from '../../src/client/storage-client-setup';
import { loadEd25519Secret } from '../../src/crypto/keys';
import { NamesSeen } from '../../src/client/names-seen';
import pino from 'pino';
import type { StorageNode } from '../../src/client/storage-client';
import type { Capability } from '../../src/storage/capability';
import { FrameDecoder, frameHeader } from '../../src/storage/framing';
import { encodeNameValue, formatName, nameSalt } from '../../src/storage/name';
import { bep44SignedBytes, checkDhtAnswer, itemWins, signDhtItem } from '../../src/storage/name-record';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse, type DhtItem, type StorageRequest, type StorageResponse } from '../../src/storage/protocol';
import { NameService } from '../../storage/name-service';
import type { BitcloudDht } from '../../src/storage/dht';

/** Expect `x` (a function or a promise) to fail with a BitcloudError of `code`. */
async function expectCode(x: Promise<unknown> | (() => unknown), code: string): Promise<void> {
  try {
    await (typeof x === 'function' ? x() : x);
  } catch (e) {
    expect((e as { code?: string }).code).toBe(code);
    return;
  }
  throw new Error(`expected ${code}`);
}

/** A get whose only answer was invalid: NAME_NOT_FOUND, the dropped answer's code in the detail. */
async function expectDropped(x: Promise<unknown>, code: string): Promise<void> {
  await expect(x).rejects.toMatchObject({ code: 'NAME_NOT_FOUND', detail: { invalidAnswers: 1, codes: [code] } });
}

const CAP: Capability = { manifestId: Buffer.alloc(32, 1), fileKey: Buffer.alloc(32, 2) };
const dirs: string[] = [];
afterAll(() => { for (const d of dirs) fs.rmSync(d, { recursive: true, force: true }); });

function pair(): [Duplex, Duplex] {
  // eslint-disable-next-line prefer-const
  let b: Duplex;
  const a = new Duplex({ read() {}, write(c, _e, cb) { b.push(c); cb(); }, final(cb) { b.push(null); cb(); } });
  b = new Duplex({ read() {}, write(c, _e, cb) { a.push(c); cb(); }, final(cb) { a.push(null); cb(); } });
  return [a, b];
}

/** A storage node that answers every request with `answer(req)`. */
function fakeNode(answer: (req: StorageRequest) => StorageResponse): () => Promise<Duplex> {
  return async () => {
    const [client, node] = pair();
    const dec = new FrameDecoder(1 << 20);
    node.on('data', (c: Buffer) => {
      for (const f of dec.push(c)) {
        const { reqId, req } = decodeRequest(f);
        const body = encodeResponse(reqId, answer(req));
        node.write(frameHeader(body.length));
        node.write(body);
      }
    });
    return client;
  };
}

const NODE = { fingerprint: 'f'.repeat(40) } as unknown as StorageNode;

function names(answer: (req: StorageRequest) => StorageResponse, dataDir?: string): CircuitNames {
  return new CircuitNames({ nodes: [NODE], open: fakeNode(answer), dataDir, lookupNodes: 1 });
}

describe('the DhtGet / DhtPut wire layout (SPEC.md §9.14.1)', () => {
  it('round-trips and refuses fields beyond the BEP 44 limits', async () => {
    const keys = ed25519Generate();
    const item = signDhtItem(keys, nameSalt('site'), encodeNameValue(CAP), 7);
    expect(decodeRequest(encodeRequest(3, { type: 'dhtPut', item })).req).toEqual({ type: 'dhtPut', item });
    expect(decodeRequest(encodeRequest(4, { type: 'dhtGet', publisher: item.publisher, salt: item.salt })).req)
      .toEqual({ type: 'dhtGet', publisher: item.publisher, salt: item.salt });
    expect(decodeResponse(encodeResponse(5, { type: 'dhtGet', item })).res).toEqual({ type: 'dhtGet', item });
    expect(decodeResponse(encodeResponse(6, { type: 'dhtGet', item: null })).res).toEqual({ type: 'dhtGet', item: null });
    await expectCode(() => decodeRequest(encodeRequest(1, { type: 'dhtPut', item: { ...item, sig: item.sig.subarray(0, 63) } })), 'STORAGE_BAD_REQUEST');
    await expectCode(() => decodeRequest(encodeRequest(1, { type: 'dhtGet', publisher: item.publisher, salt: Buffer.alloc(65) })), 'STORAGE_BAD_REQUEST');
    await expectCode(() => decodeRequest(encodeRequest(1, { type: 'dhtPut', item: { ...item, value: Buffer.alloc(1000) } })), 'STORAGE_BAD_REQUEST');
    await expectCode(() => decodeResponse(encodeResponse(1, { type: 'dhtGet', item: { ...item, publisher: Buffer.alloc(31) } })), 'STORAGE_BAD_RESPONSE');
  });

  it('an immutable DhtPut is a value alone; with a salt or seq, or an empty or oversized value, it is refused', async () => {
    const value = Buffer.from('a policy part');
    expect(decodeRequest(encodeRequest(7, { type: 'dhtPut', immutable: value })).req).toEqual({ type: 'dhtPut', immutable: value });
    await expectCode(() => decodeRequest(encodeRequest(1, { type: 'dhtPut', immutable: Buffer.alloc(1000) })), 'STORAGE_BAD_REQUEST');
    await expectCode(() => decodeRequest(encodeRequest(1, { type: 'dhtPut', item: { publisher: Buffer.alloc(0), salt: Buffer.from('x'), value, seq: 0, sig: Buffer.alloc(0) } })), 'STORAGE_BAD_REQUEST');
    await expectCode(() => decodeRequest(encodeRequest(1, { type: 'dhtPut', item: { publisher: Buffer.alloc(0), salt: Buffer.alloc(0), value, seq: 3, sig: Buffer.alloc(0) } })), 'STORAGE_BAD_REQUEST');
    // A node without a DHT refuses it as it refuses a mutable one.
    await expectCode(new NameService(() => null).handle({ type: 'dhtPut', immutable: value }), 'DHT_NO_NODES');
  });

  it('a DHT operation that does not end is answered DHT_GET_FAILED at the deadline; it keeps its place among the 32 until it ends (SPEC.md §9.14.1)', async () => {
    let end: (item: null) => void = () => {};
    const slow = { getSignedItem: () => new Promise<null>((r) => { end = r; }) } as unknown as BitcloudDht;
    const ns = new NameService(() => slow, 1, 50);
    await expectCode(ns.handle({ type: 'dhtGet', publisher: Buffer.alloc(32, 1), salt: Buffer.alloc(0) }), 'DHT_GET_FAILED');
    // The lookup still runs: the one place is taken until it ends.
    await expectCode(ns.handle({ type: 'dhtGet', publisher: Buffer.alloc(32, 1), salt: Buffer.alloc(0) }), 'DHT_BUSY');
    end(null);
    await new Promise((r) => setImmediate(r));
    const again = ns.handle({ type: 'dhtGet', publisher: Buffer.alloc(32, 1), salt: Buffer.alloc(0) });
    end(null);
    await expect(again).resolves.toEqual({ type: 'dhtGet', item: null });
  });

  it('the signed bytes are BEP 44\'s', () => {
    expect(bep44SignedBytes(Buffer.from('foobar'), 1, Buffer.from('Hello World!')).toString())
      .toBe('4:salt6:foobar3:seqi1e1:v12:Hello World!');
    expect(bep44SignedBytes(Buffer.alloc(0), 1, Buffer.from('Hello World!')).toString()).toBe('3:seqi1e1:v12:Hello World!');
  });
});

describe('a lying storage node is refused with a typed error (SPEC.md §9.14.1)', () => {
  const keys = ed25519Generate();
  const other = ed25519Generate();
  const salt = nameSalt('site');
  const good = signDhtItem(keys, salt, encodeNameValue(CAP), 10);
  const get = (item: DhtItem | null) => (req: StorageRequest): StorageResponse => (req.type === 'dhtGet' ? { type: 'dhtGet', item } : { type: 'error', code: 'STORAGE_BAD_REQUEST', message: '' });

  it('an honest answer resolves', async () => {
    const n = names(get(good));
    const r = await n.resolve(keys.publicKey, 'site');
    expect(r?.seq).toBe(10);
    await n.close();
  });

  it('a record signed by another key: NAME_WRONG_KEY; claimed for our key but signed by another: NAME_BAD_SIGNATURE (dropped: the name is not found)', async () => {
    await expectDropped(names(get(signDhtItem(other, salt, encodeNameValue(CAP), 11))).resolve(keys.publicKey, 'site'), 'NAME_WRONG_KEY');
    const forged = { ...signDhtItem(other, salt, encodeNameValue(CAP), 11), publisher: Buffer.from(keys.publicKey) };
    await expectDropped(names(get(forged)).resolve(keys.publicKey, 'site'), 'NAME_BAD_SIGNATURE');
    const tampered = { ...good, seq: 12 };
    await expectDropped(names(get(tampered)).resolve(keys.publicKey, 'site'), 'NAME_BAD_SIGNATURE');
  });

  it('a record under a wrong salt (another name): NAME_WRONG_SALT', async () => {
    await expectDropped(names(get(signDhtItem(keys, nameSalt('other'), encodeNameValue(CAP), 11))).resolve(keys.publicKey, 'site'), 'NAME_WRONG_SALT');
    expect(() => checkDhtAnswer({ publisher: Buffer.from(keys.publicKey), salt }, { ...good, salt: nameSalt('sit') })).toThrow(/NAME_WRONG_SALT/);
  });

  it('an older seq than one already verified: NAME_SEQ_ROLLBACK (remembered across runs)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-names-'));
    dirs.push(dir);
    expect((await names(get(good), dir).resolve(keys.publicKey, 'site'))?.seq).toBe(10);
    const older = signDhtItem(keys, salt, encodeNameValue(CAP), 9);
    await expectDropped(names(get(older), dir).resolve(keys.publicKey, 'site'), 'NAME_SEQ_ROLLBACK');
    expect((fs.statSync(path.join(dir, 'names-seen.json')).mode & 0o777)).toBe(0o600);
  });

  it('publish signs with the client key; a given stale seq is DHT_SEQ_STALE before anything is sent', async () => {
    const puts: DhtItem[] = [];
    const n = names((req) => {
      if (req.type === 'dhtGet') return { type: 'dhtGet', item: good };
      if (req.type === 'dhtPut' && 'item' in req) { puts.push(req.item); return { type: 'dhtPut', nodes: 3 }; }
      return { type: 'error', code: 'STORAGE_BAD_REQUEST', message: '' };
    });
    await expectCode(n.publish(keys, 'site', CAP, { seq: 10 }), 'DHT_SEQ_STALE');
    expect(puts).toHaveLength(0);
    const r = await n.publish(keys, 'site', CAP);
    expect(r.seq).toBeGreaterThan(10);
    expect(puts).toHaveLength(1);
    expect(() => checkDhtAnswer({ publisher: Buffer.from(keys.publicKey), salt }, puts[0])).not.toThrow();
  });

  it('a hostile node answering a forged item cannot block the first publication; a get reports NAME_NOT_FOUND with the invalid answers counted', async () => {
    const forged = { ...signDhtItem(other, salt, encodeNameValue(CAP), 11), publisher: Buffer.from(keys.publicKey) };
    const puts: DhtItem[] = [];
    const n = names((req) => {
      if (req.type === 'dhtGet') return { type: 'dhtGet', item: forged };
      if (req.type === 'dhtPut' && 'item' in req) { puts.push(req.item); return { type: 'dhtPut', nodes: 3 }; }
      return { type: 'error', code: 'STORAGE_BAD_REQUEST', message: '' };
    });
    const r = await n.publish(keys, 'site', CAP);
    expect(puts).toHaveLength(1);
    expect(puts[0].seq).toBe(r.seq);
    let e: unknown;
    try { await n.resolve(keys.publicKey, 'site'); } catch (x) { e = x; }
    expect(e).toMatchObject({ code: 'NAME_NOT_FOUND', detail: { invalidAnswers: 1, codes: ['NAME_BAD_SIGNATURE'] } });
    await n.close();
  });
  it('a publication after only dropped answers still starts above the seq this client verified (no self-rollback)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-names-'));
    dirs.push(dir);
    const future = Math.floor(Date.now() / 1000) + 1_000_000; // a seq once given with --seq
    const ahead = signDhtItem(keys, salt, encodeNameValue(CAP), future);
    expect((await names(get(ahead), dir).resolve(keys.publicKey, 'site'))?.seq).toBe(future);
    const puts: DhtItem[] = [];
    const older = signDhtItem(keys, salt, encodeNameValue(CAP), 9); // a rollback answer: dropped
    const n = names((req) => {
      if (req.type === 'dhtGet') return { type: 'dhtGet', item: older };
      if (req.type === 'dhtPut' && 'item' in req) { puts.push(req.item); return { type: 'dhtPut', nodes: 3 }; }
      return { type: 'error', code: 'STORAGE_BAD_REQUEST', message: '' };
    }, dir);
    await expectCode(n.publish(keys, 'site', CAP, { seq: future }), 'DHT_SEQ_STALE');
    const r = await n.publish(keys, 'site', CAP);
    expect(r.seq).toBe(future + 1);
    expect(puts.map((p) => p.seq)).toEqual([future + 1]);
    await n.close();
  });

  it('the warning for dropped answers does not name the name looked up (SPEC.md §9.14.1, §11.6)', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (s: string) => { lines.push(s); } });
    const n = new CircuitNames({ nodes: [NODE], open: fakeNode(get(signDhtItem(other, salt, encodeNameValue(CAP), 11))), lookupNodes: 1, log });
    await expectDropped(n.resolve(keys.publicKey, 'site'), 'NAME_WRONG_KEY');
    await n.close();
    const warned = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => (l.level as number) >= 30);
    expect(warned.some((l) => l.msg === 'invalid name answers dropped' && l.invalidAnswers === 1)).toBe(true);
    const name = formatName({ publisher: Buffer.from(keys.publicKey), label: 'site' });
    for (const l of warned) {
      const text = JSON.stringify(l);
      expect(text).not.toContain(name);
      expect(text).not.toContain(name.split('/')[0]);
    }
  });
});

describe('two items under one seq (SPEC.md §9.14 Resolving)', () => {
  it('the same one wins whatever order the answers come in: the greater value, then the greater signature', async () => {
    const keys = ed25519Generate();
    const salt = nameSalt('site');
    const capA: Capability = { manifestId: Buffer.alloc(32, 3), fileKey: Buffer.alloc(32, 4) };
    const capB: Capability = { manifestId: Buffer.alloc(32, 5), fileKey: Buffer.alloc(32, 6) };
    const a = signDhtItem(keys, salt, encodeNameValue(capA), 9);
    const b = signDhtItem(keys, salt, encodeNameValue(capB), 9);
    const [lo, hi] = Buffer.compare(a.value, b.value) < 0 ? [a, b] : [b, a];
    expect(itemWins(hi, lo)).toBe(true);
    expect(itemWins(lo, hi)).toBe(false);
    expect(itemWins(signDhtItem(keys, salt, lo.value, 10), hi)).toBe(true);
    // Equal values (never two signatures from Ed25519, but a node may send any): the signature decides.
    expect(itemWins({ ...lo, sig: Buffer.alloc(64, 2) }, { ...lo, sig: Buffer.alloc(64, 1) })).toBe(true);
    // Two nodes answer the two items; which is asked first is random. Every lookup picks `hi`.
    const nodes = ['1', '2'].map((c) => ({ fingerprint: c.repeat(40) }) as unknown as StorageNode);
    const holds = new Map([[nodes[0].fingerprint, lo], [nodes[1].fingerprint, hi]]);
    for (let i = 0; i < 32; i++) {
      const n = new CircuitNames({
        nodes, lookupNodes: 2,
        open: (node) => fakeNode((req) => (req.type === 'dhtGet' ? { type: 'dhtGet', item: holds.get(node.fingerprint)! } : { type: 'error', code: 'STORAGE_BAD_REQUEST', message: '' }))(),
      });
      expect((await n.lookup(keys.publicKey, 'site')).found?.item.value.equals(hi.value)).toBe(true);
      await n.close();
    }
  });
});

describe('the storage node side', () => {
  it('refuses a DhtPut whose signature does not verify before touching the DHT', async () => {
    let touched = false;
    const svc = new NameService(() => { touched = true; return null; });
    const keys = ed25519Generate();
    const item = signDhtItem(keys, nameSalt('x'), Buffer.from('v'), 1);
    await expectCode(svc.handle({ type: 'dhtPut', item: { ...item, seq: 2 } }), 'STORAGE_BAD_REQUEST');
    expect(touched).toBe(false);
    await expectCode(svc.handle({ type: 'dhtPut', item }), 'DHT_NO_NODES');
    expect(touched).toBe(true);
  });
});

describe('which storage nodes a lookup goes to (SPEC.md §9.14.1)', () => {
  it('is drawn from the CSPRNG, not Math.random (whose state can be predicted)', async () => {
    const keys = ed25519Generate();
    const item = signDhtItem(keys, nameSalt('site'), encodeNameValue(CAP), 1);
    const nodes = Array.from({ length: 8 }, (_, i) => ({ fingerprint: String(i).repeat(40) }) as unknown as StorageNode);
    const asked = new Set<string>();
    const answer = fakeNode((req) => (req.type === 'dhtGet' ? { type: 'dhtGet', item } : { type: 'error', code: 'STORAGE_BAD_REQUEST', message: '' }));
    const spy = vi.spyOn(Math, 'random').mockReturnValue(0); // a Math.random an observer knows
    try {
      for (let i = 0; i < 40; i++) {
        const n = new CircuitNames({ nodes, open: (node) => { asked.add(node.fingerprint); return answer(); }, lookupNodes: 1 });
        expect((await n.resolve(keys.publicKey, 'site'))?.seq).toBe(1);
        await n.close();
      }
    } finally {
      spy.mockRestore();
    }
    // 40 draws of one node in 8: all the same with probability 8^-39.
    expect(asked.size).toBeGreaterThan(1);
  });
});

describe('a storage node that never answers (SPEC.md §9.14.1, §9.9)', () => {
  it('times its request out (STORAGE_TIMEOUT): a lookup settles with the other node\'s item, and fails when no node answers', async () => {
    const keys = ed25519Generate();
    const item = signDhtItem(keys, nameSalt('site'), encodeNameValue(CAP), 7);
    const silent = { fingerprint: '1'.repeat(40) } as unknown as StorageNode;
    const honest = { fingerprint: '2'.repeat(40) } as unknown as StorageNode;
    const answer = fakeNode((req) => (req.type === 'dhtGet' ? { type: 'dhtGet', item } : { type: 'error', code: 'STORAGE_BAD_REQUEST', message: '' }));
    const mute = () => Promise.resolve(pair()[0]); // takes every request, answers none
    const n = new CircuitNames({ nodes: [silent, honest], open: (node) => (node === silent ? mute() : answer()), lookupNodes: 2, requestTimeoutMs: 50 });
    expect((await n.resolve(keys.publicKey, 'site'))?.seq).toBe(7);
    await n.close();
    const none = new CircuitNames({ nodes: [silent], open: mute, lookupNodes: 1, requestTimeoutMs: 50 });
    await expect(none.resolve(keys.publicKey, 'site')).rejects.toMatchObject({ code: 'STORAGE_TIMEOUT' });
    await expect(none.put({ immutable: Buffer.from('x') })).rejects.toMatchObject({ code: 'STORAGE_TIMEOUT' });
    await none.close();
  }, 5_000);
});

describe('the stream to a storage node (SPEC.md §9.14.1, §9.9)', () => {
  it('one closed for any reason is replaced by the next request; two first requests at once open one stream', async () => {
    const keys = ed25519Generate();
    const item = signDhtItem(keys, nameSalt('site'), encodeNameValue(CAP), 3);
    const answer = fakeNode((req) => (req.type === 'dhtGet' ? { type: 'dhtGet', item } : { type: 'dhtPut', nodes: 4 }));
    const streams: Duplex[] = [];
    const n = new CircuitNames({ nodes: [NODE], open: async () => { const s = await answer(); streams.push(s); return s; }, lookupNodes: 1 });
    // Two requests before any stream is open: they share one.
    const [a, b] = await Promise.all([n.resolve(keys.publicKey, 'site'), n.put({ immutable: Buffer.from('x') })]);
    expect(a?.seq).toBe(3);
    expect(b).toBe(4);
    expect(streams).toHaveLength(1);
    // The stream closes (the circuit went away): the next request opens another and is answered.
    streams[0].destroy();
    await new Promise((r) => setImmediate(r));
    expect(await n.put({ immutable: Buffer.from('y') })).toBe(4);
    expect(streams).toHaveLength(2);
    expect((await n.resolve(keys.publicKey, 'site'))?.seq).toBe(3);
    expect(streams).toHaveLength(2);
    await n.close();
  }, 5_000);
});

describe('the publisher key (SPEC.md §9.14)', () => {
  it('two first uses at once on a fresh data folder end with one key, the one on disk', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-pubkey-'));
    dirs.push(d);
    const [a, b] = await Promise.all([loadOrCreatePublisherKey(d), loadOrCreatePublisherKey(d)]);
    const onDisk = await loadEd25519Secret(path.join(d, 'publisher.key'));
    expect(a.publicKey.equals(b.publicKey)).toBe(true);
    expect(a.publicKey.equals(onDisk.publicKey)).toBe(true);
  });
});

describe('the seq a publication goes out with (SPEC.md §9.14.1, §9.14.2)', () => {
  it('is above the item found and above the seq verified for the name; a given seq not above both is DHT_SEQ_STALE', async () => {
    const seen = new NamesSeen(undefined, pino({ level: 'silent' }));
    const clock = Math.floor(Date.now() / 1000);
    expect(await seen.nextSeq('n', -1)).toBeGreaterThanOrEqual(clock);
    await seen.remember('n', 5_000_000_000);
    expect(await seen.nextSeq('n', -1)).toBe(5_000_000_001);
    expect(await seen.nextSeq('n', 6_000_000_000)).toBe(6_000_000_001);
    expect(await seen.nextSeq('other', 7)).toBeGreaterThanOrEqual(clock);
    expect(await seen.nextSeq('n', 3, 5_000_000_002)).toBe(5_000_000_002);
    await expect(seen.nextSeq('n', 3, 5_000_000_000)).rejects.toMatchObject({ code: 'DHT_SEQ_STALE' });
  });
});

describe('names-seen.json shared by two processes (SPEC.md §9.14.1)', () => {
  it('two clients that loaded the file before either wrote keep both names, each at its highest seq', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-names-seen-'));
    dirs.push(dir);
    const log = pino({ level: 'silent' });
    const a = new NamesSeen(dir, log), b = new NamesSeen(dir, log);
    expect(await a.min('a')).toBe(-1);
    expect(await b.min('b')).toBe(-1); // both have read the (missing) file
    await a.remember('shared', 10);
    // b never saw 10: its lower seq is merged with the file, which keeps the higher one.
    await b.remember('shared', 5);
    await Promise.all([a.remember('a', 7), b.remember('b', 9)]);
    const file = JSON.parse(fs.readFileSync(path.join(dir, 'names-seen.json'), 'utf8')) as Record<string, number>;
    expect(file).toEqual({ shared: 10, a: 7, b: 9 });
    expect(await b.min('shared')).toBe(10);
    expect(await new NamesSeen(dir, log).min('shared')).toBe(10);
    expect(fs.existsSync(path.join(dir, 'names-seen.json.lock'))).toBe(false);
  });

  it('a long-running client sees a seq another process recorded after it loaded the file, and its own later record keeps that entry', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-names-seen-'));
    dirs.push(dir);
    const log = pino({ level: 'silent' });
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    try {
      const proxy = new NamesSeen(dir, log), get = new NamesSeen(dir, log);
      expect(await proxy.min('late')).toBe(-1); // the proxy has read the (missing) file
      await get.remember('late', 42);
      vi.advanceTimersByTime(1_500); // past the one-second look at the file
      expect(await proxy.min('late')).toBe(42);
      await get.remember('later', 50);
      vi.advanceTimersByTime(1_500);
      await proxy.remember('own', 3);
      const file = JSON.parse(fs.readFileSync(path.join(dir, 'names-seen.json'), 'utf8')) as Record<string, number>;
      expect(file).toEqual({ late: 42, later: 50, own: 3 });
      expect(await proxy.min('later')).toBe(50);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a wall clock stepped back does not stop a long-running client from looking at the file again', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-names-seen-'));
    dirs.push(dir);
    const log = pino({ level: 'silent' });
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    try {
      const proxy = new NamesSeen(dir, log), get = new NamesSeen(dir, log);
      expect(await proxy.min('stepped')).toBe(-1);
      await get.remember('stepped', 7);
      vi.setSystemTime(Date.now() - 3_600_000); // the wall clock steps back an hour
      vi.advanceTimersByTime(1_500); // past the one-second look at the file, by the monotonic clock
      expect(await proxy.min('stepped')).toBe(7);
    } finally {
      vi.useRealTimers();
    }
  });
});
