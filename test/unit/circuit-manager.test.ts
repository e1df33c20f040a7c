// SPEC.md §7b.11: the client's circuit manager, over a hand-made relay list (links never open:
// the link opener is replaced, so these tests see only what the manager decides).
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { err, isBitcloudError } from '../../src/errors';
import type { ConsensusRelay } from '../../src/dir/types';
import { CircuitManager, MAX_RECENT_PORTS } from '../../src/client/circuit-manager';
import type { ClientCircuit } from '../../src/client/client-circuit';
import { prom } from '../../src/ops/metrics';

vi.mock('../../src/link', async (importOriginal) => ({
  ...await importOriginal<typeof import('../../src/link')>(),
  connectLink: () => Promise.reject(err('LINK_CONNECT_FAILED', 'no link in this test')),
}));

function relay(i: number, flags: string[], exitPolicy: string[]): ConsensusRelay {
  const identity = Buffer.alloc(32, i);
  return {
    identity, fingerprint: identity.toString('hex'), nickname: `r${i}`, onionKey: Buffer.alloc(32, 100 + i),
    address: `10.${i}.0.1`, orPort: 9000 + i, dirPort: 0, storagePort: 0,
    flags: new Set(['Running', 'Valid', 'Fast', ...flags]) as ConsensusRelay['flags'], weight: 1000, proven: 0,
    exitPolicy, family: [], roles: flags.includes('Exit') ? ['relay', 'exit'] : ['relay'],
    moderators: [], unmoderated: true, version: 'test',
  };
}

describe('circuit manager (SPEC.md §7b.11)', () => {
  it('preemptive circuits: a recent port no exit allows is skipped, the ports after it still get circuits', async () => {
    const relays = [relay(1, ['Guard'], ['reject *:*']), relay(2, [], ['reject *:*']), relay(3, ['Exit'], ['accept *:443', 'reject *:*'])];
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 1, maintenanceMs: 3_600_000 });
    const m = mgr as unknown as { recentPorts: Map<number, number>; maintain(): void };
    m.recentPorts.set(25, Date.now()); // no exit allows it
    m.recentPorts.set(443, Date.now());
    m.maintain();
    expect(mgr.circuitCount).toBe(1);
    await mgr.close();
  });

  it('requests to every port leave only the MAX_RECENT_PORTS most recently asked for remembered for preemptive circuits', async () => {
    // An exit for port 443 only: requests to any other port fail at once (PATH_NO_EXIT).
    const relays = [relay(1, ['Guard'], ['reject *:*']), relay(2, [], ['reject *:*']), relay(3, ['Exit'], ['accept *:443', 'reject *:*'])];
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 1, maintenanceMs: 3_600_000 });
    const m = mgr as unknown as { recentPorts: Map<number, number> };
    // A local program asks for 5000 other ports (each request fails, but each port was asked for).
    for (let port = 1000; port < 6000; port++) {
      await expect(mgr.connect({ host: 'example.com', port, isolation: 'k' as never })).rejects.toMatchObject({ code: 'PATH_NO_EXIT' });
    }
    expect(m.recentPorts.size).toBe(MAX_RECENT_PORTS);
    expect([...m.recentPorts.keys()]).toEqual(Array.from({ length: MAX_RECENT_PORTS }, (_, i) => 6000 - MAX_RECENT_PORTS + i));
    // Asking again for a remembered port makes it the most recent, not a second entry.
    await expect(mgr.connect({ host: 'example.com', port: 5990, isolation: 'k' as never })).rejects.toMatchObject({ code: 'PATH_NO_EXIT' });
    expect(m.recentPorts.size).toBe(MAX_RECENT_PORTS);
    expect([...m.recentPorts.keys()].at(-1)).toBe(5990);
    await mgr.close();
  });

  it('a BEGIN that times out retires its circuit for new streams only: the streams it carries go on (SPEC.md §7b.6)', async () => {
    const relays = [relay(1, ['Guard'], ['reject *:*']), relay(2, [], ['reject *:*']), relay(3, ['Exit'], ['accept *:*'])];
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 0, maintenanceMs: 3_600_000, streamAttempts: 1 });
    // The exit answers CONNECTED to the first BEGIN and never to the second (openStream then sends
    // END(TIMEOUT) for it and rejects with STREAM_TIMEOUT).
    const streams = new Map<number, PassThrough>();
    let begins = 0;
    const events = new EventEmitter();
    const circ = Object.assign(events, {
      isOpen: true, dirtySince: null as number | null, createdAt: Date.now(), edge: { streams },
      destroyed: false,
      destroy() { this.destroyed = true; this.isOpen = false; for (const s of streams.values()) s.destroy(); streams.clear(); events.emit('close'); },
      openStream() {
        this.dirtySince ??= Date.now();
        if (++begins === 1) { const s = new PassThrough(); streams.set(begins, s); return Promise.resolve({ stream: s, connected: null }); }
        return Promise.reject(err('STREAM_TIMEOUT', 'no CONNECTED'));
      },
    });
    vi.spyOn(mgr.builder, 'build').mockImplementation(() => Promise.resolve({ circ: circ as unknown as ClientCircuit, path: relays }));
    const req = { host: 'example.com', port: 443, isolation: 'k' as never };
    const first = await mgr.connect(req);
    await expect(mgr.connect(req)).rejects.toMatchObject({ code: 'STREAM_TIMEOUT' });
    expect(circ.destroyed).toBe(false);
    expect(first.destroyed).toBe(false);
    const echoed = new Promise((r) => first.once('data', r));
    first.write('still here');
    expect(String(await echoed)).toBe('still here');
    // No new stream goes on it: the next request gets a circuit of its own.
    await mgr.connect(req).catch(() => {});
    expect(vi.mocked(mgr.builder.build)).toHaveBeenCalledTimes(2);
    await mgr.close();
  });

  /** A fake circuit whose BEGIN `answer` settles: resolve with a stream, or reject (closing the circuit first if `closes`). */
  function fakeCircuit(answer: 'connect' | { code: 'RELAY_PROTOCOL' | 'EXIT_CONNECT_REFUSED'; closes: boolean }) {
    const events = new EventEmitter();
    return Object.assign(events, {
      isOpen: true, closedWith: null as unknown, dirtySince: null as number | null, createdAt: Date.now(), edge: { streams: new Map() },
      destroy() { this.isOpen = false; events.emit('close'); },
      openStream() {
        if (answer === 'connect') return Promise.resolve({ stream: new PassThrough(), connected: null });
        const e = err(answer.code, 'refused in this test');
        if (answer.closes) { this.closedWith = e; this.isOpen = false; events.emit('close', e); }
        return Promise.reject(e);
      },
    }) as unknown as ClientCircuit;
  }
  const three = () => [relay(1, ['Guard'], ['reject *:*']), relay(2, [], ['reject *:*']), relay(3, ['Exit'], ['accept *:*'])];

  it('a stream whose circuit closes before CONNECTED (here a forged message, RELAY_PROTOCOL) is retried on another circuit', async () => {
    const relays = three();
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 0, maintenanceMs: 3_600_000 });
    const circs = [fakeCircuit({ code: 'RELAY_PROTOCOL', closes: true }), fakeCircuit('connect')];
    vi.spyOn(mgr.builder, 'build').mockImplementation(() => Promise.resolve({ circ: circs.shift()!, path: relays }));
    const stream = await mgr.connect({ host: 'example.com', port: 443, isolation: 'k' as never });
    expect(stream).toBeInstanceOf(PassThrough);
    expect(vi.mocked(mgr.builder.build)).toHaveBeenCalledTimes(2);
    await mgr.close();
  });

  it('a build that fails (NTOR_BAD_AUTH) is a failure of the circuit: the stream is retried on another', async () => {
    const relays = three();
    // One path per build, so the second circuit comes from the manager's retry, not the builder's.
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 0, maintenanceMs: 3_600_000, maxAttempts: 1 });
    let builds = 0;
    vi.spyOn(mgr.builder, 'buildPath').mockImplementation(() => (++builds === 1
      ? Promise.reject(err('NTOR_BAD_AUTH', 'bad AUTH in this test', { hop: 2 }))
      : Promise.resolve(fakeCircuit('connect'))));
    await expect(mgr.connect({ host: 'example.com', port: 443, isolation: 'k' as never })).resolves.toBeInstanceOf(PassThrough);
    expect(builds).toBe(2);
    await mgr.close();
  });

  it('an answer about the target from the exit (END(CONNECTREFUSED)) on an open circuit is final, and a circuit that keeps failing is tried 3 times in all', async () => {
    const relays = three();
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 0, maintenanceMs: 3_600_000 });
    vi.spyOn(mgr.builder, 'build').mockImplementation(() => Promise.resolve({ circ: fakeCircuit({ code: 'EXIT_CONNECT_REFUSED', closes: false }), path: relays }));
    await expect(mgr.connect({ host: 'example.com', port: 443, isolation: 'k' as never })).rejects.toMatchObject({ code: 'EXIT_CONNECT_REFUSED' });
    expect(vi.mocked(mgr.builder.build)).toHaveBeenCalledTimes(1);
    vi.mocked(mgr.builder.build).mockImplementation(() => Promise.resolve({ circ: fakeCircuit({ code: 'RELAY_PROTOCOL', closes: true }), path: relays }));
    await expect(mgr.connect({ host: 'example.com', port: 443, isolation: 'j' as never })).rejects.toMatchObject({ code: 'RELAY_PROTOCOL' });
    expect(vi.mocked(mgr.builder.build)).toHaveBeenCalledTimes(1 + 3);
    await mgr.close();
  });

  it('a flood of requests with new isolation keys builds at most maxPendingCircuits at once; the rest wait for a build to end, and one abandoned while waiting builds nothing', async () => {
    const relays = three();
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 0, maintenanceMs: 3_600_000, maxPendingCircuits: 2 });
    // Builds that end only when the test says so (the guard is slow, or the builds are many).
    const finish: Array<() => void> = [];
    vi.spyOn(mgr.builder, 'build').mockImplementation(() => new Promise((resolve) => {
      finish.push(() => resolve({ circ: fakeCircuit('connect'), path: relays }));
    }));
    const abandoned = new AbortController();
    // Each SOCKS connection with credentials of its own: a key of its own, so no build is shared.
    const requests = [0, 1, 2, 3, 4].map((i) => mgr.connect({ host: 'example.com', port: 443, isolation: `k${i}` as never }, i === 4 ? abandoned.signal : undefined));
    await new Promise((r) => setImmediate(r));
    expect(vi.mocked(mgr.builder.build)).toHaveBeenCalledTimes(2);
    abandoned.abort();
    await expect(requests[4]).rejects.toMatchObject({ code: 'STREAM_ABORTED' });
    // Each build that ends lets one waiting request launch its own.
    finish.shift()!();
    await expect(requests[0]).resolves.toBeInstanceOf(PassThrough);
    await new Promise((r) => setImmediate(r));
    expect(vi.mocked(mgr.builder.build)).toHaveBeenCalledTimes(3);
    while (finish.length > 0) { finish.shift()!(); await new Promise((r) => setImmediate(r)); }
    await expect(Promise.all(requests.slice(0, 4))).resolves.toHaveLength(4);
    // The abandoned request never launched a build.
    expect(vi.mocked(mgr.builder.build)).toHaveBeenCalledTimes(4);
    await mgr.close();
  });

  it('refuses a maxPendingCircuits that is not an integer ≥ 1 (CONFIG_INVALID): 0 or less would leave waiting streams waiting forever, NaN would lift the limit', async () => {
    for (const maxPendingCircuits of [0, -1, NaN, 1.5, Infinity]) {
      try { new CircuitManager({ relays: () => [], maintenanceMs: 3_600_000, maxPendingCircuits }); expect.unreachable(); } catch (e) {
        expect(isBitcloudError(e, 'CONFIG_INVALID')).toBe(true);
      }
    }
    const mgr = new CircuitManager({ relays: () => [], preemptiveCircuits: 0, maintenanceMs: 3_600_000, maxPendingCircuits: 1 });
    await mgr.close();
  });

  /** A fake circuit that answers CONNECTED and holds each stream in edge.streams until it closes. */
  function trackingCircuit() {
    const events = new EventEmitter();
    const streams = new Map<number, PassThrough>();
    let next = 0;
    return Object.assign(events, {
      isOpen: true, closedWith: null as unknown, dirtySince: null as number | null, createdAt: Date.now(), edge: { streams },
      destroy() { this.isOpen = false; for (const st of streams.values()) st.destroy(); streams.clear(); events.emit('close'); },
      openStream() {
        const id = ++next;
        const st = new PassThrough();
        streams.set(id, st);
        st.once('close', () => streams.delete(id));
        return Promise.resolve({ stream: st, connected: null });
      },
    }) as unknown as ClientCircuit;
  }
  const tick = () => new Promise((r) => setImmediate(r));
  async function counter(registry: prom.Registry, name: string): Promise<number> {
    return (await registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0;
  }

  it('past maxOpenCircuits, a newly built circuit closes the least recently used general circuits without streams', async () => {
    const relays = three();
    let now = 1_700_000_000_000;
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => (now += 1000)); // every event at a time of its own
    const registry = new prom.Registry();
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 0, maintenanceMs: 3_600_000, maxOpenCircuits: 3, registry });
    const circs: ClientCircuit[] = [];
    vi.spyOn(mgr.builder, 'build').mockImplementation(() => { const circ = trackingCircuit(); circs.push(circ); return Promise.resolve({ circ, path: relays }); });
    // A local program opens a SOCKS connection with new credentials, uses it, and leaves.
    const use = async (key: string) => {
      const st = await mgr.connect({ host: 'example.com', port: 443, isolation: key as never });
      st.destroy();
      await tick();
    };
    try {
      await use('k0'); await use('k1'); await use('k2');
      await use('k0'); // k0's circuit is used again: k1's is now the least recently used
      await use('k3'); await use('k4');
      expect(circs).toHaveLength(5);
      expect(circs.map((c) => c.isOpen)).toEqual([true, false, false, true, true]);
      expect(mgr.circuits()).toHaveLength(3);
      expect(await counter(registry, 'bitcloud_client_circuits_evicted_total')).toBe(2);
    } finally {
      clock.mockRestore();
      await mgr.close();
    }
  });

  it('a circuit carrying a stream is never closed to keep to maxOpenCircuits: the new circuit is kept and the excess counted', async () => {
    const relays = three();
    const registry = new prom.Registry();
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 0, maintenanceMs: 3_600_000, maxOpenCircuits: 1, registry });
    const circs: ClientCircuit[] = [];
    vi.spyOn(mgr.builder, 'build').mockImplementation(() => { const circ = trackingCircuit(); circs.push(circ); return Promise.resolve({ circ, path: relays }); });
    const s0 = await mgr.connect({ host: 'example.com', port: 443, isolation: 'k0' as never });
    const s1 = await mgr.connect({ host: 'example.com', port: 443, isolation: 'k1' as never });
    expect(circs.map((c) => c.isOpen)).toEqual([true, true]);
    expect(s0.destroyed).toBe(false);
    expect(await counter(registry, 'bitcloud_client_circuits_evicted_total')).toBe(0);
    expect(await counter(registry, 'bitcloud_client_circuits_over_limit_total')).toBe(1);
    // k0's stream ends: the next circuit built closes k0's circuit, never k1's, whose stream is live.
    s0.destroy();
    await tick();
    await mgr.connect({ host: 'example.com', port: 443, isolation: 'k2' as never });
    expect(circs.map((c) => c.isOpen)).toEqual([false, true, true]);
    expect(s1.destroyed).toBe(false);
    expect(await counter(registry, 'bitcloud_client_circuits_evicted_total')).toBe(1);
    expect(await counter(registry, 'bitcloud_client_circuits_over_limit_total')).toBe(2);
    await mgr.close();
  });

  it('a circuit built for a waiting request is not closed to keep to maxOpenCircuits by another build ending in the same turn', async () => {
    const relays = three();
    const registry = new prom.Registry();
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 0, maintenanceMs: 3_600_000, maxOpenCircuits: 1, streamAttempts: 1, registry });
    const circs: ClientCircuit[] = [];
    const finish: Array<() => void> = [];
    vi.spyOn(mgr.builder, 'build').mockImplementation(() => {
      const circ = trackingCircuit();
      // A closed circuit refuses a BEGIN, as the real one does (its closedWith).
      const open = circ.openStream.bind(circ);
      (circ as unknown as { openStream: () => unknown }).openStream = () => (circ.isOpen ? open({ kind: 'begin_dir' }) : Promise.reject(err('CIRCUIT_DESTROYED', 'closed')));
      circs.push(circ);
      return new Promise((resolve) => finish.push(() => resolve({ circ, path: relays })));
    });
    const a = mgr.connect({ host: 'example.com', port: 443, isolation: 'k0' as never });
    const b = mgr.connect({ host: 'example.com', port: 443, isolation: 'k1' as never });
    await tick();
    expect(finish).toHaveLength(2);
    // Both builds end in one turn (their last cells came in one read from the guard).
    finish[0](); finish[1]();
    const [sa, sb] = await Promise.all([a, b]);
    expect(circs.map((c) => c.isOpen)).toEqual([true, true]);
    expect(sa.destroyed).toBe(false);
    expect(sb.destroyed).toBe(false);
    expect(await counter(registry, 'bitcloud_client_circuits_evicted_total')).toBe(0);
    await mgr.close();
  });

  it('a circuit that closed as its build ended is not held: no entry left behind, and the preemptive circuit it was is built again', async () => {
    const relays = three();
    const mgr = new CircuitManager({ relays: () => relays, preemptiveCircuits: 1, maintenanceMs: 3_600_000, maxOpenCircuits: 1 });
    const m = mgr as unknown as { recentPorts: Map<number, number>; maintain(): void };
    let builds = 0;
    vi.spyOn(mgr.builder, 'build').mockImplementation(() => {
      const circ = trackingCircuit();
      // The first build's last EXTENDED2 came with a DESTROY: closed (its close emitted) before the build resolves.
      if (++builds === 1) circ.destroy();
      return Promise.resolve({ circ, path: relays });
    });
    try {
      m.recentPorts.set(443, Date.now());
      m.maintain();
      await tick();
      expect(builds).toBe(1);
      expect(mgr.circuitCount).toBe(0);
      m.maintain();
      await tick();
      expect(builds).toBe(2);
      expect(mgr.circuits()).toHaveLength(1);
      expect(mgr.circuitCount).toBe(1);
      // Likewise a storage circuit handed out already closed is not adopted.
      builds = 0;
      await mgr.buildCircuitTo(relays[2]);
      expect(mgr.circuitCount).toBe(1);
    } finally {
      await mgr.close();
    }
  });

  it('refuses a maxOpenCircuits that is not an integer ≥ 1 (CONFIG_INVALID)', async () => {
    for (const maxOpenCircuits of [0, -1, 1.5, NaN, Infinity, 'x' as unknown as number]) {
      try { new CircuitManager({ relays: () => [], maintenanceMs: 3_600_000, maxOpenCircuits }); expect.unreachable(); } catch (e) {
        expect(isBitcloudError(e, 'CONFIG_INVALID')).toBe(true);
      }
    }
    const mgr = new CircuitManager({ relays: () => [], preemptiveCircuits: 0, maintenanceMs: 3_600_000, maxOpenCircuits: 1 });
    await mgr.close();
  });
});
