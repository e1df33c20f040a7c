// SPEC.md §7b.9: bounded per-circuit cell queues, the memory cap (oldest queued data dies first),
// and the per-address DoS limits (token bucket, concurrent links).
import { describe, expect, it, vi } from 'vitest';
import { CellQueue, QueueBudget, type QueueOwner } from '../../src/circuit/cell-queue';
import { DosGuard, TokenBucket, creationSource, resolveRelayLimits, DEFAULT_RELAY_LIMITS } from '../../src/circuit/dos-limits';
import { CELL_LEN, CELL_PAYLOAD_LEN } from '../../src/wire/cell';

class Owner implements QueueOwner {
  killed = false;
  kills = 0;
  queues: CellQueue[] = [];
  killForMemory(): void { this.killed = true; this.kills++; for (const q of this.queues) q.clear(); }
}

describe('CellQueue', () => {
  it('keeps whole 509-byte copies in order and returns their buffers on drop', () => {
    const budget = new QueueBudget(1 << 20);
    const o = new Owner();
    const q = new CellQueue(budget, o, 10);
    const src = Buffer.alloc(CELL_PAYLOAD_LEN, 1);
    expect(q.push(0x80000001, 3, src)).toBe(true);
    expect(q.push(0x80000001, 3, Buffer.from([9, 9]))).toBe(true);
    src.fill(2); // the queue holds a copy, not the caller's view
    expect(q.length).toBe(2);
    expect(q.peek()!.payload[0]).toBe(1);
    q.drop();
    const second = q.peek()!;
    expect(second.payload.length).toBe(CELL_PAYLOAD_LEN);
    expect([...second.payload.subarray(0, 3)]).toEqual([9, 9, 0]);
    expect(second.payload.subarray(2).every((b) => b === 0)).toBe(true);
    q.drop();
    expect(q.length).toBe(0);
    expect(budget.usedBytes).toBe(0);
  });

  it('refuses the cell past its bound (the caller then destroys the circuit)', () => {
    const q = new CellQueue(new QueueBudget(1 << 20), new Owner(), 3);
    for (let i = 0; i < 3; i++) expect(q.push(1, 3, Buffer.alloc(1))).toBe(true);
    expect(q.push(1, 3, Buffer.alloc(1))).toBe(false);
    expect(q.length).toBe(3);
  });

  it('counts whole cells against the budget', () => {
    const budget = new QueueBudget(1 << 20);
    const q = new CellQueue(budget, new Owner(), 100);
    for (let i = 0; i < 7; i++) q.push(1, 3, Buffer.alloc(10));
    expect(budget.usedBytes).toBe(7 * CELL_LEN);
    expect(budget.queuedCells).toBe(7);
    q.clear();
    expect(budget.usedBytes).toBe(0);
  });
});

describe('QueueBudget: the memory cap', () => {
  it('kills the owners with the oldest queued cell first, down to 90% of the cap', () => {
    let t = 0;
    const budget = new QueueBudget(20 * CELL_LEN, () => t);
    const owners = [new Owner(), new Owner(), new Owner()];
    const qs = owners.map((o) => { const q = new CellQueue(budget, o, 1000); o.queues.push(q); return q; });
    // Owner 1 queues first (oldest), then owner 0, then owner 2.
    t = 1; for (let i = 0; i < 6; i++) qs[1].push(1, 3, Buffer.alloc(1));
    t = 2; for (let i = 0; i < 6; i++) qs[0].push(1, 3, Buffer.alloc(1));
    t = 3; for (let i = 0; i < 8; i++) qs[2].push(1, 3, Buffer.alloc(1));
    expect(owners.map((o) => o.killed)).toEqual([false, false, false]);
    t = 4; qs[2].push(1, 3, Buffer.alloc(1)); // 21 cells > 20: over the cap
    expect(owners.map((o) => o.killed)).toEqual([false, true, false]);
    expect(budget.usedBytes).toBeLessThanOrEqual(18 * CELL_LEN);
    expect(budget.oomKills).toBe(1);
  });

  it('keeps killing until under 90%', () => {
    let t = 0;
    const budget = new QueueBudget(10 * CELL_LEN, () => t);
    const owners = Array.from({ length: 5 }, () => new Owner());
    const qs = owners.map((o) => { const q = new CellQueue(budget, o, 1000); o.queues.push(q); return q; });
    for (let i = 0; i < 5; i++) { t = i; qs[i].push(1, 3, Buffer.alloc(1)); qs[i].push(1, 3, Buffer.alloc(1)); }
    t = 9; qs[4].push(1, 3, Buffer.alloc(1)); // 11 cells: must fall to 9 → two oldest owners die
    expect(owners.map((o) => o.killed)).toEqual([true, false, false, false, false]);
    expect(budget.queuedCells).toBe(9);
  });

  it('a circuit with cells queued in both directions is killed, and counted, once', () => {
    let t = 0;
    const budget = new QueueBudget(20 * CELL_LEN, () => t);
    const owners = [new Owner(), new Owner(), new Owner()];
    // Owner 0 has a queue per direction, each with the oldest cells; killing it alone is not enough.
    const both = [new CellQueue(budget, owners[0], 1000), new CellQueue(budget, owners[0], 1000)];
    owners[0].queues.push(...both);
    const q1 = new CellQueue(budget, owners[1], 1000); owners[1].queues.push(q1);
    const q2 = new CellQueue(budget, owners[2], 1000); owners[2].queues.push(q2);
    t = 1; both[0].push(1, 3, Buffer.alloc(1));
    t = 2; both[1].push(1, 3, Buffer.alloc(1));
    t = 3; for (let i = 0; i < 17; i++) q1.push(1, 3, Buffer.alloc(1));
    t = 4; q2.push(1, 3, Buffer.alloc(1));
    t = 5; q2.push(1, 3, Buffer.alloc(1)); // 21 cells > 20: down to 18 takes owners 0 and 1
    expect(owners.map((o) => o.kills)).toEqual([1, 1, 0]);
    expect(budget.oomKills).toBe(2); // the metric counts circuits destroyed, not queues visited
    expect(budget.queuedCells).toBe(2);
  });
});

describe('TokenBucket and DosGuard (as Tor DoS)', () => {
  it('a token bucket allows a burst then the refill rate', () => {
    const b = new TokenBucket(2, 5, 0);
    let ok = 0;
    for (let i = 0; i < 10; i++) if (b.take(0)) ok++;
    expect(ok).toBe(5);
    expect(b.take(499)).toBe(false); // 0.998 tokens
    expect(b.take(500)).toBe(true); // 2 per second: one token after 500 ms
    expect(b.take(500)).toBe(false);
    expect(b.take(1000)).toBe(true);
    expect(b.full(3500)).toBe(true);
  });

  it('rate-limits circuit creation only for addresses with several links', () => {
    let now = 0;
    const g = new DosGuard(resolveRelayLimits({ circuitRate: 1, circuitBurst: 3, circuitMinConnections: 2 }), () => now);
    expect(g.connectionOpened('10.0.0.1')).toBe(true);
    for (let i = 0; i < 10; i++) expect(g.allowCircuit('10.0.0.1')).toBe(true); // one link: no limit
    expect(g.connectionOpened('10.0.0.1')).toBe(true);
    const allowed = Array.from({ length: 5 }, () => g.allowCircuit('10.0.0.1'));
    expect(allowed).toEqual([true, true, true, false, false]);
    now = 1000;
    expect(g.allowCircuit('10.0.0.1')).toBe(true);
    expect(g.allowCircuit('10.0.0.2')).toBe(true);
  });

  it('runs its buckets on a monotonic clock by default: a step of the wall clock refills none (SPEC.md §7b.9)', () => {
    const wall = Date.now();
    const now = vi.spyOn(Date, 'now').mockReturnValue(wall);
    try {
      const g = new DosGuard(resolveRelayLimits({ circuitRate: 1, circuitBurst: 3, circuitMinConnections: 1 }));
      expect(g.connectionOpened('10.0.0.1')).toBe(true);
      expect(Array.from({ length: 4 }, () => g.allowCircuit('10.0.0.1'))).toEqual([true, true, true, false]);
      now.mockReturnValue(wall + 3_600_000); // the wall clock steps forward an hour
      expect(g.allowCircuit('10.0.0.1')).toBe(false);
    } finally {
      now.mockRestore();
    }
  });

  it('caps concurrent links per address and forgets idle addresses', () => {
    const g = new DosGuard(resolveRelayLimits({ maxConnectionsPerAddress: 2 }));
    expect(g.connectionOpened('a')).toBe(true);
    expect(g.connectionOpened('a')).toBe(true);
    expect(g.connectionOpened('a')).toBe(false);
    expect(g.connectionOpened('b')).toBe(true);
    g.connectionClosed('a');
    expect(g.connectionOpened('a')).toBe(true);
    g.connectionClosed('a'); g.connectionClosed('a'); g.connectionClosed('b');
    expect(g.size).toBe(0);
  });

  it('counts the addresses of one IPv6 /64 under one per-address limit (SPEC.md §7b.9)', () => {
    // A client rotating its address inside its /64 stays under one connection cap and one bucket.
    const g = new DosGuard(resolveRelayLimits({ maxConnectionsPerAddress: 1 }));
    expect(g.admit('2001:db8::1')).not.toBeNull();
    expect(g.admit('2001:db8::2')).toBeNull();
    expect(g.admit('2001:db8:0:1::2')).not.toBeNull(); // another /64
    expect(g.admit('::ffff:192.0.2.1')).not.toBeNull();
    expect(g.admit('192.0.2.1')).toBeNull(); // the same IPv4 address
    const now = 1_000_000;
    const b = new DosGuard(resolveRelayLimits({ circuitRate: 1, circuitBurst: 2, circuitMinConnections: 2 }), () => now);
    expect(b.connectionOpened('2001:db8::10')).toBe(true);
    expect(b.connectionOpened('2001:db8::11')).toBe(true);
    const allowed = ['2001:db8::12', '2001:db8::13', '2001:db8::14'].map((a) => b.allowCircuit(a));
    expect(allowed).toEqual([true, true, false]);
    expect(creationSource('[2001:db8::1]:443', null)).toBe(creationSource('2001:db8::2:9001', null));
  });

  it('forgets an address whose last link closed while its bucket was still refilling, once it has refilled', () => {
    let now = 1_000_000;
    const g = new DosGuard(resolveRelayLimits({ circuitRate: 1, circuitBurst: 3, circuitMinConnections: 2 }), () => now);
    // Many addresses each open 3 links, spend their bucket, and close: none is full when it goes.
    for (let i = 0; i < 100; i++) {
      const a = `10.1.${i >> 8}.${i & 255}`;
      for (let j = 0; j < 3; j++) g.connectionOpened(a);
      for (let j = 0; j < 3; j++) g.allowCircuit(a);
      for (let j = 0; j < 3; j++) g.connectionClosed(a);
    }
    expect(g.size).toBe(100);
    now += 60_000; // buckets refilled; the next accepted link sweeps them
    expect(g.connectionOpened('10.2.0.1')).toBe(true);
    expect(g.size).toBe(1);
    // Asking about an address that has no link leaves nothing behind.
    expect(g.allowCircuit('10.3.0.1')).toBe(true);
    expect(g.size).toBe(1);
  });

  it('limits config names the bad key', () => {
    expect(() => resolveRelayLimits({ circuitRate: -1 })).toThrow(/limits.circuitRate/);
    expect(resolveRelayLimits()).toEqual(DEFAULT_RELAY_LIMITS);
  });
});

describe('QueueBudget: unread stream data under the memory cap', () => {
  it('ages unread data by its oldest byte: a reader taking a byte now and then does not make a megabyte left unread young', () => {
    // SPEC.md §7b.9: A holds 1 MiB from t=0 and its reader takes one byte every 10 s; B holds
    // 1 MiB from t=50 s. Over the cap at t=60 s, A's data is the oldest: A dies, not B.
    const MB = 1 << 20;
    let t = 0;
    const budget = new QueueBudget(2 * MB, () => t);
    const a = new Owner();
    const b = new Owner();
    budget.hold(a, MB);
    let unread = MB;
    for (t = 10_000; t <= 60_000; t += 10_000) {
      if (t === 50_000) budget.hold(b, MB);
      budget.hold(a, --unread);
    }
    t = 60_000;
    expect(a.killed || b.killed).toBe(false);
    budget.hold(b, MB + 1000); // over the cap
    expect([a.killed, b.killed]).toEqual([true, false]);
    expect(budget.oomKills).toBe(1);
    expect(budget.heldBytes).toBe(MB + 1000);
  });

  it('a partial read keeps the rest of the oldest chunk with its stamp; reading past it ages the owner by the next chunk', () => {
    // Partly read: A's front chunk (t=10) keeps its stamp, older than B's (t=20): A dies.
    let t = 0;
    const budget = new QueueBudget(300, () => t);
    const a = new Owner();
    const b = new Owner();
    t = 10; budget.hold(a, 100);
    t = 20; budget.hold(b, 100);
    t = 30; budget.hold(a, 200); // a second chunk, stamped 30
    t = 40; budget.hold(a, 150); // the reader took 50 bytes of the chunk stamped 10
    t = 45; budget.hold(b, 200); // 350 > 300
    expect([a.killed, b.killed]).toEqual([true, false]);
    expect(budget.heldBytes).toBe(200);

    // Read past it: the chunk stamped 10 is gone and A is aged from 30, younger than B (20): B dies.
    const budget2 = new QueueBudget(300, () => t);
    const a2 = new Owner();
    const b2 = new Owner();
    t = 10; budget2.hold(a2, 100);
    t = 20; budget2.hold(b2, 100);
    t = 30; budget2.hold(a2, 200);
    t = 40; budget2.hold(a2, 50); // took 150: the whole first chunk and half the second
    t = 45; budget2.hold(b2, 260); // 310 > 300
    expect([a2.killed, b2.killed]).toEqual([false, true]);
    expect(budget2.heldBytes).toBe(50);
  });

  it('increases within one millisecond join the last chunk', () => {
    let t = 5;
    const budget = new QueueBudget(1000, () => t);
    const a = new Owner();
    const b = new Owner();
    budget.hold(a, 100);
    budget.hold(a, 200); // same ms: one chunk of 200 stamped 5
    t = 6; budget.hold(b, 100);
    t = 7; budget.hold(a, 150); // took 50 of the one chunk: the rest still stamped 5
    budget.hold(b, 860); // 1010 > 1000
    expect([a.killed, b.killed]).toEqual([true, false]);
  });
});

describe('QueueBudget: the chunk list of unread stream data stays bounded', () => {
  it('a reader that never empties the data and whose reads end inside a chunk does not grow the list (SPEC.md §7b.9)', () => {
    // Each millisecond 100 bytes arrive and the reader takes 100, ending halfway into the newest
    // chunk: the owner never holds more than 150 bytes, so its list must not keep the chunks read.
    let t = 0;
    const budget = new QueueBudget(1 << 20, () => t);
    const a = new Owner();
    budget.hold(a, 50);
    for (t = 1; t <= 10_000; t++) {
      budget.hold(a, 150);
      budget.hold(a, 50);
    }
    const held = (budget as unknown as { held: Map<QueueOwner, { chunks: unknown[] }> }).held.get(a)!;
    expect(held.chunks.length).toBeLessThanOrEqual(64);
    expect(budget.heldBytes).toBe(50);
    expect(a.killed).toBe(false);
  });
});
