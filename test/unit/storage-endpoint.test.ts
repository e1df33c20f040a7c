// SPEC.md §9.13: how storage streams reach a node — BEGIN_STORAGE on circuits that end at it
// (it answers CREATE2, never extends or exits) and direct TLS sessions on its storage port —
// with a real ShareStore, real links and circuits, all in-process on 127.0.0.1.
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateNodeKeys, fingerprint, type NodeKeys } from '../../src/crypto/keys';
import { randomBytes } from '../../src/crypto/primitives';
import { connectLink, createLinkListener, type Channel, type LinkListener } from '../../src/link';
import { CircuitSwitch } from '../../src/circuit/switch';
import { ClientCircuit, ClientLink, type HopTarget } from '../../src/client/client-circuit';
import { connectStorageDirect, DIRECT_HELLO_BYTES } from '../../src/storage/direct';
import { StorageChannel } from '../../src/storage/channel';
import { frameHeader } from '../../src/storage/framing';
import { shareId } from '../../src/storage/share';
import { ShareStore } from '../../storage/share-store';
import { StorageEndpoint } from '../../storage/endpoint';
import type { RequestContext } from '../../storage/handler';
import { holdConnections } from '../helpers/connections';

let dir: string;
let keys: NodeKeys;
let store: ShareStore;
let endpoint: StorageEndpoint;
let node: HopTarget;
const contexts: RequestContext[] = [];
// A middle relay: a CircuitSwitch whose extend hook opens an authenticated link.
let middleKeys: NodeKeys;
let middleSwitch: CircuitSwitch<Channel>;
let middleListener: LinkListener;
let middle: HopTarget;

function hop(k: NodeKeys, port: number): HopTarget {
  return { identity: k.identity.publicKey, fingerprint: fingerprint(k.identity.publicKey), onionKey: k.onion.publicKey, address: '127.0.0.1', orPort: port };
}

beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-endpoint-'));
  keys = await loadOrCreateNodeKeys(path.join(dir, 'node'));
  store = await ShareStore.open({ dir: path.join(dir, 'node'), quotaBytes: 64 * 1024 * 1024 });
  endpoint = new StorageEndpoint({
    keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0,
    policyCheck: (_req, ctx) => { contexts.push(ctx); },
  });
  await endpoint.start();
  node = hop(keys, endpoint.orPort);

  middleKeys = await loadOrCreateNodeKeys(path.join(dir, 'middle'));
  middleSwitch = new CircuitSwitch({
    identity: middleKeys.identity.publicKey, onionKeys: () => [middleKeys.onion],
    hooks: {
      extend: (t) => connectLink({ host: t.addresses[0].host, port: t.addresses[0].port, expectedIdentity: t.identity, identity: middleKeys.identity }),
    },
  });
  middleListener = await createLinkListener({ host: '127.0.0.1', port: 0, identity: middleKeys.identity, onChannel: (ch) => middleSwitch.attach(ch) });
  middle = hop(middleKeys, middleListener.port);
});

afterAll(async () => {
  middleSwitch?.close();
  await middleListener?.close();
  await endpoint?.close();
  await store?.close();
  await fsp.rm(dir, { recursive: true, force: true });
});

async function circuitTo(path: HopTarget[]): Promise<ClientCircuit> {
  const ch = await connectLink({ host: '127.0.0.1', port: path[0].orPort, expectedIdentity: path[0].identity });
  const c = ClientCircuit.allocate(new ClientLink(ch));
  await c.create(path[0]);
  for (const h of path.slice(1)) await c.extend(h);
  return c;
}

async function roundTrip(ch: StorageChannel): Promise<void> {
  const data = randomBytes(300_000);
  const id = shareId(data);
  await ch.request({ type: 'put', id, data, leaseSeconds: 0 });
  const got = await ch.request({ type: 'get', id, offset: 0, length: 0 });
  expect(got.data.equals(data)).toBe(true);
}

describe('direct sessions (SPEC.md §9.13.2)', () => {
  it('TLS, the node proves its identity, then storage frames', async () => {
    const s = await connectStorageDirect({ host: '127.0.0.1', port: endpoint.storagePort, expectedIdentity: keys.identity.publicKey });
    const ch = new StorageChannel(s);
    contexts.length = 0;
    await roundTrip(ch);
    expect(contexts.every((c) => c.viaCircuit === false)).toBe(true);
    ch.close();
  });

  it('a node that proves another identity is refused: LINK_IDENTITY_MISMATCH', async () => {
    await expect(connectStorageDirect({ host: '127.0.0.1', port: endpoint.storagePort, expectedIdentity: middleKeys.identity.publicKey }))
      .rejects.toMatchObject({ code: 'LINK_IDENTITY_MISMATCH' });
  });

  it('a link listener is not a storage port: LINK_PROTOCOL_VIOLATION', async () => {
    await expect(connectStorageDirect({ host: '127.0.0.1', port: endpoint.orPort, expectedIdentity: keys.identity.publicKey, timeoutMs: 3000 }))
      .rejects.toMatchObject({ code: expect.stringMatching(/LINK_PROTOCOL_VIOLATION|LINK_TLS_FAILED|LINK_HANDSHAKE_TIMEOUT/) });
  });

  it('garbage bytes (not TLS) cost only their own connection', async () => {
    await new Promise<void>((resolve) => {
      const s = net.connect(endpoint.storagePort, '127.0.0.1', () => s.write(randomBytes(4096)));
      s.on('error', () => {});
      s.on('close', () => resolve());
    });
    const ch = new StorageChannel(await connectStorageDirect({ host: '127.0.0.1', port: endpoint.storagePort, expectedIdentity: keys.identity.publicKey }));
    await roundTrip(ch);
    ch.close();
  });

  it('garbage frames inside TLS get one error response, then the session ends; others go on', async () => {
    const s = await connectStorageDirect({ host: '127.0.0.1', port: endpoint.storagePort, expectedIdentity: keys.identity.publicKey });
    const got: Buffer[] = [];
    s.on('data', (b: Buffer) => got.push(b));
    const ended = new Promise<void>((r) => s.once('end', () => r()));
    s.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 1, 2, 3]));
    await ended;
    expect(Buffer.concat(got).toString('latin1')).toContain('STORAGE_FRAME_TOO_LARGE');
    s.destroy();
    // A request that is a frame but not a Request is answered and the session continues.
    const s2 = await connectStorageDirect({ host: '127.0.0.1', port: endpoint.storagePort, expectedIdentity: keys.identity.publicKey });
    const ch2 = new StorageChannel(s2);
    s2.write(frameHeader(3));
    s2.write(Buffer.from([0xff, 0xff, 0xff]));
    await roundTrip(ch2).catch(() => {}); // the stray answer to reqId 0 closes this channel: both fine
    const ch3 = new StorageChannel(await connectStorageDirect({ host: '127.0.0.1', port: endpoint.storagePort, expectedIdentity: keys.identity.publicKey }));
    await roundTrip(ch3);
    ch3.close();
    s2.destroy();
  });

  it('the hello is exactly magic + one AUTHENTICATE body', () => {
    expect(DIRECT_HELLO_BYTES).toBe(8 + 509);
  });
});

describe('circuits ending at the storage node (SPEC.md §9.13.1)', () => {
  it('guard/middle → storage node: BEGIN_STORAGE serves the protocol, flagged as via a circuit', async () => {
    const c = await circuitTo([middle, node]);
    const { stream } = await c.openStream({ kind: 'begin_storage' });
    const ch = new StorageChannel(stream);
    contexts.length = 0;
    await roundTrip(ch);
    expect(contexts.length).toBeGreaterThan(0);
    expect(contexts.every((x) => x.viaCircuit === true)).toBe(true);
    ch.close();
    c.destroy();
  });

  it('a one-hop circuit from a client counts as direct', async () => {
    const c = await circuitTo([node]);
    const { stream } = await c.openStream({ kind: 'begin_storage' });
    const ch = new StorageChannel(stream);
    contexts.length = 0;
    await ch.request({ type: 'stat' });
    expect(contexts).toEqual([{ viaCircuit: false }]);
    ch.close();
    c.destroy();
  });

  it('a relay newer than the node\'s consensus: the node fetches the consensus and then counts the circuit as a circuit', async () => {
    // A second node whose consensus does not list the middle relay yet; the refresh brings one that does.
    const keys2 = await loadOrCreateNodeKeys(path.join(dir, 'node2'));
    const store2 = await ShareStore.open({ dir: path.join(dir, 'node2'), quotaBytes: 16 * 1024 * 1024 });
    const ctx2: RequestContext[] = [];
    let listed: { identity: Buffer; address: string }[] = [];
    let refreshes = 0;
    const ep2 = new StorageEndpoint({
      keys: () => keys2, store: store2, host: '127.0.0.1', orPort: 0, storagePort: 0,
      policyCheck: (_req, ctx) => { ctx2.push(ctx); },
      consensus: () => ({ relays: listed }),
      refreshConsensus: async () => {
        refreshes++;
        await new Promise((r) => setTimeout(r, 50));
        listed = [{ identity: middleKeys.identity.publicKey, address: '127.0.0.1' }];
      },
    });
    await ep2.start();
    try {
      const c = await circuitTo([middle, hop(keys2, ep2.orPort)]);
      const { stream } = await c.openStream({ kind: 'begin_storage' });
      const ch = new StorageChannel(stream);
      await ch.request({ type: 'stat' });
      expect(refreshes).toBe(1);
      expect(ctx2).toEqual([{ viaCircuit: true }]);
      ch.close();
      c.destroy();
    } finally {
      await ep2.close();
      await store2.close();
    }
  });

  it('BEGIN and BEGIN_DIR are refused: a storage node is no exit and no directory', async () => {
    const c = await circuitTo([middle, node]);
    await expect(c.openStream({ kind: 'begin', host: '127.0.0.1', port: 80 }, 5000)).rejects.toMatchObject({ code: expect.stringMatching(/EXIT/) });
    await expect(c.openStream({ kind: 'begin_dir' }, 5000)).rejects.toBeTruthy();
    c.destroy();
  });

  it('EXTEND2 through a storage node is refused (it never extends)', async () => {
    const c = await circuitTo([node]);
    await expect(c.extend(middle)).rejects.toMatchObject({ code: 'CIRCUIT_DESTROYED' });
  });
});

describe('the storage OR port applies the relay\'s CREATE2 limits (SPEC.md §7b.9)', () => {
  it('past the per-address bucket a CREATE2 gets DESTROY(RESOURCELIMIT); the link stays', async () => {
    const { StorageEndpoint: SE } = await import('../../storage/endpoint');
    const { ntorClientCreate } = await import('../../src/crypto/ntor');
    const { CellCommand } = await import('../../src/wire/cell');
    const { encodeCreate2, decodeDestroy, DestroyReason } = await import('../../src/wire/messages');
    const strict = new SE({
      keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0,
      limits: { circuitRate: 0, circuitBurst: 3, circuitMinConnections: 0 },
    });
    await strict.start();
    try {
      const ch = await connectLink({ host: '127.0.0.1', port: strict.orPort, expectedIdentity: keys.identity.publicKey });
      const answers = new Map<number, number>();
      ch.on('cell', (c) => { if (c.command === CellCommand.CREATED2) answers.set(c.circId, -1); else if (c.command === CellCommand.DESTROY) answers.set(c.circId, decodeDestroy(c.payload)); });
      const ids: number[] = [];
      for (let i = 0; i < 6; i++) {
        const id = ch.allocateCircId();
        ids.push(id);
        ch.send(id, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: ntorClientCreate({ id: keys.identity.publicKey, onionKey: keys.onion.publicKey }).onionskin }));
      }
      for (let i = 0; i < 500 && answers.size < 6; i++) await new Promise((r) => setTimeout(r, 10));
      expect(ids.map((id) => answers.get(id))).toEqual([-1, -1, -1, DestroyReason.RESOURCELIMIT, DestroyReason.RESOURCELIMIT, DestroyReason.RESOURCELIMIT]);
      expect(ch.closed).toBe(false);
      ch.close();
    } finally {
      await strict.close();
    }
  });

  it('a link past the per-address cap is closed and counted, as a relay counts it', async () => {
    const { StorageEndpoint: SE } = await import('../../storage/endpoint');
    const { createRegistry } = await import('../../src/ops/metrics');
    const registry = createRegistry('storage');
    const capped = new SE({ keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0, limits: { maxConnectionsPerAddress: 1 }, registry });
    await capped.start();
    const refused = async () => (await registry.getSingleMetric('bitcloud_dos_refusals_total')!.get()).values
      .filter((v) => v.labels.kind === 'connections_per_address').reduce((a, v) => a + v.value, 0);
    try {
      const first = await connectLink({ host: '127.0.0.1', port: capped.orPort, expectedIdentity: keys.identity.publicKey });
      // Closed at accept, before TLS: the second link never opens.
      await expect(connectLink({ host: '127.0.0.1', port: capped.orPort, expectedIdentity: keys.identity.publicKey })).rejects.toMatchObject({ code: expect.stringMatching(/^LINK_/) });
      expect(first.closed).toBe(false);
      expect(await refused()).toBe(1);
      first.close();
    } finally {
      await capped.close();
    }
  });

  it('connections still in their handshake count against the per-address cap: the one past it is closed at once (SPEC.md §7b.9)', async () => {
    const { StorageEndpoint: SE } = await import('../../storage/endpoint');
    const { createRegistry } = await import('../../src/ops/metrics');
    const registry = createRegistry('storage');
    // No consensus lists 127.0.0.1, so nothing from it is exempt.
    const capped = new SE({
      keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0, registry,
      limits: { maxConnectionsPerAddress: 3 }, consensus: () => ({ relays: [] }),
    });
    await capped.start();
    const refused = async () => (await registry.getSingleMetric('bitcloud_dos_refusals_total')!.get()).values
      .filter((v) => v.labels.kind === 'connections_per_address').reduce((a, v) => a + v.value, 0);
    try {
      // One finished link (counted once, not again when its handshake completes) and two
      // connections that never send a byte: their TLS handshakes stay in progress.
      const link = await connectLink({ host: '127.0.0.1', port: capped.orPort, expectedIdentity: keys.identity.publicKey });
      const held = await holdConnections(capped.orPort, 2);
      const [fourth] = await holdConnections(capped.orPort, 1);
      // Closed at accept and counted as a refusal; a close by the 10 s handshake timeout would be
      // neither (and would have closed the two held before it).
      await fourth.closed;
      expect(held.every((h) => !h.socket.destroyed) && !link.closed).toBe(true);
      expect(await refused()).toBe(1);
      expect(capped.dos.size).toBe(1);
      // Each closed connection gives its place back exactly once: then the address is forgotten.
      for (const h of held) h.socket.destroy();
      link.close('test done');
      await expect.poll(() => capped.dos.size, { timeout: 30_000 }).toBe(0);
      // The cap is free again: a new link completes its handshake (a refused one would reject).
      const again = await connectLink({ host: '127.0.0.1', port: capped.orPort, expectedIdentity: keys.identity.publicKey });
      expect(again.closed).toBe(false);
      expect(await refused()).toBe(1);
      again.close('test done');
    } finally {
      await capped.close();
    }
  });

  it('a new consensus listing the relay of a counted link gives its place back: a further connection from that address is admitted (SPEC.md §7b.9)', async () => {
    const { StorageEndpoint: SE } = await import('../../storage/endpoint');
    // The relay is listed at another address than the one it connects from (a second interface).
    let consensus: { relays: { identity: Buffer; address: string }[] } = { relays: [] };
    const capped = new SE({
      keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0,
      limits: { maxConnectionsPerAddress: 1 }, consensus: () => consensus,
    });
    await capped.start();
    const connect = () => connectLink({ host: '127.0.0.1', port: capped.orPort, expectedIdentity: keys.identity.publicKey, identity: middleKeys.identity });
    try {
      // Not listed yet: its link takes the one place of 127.0.0.1, and the next is refused.
      const first = await connect();
      await expect(connect()).rejects.toMatchObject({ code: expect.stringMatching(/^LINK_/) });
      consensus = { relays: [{ identity: middleKeys.identity.publicKey, address: '192.0.2.1' }] };
      const second = await connect();
      expect(first.closed || second.closed).toBe(false);
      expect(capped.dos.size).toBe(0);
      first.close('test done');
      second.close('test done');
    } finally {
      await capped.close();
    }
  });

  it('connections from an address the consensus lists a relay at are exempt only until their handshake ends: unauthenticated links are counted, the relay\'s is not (SPEC.md §7b.9)', async () => {
    const { StorageEndpoint: SE } = await import('../../storage/endpoint');
    // Every node of a local network is at 127.0.0.1: its relays' handshakes are exempt by address.
    const { createRegistry } = await import('../../src/ops/metrics');
    const registry = createRegistry('storage');
    const capped = new SE({
      keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0, registry,
      limits: { maxConnectionsPerAddress: 1 }, consensus: () => ({ relays: [{ identity: middleKeys.identity.publicKey, address: '127.0.0.1' }] }),
    });
    await capped.start();
    const refused = async (): Promise<number> => ((await registry.getSingleMetric('bitcloud_dos_refusals_total')?.get())?.values ?? [])
      .filter((v) => v.labels.kind === 'connections_per_address').reduce((a, v) => a + v.value, 0);
    try {
      // Three links that end their handshake as clients: the first takes the address's one place,
      // the two after it are closed right after their handshakes.
      const links: Channel[] = [];
      for (let i = 0; i < 3; i++) links.push(await connectLink({ host: '127.0.0.1', port: capped.orPort, expectedIdentity: keys.identity.publicKey }));
      await expect.poll(() => links.filter((l) => l.closed).length, { timeout: 2000 }).toBe(2);
      expect(links[0].closed).toBe(false);
      expect(await refused()).toBe(2);
      // The listed relay proves its identity from the same address: not counted, not closed.
      const relay = await connectLink({ host: '127.0.0.1', port: capped.orPort, expectedIdentity: keys.identity.publicKey, identity: middleKeys.identity });
      await new Promise((r) => setTimeout(r, 100));
      expect(relay.closed).toBe(false);
      expect(await refused()).toBe(2);
      links[0].close('test done');
      await expect.poll(() => capped.dos.size, { timeout: 2000 }).toBe(0);
      relay.close('test done');
    } finally {
      await capped.close();
    }
  });
});

describe('links per proven identity at the storage OR port (SPEC.md §7b.9)', () => {
  it('a relay holds at most 8 links: the 9th is closed right after its handshake and counted, the 8 stay', async () => {
    const { StorageEndpoint: SE } = await import('../../storage/endpoint');
    const { createRegistry } = await import('../../src/ops/metrics');
    const registry = createRegistry('storage');
    const node = new SE({
      keys: () => keys, store, host: '127.0.0.1', orPort: 0, storagePort: 0, registry,
      consensus: () => ({ relays: [{ identity: middleKeys.identity.publicKey, address: '127.0.0.1' }] }),
    });
    await node.start();
    const refused = async (): Promise<number> => ((await registry.getSingleMetric('bitcloud_dos_refusals_total')?.get())?.values ?? [])
      .filter((v) => v.labels.kind === 'links_per_identity').reduce((a, v) => a + v.value, 0);
    const links: Channel[] = [];
    try {
      for (let i = 0; i < 9; i++) links.push(await connectLink({ host: '127.0.0.1', port: node.orPort, expectedIdentity: keys.identity.publicKey, identity: middleKeys.identity }));
      await expect.poll(() => links[8].closed, { timeout: 2000 }).toBe(true);
      await new Promise((r) => setTimeout(r, 100));
      expect(links.slice(0, 8).every((l) => !l.closed)).toBe(true);
      expect(await refused()).toBe(1);
    } finally {
      for (const l of links) l.close('test done');
      await node.close();
    }
  });
});

describe('direct sessions: per-address cap, idle and request deadlines (SPEC.md §9.13.2)', () => {
  const closedBy = async (registry: import('../../src/ops/metrics').Registry, reason: string): Promise<number> =>
    ((await registry.getSingleMetric('bitcloud_storage_direct_closed_total')?.get())?.values ?? [])
      .filter((v) => v.labels.reason === reason).reduce((a, v) => a + v.value, 0);

  /** A raw TCP connection from `from` that sends nothing (its TLS handshake stays in progress). */
  const holdFrom = (port: number, from: string) => new Promise<{ socket: net.Socket; closed: Promise<void> }>((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: from }, () => resolve({ socket, closed }));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('error', reject);
    socket.on('error', () => {});
  });

  it('a 17th session from one address is closed at accept and counted; another address is served', async () => {
    const { StorageEndpoint: SE } = await import('../../storage/endpoint');
    const { createRegistry } = await import('../../src/ops/metrics');
    const registry = createRegistry('storage');
    const own = await ShareStore.open({ dir: path.join(dir, 'per-address'), quotaBytes: 64 * 1024 * 1024, registry });
    // Every address on this host is exempt by default (clientAddressKey); here each 127.0.0.x counts.
    const capped = new SE({ keys: () => keys, store: own, host: '127.0.0.1', orPort: 0, storagePort: 0, registry, directAddressKey: (remote) => remote ?? null });
    await capped.start();
    const held: { socket: net.Socket; closed: Promise<void> }[] = [];
    try {
      for (let i = 0; i < 16; i++) held.push(await holdFrom(capped.storagePort, '127.0.0.2'));
      const extra = await holdFrom(capped.storagePort, '127.0.0.2');
      held.push(extra);
      await extra.closed;
      expect(held.slice(0, 16).every((h) => !h.socket.destroyed)).toBe(true);
      expect(await closedBy(registry, 'per_address')).toBe(1);
      const ch = new StorageChannel(await connectStorageDirect({ host: '127.0.0.1', port: capped.storagePort, expectedIdentity: keys.identity.publicKey }));
      await roundTrip(ch);
      ch.close();
      // The refusal is a close of the per-address rule, not a failed TLS handshake (SPEC.md §9.13.2).
      const errors = (await registry.getSingleMetric('bitcloud_storage_errors_total')?.get())?.values ?? [];
      expect(errors.filter((v) => v.value > 0).map((v) => v.labels.code)).toEqual([]);
    } finally {
      for (const h of held) h.socket.destroy();
      await capped.close();
      await own.close();
    }
  });

  it('a session on which no byte moves either way for the idle time is closed and counted', async () => {
    const { StorageEndpoint: SE } = await import('../../storage/endpoint');
    const { createRegistry } = await import('../../src/ops/metrics');
    const registry = createRegistry('storage');
    const own = await ShareStore.open({ dir: path.join(dir, 'idle'), quotaBytes: 64 * 1024 * 1024, registry });
    const e = new SE({ keys: () => keys, store: own, host: '127.0.0.1', orPort: 0, storagePort: 0, registry, directIdleMs: 300 });
    await e.start();
    try {
      const s = await connectStorageDirect({ host: '127.0.0.1', port: e.storagePort, expectedIdentity: keys.identity.publicKey });
      s.on('data', () => {});
      await new Promise<void>((r) => { if (s.destroyed) r(); else s.once('close', () => r()); });
      expect(await closedBy(registry, 'idle')).toBe(1);
    } finally {
      await e.close();
      await own.close();
    }
  }, 10_000);

  it('a request whose body is not received in full within the request time is closed and counted, however often a byte comes', async () => {
    const { StorageEndpoint: SE } = await import('../../storage/endpoint');
    const { createRegistry } = await import('../../src/ops/metrics');
    const registry = createRegistry('storage');
    const own = await ShareStore.open({ dir: path.join(dir, 'deadline'), quotaBytes: 64 * 1024 * 1024, registry });
    const e = new SE({ keys: () => keys, store: own, host: '127.0.0.1', orPort: 0, storagePort: 0, registry, directIdleMs: 5_000, directRequestMs: 500 });
    await e.start();
    try {
      const s = await connectStorageDirect({ host: '127.0.0.1', port: e.storagePort, expectedIdentity: keys.identity.publicKey });
      s.on('data', () => {});
      const closed = new Promise<void>((r) => { if (s.destroyed) r(); else s.once('close', () => r()); });
      s.write(frameHeader(1000));
      const drip = setInterval(() => { if (!s.destroyed) s.write(Buffer.from([0])); }, 50);
      try { await closed; } finally { clearInterval(drip); }
      expect(await closedBy(registry, 'request_deadline')).toBe(1);
      expect(await closedBy(registry, 'idle')).toBe(0);
    } finally {
      await e.close();
      await own.close();
    }
  }, 10_000);
});
