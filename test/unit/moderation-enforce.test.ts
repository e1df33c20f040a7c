// SPEC.md §10.6: enforcement on the storage node (the handler's policy hook).
import { describe, it, expect, afterEach } from 'vitest';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ed25519Generate, randomBytes } from '../../src/crypto/primitives';
import { fingerprint } from '../../src/crypto/keys';
import { isBitcloudError } from '../../src/errors';
import { shareId } from '../../src/storage/share';
import type { StorageRequest } from '../../src/storage/protocol';
import { ShareStore } from '../../storage/share-store';
import { handleRequest } from '../../storage/handler';
import { signPolicy, type ClassRule } from '../../src/moderation/policy';
import { allowEntry, denyEntry } from '../../src/moderation/denylist';
import { advancePolicy, encodeBundle, nextPolicyContent, type PolicyState } from '../../src/moderation/chain';
import { fetchModeratorPolicies, MAX_PLACEMENT_MODERATORS, placementModerators, POLICY_FETCHES_IN_FLIGHT, selectNodesForClass } from '../../src/moderation/placement';
import { looksEncrypted, makePolicyCheck, staticSubscriptions, RANDOMNESS_MIN_BYTES } from '../../src/moderation/enforce';

const NOW = Date.now();

function policy(o: { classes?: ClassRule[]; maxShareBytes?: number; deny?: Buffer[]; allow?: Buffer[] } = {}): { fp: string; state: PolicyState; raw: Buffer } {
  const key = ed25519Generate();
  const fp = fingerprint(key.publicKey);
  const c = nextPolicyContent(null, {
    name: 'm', classes: o.classes ?? [{ name: 'encrypted-private', maxShareBytes: 0 }],
    maxShareBytes: o.maxShareBytes ?? 0, deny: (o.deny ?? []).map(denyEntry), allow: (o.allow ?? []).map(allowEntry),
  });
  const raw = signPolicy(c, key, { validAfter: NOW - 1000, validUntil: NOW + 3_600_000 });
  return { fp, state: advancePolicy(null, [raw], { moderator: fp, now: NOW }).state, raw };
}

async function refusal(check: ReturnType<typeof makePolicyCheck>, req: StorageRequest, viaCircuit = true): Promise<{ code: string; moderator?: unknown; message: string } | null> {
  try {
    await check(req, { viaCircuit });
    return null;
  } catch (e) {
    if (!isBitcloudError(e)) throw e;
    return { code: e.code, moderator: e.detail?.moderator, message: e.message };
  }
}

const cipher = randomBytes(8192);
const cipherId = shareId(cipher);
const put = (data: Buffer, contentClass?: string): StorageRequest => ({ type: 'put', id: shareId(data), data, leaseSeconds: 0, ...(contentClass ? { contentClass } : {}) } as StorageRequest);
const get = (id: Buffer): StorageRequest => ({ type: 'get', id, offset: 0, length: 0 });

describe('unmoderated nodes (SPEC.md §10.6)', () => {
  const check = makePolicyCheck(staticSubscriptions('unmoderated'));

  it('refuse a direct put with UNMODERATED_CIRCUIT_ONLY', async () => {
    expect((await refusal(check, put(cipher), false))?.code).toBe('UNMODERATED_CIRCUIT_ONLY');
  });

  it('accept an encrypted put on a circuit', async () => {
    expect(await refusal(check, put(cipher), true)).toBeNull();
  });

  it('refuse public classes with UNMODERATED_ENCRYPTED_ONLY', async () => {
    expect((await refusal(check, put(cipher, 'public-video')))?.code).toBe('UNMODERATED_ENCRYPTED_ONLY');
    expect((await refusal(check, put(cipher, 'public-any')))?.code).toBe('UNMODERATED_ENCRYPTED_ONLY');
  });

  it('refuse plaintext declared encrypted-private', async () => {
    const text = Buffer.from('All work and no play makes Jack a dull boy. '.repeat(100));
    expect((await refusal(check, put(text)))?.code).toBe('UNMODERATED_ENCRYPTED_ONLY');
  });

  it('serve gets on direct links and circuits alike', async () => {
    expect(await refusal(check, get(cipherId), false)).toBeNull();
  });
});

describe('moderated nodes enforce every subscribed policy', () => {
  it('deny: a denylisted id is refused on put and on get, naming the moderator', async () => {
    const a = policy();
    const b = policy({ deny: [cipherId] });
    const check = makePolicyCheck(staticSubscriptions(new Map([[a.fp, a.state], [b.fp, b.state]])));
    for (const req of [put(cipher), get(cipherId), { type: 'audit', id: cipherId, nonce: Buffer.alloc(16) } as StorageRequest]) {
      const r = await refusal(check, req, false);
      expect(r?.code).toBe('POLICY_DENIED');
      expect(r?.moderator).toBe(b.fp);
      expect(r?.message).toContain(b.fp);
    }
    expect(await refusal(check, get(shareId(Buffer.from('other'))))).toBeNull();
    expect(await refusal(check, { type: 'has', ids: [cipherId] })).toBeNull();
  });

  it('classes: a put must be admitted by every policy', async () => {
    const video = policy({ classes: [{ name: 'encrypted-private', maxShareBytes: 0 }, { name: 'public-video', maxShareBytes: 0 }] });
    const priv = policy();
    const anyPublic = policy({ classes: [{ name: 'public-any', maxShareBytes: 0 }] });
    expect(await refusal(makePolicyCheck(staticSubscriptions(new Map([[video.fp, video.state]]))), put(cipher, 'public-video'))).toBeNull();
    expect(await refusal(makePolicyCheck(staticSubscriptions(new Map([[anyPublic.fp, anyPublic.state]]))), put(cipher, 'public-video'))).toBeNull();
    const both = makePolicyCheck(staticSubscriptions(new Map([[video.fp, video.state], [priv.fp, priv.state]])));
    const r = await refusal(both, put(cipher, 'public-video'));
    expect(r?.code).toBe('POLICY_CLASS_NOT_ALLOWED');
    expect(r?.moderator).toBe(priv.fp);
    expect((await refusal(makePolicyCheck(staticSubscriptions(new Map([[anyPublic.fp, anyPublic.state]]))), put(cipher)))?.code).toBe('POLICY_CLASS_NOT_ALLOWED');
  });

  it('size: the smaller of the class and policy limits applies (POLICY_TOO_LARGE)', async () => {
    const p = policy({ classes: [{ name: 'encrypted-private', maxShareBytes: 4096 }], maxShareBytes: 100_000 });
    const check = makePolicyCheck(staticSubscriptions(new Map([[p.fp, p.state]])));
    expect(await refusal(check, put(randomBytes(4096)))).toBeNull();
    const r = await refusal(check, put(randomBytes(4097)));
    expect(r?.code).toBe('POLICY_TOO_LARGE');
    expect(r?.moderator).toBe(p.fp);
    const q = policy({ maxShareBytes: 3000 });
    expect((await refusal(makePolicyCheck(staticSubscriptions(new Map([[q.fp, q.state]]))), put(randomBytes(3001))))?.code).toBe('POLICY_TOO_LARGE');
  });

  it('a subscription without a policy yet refuses puts (POLICY_UNAVAILABLE) and serves gets', async () => {
    const fp = 'cd'.repeat(32);
    const check = makePolicyCheck(staticSubscriptions(new Map([[fp, null]])));
    const r = await refusal(check, put(cipher));
    expect(r?.code).toBe('POLICY_UNAVAILABLE');
    expect(r?.moderator).toBe(fp);
    expect(await refusal(check, get(cipherId))).toBeNull();
  });

  it('moderated nodes take direct puts; plaintext declared encrypted-private is POLICY_NOT_ENCRYPTED', async () => {
    const p = policy();
    const check = makePolicyCheck(staticSubscriptions(new Map([[p.fp, p.state]])));
    expect(await refusal(check, put(cipher), false)).toBeNull();
    expect((await refusal(check, put(Buffer.alloc(4096, 0x41))))?.code).toBe('POLICY_NOT_ENCRYPTED');
  });
});

describe('allow-only mode (SPEC.md §10.6)', () => {
  it('stores a class only when a subscribed moderator approved the share; other classes as before', async () => {
    const approved = Buffer.from('approved public bytes '.repeat(100));
    const other = Buffer.from('other public bytes '.repeat(100));
    const a = policy({ classes: [{ name: 'public-any', maxShareBytes: 0 }, { name: 'encrypted-private', maxShareBytes: 0 }], allow: [shareId(approved)] });
    const b = policy({ classes: [{ name: 'public-any', maxShareBytes: 0 }, { name: 'encrypted-private', maxShareBytes: 0 }] });
    const check = makePolicyCheck(staticSubscriptions(new Map([[a.fp, a.state], [b.fp, b.state]]), ['public-any']));
    expect(await refusal(check, put(approved, 'public-lecture'))).toBeNull();
    expect((await refusal(check, put(other, 'public-lecture')))?.code).toBe('POLICY_NOT_APPROVED');
    expect(await refusal(check, put(cipher))).toBeNull(); // encrypted-private is not allow-only here
    expect(await refusal(check, get(shareId(other)))).toBeNull(); // serving is unaffected
    // Without allow-only, unapproved public content is stored.
    const open = makePolicyCheck(staticSubscriptions(new Map([[b.fp, b.state]])));
    expect(await refusal(open, put(other, 'public-lecture'))).toBeNull();
    // A deny still wins over an approval.
    const both = policy({ classes: [{ name: 'public-any', maxShareBytes: 0 }], allow: [shareId(approved)], deny: [shareId(approved)] });
    const c2 = makePolicyCheck(staticSubscriptions(new Map([[both.fp, both.state]]), ['public-any']));
    expect((await refusal(c2, put(approved, 'public-lecture')))?.code).toBe('POLICY_DENIED');
  });
});

describe('looksEncrypted', () => {
  it('passes random bytes of every size and refuses text, zeros, base64 and hex', () => {
    for (let i = 0; i < 200; i++) expect(looksEncrypted(randomBytes(RANDOMNESS_MIN_BYTES + i * 331))).toBe(true);
    const lorem = Buffer.from('Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(80));
    expect(looksEncrypted(lorem)).toBe(false);
    expect(looksEncrypted(Buffer.alloc(5000))).toBe(false);
    expect(looksEncrypted(Buffer.from(randomBytes(4000).toString('base64')))).toBe(false);
    expect(looksEncrypted(Buffer.from(randomBytes(4000).toString('hex')))).toBe(false);
    expect(looksEncrypted(Buffer.alloc(100))).toBe(true); // too short to judge
  });
});

describe('through the storage handler', () => {
  const cleanup: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => { for (const f of cleanup.splice(0).reverse()) await f(); });

  it('a denied share is stored by an unsubscribed handler but refused by a subscribed one', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-mod-'));
    const store = await ShareStore.open({ dir, quotaBytes: 1 << 20 });
    cleanup.push(() => fsp.rm(dir, { recursive: true, force: true }), () => store.close());
    const p = policy({ deny: [cipherId] });
    const subscribed = makePolicyCheck(staticSubscriptions(new Map([[p.fp, p.state]])));
    const ctx = { viaCircuit: true };
    expect((await handleRequest(store, put(cipher) as never, ctx)).type).toBe('put');
    const refused = await handleRequest(store, get(cipherId) as never, ctx, subscribed);
    expect(refused).toMatchObject({ type: 'error', code: 'POLICY_DENIED' });
    expect((refused as { message: string }).message).toContain(p.fp);
    expect((await handleRequest(store, get(cipherId) as never, ctx)).type).toBe('get');
  });
});

describe('the declared class on the wire (PutShare.content_class, SPEC.md §10.1)', () => {
  it('round-trips; empty means encrypted-private; a bad class is STORAGE_BAD_REQUEST', async () => {
    const { encodeRequest, decodeRequest } = await import('../../src/storage/protocol');
    const { declaredClass } = await import('../../src/moderation/enforce');
    const r = decodeRequest(encodeRequest(7, { type: 'put', id: cipherId, data: cipher, leaseSeconds: 0, contentClass: 'public-video' })).req;
    expect(declaredClass(r)).toBe('public-video');
    const plain = decodeRequest(encodeRequest(8, { type: 'put', id: cipherId, data: cipher, leaseSeconds: 0 })).req;
    expect(declaredClass(plain)).toBe('encrypted-private');
    let code = '';
    try { decodeRequest(encodeRequest(9, { type: 'put', id: cipherId, data: cipher, leaseSeconds: 0, contentClass: 'Bad Class' })); } catch (e) { code = (e as { code: string }).code; }
    expect(code).toBe('STORAGE_BAD_REQUEST');
  });
});

describe('client placement by class (SPEC.md §10.8)', () => {
  it('keeps nodes whose every moderator admits the class; unmoderated nodes take encrypted-private only', async () => {
    const { classRefusal, nodesAdmitting, requireNodesForClass } = await import('../../src/moderation/placement');
    const video = policy({ classes: [{ name: 'encrypted-private', maxShareBytes: 0 }, { name: 'public-video', maxShareBytes: 1000 }] });
    const priv = policy();
    const policies = new Map<string, PolicyState | null>([[video.fp, video.state], [priv.fp, priv.state], ['ee'.repeat(32), null]]);
    const nodes = [
      { fingerprint: '01'.repeat(32), moderators: [video.fp], unmoderated: false },
      { fingerprint: '02'.repeat(32), moderators: [video.fp, priv.fp], unmoderated: false },
      { fingerprint: '03'.repeat(32), moderators: [], unmoderated: true },
      { fingerprint: '04'.repeat(32), moderators: ['ee'.repeat(32)], unmoderated: false },
    ];
    expect([...nodesAdmitting(nodes, 'public-video', policies)]).toEqual(['01'.repeat(32)]);
    expect([...nodesAdmitting(nodes, 'encrypted-private', policies)].sort()).toEqual(['01'.repeat(32), '02'.repeat(32), '03'.repeat(32)]);
    expect(nodesAdmitting(nodes, 'public-video', policies, 1001).size).toBe(0);
    expect(classRefusal(nodes[3], 'encrypted-private', policies)).toContain('unknown');
    let e: unknown;
    try { requireNodesForClass('public-video', 1, 6, 4); } catch (x) { e = x; }
    expect(isBitcloudError(e, 'PLACEMENT_TOO_FEW_NODES')).toBe(true);
    expect((e as Error).message).toContain('public-video');
  });
});

describe('fetching moderators\' policies for placement (SPEC.md §10.8)', () => {
  it('keeps at most POLICY_FETCHES_IN_FLIGHT fetches in flight, and considers at most MAX_PLACEMENT_MODERATORS moderators', async () => {
    const mods = Array.from({ length: MAX_PLACEMENT_MODERATORS + 32 }, (_, i) => fingerprint(Buffer.alloc(32, i + 1)));
    let inFlight = 0, most = 0, calls = 0;
    const src = {
      name: 'stub',
      fetch: async () => {
        calls++; inFlight++; most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, 1));
        inFlight--;
        return null;
      },
    };
    const node = (i: number, moderators: string[]) => ({ fingerprint: i.toString(16).padStart(64, '0'), moderators, unmoderated: false, weight: 10 });
    // The last moderators (by fingerprint, and first met last) are listed by two nodes each: they
    // are the ones considered, not the first met nor the lowest fingerprints.
    const twice = mods.slice(mods.length - MAX_PLACEMENT_MODERATORS);
    const listed = [...mods, ...twice].map((m, i) => node(i + 1, [m]));
    const out = await fetchModeratorPolicies(placementModerators(listed), [src]);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(POLICY_FETCHES_IN_FLIGHT);
    expect(calls).toBe(MAX_PLACEMENT_MODERATORS);
    expect([...out.keys()].sort()).toEqual([...twice].sort());
    // Equal weights: the lowest fingerprints.
    const few = placementModerators([...mods].reverse().map((m, i) => node(i + 1, [m])));
    expect([...few].sort()).toEqual(mods.slice(0, MAX_PLACEMENT_MODERATORS).sort());
  });

  it('counts a listing by the consensus weight of the node that lists it: weightless nodes cannot push out a real moderator', async () => {
    const real = policy({ classes: [{ name: 'encrypted-private', maxShareBytes: 0 }, { name: 'public-video', maxShareBytes: 0 }] });
    const fakes = Array.from({ length: MAX_PLACEMENT_MODERATORS }, (_, i) => fingerprint(Buffer.alloc(32, i + 1)));
    const node = (i: number, moderators: string[], weight: number) => ({ fingerprint: i.toString(16).padStart(64, '0'), moderators, unmoderated: false, weight });
    // 300 Sybil nodes of weight 0, each listing 16 of the made-up moderators (each made-up one is
    // listed 75 times), against 3 weighted nodes listing the real one.
    const nodes = [
      ...Array.from({ length: 300 }, (_, i) => node(i + 1, fakes.slice((i % 4) * 16, (i % 4) * 16 + 16), 0)),
      ...[1, 2, 3].map((i) => node(1000 + i, [real.fp], 500)),
    ];
    const fetched: string[] = [];
    const src = { name: 'stub', fetch: async (m: string) => { fetched.push(m); return m === real.fp ? encodeBundle([real.raw]) : null; } };
    const chosen = await selectNodesForClass(nodes, 'public-video', 3, [src], { now: NOW });
    expect(chosen.map((n) => n.weight)).toEqual([500, 500, 500]);
    expect(fetched).toEqual([real.fp]);
  });
});
