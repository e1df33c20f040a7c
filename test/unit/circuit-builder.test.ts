// SPEC.md §7.2, §7.3, §7b.11: the client's circuit builder over in-memory guard links (the link
// opener is replaced, so each test decides when and how a guard answers).
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { err, type BitcloudError } from '../../src/errors';
import { CellCommand, type Cell } from '../../src/wire/cell';
import { DestroyReason, encodeDestroy } from '../../src/wire/messages';
import type { CellChannel } from '../../src/link/cell-channel';
import { BuildTimeoutEstimator } from '../../src/client/build-timeout';
import { CircuitBuilder, type ClientRelay } from '../../src/client/circuit-builder';
import { GuardSet, type Guard } from '../../src/client/guards';
import type { HopTarget } from '../../src/client/client-circuit';

/** What the replaced connectLink does; each test sets it. */
let connectImpl: () => Promise<CellChannel> = () => Promise.reject(err('LINK_CONNECT_FAILED', 'no link in this test'));
vi.mock('../../src/link', async (importOriginal) => ({
  ...await importOriginal<typeof import('../../src/link')>(),
  connectLink: () => connectImpl(),
}));

/** An in-memory link end: records what the client sends; `onSend` answers. */
class FakeChannel extends EventEmitter implements CellChannel {
  closed = false;
  readonly peerIdentity = null;
  readonly isInitiator = true;
  readonly sent: { circId: number; command: number }[] = [];
  onSend: (circId: number, command: number) => void = () => {};
  private nextId = 0x80000001;
  send(circId: number, command: number): boolean {
    this.sent.push({ circId, command });
    this.onSend(circId, command);
    return true;
  }
  allocateCircId(): number { return this.nextId++; }
  releaseCircId(): void {}
  close(): void { this.fail(); }
  fail(e?: BitcloudError): void {
    if (this.closed) return;
    this.closed = true;
    this.emit('close', e);
  }
  deliver(circId: number, command: number, payload: Buffer): void {
    const p = Buffer.alloc(509);
    payload.copy(p);
    this.emit('cell', { circId, command, payload: p } as Cell);
  }
}

const fp = (i: number) => i.toString(16).padStart(64, '0');
function hop(i: number): HopTarget {
  return { identity: Buffer.alloc(32, i), fingerprint: fp(i), onionKey: Buffer.alloc(32, 100 + i), address: `10.0.0.${i}`, orPort: 9000 + i };
}
const path = [hop(1), hop(2), hop(3)];
const clock = 1_000_000;
function guardSetOf(...ids: number[]): GuardSet {
  return new GuardSet(null, () => clock, { retryBaseMs: 60_000 }, ids.map((i) => ({
    fingerprint: fp(i), addedAt: 0, failures: 0, retryAt: 0, lastSuccessAt: null, confirmed: false, unlistedSince: null,
  })));
}
const ticks = async (n = 5) => { for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r)); };

afterEach(() => { connectImpl = () => Promise.reject(err('LINK_CONNECT_FAILED', 'no link in this test')); });

describe('circuit builder (SPEC.md §7.3, §7b.11)', () => {
  it('a build that timed out while the guard link was opening allocates nothing when the link comes up late', async () => {
    const ch = new FakeChannel();
    let openLink!: (c: CellChannel) => void;
    connectImpl = () => new Promise<CellChannel>((r) => { openLink = r; });
    const builder = new CircuitBuilder({
      relays: () => [], guards: guardSetOf(1),
      buildTimeout: new BuildTimeoutEstimator({ initialTimeoutMs: 20, minTimeoutMs: 1 }),
    });
    await expect(builder.buildPath(path)).rejects.toMatchObject({ code: 'CIRCUIT_BUILD_TIMEOUT', detail: { hop: 0 } });
    openLink(ch);
    await ticks();
    expect(ch.sent).toEqual([]);
    const link = await builder.linkTo(path[0]);
    expect(link.circuits.size).toBe(0);
    expect(link.idleSince).not.toBeNull(); // closeIdleLinks may close it
    await builder.close();
  });

  it('a guard that refuses CREATE2 (DESTROY) counts a guard failure (SPEC.md §7.2)', async () => {
    const ch = new FakeChannel();
    ch.onSend = (circId, command) => {
      if (command === CellCommand.CREATE2) queueMicrotask(() => ch.deliver(circId, CellCommand.DESTROY, encodeDestroy(DestroyReason.RESOURCELIMIT)));
    };
    connectImpl = () => Promise.resolve(ch);
    const guards = guardSetOf(1);
    const builder = new CircuitBuilder({ relays: () => [], guards });
    await expect(builder.buildPath(path)).rejects.toMatchObject({ code: 'CIRCUIT_DESTROYED', detail: { hop: 0 } });
    expect(guards.guards[0].failures).toBe(1);
    expect(guards.guards[0].retryAt).toBeGreaterThan(clock);
    await builder.close();
  });

  it('the build timeout learns from three-hop builds only, not from one-hop directory circuits (SPEC.md §7.3)', async () => {
    const ch = new FakeChannel(); // a guard that never answers CREATE2
    connectImpl = () => Promise.resolve(ch);
    const builder = new CircuitBuilder({
      relays: () => [], guards: guardSetOf(1),
      buildTimeout: new BuildTimeoutEstimator({ initialTimeoutMs: 20, minTimeoutMs: 1 }),
    });
    await expect(builder.buildPath([hop(1)])).rejects.toMatchObject({ code: 'CIRCUIT_BUILD_TIMEOUT', detail: { hop: 0 } });
    expect(builder.buildTimeout.sampleCount).toBe(0);
    await expect(builder.buildPath(path)).rejects.toMatchObject({ code: 'CIRCUIT_BUILD_TIMEOUT', detail: { hop: 0 } });
    expect(builder.buildTimeout.toJSON().samples).toEqual([{ ms: 20, timedOut: true }]);
    await builder.close();
  });

  it('a guard that answers CREATE2 with a bad CREATED2 counts a guard failure (SPEC.md §7.2)', async () => {
    const ch = new FakeChannel();
    ch.onSend = (circId, command) => {
      if (command === CellCommand.CREATE2) queueMicrotask(() => ch.deliver(circId, CellCommand.CREATED2, Buffer.from([0, 64])));
    };
    connectImpl = () => Promise.resolve(ch);
    const guards = guardSetOf(1);
    const builder = new CircuitBuilder({ relays: () => [], guards });
    await expect(builder.buildPath(path)).rejects.toMatchObject({ detail: { hop: 0 } });
    expect(guards.guards[0].failures).toBe(1);
    await builder.close();
  });

  it('closing the client during a build counts no guard failure', async () => {
    const ch = new FakeChannel();
    connectImpl = () => Promise.resolve(ch);
    const guards = guardSetOf(1);
    const builder = new CircuitBuilder({ relays: () => [], guards });
    const b = builder.buildPath(path);
    await ticks();
    await builder.close();
    await expect(b).rejects.toMatchObject({ code: 'CIRCUIT_DESTROYED', detail: { hop: 0 } });
    expect(guards.guards[0].failures).toBe(0);
  });

  it('a guard link that closes with an error of the guard counts one guard failure; a clean close or our own fault none (SPEC.md §1.8, §7.2)', async () => {
    const cases = [
      ['LINK_PEER_SILENT', 1], ['LINK_IO', 1], ['LINK_PROTOCOL_VIOLATION', 1], ['CELL_MALFORMED', 1], ['CELL_TRUNCATED', 1],
      ['CELL_UNKNOWN_COMMAND', 1], ['LINK_TLS_FAILED', 1], ['LINK_OUTPUT_OVERFLOW', 1], ['LINK_INTERNAL', 0], [undefined, 0],
    ] as const;
    for (const [code, want] of cases) {
      const ch = new FakeChannel();
      connectImpl = () => Promise.resolve(ch);
      const guards = guardSetOf(1);
      const builder = new CircuitBuilder({ relays: () => [], guards });
      await builder.linkTo(path[0]);
      ch.fail(code ? err(code, 'test') : undefined);
      expect({ code, failures: guards.guards[0].failures }).toEqual({ code, failures: want });
      await builder.close();
    }
  });

  it('a guard link that goes silent under a build counts one guard failure, not two', async () => {
    const ch = new FakeChannel();
    ch.onSend = (_circId, command) => {
      if (command === CellCommand.CREATE2) queueMicrotask(() => ch.fail(err('LINK_PEER_SILENT', 'test')));
    };
    connectImpl = () => Promise.resolve(ch);
    const guards = guardSetOf(1);
    const builder = new CircuitBuilder({ relays: () => [], guards });
    await expect(builder.buildPath(path)).rejects.toMatchObject({ code: 'CIRCUIT_DESTROYED', detail: { hop: 0 } });
    expect(guards.guards[0].failures).toBe(1);
    await builder.close();
  });

  it('a builder for directory circuits takes its guard links from the main builder: one link per guard, closed when idle (SPEC.md §7b.11)', async () => {
    const opened: FakeChannel[] = [];
    connectImpl = () => { const ch = new FakeChannel(); opened.push(ch); return Promise.resolve(ch); };
    const guards = guardSetOf(1);
    const main = new CircuitBuilder({ relays: () => [], guards });
    const dir = new CircuitBuilder({ relays: () => [], guards, linksFrom: main });
    await dir.linkTo(hop(1)); // a one-hop directory circuit's link
    await main.linkTo(hop(1)); // a user circuit's link to the same guard
    expect(opened).toHaveLength(1);
    main.closeIdleLinks(0, Date.now() + 1);
    await ticks();
    expect(main.linkCount + dir.linkCount).toBe(0);
    expect(opened.every((c) => c.closed)).toBe(true);
    await dir.close();
    await main.close();
  });

  it('a builder that takes its links from another closes that one\'s idle links when asked (the storage client\'s circuits over its directory links, SPEC.md §7b.11)', async () => {
    const opened: FakeChannel[] = [];
    connectImpl = () => { const ch = new FakeChannel(); opened.push(ch); return Promise.resolve(ch); };
    const guards = guardSetOf(1);
    const dir = new CircuitBuilder({ relays: () => [], guards });
    const circuits = new CircuitBuilder({ relays: () => [], guards, linksFrom: dir });
    await dir.linkTo(hop(1));
    await circuits.linkTo(hop(1));
    expect(opened).toHaveLength(1);
    circuits.closeIdleLinks(0, Date.now() + 1); // what the circuit manager's maintenance calls
    await ticks();
    expect(dir.linkCount).toBe(0);
    expect(opened.every((c) => c.closed)).toBe(true);
    await circuits.close();
    await dir.close();
  });

  it('a guard link that cannot be opened counts one guard failure however many builds waited on it (SPEC.md §7.2)', async () => {
    let opens = 0;
    let fail!: (e: Error) => void;
    connectImpl = () => { opens++; return new Promise<CellChannel>((_r, reject) => { fail = reject; }); };
    const guards = guardSetOf(1);
    const builder = new CircuitBuilder({ relays: () => [], guards });
    const builds = Array.from({ length: 20 }, () => builder.buildPath(path));
    await ticks();
    fail(err('LINK_CONNECT_FAILED', 'test: the guard is down'));
    for (const b of builds) await expect(b).rejects.toMatchObject({ code: 'LINK_CONNECT_FAILED', detail: { hop: 0 } });
    expect(opens).toBe(1);
    expect(guards.guards[0].failures).toBe(1);
    expect(guards.guards[0].retryAt).toBe(clock + 60_000);
    // A later attempt that fails again is a second failure.
    connectImpl = () => Promise.reject(err('LINK_CONNECT_FAILED', 'test: still down'));
    await expect(builder.buildPath(path)).rejects.toMatchObject({ code: 'LINK_CONNECT_FAILED' });
    expect(guards.guards[0].failures).toBe(2);
    await builder.close();
  });

  it('a link to a relay that is not a sampled guard marks nothing', async () => {
    const ch = new FakeChannel();
    connectImpl = () => Promise.resolve(ch);
    const guards = guardSetOf(1);
    const builder = new CircuitBuilder({ relays: () => [], guards });
    await builder.linkTo(hop(7));
    ch.fail(err('LINK_PEER_SILENT', 'test'));
    expect(guards.guards.map((g) => g.failures)).toEqual([0]);
    await builder.close();
  });
});

describe('retries of a build to a fixed last hop (SPEC.md §7.1, §7.3)', () => {
  /** Relay i: Running, Valid, Fast (a guard too with `guard`), alone in 10.i.0.0/16. */
  const relay = (i: number, guard = false): ClientRelay => ({
    identity: Buffer.from(fp(i), 'hex'), fingerprint: fp(i), address: `10.${i}.0.1`, orPort: 9000 + i, onionKey: Buffer.alloc(32, i),
    flags: new Set(guard ? ['Running', 'Valid', 'Fast', 'Guard'] : ['Running', 'Valid', 'Fast']), weight: 100,
    exitPolicy: ['reject *:*'], family: [], roles: ['relay'],
  } as unknown as ClientRelay);

  /** A builder whose every attempt fails at the extension to the last hop; the middles tried, per build. */
  async function middlesTried(middles: number[], builds: number): Promise<string[][]> {
    const relays = [relay(1, true), ...middles.map((i) => relay(i)), relay(50)];
    const builder = new CircuitBuilder({ relays: () => relays, guards: [{ fingerprint: fp(1) } as Guard], maxAttempts: 3 });
    let tried: string[] = [];
    vi.spyOn(builder, 'buildPath').mockImplementation(async (p) => {
      tried.push(p[1].fingerprint);
      throw err('CIRCUIT_DESTROYED', 'the middle could not reach the storage node', { hop: p.length - 1 });
    });
    const out: string[][] = [];
    for (let b = 0; b < builds; b++) {
      tried = [];
      await expect(builder.build({ storageNode: relays[relays.length - 1] })).rejects.toMatchObject({ code: 'CIRCUIT_DESTROYED' });
      out.push(tried);
    }
    await builder.close();
    return out;
  }

  it('the next attempt takes another middle than the attempts that failed at the last hop', async () => {
    // Four middles, three attempts: any repeat is a middle taken again while another was left.
    for (const tried of await middlesTried([2, 3, 4, 5], 30)) expect(new Set(tried).size).toBe(3);
  });

  it('with no other middle left, the failed one is taken again', async () => {
    for (const tried of await middlesTried([2], 3)) expect(tried).toEqual([fp(2), fp(2), fp(2)]);
  });
});
