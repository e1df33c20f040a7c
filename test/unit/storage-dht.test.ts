// SPEC.md §9.14: the private DHT and BEP 44 names. Real bittorrent-dht nodes on 127.0.0.1.
import dgram from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { BitcloudDht, dhtBootstrapList, dhtOptions, STORAGE_SWARM, type DhtCandidate } from '../../src/storage/dht';
import { NodeDht } from '../../storage/dht';
import type { VerifiedConsensus } from '../../src/dir/types';
import { wellFormedKrpc } from '../../src/storage/dht-guard';
import { checkLabel, decodeNameValue, encodeNameValue, formatName, nameSalt, parseName } from '../../src/storage/name';
import { ed25519Generate, ed25519Sign } from '../../src/crypto/primitives';
import { bep44SignedBytes, itemWins, nameTarget, signDhtItem } from '../../src/storage/name-record';
import type { DhtItem } from '../../src/storage/protocol';
import { randomBytes } from '../../src/crypto/primitives';
import type { Capability } from '../../src/storage/capability';

const PUBLIC_ROUTERS = /bittorrent\.com|utorrent\.com|transmissionbt\.com/;
const cap = (): Capability => ({ manifestId: randomBytes(32), fileKey: randomBytes(32) });

describe('bootstrap is private (SPEC.md §9.14)', () => {
  it('an empty list is bootstrap: false, never the library default', () => {
    expect(dhtOptions([]).bootstrap).toBe(false);
    expect(dhtOptions([{ host: '127.0.0.1', port: 7001 }]).bootstrap).toEqual([{ host: '127.0.0.1', port: 7001 }]);
  });

  it('the list comes from Storage-flagged consensus entries, by storage port, without the node itself', () => {
    const flags = (...f: string[]) => new Set(f);
    const list = dhtBootstrapList([
      { fingerprint: 'a'.repeat(64), address: '127.0.0.1', storagePort: 7001, flags: flags('Running', 'Valid', 'Storage') },
      { fingerprint: 'b'.repeat(64), address: '127.0.0.2', storagePort: 0, flags: flags('Running', 'Valid') },
      { fingerprint: 'c'.repeat(64), address: '127.0.0.3', storagePort: 7003, flags: flags('Running', 'Valid', 'Storage') },
    ], 'c'.repeat(64));
    expect(list).toEqual([{ host: '127.0.0.1', port: 7001 }]);
  });

  it('the first node starts with no bootstrap and sends nothing to the public routers', async () => {
    const d = await BitcloudDht.start({ bootstrap: [], host: '127.0.0.1', port: 0 });
    try {
      expect(d.options.bootstrap).toBe(false);
      const rpc = (d as unknown as { dht: { _rpc: { bootstrap: Array<{ host: string }> } } }).dht._rpc;
      expect(rpc.bootstrap).toEqual([]);
      await d.ready(1000);
    } finally {
      await d.close();
    }
  });
});

describe('names (SPEC.md §9.14)', () => {
  it('labels, names and values round-trip; bad ones are NAME_MALFORMED / NAME_VALUE_MALFORMED', () => {
    const k = ed25519Generate().publicKey;
    const text = formatName({ publisher: k, label: 'my-site.v2' });
    expect(parseName(text)).toEqual({ publisher: k, label: 'my-site.v2' });
    expect(parseName('docs', k)).toEqual({ publisher: k, label: 'docs' });
    expect(nameSalt('docs').toString()).toBe('bcname1:docs');
    for (const bad of ['', 'UPPER', '-lead', 'a/b', 'x'.repeat(57), 'sp ace']) expect(() => checkLabel(bad)).toThrow(/NAME_MALFORMED/);
    expect(() => parseName('docs')).toThrow(/NAME_MALFORMED/);
    expect(() => parseName(`${text.slice(0, 10)}/docs`)).toThrow(/NAME_MALFORMED/);
    const c = cap();
    expect(decodeNameValue(encodeNameValue(c))).toEqual(c);
    expect(() => decodeNameValue(Buffer.from('not a capability'))).toThrow(/NAME_VALUE_MALFORMED/);
  });
});

describe('name decoders never throw anything but their code (property)', () => {
  it('parseName on any text', () => {
    const own = ed25519Generate().publicKey;
    fc.assert(fc.property(fc.string({ maxLength: 120 }), fc.boolean(), (text, withOwn) => {
      try {
        const r = parseName(text, withOwn ? own : undefined);
        expect(r.publisher.length).toBe(32);
      } catch (e) {
        expect((e as { code?: string }).code).toBe('NAME_MALFORMED');
      }
    }), { numRuns: 2000 });
  });

  it('decodeNameValue on any bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
      try {
        decodeNameValue(b);
      } catch (e) {
        expect((e as { code?: string }).code).toBe('NAME_VALUE_MALFORMED');
      }
    }), { numRuns: 2000 });
  });
});

describe('a private DHT of four storage nodes and a client', () => {
  const nodes: BitcloudDht[] = [];
  let client: BitcloudDht;
  const sent: string[] = [];
  let spy: ReturnType<typeof vi.spyOn>;

  beforeAll(async () => {
    const orig = dgram.Socket.prototype.send;
    spy = vi.spyOn(dgram.Socket.prototype, 'send').mockImplementation(function (this: dgram.Socket, ...args: unknown[]) {
      // send(buf, offset, length, port, address, cb) as k-rpc-socket calls it, or
      // send(list, port, address, cb) as node re-enters it once the socket is bound.
      sent.push(String(typeof args[3] === 'number' ? args[4] : args[2]));
      return (orig as (...a: unknown[]) => void).apply(this, args);
    } as typeof orig);
    nodes.push(await BitcloudDht.start({ bootstrap: [], host: '127.0.0.1', port: 0 }));
    for (let i = 0; i < 3; i++) nodes.push(await BitcloudDht.start({ bootstrap: [nodes[0].address], host: '127.0.0.1', port: 0 }));
    client = await BitcloudDht.start({ bootstrap: nodes.map((n) => n.address), host: '127.0.0.1', port: 0 });
    await Promise.all([...nodes, client].map((n) => n.ready(5000)));
  });

  afterAll(async () => {
    await client?.close();
    await Promise.all(nodes.map((n) => n.close()));
    spy?.mockRestore();
  });

  it('storage nodes announce themselves and a client finds them', async () => {
    await Promise.all(nodes.slice(1).map((n, i) => n.announce(7100 + i)));
    const peers = await client.findStoragePeers();
    expect(peers.map((p) => p.port).sort()).toEqual([7100, 7101, 7102]);
    expect(STORAGE_SWARM.length).toBe(20);
  });

  it('publish then resolve; a second publication is newer and wins', async () => {
    const keys = ed25519Generate();
    const c1 = cap();
    const c2 = cap();
    const p1 = await client.publish(keys, 'site', c1);
    expect(p1.nodes).toBeGreaterThan(0);
    expect(await client.resolve(keys.publicKey, 'site')).toEqual({ cap: c1, seq: p1.seq });
    const p2 = await client.publish(keys, 'site', c2);
    expect(p2.seq).toBeGreaterThan(p1.seq);
    // Another client (a node here) sees the newer value too.
    expect(await nodes[2].resolve(keys.publicKey, 'site')).toEqual({ cap: c2, seq: p2.seq });
    expect(await client.resolve(keys.publicKey, 'other')).toBeNull();
  });

  it('a stale sequence number is refused by the publisher and by the nodes', async () => {
    const keys = ed25519Generate();
    await client.publish(keys, 'stale', cap(), { seq: 10 });
    await expect(client.publish(keys, 'stale', cap(), { seq: 10 })).rejects.toMatchObject({ code: 'DHT_SEQ_STALE' });
    await expect(client.publish(keys, 'stale', cap(), { seq: 3 })).rejects.toMatchObject({ code: 'DHT_SEQ_STALE' });
    // Sent anyway: every node that holds seq 10 answers BEP 44 error 302.
    await expect(client.publish(keys, 'stale', cap(), { seq: 4, skipSeqCheck: true })).rejects.toMatchObject({ code: 'DHT_SEQ_STALE' });
    expect((await client.resolve(keys.publicKey, 'stale'))!.seq).toBe(10);
  });

  it('an item signed by another key is not accepted as the name', async () => {
    const keys = ed25519Generate();
    const other = ed25519Generate();
    await client.publish(keys, 'mine', cap());
    // A forger signs with its own key: the item lands under its own key, never under ours.
    const forged = cap();
    await client.publish({ publicKey: keys.publicKey, secretKey: other.secretKey }, 'mine', forged, { seq: 2 ** 40, skipSeqCheck: true }).catch(() => {});
    const got = await client.resolve(keys.publicKey, 'mine');
    expect(got!.cap).not.toEqual(forged);
  });

  it('a DhtPut and DhtGet of an item without salt (0 bytes) and with one find it (SPEC.md §9.14.1)', async () => {
    for (const salt of [Buffer.alloc(0), Buffer.from('some-salt')]) {
      const keys = ed25519Generate();
      const value = Buffer.from('a signed value');
      const item = { publisher: keys.publicKey, salt, value, seq: 7, sig: ed25519Sign(bep44SignedBytes(salt, 7, value), keys.secretKey) };
      expect(await client.putSignedItem(item)).toBeGreaterThan(0);
      // The client stores no copy of its own put: what it gets comes from the nodes.
      expect(await client.getSignedItem(keys.publicKey, salt), `salt of ${salt.length} bytes`).toEqual(item);
    }
  });

  it('two items under one seq held by two nodes: dht_get answers the one that wins under Resolving, whichever arrives first (SPEC.md §9.14, §9.14.1)', async () => {
    const keys = ed25519Generate();
    const salt = nameSalt('tie');
    const x = signDhtItem(keys, salt, Buffer.from('value x'), 5);
    const y = signDhtItem(keys, salt, Buffer.from('value y'), 5);
    const [lose, win] = itemWins(x, y) ? [y, x] : [x, y];
    // Each BEP 44 node keeps the first item it was sent (an equal seq is refused, 302): the nodes
    // disagree. Node 1 holds the losing item itself, node 2 the winning one.
    const hold = (n: BitcloudDht, it: DhtItem) => {
      const values = (n as unknown as { dht: { _values: { set(k: string, v: unknown): void } } }).dht._values;
      values.set(nameTarget(it.publisher, it.salt).toString('hex'), { v: it.value, k: it.publisher, salt: it.salt, sig: it.sig, seq: it.seq, id: Buffer.alloc(20) });
    };
    hold(nodes[1], lose);
    hold(nodes[2], win);
    for (const asker of [nodes[1], nodes[2], nodes[3], client]) {
      expect((await asker.getSignedItem(keys.publicKey, salt))?.value.toString()).toBe(win.value.toString());
    }
  });

  it('no datagram went anywhere but 127.0.0.1', () => {
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.filter((a) => a !== '127.0.0.1')).toEqual([]);
    expect(sent.some((a) => PUBLIC_ROUTERS.test(a))).toBe(false);
  });
});

describe('hostile datagrams on the DHT port (SPEC.md §9.14)', () => {
  /** Bencode for the test's messages (dictionary keys sorted). */
  type B = Buffer | string | number | B[] | { [k: string]: B };
  const benc = (v: B): Buffer => {
    if (typeof v === 'number') return Buffer.from(`i${v}e`);
    if (typeof v === 'string') return benc(Buffer.from(v));
    if (Buffer.isBuffer(v)) return Buffer.concat([Buffer.from(`${v.length}:`), v]);
    if (Array.isArray(v)) return Buffer.concat([Buffer.from('l'), ...v.map(benc), Buffer.from('e')]);
    return Buffer.concat([Buffer.from('d'), ...Object.keys(v).sort().flatMap((k) => [benc(k), benc(v[k])]), Buffer.from('e')]);
  };
  const id = Buffer.alloc(20, 7);

  it('a query whose fields have the wrong types is dropped; the node neither throws nor stops answering', async () => {
    const thrown: unknown[] = [];
    const onUncaught = (e: unknown) => { thrown.push(e); };
    process.on('uncaughtException', onUncaught);
    const d = await BitcloudDht.start({ bootstrap: [], host: '127.0.0.1', port: 0 });
    const sock = dgram.createSocket('udp4');
    try {
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      const replies: Buffer[] = [];
      sock.on('message', (m) => replies.push(m));
      const hostile: B[] = [
        { t: 'aa', y: 'q', q: 'get', a: { id, target: 5 } },            // target.toString('hex') on a number
        { t: 'ab', y: 'q', q: 'find_node', a: { id, target: [1] } },     // k-bucket: "id is not a Uint8Array"
        { t: 'ac', y: 'q', q: 'get_peers', a: { id, info_hash: 5 } },
        { t: 'ad', y: 'q', q: 'put', a: { id, token: 5, v: 'x' } },      // token.equals on a number
        { t: 'ae', y: 'q', q: 'announce_peer', a: { id, token: 5, info_hash: id, port: 1 } },
      ];
      for (const m of hostile) sock.send(benc(m), d.address.port, '127.0.0.1');
      sock.send(benc({ t: 'zz', y: 'q', q: 'ping', a: { id } }), d.address.port, '127.0.0.1');
      await vi.waitFor(() => expect(replies.some((m) => m.includes(Buffer.from('2:zz')))).toBe(true), { timeout: 5000 });
      expect(thrown).toEqual([]);
      expect(d.droppedMessages).toBe(hostile.length);
    } finally {
      sock.close();
      await d.close();
      process.off('uncaughtException', onUncaught);
    }
  });

  it('wellFormedKrpc: the field types of BEP 5 / BEP 44, strict bencode', () => {
    const ok: B[] = [
      { t: 'aa', y: 'q', q: 'ping', a: { id } },
      { t: 'aa', y: 'q', q: 'put', a: { id, token: Buffer.alloc(20), v: 'x', k: Buffer.alloc(32), sig: Buffer.alloc(64), seq: 3, salt: 'bcname1:a' } },
      { t: 'aa', y: 'r', r: { id, nodes: Buffer.alloc(26), values: [Buffer.alloc(6)], token: Buffer.alloc(20) } },
      { t: 'aa', y: 'e', e: [203, 'bad'] },
    ];
    for (const m of ok) expect(wellFormedKrpc(benc(m))).toBe(true);
    const bad: B[] = [
      { t: 'aa', y: 'q', q: 'ping', a: { id: 5 } },
      { t: 'aa', y: 'q', q: 'ping', a: {} },
      { t: 'aa', y: 'q', q: 'put', a: { id, token: Buffer.alloc(20), v: 'x', seq: -1 } },
      { t: 'aa', y: 'q', q: 'put', a: { id, token: Buffer.alloc(20), v: Buffer.alloc(1000) } },
      { t: 'aa', y: 'r', r: { id: 5 } },                               // k-rpc-socket: peer.id.equals(5)
      { t: 'aa', y: 'r', r: { id, values: 5 } },
      { t: 5, y: 'q', q: 'ping', a: { id } },
      { t: 'aa', y: 'x' },
    ];
    for (const m of bad) expect(wellFormedKrpc(benc(m))).toBe(false);
    for (const raw of ['', 'i1e', 'd1:ti1ee', 'd1:t2:aa1:y1:q1:q4:ping1:ad2:id20:' + 'x'.repeat(20) + 'ee' + 'junk', 'i01e', 'd1:a1:b1:a1:ce', 'l'.repeat(100) + 'e'.repeat(100)]) {
      expect(wellFormedKrpc(Buffer.from(raw))).toBe(false);
    }
  });

  it('wellFormedKrpc: strict bencode inside an otherwise valid message (no leading zero, no -0, at most 8 levels of nesting)', () => {
    // A ping whose `a` carries one extra key `z`: the top level is a well-formed KRPC dictionary, so
    // only the value of `z` decides.
    const ping = (z: string) => Buffer.from(`d1:ad2:id20:${'x'.repeat(20)}1:z${z}e1:q4:ping1:t2:aa1:y1:qe`);
    const lists = (n: number) => 'l'.repeat(n) + 'e'.repeat(n);
    expect(wellFormedKrpc(ping('i1e'))).toBe(true);
    expect(wellFormedKrpc(ping('i01e'))).toBe(false);
    expect(wellFormedKrpc(ping('i-0e'))).toBe(false);
    expect(wellFormedKrpc(ping('i9007199254740992e'))).toBe(false);
    // The message itself is level 1, `a` level 2: `z` adds levels 3 and up.
    expect(wellFormedKrpc(ping(lists(6)))).toBe(true); // 8 levels
    expect(wellFormedKrpc(ping(`${'l'.repeat(6)}i1e2:ab${'e'.repeat(6)}`))).toBe(true); // 8 levels, values in the 8th
    expect(wellFormedKrpc(ping(lists(7)))).toBe(false); // 9 levels
  });
});

describe('members only (SPEC.md §9.14)', () => {
  const benc = (v: unknown): Buffer => {
    if (typeof v === 'number') return Buffer.from(`i${v}e`);
    if (typeof v === 'string') return benc(Buffer.from(v));
    if (Buffer.isBuffer(v)) return Buffer.concat([Buffer.from(`${v.length}:`), v]);
    if (Array.isArray(v)) return Buffer.concat([Buffer.from('l'), ...v.map(benc), Buffer.from('e')]);
    const o = v as Record<string, unknown>;
    return Buffer.concat([Buffer.from('d'), ...Object.keys(o).sort().flatMap((k) => [benc(k), benc(o[k])]), Buffer.from('e')]);
  };
  const udp = async () => {
    const s = dgram.createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
    const got: Buffer[] = [];
    s.on('message', (m) => got.push(m));
    return { s, got, port: s.address().port };
  };

  it('a member\'s reply listing a non-member sends nothing there; a non-member\'s query is dropped unanswered', async () => {
    const hostile = await udp();   // a storage node of the consensus, answering with other addresses
    const victim = await udp();    // any host outside the private network (an Internet address)
    const outsider = await udp();  // anything that can send UDP to the node's port
    // The hostile member answers every query with its own id and, in `nodes`, the victim.
    const victimNode = Buffer.concat([Buffer.alloc(20, 9), Buffer.from([127, 0, 0, 1]), Buffer.from([victim.port >> 8, victim.port & 0xff])]);
    hostile.s.on('message', (m, rinfo) => {
      const t = m.subarray(m.indexOf('1:t') + 3);
      const tid = t.subarray(t.indexOf(0x3a) + 1, t.indexOf(0x3a) + 1 + Number(t.subarray(0, t.indexOf(0x3a)).toString()));
      hostile.s.send(benc({ t: tid, y: 'r', r: { id: Buffer.alloc(20, 5), nodes: victimNode, token: Buffer.alloc(8, 1) } }), rinfo.port, rinfo.address);
    });
    const members = (host: string, port: number) => host === '127.0.0.1' && port === hostile.port;
    const d = await BitcloudDht.start({ bootstrap: [{ host: '127.0.0.1', port: hostile.port }], host: '127.0.0.1', port: 0, members });
    try {
      // The bootstrap lookup ends only once every node it tried has answered or failed.
      await vi.waitFor(() => expect(hostile.got.length).toBeGreaterThan(0), { timeout: 5000 });
      await d.ready(10_000);
      expect(await d.getSignedItem(ed25519Generate().publicKey, nameSalt('x'))).toBeNull();
      expect(victim.got).toEqual([]);
      expect(d.refusedSends).toBeGreaterThan(0);

      const before = d.droppedMessages;
      const id = Buffer.alloc(20, 3);
      outsider.s.send(benc({ t: 'zz', y: 'q', q: 'ping', a: { id } }), d.address.port, '127.0.0.1');
      await vi.waitFor(() => expect(d.droppedMessages).toBe(before + 1), { timeout: 5000 });
      expect(outsider.got).toEqual([]);
      expect(d.nodeCount).toBe(1); // the hostile member only: neither the victim nor the outsider
    } finally {
      await d.close();
      for (const u of [hostile, victim, outsider]) u.s.close();
    }
  });
});

describe('a storage node\'s members are the storage nodes of the consensus it holds (SPEC.md §9.14)', () => {
  it('address and storage port of Storage + Running entries; none without a consensus; a newer consensus replaces the set', () => {
    const flags = (...f: string[]) => new Set(f);
    let c: { validAfter: number; relays: DhtCandidate[] } | null = null;
    const n = new NodeDht({ host: '127.0.0.1', port: 0, fingerprint: 'a'.repeat(64), consensus: () => c as unknown as VerifiedConsensus, announceIntervalMs: 60_000 });
    expect(n.isMember('127.0.0.1', 7001)).toBe(false);
    c = { validAfter: 1, relays: [
      { fingerprint: 'a'.repeat(64), address: '127.0.0.1', storagePort: 7001, flags: flags('Running', 'Storage') },
      { fingerprint: 'b'.repeat(64), address: '127.0.0.2', storagePort: 7002, flags: flags('Running', 'Storage') },
      { fingerprint: 'c'.repeat(64), address: '127.0.0.3', storagePort: 7003, flags: flags('Running') },
    ] };
    expect(n.isMember('127.0.0.2', 7002)).toBe(true);
    expect(n.isMember('127.0.0.1', 7001)).toBe(true);
    expect(n.isMember('127.0.0.2', 7003)).toBe(false);
    expect(n.isMember('127.0.0.3', 7003)).toBe(false);
    expect(n.isMember('8.8.8.8', 53)).toBe(false);
    c = { validAfter: 2, relays: [c.relays[0]] };
    expect(n.isMember('127.0.0.2', 7002)).toBe(false);
  });
});

describe('a DhtPut older than the item the node holds (SPEC.md §9.14.1)', () => {
  it('is DHT_SEQ_STALE with nothing sent; the item it holds may be put again', async () => {
    const a = await BitcloudDht.start({ bootstrap: [], host: '127.0.0.1', port: 0 });
    const b = await BitcloudDht.start({ bootstrap: [a.address], host: '127.0.0.1', port: 0 });
    try {
      await Promise.all([a.ready(5000), b.ready(5000)]);
      const keys = ed25519Generate();
      const salt = nameSalt('replayed');
      const older = signDhtItem(keys, salt, Buffer.from('old value'), 5);
      const newer = signDhtItem(keys, salt, Buffer.from('new value'), 10);
      const target = nameTarget(keys.publicKey, salt).toString('hex');
      const values = (n: BitcloudDht) => (n as unknown as { dht: { _values: { get(k: string): { seq?: number } | undefined; set(k: string, v: unknown): void } } }).dht._values;
      // Node a holds the newer item; node b lost it (a restart): a replayed older one would land there.
      values(a).set(target, { v: newer.value, k: newer.publisher, salt: newer.salt, sig: newer.sig, seq: newer.seq, id: Buffer.alloc(20) });
      await expect(a.putSignedItem(older)).rejects.toMatchObject({ code: 'DHT_SEQ_STALE' });
      expect(values(b).get(target)).toBeUndefined();
      // Republishing the very item held goes out (b stores it).
      expect(await a.putSignedItem(newer)).toBeGreaterThan(0);
      expect(values(b).get(target)?.seq).toBe(10);
    } finally {
      await b.close();
      await a.close();
    }
  });
});

describe('storage nodes of a newer consensus rejoin the routing table (SPEC.md §9.14 Network, Members only)', () => {
  it('two nodes whose pings to each other were dropped while one held no consensus find each other with the next consensus', async () => {
    const flags = new Set(['Running', 'Storage']);
    let ca: { validAfter: number; relays: DhtCandidate[] } | null = null;
    let cb: { validAfter: number; relays: DhtCandidate[] } | null = null;
    // Pings time out after 200 ms, not the library's 2 s.
    const node = (fp: string, get: () => unknown) => new NodeDht({ host: '127.0.0.1', port: 0, fingerprint: fp, consensus: () => get() as VerifiedConsensus | null, announceIntervalMs: 3_600_000, pollMs: 20, queryTimeoutMs: 200 });
    // KRPC queries awaiting a reply (k-rpc-socket's count): 0 once a dropped ping has timed out.
    const inflight = (n: NodeDht) => (n.instance!.raw as unknown as { _rpc: { socket: { inflight: number } } })._rpc.socket.inflight;
    const a = node('a'.repeat(64), () => ca);
    const b = node('b'.repeat(64), () => cb);
    await a.start();
    await b.start();
    try {
      const listing = (validAfter: number) => ({ validAfter, relays: [
        { fingerprint: 'a'.repeat(64), address: '127.0.0.1', storagePort: a.address!.port, flags },
        { fingerprint: 'b'.repeat(64), address: '127.0.0.1', storagePort: b.address!.port, flags },
      ] });
      // a holds the consensus, b none yet: b drops a's ping, which times out.
      ca = listing(1);
      await vi.waitFor(() => expect(b.instance!.droppedMessages).toBe(1), { timeout: 5000 });
      await vi.waitFor(() => expect(inflight(a)).toBe(0), { timeout: 5000 });
      // Then b holds it and a's lapsed (expired, not yet refreshed): a drops b's ping.
      ca = null;
      cb = listing(1);
      await vi.waitFor(() => expect(a.instance!.droppedMessages).toBe(1), { timeout: 5000 });
      await vi.waitFor(() => expect(inflight(b)).toBe(0), { timeout: 5000 });
      expect([a.instance!.nodeCount, b.instance!.nodeCount]).toEqual([0, 0]);
      // A newer consensus, held by both: each adds the other again, and the DHT works.
      ca = listing(2);
      cb = listing(2);
      await vi.waitFor(() => expect([a.instance!.nodeCount, b.instance!.nodeCount]).toEqual([1, 1]), { timeout: 5000 });
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 20_000);
});

describe('a newer consensus on a large network (SPEC.md §9.14 Network)', () => {
  it('a node whose routing table is not empty pings only the storage nodes new to the consensus, not every member missing from its table', async () => {
    const flags = new Set(['Running', 'Storage']);
    const relay = (i: number): DhtCandidate => ({ fingerprint: i.toString(16).padStart(64, '0'), address: '10.1.' + (i >> 8) + '.' + (i & 255), storagePort: 7000, flags });
    // 1 000 storage nodes; the table holds 25 of them, as a Kademlia table of a large network does.
    const listing = (validAfter: number, n: number) => ({ validAfter, relays: Array.from({ length: n }, (_, i) => relay(i + 1)) });
    let c: ReturnType<typeof listing> | null = null;
    const table = Array.from({ length: 25 }, (_, i) => ({ host: relay(i + 1).address, port: 7000 }));
    const added: Array<Array<{ host: string; port: number }>> = [];
    vi.spyOn(BitcloudDht.prototype, 'tableAddresses').mockImplementation(() => table);
    vi.spyOn(BitcloudDht.prototype, 'addNodes').mockImplementation((list) => { added.push([...list]); });
    const n = new NodeDht({ host: '127.0.0.1', port: 0, fingerprint: 'f'.repeat(64), consensus: () => c as unknown as VerifiedConsensus | null, announceIntervalMs: 3_600_000, pollMs: 20 });
    await n.start();
    try {
      c = listing(1, 1000);
      await vi.waitFor(() => expect(added).toHaveLength(1), { timeout: 5000 });
      // The next consensus lists three more: only those are pinged.
      c = listing(2, 1003);
      await vi.waitFor(() => expect(added).toHaveLength(2), { timeout: 5000 });
      expect(added[1].map((a) => a.host)).toEqual([relay(1001), relay(1002), relay(1003)].map((r) => r.address));
      // A table that lost its network (fewer nodes than a bucket holds) gets every member missing from it.
      table.length = 3;
      c = listing(3, 1003);
      await vi.waitFor(() => expect(added).toHaveLength(3), { timeout: 5000 });
      expect(added[2]).toHaveLength(1000);
    } finally {
      vi.restoreAllMocks();
      await n.stop();
    }
  });
});

describe('a consensus held between two polls (SPEC.md §9.14 Network, Members only)', () => {
  it('a storage node it left out, listed again by the next consensus the poll sees, is pinged again', async () => {
    const flags = new Set(['Running', 'Storage']);
    const relay = (i: number): DhtCandidate => ({ fingerprint: i.toString(16).padStart(64, '0'), address: '10.2.' + (i >> 8) + '.' + (i & 255), storagePort: 7000, flags });
    const listing = (validAfter: number, without?: number) => ({ validAfter, relays: Array.from({ length: 100 }, (_, i) => relay(i + 1)).filter((_, i) => i + 1 !== without) });
    let c: ReturnType<typeof listing> | null = null;
    // The table holds 25 nodes (not a lost network); node 50 is not among them.
    const table = Array.from({ length: 25 }, (_, i) => ({ host: relay(i + 1).address, port: 7000 }));
    const added: Array<Array<{ host: string; port: number }>> = [];
    vi.spyOn(BitcloudDht.prototype, 'tableAddresses').mockImplementation(() => table);
    vi.spyOn(BitcloudDht.prototype, 'addNodes').mockImplementation((list) => { added.push([...list]); });
    const n = new NodeDht({ host: '127.0.0.1', port: 0, fingerprint: 'f'.repeat(64), consensus: () => c as unknown as VerifiedConsensus | null, announceIntervalMs: 3_600_000, pollMs: 3_600_000 });
    const poll = () => (n as unknown as { poll(): void }).poll();
    await n.start();
    try {
      c = listing(1);
      poll();
      expect(added).toHaveLength(1);
      // Consensus 2 leaves node 50 out; the node holds it (its datagrams are dropped) but no poll runs.
      c = listing(2, 50);
      expect(n.isMember(relay(50).address, 7000)).toBe(false);
      // Consensus 3 lists node 50 again: the poll sees 1 then 3, and node 50 is pinged again.
      c = listing(3);
      poll();
      expect(added).toHaveLength(2);
      expect(added[1].map((a) => a.host)).toEqual([relay(50).address]);
      // A next consensus listing the same nodes adds none.
      c = listing(4);
      poll();
      expect(added).toHaveLength(2);
      // A lapse (no consensus: every datagram dropped) makes every member missing from the table new.
      c = null;
      expect(n.isMember(relay(60).address, 7000)).toBe(false);
      c = listing(5);
      poll();
      expect(added).toHaveLength(3);
      expect(added[2]).toHaveLength(75);
    } finally {
      vi.restoreAllMocks();
      await n.stop();
    }
  });
});
