import { describe, it, expect } from 'vitest';
import { makeHsDescriptor, openHsDescriptor, checkHsDescriptorOuter } from '../../src/hidden/descriptor';
import { HS_PERIOD_GRACE_MS, HS_STORE_ENTRY_OVERHEAD, HsDescriptorStore } from '../../src/hidden/store';
import { sealIntroduce, openIntroduce, IntroReplayCache } from '../../src/hidden/introduce';
import { blindPublicKey, HS_PERIOD_SECONDS } from '../../src/crypto/blind';
import { ed25519Generate, x25519Generate, randomBytes } from '../../src/crypto/primitives';
import { isBitcloudError } from '../../src/errors';
import {
  decodeEstablishIntro, decodeHsDescriptorOuter, decodeIntroduce, decodeRendezvous1, encodeEstablishIntro, encodeIntroduce,
  encodeRendezvous1, ESTABLISH_INTRO_LEN, HS_DESC_MAX, decodeCookie, encodeCookie,
} from '../../src/wire/hidden';
import type { HsDescriptorInner } from '../../src/wire/hidden';

function codeOf(f: () => unknown): string {
  try { f(); return 'none'; } catch (e) { return isBitcloudError(e) ? e.code : `other: ${(e as Error).message}`; }
}

const DAY = HS_PERIOD_SECONDS * 1000;
const now = 20_000 * DAY + 3_600_000;
const period = 20_000;

function inner(n = 3): HsDescriptorInner {
  return {
    ntorKey: x25519Generate().publicKey,
    intros: Array.from({ length: n }, (_, i) => ({
      linkSpecifiers: [{ type: 'ipv4' as const, addr: `10.0.0.${i + 1}`, port: 9000 + i }, { type: 'ed25519' as const, id: randomBytes(32) }],
      authKey: ed25519Generate().publicKey,
      encKey: x25519Generate().publicKey,
    })),
  };
}

describe('hidden descriptor (SPEC.md §9.21.3)', () => {
  const id = ed25519Generate();
  it('round-trips, within the size limit, and names the blinded key, not the identity', () => {
    const inn = inner(8);
    const d = makeHsDescriptor({ identity: id, period, revision: 5, inner: inn });
    expect(d.length).toBeLessThanOrEqual(HS_DESC_MAX);
    expect(d.includes(id.publicKey)).toBe(false);
    const { outer, inner: got } = openHsDescriptor(d, id.publicKey, now);
    expect(outer.blindedKey.equals(blindPublicKey(id.publicKey, period))).toBe(true);
    expect(outer.revision).toBe(5);
    expect(got.ntorKey.equals(inn.ntorKey)).toBe(true);
    expect(got.intros.map((i) => i.authKey.toString('hex'))).toEqual(inn.intros.map((i) => i.authKey.toString('hex')));
    // The introduction points' addresses are sealed: the store never sees them.
    expect(d.includes(Buffer.from([10, 0, 0, 1]))).toBe(false);
  });
  it('a store checks the outer layer without the identity', () => {
    const d = makeHsDescriptor({ identity: id, period, revision: 1, inner: inner() });
    expect(checkHsDescriptorOuter(d, { nowMs: now }).period).toBe(period);
  });
  it('refuses a descriptor signed by another key', () => {
    const other = ed25519Generate();
    const d = makeHsDescriptor({ identity: other, period, revision: 1, inner: inner() });
    expect(codeOf(() => openHsDescriptor(d, id.publicKey, now))).toBe('HIDDEN_DESC_WRONG_KEY');
    // Same blinded key field, but the signature made by another key:
    const mine = makeHsDescriptor({ identity: id, period, revision: 1, inner: inner() });
    const forged = Buffer.from(mine);
    d.subarray(d.length - 64).copy(forged, forged.length - 64);
    expect(codeOf(() => openHsDescriptor(forged, id.publicKey, now))).toBe('HIDDEN_DESC_BAD_SIGNATURE');
    expect(codeOf(() => checkHsDescriptorOuter(forged, { nowMs: now }))).toBe('HIDDEN_DESC_BAD_SIGNATURE');
  });
  it('refuses a descriptor for another period, or one whose period was rewritten', () => {
    const old = makeHsDescriptor({ identity: id, period: period - 1, revision: 1, inner: inner() });
    expect(codeOf(() => openHsDescriptor(old, id.publicKey, now))).toBe('HIDDEN_DESC_WRONG_PERIOD');
    const rewritten = Buffer.from(old);
    rewritten.writeBigUInt64BE(BigInt(period), 38);
    expect(codeOf(() => openHsDescriptor(rewritten, id.publicKey, now))).toBe('HIDDEN_DESC_WRONG_KEY');
    expect(codeOf(() => checkHsDescriptorOuter(rewritten, { nowMs: now }))).toBe('HIDDEN_DESC_BAD_SIGNATURE');
    // The next period's descriptor is accepted (published ahead of the boundary).
    const next = makeHsDescriptor({ identity: id, period: period + 1, revision: 1, inner: inner() });
    expect(openHsDescriptor(next, id.publicKey, now).outer.period).toBe(period + 1);
  });
  it('refuses an expired, truncated, oversized or altered descriptor', () => {
    const exp = makeHsDescriptor({ identity: id, period, revision: 1, validUntil: now - 1, inner: inner() });
    expect(codeOf(() => openHsDescriptor(exp, id.publicKey, now))).toBe('HIDDEN_DESC_EXPIRED');
    const d = makeHsDescriptor({ identity: id, period, revision: 1, inner: inner() });
    expect(codeOf(() => decodeHsDescriptorOuter(d.subarray(0, d.length - 1)))).toBe('HIDDEN_DESC_MALFORMED');
    expect(codeOf(() => decodeHsDescriptorOuter(Buffer.concat([d, Buffer.alloc(HS_DESC_MAX)])))).toBe('HIDDEN_DESC_MALFORMED');
    const flipped = Buffer.from(d);
    flipped[100] ^= 1;
    expect(codeOf(() => openHsDescriptor(flipped, id.publicKey, now))).toBe('HIDDEN_DESC_BAD_SIGNATURE');
  });
});

describe('hidden descriptor store (SPEC.md §9.21.3)', () => {
  it('refuses a valid_until beyond the end of period N+1, so throwaway identities cannot hold the store for good', () => {
    const store = new HsDescriptorStore(() => now);
    const far = (validUntil: number) => makeHsDescriptor({ identity: ed25519Generate(), period, revision: 1, validUntil, inner: inner() });
    expect(codeOf(() => store.accept(far(Number.MAX_SAFE_INTEGER)))).toBe('HIDDEN_DESC_MALFORMED');
    expect(codeOf(() => store.accept(far((period + 2) * DAY + 1)))).toBe('HIDDEN_DESC_MALFORMED');
    expect(codeOf(() => checkHsDescriptorOuter(far((period + 2) * DAY + 1), { nowMs: now }))).toBe('HIDDEN_DESC_MALFORMED');
    expect(store.size).toBe(0);
    // The end of period N+1 itself is allowed (the default).
    store.accept(far((period + 2) * DAY));
    expect(store.size).toBe(1);
  });
  it('drops a descriptor once its period has passed, so a fresh one is accepted', () => {
    let t = now;
    const a = makeHsDescriptor({ identity: ed25519Generate(), period, revision: 1, inner: inner() });
    const b = makeHsDescriptor({ identity: ed25519Generate(), period, revision: 1, inner: inner() });
    const store = new HsDescriptorStore(() => t, 2 * (a.length + HS_STORE_ENTRY_OVERHEAD));
    const ka = store.accept(a).blindedKey;
    store.accept(b);
    expect(store.size).toBe(2);
    // Period N+1 begins: for an hour the period-N descriptors still serve clients whose clock
    // runs behind; then they serve no one (though valid until the end of N+1) and are dropped.
    t = (period + 1) * DAY + 1000;
    expect(store.get(ka)).not.toBeNull();
    t = (period + 1) * DAY + HS_PERIOD_GRACE_MS + 1000;
    expect(store.get(ka)).toBeNull();
    const fresh = makeHsDescriptor({ identity: ed25519Generate(), period: period + 1, revision: 1, inner: inner() });
    expect(store.accept(fresh).revision).toBe(1);
    expect(store.size).toBe(1);
  });
});

describe('hidden descriptor store bound (SPEC.md §9.21.3)', () => {
  const desc = (validUntil?: number, revision = 1, identity = ed25519Generate()) => makeHsDescriptor({ identity, period, revision, validUntil, inner: inner() });
  const cost = desc().length + HS_STORE_ENTRY_OVERHEAD;

  it('attack: descriptors under random keys fill the store; each new one evicts the oldest received, so the store stays within its bytes and a fresh upload is accepted', () => {
    const evicted: number[] = [];
    const store = new HsDescriptorStore(() => now, 3 * cost, (n) => evicted.push(n));
    const oldest = store.accept(desc(now + 10 * 3_600_000)).blindedKey;
    const soonest = store.accept(desc(now + 5 * 3_600_000)).blindedKey;
    const longest = store.accept(desc()).blindedKey; // valid to the end of period N+1
    expect(store.bytes).toBe(3 * cost);
    const fresh = store.accept(desc()).blindedKey;
    expect(evicted).toEqual([1]);
    expect(store.get(oldest)).toBeNull();
    for (const k of [soonest, longest, fresh]) expect(store.get(k)).not.toBeNull();
    // A flood under random keys never takes the store past its bytes; the last upload is held.
    let last = '';
    for (let i = 0; i < 20; i++) {
      last = store.accept(desc()).blindedKey;
      expect(store.bytes).toBeLessThanOrEqual(3 * cost);
    }
    expect(store.size).toBe(3);
    expect(store.get(last)).not.toBeNull();
    expect(evicted.reduce((x, y) => x + y, 0)).toBe(21);
  });

  it('a newer revision of a held key replaces it without evicting others; an older revision is refused and evicts nothing', () => {
    const evicted: number[] = [];
    const store = new HsDescriptorStore(() => now, 2 * cost, (n) => evicted.push(n));
    const id = ed25519Generate();
    const other = store.accept(desc(now + 3_600_000)).blindedKey;
    const k = store.accept(desc(undefined, 2, id)).blindedKey;
    expect(codeOf(() => store.accept(desc(undefined, 1, id)))).toBe('HIDDEN_DESC_STALE');
    expect(store.accept(desc(undefined, 3, id))).toEqual({ blindedKey: k, revision: 3, result: 'updated' });
    expect(evicted).toEqual([]);
    expect(store.get(other)).not.toBeNull();
    expect(store.bytes).toBe(2 * cost);
  });

  it('the held descriptor sent again, byte for byte, is unchanged (a resend after a lost answer); the same revision with other bytes is stale', () => {
    const t = now;
    const store = new HsDescriptorStore(() => t, 3 * cost);
    const id = ed25519Generate();
    const first = desc(undefined, 5, id);
    const other = store.accept(desc(now + 3_600_000)).blindedKey;
    const k = store.accept(first);
    const bytes = store.bytes;
    expect(store.accept(Buffer.from(first))).toEqual({ blindedKey: k.blindedKey, revision: 5, result: 'unchanged' });
    expect(store.size).toBe(2);
    expect(store.bytes).toBe(bytes);
    expect(store.get(k.blindedKey)!.equals(first)).toBe(true);
    // Same blinded key and revision, other bytes (a new nonce and body): still refused.
    expect(codeOf(() => store.accept(desc(undefined, 5, id)))).toBe('HIDDEN_DESC_STALE');
    expect(codeOf(() => store.accept(desc(undefined, 4, id)))).toBe('HIDDEN_DESC_STALE');
    expect(store.get(k.blindedKey)!.equals(first)).toBe(true);
    // An unchanged resend keeps its place in the eviction order: the key received after it stays.
    const later = store.accept(desc()).blindedKey;
    store.accept(Buffer.from(first));
    store.accept(desc());
    store.accept(desc());
    expect(store.get(other)).toBeNull();
    expect(store.get(k.blindedKey)).toBeNull();
    expect(store.get(later)).not.toBeNull();
    expect(k.result).toBe('new');
  });
});

describe('hidden descriptor store eviction by period (SPEC.md §9.21.3 "Bound.")', () => {
  const descFor = (p: number, revision = 1, identity = ed25519Generate(), validUntil?: number) => makeHsDescriptor({ identity, period: p, revision, validUntil, inner: inner() });
  const cost = descFor(period).length + HS_STORE_ENTRY_OVERHEAD;

  it('attack: a flood of period N+1 uploads under throwaway keys does not evict the period-N descriptors clients fetch now', () => {
    const store = new HsDescriptorStore(() => now, 10 * cost);
    const current = Array.from({ length: 4 }, () => store.accept(descFor(period)).blindedKey);
    for (let i = 0; i < 30; i++) {
      store.accept(descFor(period + 1));
      expect(store.bytes).toBeLessThanOrEqual(10 * cost);
    }
    for (const k of current) expect(store.get(k)).not.toBeNull();
    expect(store.size).toBe(10);
  });

  it('within one period the oldest received is evicted first; a republished key counts as newest', () => {
    let t = now;
    const evicted: number[] = [];
    const store = new HsDescriptorStore(() => t, 3 * cost, (n) => evicted.push(n));
    const id = ed25519Generate();
    const first = store.accept(descFor(period, 1, id)).blindedKey;
    t += 1000;
    const second = store.accept(descFor(period)).blindedKey;
    t += 1000;
    const third = store.accept(descFor(period)).blindedKey;
    t += 1000;
    // The first is republished (a higher revision): it moves to the newest end.
    expect(store.accept(descFor(period, 2, id)).blindedKey).toBe(first);
    t += 1000;
    const fourth = store.accept(descFor(period)).blindedKey;
    expect(evicted).toEqual([1]);
    expect(store.get(second)).toBeNull();
    for (const k of [first, third, fourth]) expect(store.get(k)).not.toBeNull();
    t += 1000;
    store.accept(descFor(period));
    expect(store.get(third)).toBeNull();
    expect(store.get(first)).not.toBeNull();
    expect(store.bytes).toBe(3 * cost);
  });

  it('a descriptor of period N-1 in its grace hour is evicted before any of N or N+1', () => {
    let t = period * DAY - 600_000; // ten minutes before period N begins
    const store = new HsDescriptorStore(() => t, 6 * cost);
    const old = [store.accept(descFor(period - 1)).blindedKey, store.accept(descFor(period - 1)).blindedKey];
    const keep = [store.accept(descFor(period)).blindedKey, store.accept(descFor(period)).blindedKey];
    t = period * DAY + 600_000; // period N, within the grace hour of N-1
    expect(store.get(old[0])).not.toBeNull();
    keep.push(store.accept(descFor(period + 1)).blindedKey, store.accept(descFor(period + 1)).blindedKey);
    expect(store.size).toBe(6);
    keep.push(store.accept(descFor(period)).blindedKey);
    expect(store.get(old[0])).toBeNull();
    expect(store.get(old[1])).not.toBeNull();
    keep.push(store.accept(descFor(period + 1)).blindedKey);
    expect(store.get(old[1])).toBeNull();
    for (const k of keep) expect(store.get(k)).not.toBeNull();
    expect(store.bytes).toBe(6 * cost);
  });

  it('expired descriptors are swept on upload, and size and bytes stay exact', () => {
    let t = now;
    const store = new HsDescriptorStore(() => t, 10 * cost);
    store.accept(descFor(period, 1, ed25519Generate(), t + 1000));
    store.accept(descFor(period + 1, 1, ed25519Generate(), t + 1000));
    store.accept(descFor(period));
    t += 61_000;
    store.accept(descFor(period + 1));
    expect(store.size).toBe(2);
    expect(store.bytes).toBe(2 * cost);
  });
});

describe('hidden relay message bodies (SPEC.md §9.21.4–§9.21.5)', () => {
  it('ESTABLISH_INTRO is 104 bytes: auth key, timestamp, signature', () => {
    const m = { authKey: randomBytes(32), timestamp: 1_700_000_000_000, signature: randomBytes(64) };
    const b = encodeEstablishIntro(m);
    expect(b.length).toBe(ESTABLISH_INTRO_LEN);
    expect(b.readBigUInt64BE(32)).toBe(1_700_000_000_000n);
    expect(decodeEstablishIntro(b)).toEqual(m);
    expect(codeOf(() => decodeEstablishIntro(b.subarray(0, 103)))).toBe('MSG_TRUNCATED');
    expect(codeOf(() => decodeEstablishIntro(Buffer.concat([b, Buffer.alloc(1)])))).toBe('MSG_MALFORMED');
  });
  it('ESTABLISH_INTRO with the DoS extension is 112 bytes: rate_per_sec u32 | burst u32 after the signature, 1 <= rate <= burst', () => {
    const m = { authKey: randomBytes(32), timestamp: 1_700_000_000_000, signature: randomBytes(64), dos: { ratePerSec: 5, burst: 40 } };
    const b = encodeEstablishIntro(m);
    expect(b.length).toBe(ESTABLISH_INTRO_LEN + 8);
    expect([b.readUInt32BE(104), b.readUInt32BE(108)]).toEqual([5, 40]);
    expect(decodeEstablishIntro(b)).toEqual(m);
    const zeroRate = Buffer.from(b); zeroRate.writeUInt32BE(0, 104);
    expect(codeOf(() => decodeEstablishIntro(zeroRate))).toBe('MSG_MALFORMED');
    const burstBelow = Buffer.from(b); burstBelow.writeUInt32BE(4, 108);
    expect(codeOf(() => decodeEstablishIntro(burstBelow))).toBe('MSG_MALFORMED');
    expect(codeOf(() => decodeEstablishIntro(b.subarray(0, 108)))).toBe('MSG_MALFORMED');
  });
  it('cookies are 20 bytes; RENDEZVOUS1 is cookie | 64-byte reply', () => {
    expect(codeOf(() => decodeCookie(Buffer.alloc(19)))).toBe('MSG_TRUNCATED');
    expect(decodeCookie(encodeCookie(Buffer.alloc(20, 7))).equals(Buffer.alloc(20, 7))).toBe(true);
    const r = { cookie: randomBytes(20), reply: randomBytes(64) };
    const b = encodeRendezvous1(r);
    expect(b.length).toBe(84);
    expect(decodeRendezvous1(b)).toEqual(r);
  });
  it('INTRODUCE1 opens only with the enc key, and the replay cache refuses a second copy', () => {
    const enc = x25519Generate();
    const authKey = ed25519Generate().publicKey;
    const p = {
      cookie: randomBytes(20), rpOnionKey: randomBytes(32), onionskin: randomBytes(96),
      rpLinkSpecifiers: [{ type: 'ipv4' as const, addr: '127.0.0.1', port: 5000 }, { type: 'ed25519' as const, id: randomBytes(32) }],
    };
    const body = encodeIntroduce(sealIntroduce(authKey, enc.publicKey, p));
    expect(body.length).toBeLessThanOrEqual(498);
    // The cleartext header: auth key first; the cookie is not visible.
    expect(body.subarray(0, 32).equals(authKey)).toBe(true);
    expect(body.includes(p.cookie)).toBe(false);
    const got = openIntroduce(decodeIntroduce(body), enc);
    expect(got.cookie.equals(p.cookie)).toBe(true);
    expect(got.onionskin.equals(p.onionskin)).toBe(true);
    // Forged: another enc key, or one flipped bit.
    expect(codeOf(() => openIntroduce(decodeIntroduce(body), x25519Generate()))).toBe('HIDDEN_INTRO_FORGED');
    const flipped = Buffer.from(body);
    flipped[flipped.length - 3] ^= 1;
    expect(codeOf(() => openIntroduce(decodeIntroduce(flipped), enc))).toBe('HIDDEN_INTRO_FORGED');
    const swapped = Buffer.from(body);
    randomBytes(32).copy(swapped, 0);
    expect(codeOf(() => openIntroduce(decodeIntroduce(swapped), enc))).toBe('HIDDEN_INTRO_FORGED');
    const cache = new IntroReplayCache(2);
    cache.check(body);
    expect(codeOf(() => cache.check(body))).toBe('HIDDEN_INTRO_REPLAY');
    cache.check(flipped);
    expect(codeOf(() => cache.check(swapped))).toBe('HIDDEN_INTRO_REPLAY');
  });
});
