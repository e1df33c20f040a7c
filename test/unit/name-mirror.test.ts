// SPEC.md §9.14.2: names at relay mirrors. The record codec (round trip, refusals, a forged
// signature), the mirror's store (highest seq, expiry, full), the ring of responsible mirrors, and
// the relay's HTTP routes.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ed25519FromSeed, ed25519Generate, sha256 } from '../../src/crypto/primitives';
import { signDhtItem } from '../../src/storage/name-record';
import { formatName, nameSalt } from '../../src/storage/name';
import {
  NAME_RECORD_MAX_BYTES, NAME_RECORD_MAX_VALUE, decodeNameRecord, encodeNameRecord, nameTarget, type NameRecord,
} from '../../src/wire/name-record';
import { NAME_MIRROR_PATH, NAME_RECORD_TTL_MS, NAME_STORE_MAX_RECORDS, NameMirrorStore } from '../../src/storage/name-mirror-store';
import { MirrorNames, NAME_MIRRORS_PER_NAME, nameMirrorsOf, responsibleMirrors } from '../../src/client/name-mirrors';
import { httpRequest, type HttpResponse } from '../../src/dir/fetch';
import type { ConsensusRelay } from '../../src/dir/types';
import { NameMirror } from '../../relay/name-mirror';
import { codeOf, expectCode, onlyBitcloudErrors } from '../helpers/errors';

const keys = ed25519Generate();
const other = ed25519Generate();

function record(seq: number, value = 'bc1:some-capability', label = 'site', k = keys): NameRecord {
  return signDhtItem(k, nameSalt(label), Buffer.from(value, 'ascii'), seq);
}

describe('name record codec (SPEC.md §9.14.2)', () => {
  it('round trip: every field comes back, and the layout has the documented size', () => {
    const r = record(42);
    const b = encodeNameRecord(r);
    expect(b.length).toBe(1 + 32 + 8 + 1 + r.salt.length + 2 + r.value.length + 64);
    const d = decodeNameRecord(b);
    expect(d.publisher.equals(r.publisher) && d.salt.equals(r.salt) && d.value.equals(r.value) && d.sig.equals(r.sig)).toBe(true);
    expect(d.seq).toBe(42);
    // An empty salt and the largest value round-trip too; the largest record is NAME_RECORD_MAX_BYTES with a 64-byte salt.
    const big = signDhtItem(keys, Buffer.alloc(0), Buffer.alloc(NAME_RECORD_MAX_VALUE, 0x61), 7);
    expect(decodeNameRecord(encodeNameRecord(big)).value.length).toBe(NAME_RECORD_MAX_VALUE);
    const biggest = signDhtItem(keys, Buffer.alloc(64, 0x73), Buffer.alloc(NAME_RECORD_MAX_VALUE, 0x61), 7);
    expect(encodeNameRecord(biggest).length).toBe(NAME_RECORD_MAX_BYTES);
  });

  it('the target is SHA-1(key ‖ salt) as BEP 44', () => {
    const r = record(1);
    expect(nameTarget(r.publisher, r.salt).length).toBe(20);
    expect(nameTarget(r.publisher, r.salt).equals(nameTarget(r.publisher, nameSalt('other')))).toBe(false);
  });

  it('refusals: a value above 1000 bytes, a long salt, a bad version, truncation, trailing bytes, an empty value', () => {
    const tooBig = { ...record(1), value: Buffer.alloc(NAME_RECORD_MAX_VALUE + 1, 0x61) };
    expectCode(() => encodeNameRecord(tooBig), 'NAME_RECORD_TOO_LARGE');
    // The same, hand-made past the encoder: value_len 1001 is refused before the signature.
    const good = encodeNameRecord(record(1));
    const saltLen = good[41];
    const forgedLen = Buffer.from(good);
    forgedLen.writeUInt16BE(NAME_RECORD_MAX_VALUE + 1, 42 + saltLen);
    expectCode(() => decodeNameRecord(Buffer.concat([forgedLen, Buffer.alloc(NAME_RECORD_MAX_VALUE)]).subarray(0, NAME_RECORD_MAX_BYTES)), 'NAME_RECORD_TOO_LARGE');
    expectCode(() => decodeNameRecord(Buffer.alloc(NAME_RECORD_MAX_BYTES + 1)), 'NAME_RECORD_TOO_LARGE');
    expectCode(() => encodeNameRecord({ ...record(1), salt: Buffer.alloc(65) }), 'NAME_RECORD_MALFORMED');
    expectCode(() => encodeNameRecord({ ...record(1), value: Buffer.alloc(0) }), 'NAME_RECORD_MALFORMED');
    const v2 = Buffer.from(good); v2[0] = 2;
    expectCode(() => decodeNameRecord(v2), 'NAME_RECORD_MALFORMED');
    expectCode(() => decodeNameRecord(good.subarray(0, good.length - 1)), 'NAME_RECORD_MALFORMED');
    expectCode(() => decodeNameRecord(Buffer.concat([good, Buffer.from([0])])), 'NAME_RECORD_MALFORMED');
    const salt65 = Buffer.from(good); salt65[41] = 65;
    expectCode(() => decodeNameRecord(salt65), 'NAME_RECORD_MALFORMED');
    expectCode(() => decodeNameRecord(Buffer.alloc(0)), 'NAME_RECORD_MALFORMED');
  });

  it('a forged signature is refused: another key\'s signature, or a value changed after signing', () => {
    const r = record(5);
    expectCode(() => decodeNameRecord(encodeNameRecord({ ...r, sig: record(5, 'bc1:some-capability', 'site', other).sig })), 'NAME_BAD_SIGNATURE');
    expectCode(() => decodeNameRecord(encodeNameRecord({ ...r, value: Buffer.from('bc1:another-capability') })), 'NAME_BAD_SIGNATURE');
    expectCode(() => decodeNameRecord(encodeNameRecord({ ...r, seq: 6 })), 'NAME_BAD_SIGNATURE');
    expectCode(() => decodeNameRecord(encodeNameRecord({ ...r, publisher: other.publicKey })), 'NAME_BAD_SIGNATURE');
  });

  it('any one flipped byte of a valid record is refused with a typed error', () => {
    const good = encodeNameRecord(record(9));
    for (let i = 0; i < good.length; i++) {
      const b = Buffer.from(good);
      b[i] ^= 0x01;
      expect(codeOf(() => decodeNameRecord(b)), `byte ${i}`).toMatch(/^NAME_(RECORD_MALFORMED|RECORD_TOO_LARGE|BAD_SIGNATURE)$/);
    }
  });

  it('random bytes decode or throw only BitcloudError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: NAME_RECORD_MAX_BYTES + 20 }), (b) => onlyBitcloudErrors(() => decodeNameRecord(b))));
    // Records with a valid head and random rest.
    const head = encodeNameRecord(record(3)).subarray(0, 42);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1200 }), (b) => onlyBitcloudErrors(() => decodeNameRecord(Buffer.concat([head, b])))));
    const store = new NameMirrorStore();
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1300 }), (b) => onlyBitcloudErrors(() => store.put(b))));
    expect(store.size).toBe(0);
  });
});

describe('name mirror store (SPEC.md §9.14.2)', () => {
  it('keeps the highest seq; a lower seq is DHT_SEQ_STALE; the same record again is taken (it renews)', () => {
    const s = new NameMirrorStore();
    const r1 = record(10, 'bc1:one');
    const { target } = s.put(encodeNameRecord(r1));
    expect(target).toBe(nameTarget(r1.publisher, r1.salt).toString('hex'));
    s.put(encodeNameRecord(record(12, 'bc1:two')));
    expect(decodeNameRecord(s.get(target)!).seq).toBe(12);
    expectCode(() => s.put(encodeNameRecord(record(11, 'bc1:old'))), 'DHT_SEQ_STALE');
    expectCode(() => s.put(encodeNameRecord(record(12, 'bc1:same-seq-other-value'))), 'DHT_SEQ_STALE');
    expect(s.put(encodeNameRecord(record(12, 'bc1:two'))).seq).toBe(12);
    expect(decodeNameRecord(s.get(target)!).value.toString()).toBe('bc1:two');
    expect(s.get('00'.repeat(20))).toBeNull();
    expect(s.size).toBe(1);
  });

  it('a forged record never enters the store', () => {
    const s = new NameMirrorStore();
    const r = record(1);
    expectCode(() => s.put(encodeNameRecord({ ...r, value: Buffer.from('bc1:forged') })), 'NAME_BAD_SIGNATURE');
    expect(s.size).toBe(0);
  });

  it('records expire 2 hours after they were last stored, unless republished', () => {
    let now = 1_000_000;
    const s = new NameMirrorStore({ now: () => now });
    const a = s.put(encodeNameRecord(record(1, 'bc1:a', 'a'))).target;
    const b = s.put(encodeNameRecord(record(1, 'bc1:b', 'b'))).target;
    now += NAME_RECORD_TTL_MS - 1;
    s.put(encodeNameRecord(record(2, 'bc1:b2', 'b'))); // b republished
    now += 1;
    expect(s.get(a)).toBeNull();
    expect(s.get(b)).not.toBeNull();
    now += NAME_RECORD_TTL_MS;
    expect(s.get(b)).toBeNull();
    expect(s.size).toBe(0);
    // An expired record's seq no longer binds: a lower one is taken once it is gone.
    expect(s.put(encodeNameRecord(record(1, 'bc1:b', 'b'))).seq).toBe(1);
  });

  it('lifetimes are timed on the monotonic clock: a wall clock stepped back or forward neither keeps nor drops a record', () => {
    vi.useFakeTimers({ toFake: ['Date', 'performance'] });
    try {
      const s = new NameMirrorStore({ maxRecords: 1 });
      const a = s.put(encodeNameRecord(record(1, 'bc1:a', 'a'))).target;
      vi.setSystemTime(Date.now() + 24 * NAME_RECORD_TTL_MS); // the wall clock jumps a day ahead
      expect(s.get(a)).not.toBeNull();
      expectCode(() => s.put(encodeNameRecord(record(1, 'bc1:b', 'b'))), 'NAME_STORE_FULL');
      vi.setSystemTime(Date.now() - 48 * NAME_RECORD_TTL_MS); // and back, far behind
      vi.advanceTimersByTime(NAME_RECORD_TTL_MS); // 2 hours pass
      expect(s.get(a)).toBeNull();
      expect(s.put(encodeNameRecord(record(1, 'bc1:b', 'b'))).seq).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it('a held record keeps its own bytes only, not a slab of the shared Buffer pool nor the body it came in', () => {
    const s = new NameMirrorStore();
    // A POST body as the relay reads it: a small Buffer.concat, a view into a pooled slab.
    const body = Buffer.concat([encodeNameRecord(record(3, 'bc1:pooled'))]);
    const { target } = s.put(body);
    const held = s.get(target)!;
    expect(held.equals(body)).toBe(true);
    expect(held.byteOffset).toBe(0);
    expect(held.buffer.byteLength).toBe(body.length);
    body.fill(0);
    expect(decodeNameRecord(s.get(target)!).seq).toBe(3);
  });

  it('at most 16 384 records: a new target beyond that is NAME_STORE_FULL; held targets are still replaced; expired ones make room', () => {
    expect(NAME_STORE_MAX_RECORDS).toBe(16_384);
    let now = 0;
    const s = new NameMirrorStore({ maxRecords: 3, now: () => now });
    for (const l of ['a', 'b', 'c']) s.put(encodeNameRecord(record(1, 'bc1:x', l)));
    expectCode(() => s.put(encodeNameRecord(record(1, 'bc1:x', 'd'))), 'NAME_STORE_FULL');
    expect(s.put(encodeNameRecord(record(2, 'bc1:y', 'a'))).seq).toBe(2);
    now += NAME_RECORD_TTL_MS;
    expect(s.put(encodeNameRecord(record(1, 'bc1:x', 'd'))).seq).toBe(1);
    expect(s.size).toBe(1);
  });
});

const relay = (fp: string, o: Partial<{ dirPort: number; roles: string[]; flags: string[] }> = {}): ConsensusRelay => ({
  nickname: fp.slice(0, 8), fingerprint: fp, flags: new Set(o.flags ?? ['Running', 'Valid', 'Fast']),
  roles: o.roles ?? ['relay'], address: '127.0.0.1', orPort: 9001, dirPort: o.dirPort ?? 9030, storagePort: 0,
}) as unknown as ConsensusRelay;

describe('the ring of responsible mirrors (SPEC.md §9.14.2)', () => {
  const relays = Array.from({ length: 20 }, (_, i) => relay(sha256(Buffer.from([i])).toString('hex')));

  it('the 3 mirrors closest by XOR to SHA-256("bitcloud-name" ‖ target), from any order of the consensus', () => {
    // A fixed key: with a random one, two names of the same key pick the same 3 of these 20
    // mirrors now and then, and the last check below would fail by chance.
    const publisher = ed25519FromSeed(Buffer.alloc(32, 7));
    const target = nameTarget(publisher.publicKey, nameSalt('site'));
    const pos = sha256(Buffer.from('bitcloud-name'), target);
    const dist = (r: ConsensusRelay): Buffer => { const f = Buffer.from(r.fingerprint, 'hex'); for (let i = 0; i < 32; i++) f[i] ^= pos[i]; return f; };
    const expected = [...relays].sort((x, y) => Buffer.compare(dist(x), dist(y))).slice(0, 3).map((r) => r.fingerprint);
    expect(responsibleMirrors(relays, target).map((r) => r.fingerprint)).toEqual(expected);
    expect(responsibleMirrors([...relays].reverse(), target).map((r) => r.fingerprint)).toEqual(expected);
    expect(NAME_MIRRORS_PER_NAME).toBe(3);
    // Another name of the same publisher lands elsewhere on the ring (for this key: other mirrors).
    const t2 = nameTarget(publisher.publicKey, nameSalt('other'));
    expect(responsibleMirrors(relays, t2).map((r) => r.fingerprint)).not.toEqual(expected);
  });

  it('only running, valid relays with a directory port are mirrors; storage-only nodes and hidden nodes are not', () => {
    const mixed = [
      relay('aa'.repeat(32)), relay('bb'.repeat(32), { dirPort: 0 }), relay('cc'.repeat(32), { flags: ['Valid'] }),
      relay('dd'.repeat(32), { roles: ['storage', 'hidden'] }), relay('ee'.repeat(32), { roles: ['storage'] }),
    ];
    expect(nameMirrorsOf(mixed).map((r) => r.fingerprint)).toEqual(['aa'.repeat(32)]);
    expect(responsibleMirrors(mixed, Buffer.alloc(20)).length).toBe(1);
  });
});

describe('a client\'s name lookup at the mirrors (SPEC.md §9.14.2, §11.6)', () => {
  it('the warning for dropped answers does not name the name looked up', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => { lines.push(l); } });
    const relays = Array.from({ length: 3 }, (_, i) => relay(sha256(Buffer.from([i])).toString('hex')));
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-mirror-names-'));
    const names = new MirrorNames({ relays: () => relays, buildTo: () => Promise.reject(new Error('not used')), dataDir, log });
    // Every mirror answers a record signed by another key for this name: each answer is dropped.
    const forged = encodeNameRecord({ ...record(5, 'bc1:forged', 'site', other), publisher: Buffer.from(keys.publicKey) });
    const request = vi.spyOn(MirrorNames.prototype as unknown as { request(): Promise<HttpResponse> }, 'request')
      .mockResolvedValue({ status: 200, headers: {}, body: forged });
    try {
      await expect(names.resolve(Buffer.from(keys.publicKey), 'site')).rejects.toMatchObject({ code: 'NAME_NOT_FOUND' });
    } finally {
      request.mockRestore();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged.some((l) => l.msg === 'invalid name answers dropped' && l.invalidAnswers === 3)).toBe(true);
    const name = formatName({ publisher: Buffer.from(keys.publicKey), label: 'site' });
    for (const l of logged) {
      expect(JSON.stringify(l)).not.toContain(name);
      expect(JSON.stringify(l)).not.toContain(name.split('/')[0]);
    }
  });
});

describe('the relay\'s name mirror routes (SPEC.md §9.14.2)', () => {
  let server: http.Server | null = null;
  afterEach(async () => { if (server) await new Promise<void>((r) => server!.close(() => r())); server = null; });

  async function start(store = new NameMirrorStore()): Promise<string> {
    const m = new NameMirror(store);
    server = http.createServer((req, res) => {
      const p = (req.url ?? '/').split('?')[0];
      if (NameMirror.handles(p)) void m.serve(req, res, p);
      else { res.writeHead(404); res.end(); }
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }
  const codeIn = (b: Buffer): unknown => (JSON.parse(b.toString()) as { code: unknown }).code;

  it('POST stores, GET returns the bytes; refusals carry their codes', async () => {
    const base = await start(new NameMirrorStore({ maxRecords: 1 }));
    const r = record(3);
    const t = nameTarget(r.publisher, r.salt).toString('hex');
    expect((await httpRequest(`${base}${NAME_MIRROR_PATH}/${t}`, { maxBytes: 4096 })).status).toBe(404);
    const ok = await httpRequest(`${base}${NAME_MIRROR_PATH}`, { method: 'POST', body: encodeNameRecord(r), maxBytes: 4096 });
    expect(ok.status).toBe(200);
    const got = await httpRequest(`${base}${NAME_MIRROR_PATH}/${t}`, { maxBytes: 4096 });
    expect(got.status).toBe(200);
    expect(decodeNameRecord(got.body).seq).toBe(3);
    const stale = await httpRequest(`${base}${NAME_MIRROR_PATH}`, { method: 'POST', body: encodeNameRecord(record(2)), maxBytes: 4096 });
    expect([stale.status, codeIn(stale.body)]).toEqual([409, 'DHT_SEQ_STALE']);
    const forged = await httpRequest(`${base}${NAME_MIRROR_PATH}`, { method: 'POST', body: encodeNameRecord({ ...record(4), value: Buffer.from('bc1:x') }), maxBytes: 4096 });
    expect([forged.status, codeIn(forged.body)]).toEqual([400, 'NAME_BAD_SIGNATURE']);
    const junk = await httpRequest(`${base}${NAME_MIRROR_PATH}`, { method: 'POST', body: Buffer.from('junk'), maxBytes: 4096 });
    expect([junk.status, codeIn(junk.body)]).toEqual([400, 'NAME_RECORD_MALFORMED']);
    const huge = await httpRequest(`${base}${NAME_MIRROR_PATH}`, { method: 'POST', body: Buffer.alloc(NAME_RECORD_MAX_BYTES + 1), maxBytes: 4096 });
    expect([huge.status, codeIn(huge.body)]).toEqual([413, 'NAME_RECORD_TOO_LARGE']);
    const full = await httpRequest(`${base}${NAME_MIRROR_PATH}`, { method: 'POST', body: encodeNameRecord(record(1, 'bc1:x', 'another')), maxBytes: 4096 });
    expect([full.status, codeIn(full.body)]).toEqual([503, 'NAME_STORE_FULL']);
    expect((await httpRequest(`${base}${NAME_MIRROR_PATH}/not-hex`, { maxBytes: 4096 })).status).toBe(404);
  });
});
