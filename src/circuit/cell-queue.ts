// Cells waiting for a congested link (SPEC.md §7b.9, "queues and the memory cap").
// A relay keeps, per circuit and direction, a bounded FIFO of cells that the next link
// could not take yet. Every queue draws from one QueueBudget; when the budget is
// exceeded the owners whose oldest queued cell is the oldest are killed first, as in
// Tor's OOM handler (circuits_handle_oom), until usage is back under 90% of the cap. The
// received stream data a circuit end holds unread counts under the same cap (Tor counts its
// edge connections' buffers too): see QueueBudget.hold.
import { CELL_LEN, CELL_PAYLOAD_LEN } from '../wire/cell';

/** What a queue belongs to; killed by the budget when memory runs out. */
export interface QueueOwner {
  killForMemory(): void;
}

interface Slot {
  circId: number;
  command: number;
  payload: Buffer;
  at: number;
}

/**
 * A reusable pool of 509-byte payload buffers, so a congested path does not allocate
 * one buffer per queued cell (hot path).
 */
class PayloadPool {
  private free: Buffer[] = [];
  constructor(private readonly max: number) {}
  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(CELL_PAYLOAD_LEN);
  }
  give(b: Buffer): void {
    if (this.free.length < this.max) this.free.push(b);
  }
}

/**
 * The unread stream data one owner holds, as a FIFO of (bytes, time received) chunks (SPEC.md
 * §7b.9). Each call is O(1) amortized: a chunk is pushed once and taken off once. An increase in
 * the same millisecond as the last chunk joins it, so the list holds at most one chunk per distinct
 * millisecond with an increase, hence at most held bytes / cell payload chunks (each increase is at
 * least one cell's data); and past the cap the owner is killed and its list dropped.
 */
class Held {
  chunks: Array<{ bytes: number; at: number }>;
  head = 0;
  constructor(public bytes: number, at: number) {
    this.chunks = [{ bytes, at }];
  }

  /** When the oldest unread byte was received. */
  oldestAt(): number {
    return this.chunks[this.head].at;
  }

  push(bytes: number, at: number): void {
    const last = this.chunks[this.chunks.length - 1];
    if (this.head < this.chunks.length && last.at === at) last.bytes += bytes;
    else this.chunks.push({ bytes, at });
  }

  /** Readers took `bytes`: off the front, oldest first; a partly read chunk keeps its stamp. */
  take(bytes: number): void {
    while (bytes > 0 && this.head < this.chunks.length) {
      const c = this.chunks[this.head];
      // A read that ends inside a chunk still lets the chunks read before it go (below): a reader
      // that never quite catches up must not keep every chunk it ever read in the list.
      if (c.bytes > bytes) { c.bytes -= bytes; break; }
      bytes -= c.bytes;
      this.head++;
    }
    if (this.head === this.chunks.length) { this.chunks = []; this.head = 0; }
    else if (this.head > 32 && this.head * 2 > this.chunks.length) { this.chunks = this.chunks.slice(this.head); this.head = 0; }
  }
}

export class QueueBudget {
  /** Bytes accounted per queued cell: the whole cell, as on the wire. */
  static readonly CELL_COST = CELL_LEN;
  usedBytes = 0;
  /** Received stream data that circuit ends hold unread (SPEC.md §7b.9), counted under the same cap. */
  heldBytes = 0;
  oomKills = 0;
  private readonly queues = new Set<CellQueue>();
  /** Owners holding unread stream data: how much, and when each part of it arrived (SPEC.md §7b.9). */
  private readonly held = new Map<QueueOwner, Held>();
  readonly pool = new PayloadPool(4096);
  private checking = false;

  constructor(readonly maxBytes: number, private readonly now: () => number = Date.now) {}

  get queuedCells(): number {
    return this.usedBytes / QueueBudget.CELL_COST;
  }

  /** @internal */ register(q: CellQueue): void { this.queues.add(q); }
  /** @internal */ unregister(q: CellQueue): void { this.queues.delete(q); }
  /** @internal */ stamp(): number { return this.now(); }

  /** @internal called after every enqueue; kills the oldest owners when over the cap. */
  charge(bytes: number): void {
    this.usedBytes += bytes;
    this.checkCap();
  }

  /**
   * SPEC.md §7b.9: `owner` (a circuit end) now holds `bytes` of received stream data its readers
   * have not taken; 0 when none. It counts under the cap with the queued cells, aged by its oldest
   * unread byte. Over the cap, the oldest owners die.
   */
  hold(owner: QueueOwner, bytes: number): void {
    const h = this.held.get(owner);
    if (bytes <= 0) {
      if (h) { this.heldBytes -= h.bytes; this.held.delete(owner); }
      return;
    }
    const now = this.now();
    if (!h) {
      this.heldBytes += bytes;
      this.held.set(owner, new Held(bytes, now));
      return this.checkCap();
    }
    // The owner is aged by its oldest unread byte, as Tor ages a buffer by its oldest chunk: data
    // received is a chunk stamped now, and data read is taken off the front, oldest first, so a
    // reader that takes a byte now and then does not make megabytes left unread look young.
    if (bytes > h.bytes) h.push(bytes - h.bytes, now);
    else if (bytes < h.bytes) h.take(h.bytes - bytes);
    this.heldBytes += bytes - h.bytes;
    h.bytes = bytes;
    this.checkCap();
  }

  /** Queued cells and held stream data together over the cap: the oldest owners die. */
  private checkCap(): void {
    if (this.usedBytes + this.heldBytes > this.maxBytes && !this.checking) this.handleOom();
  }

  /** @internal */ release(bytes: number): void {
    this.usedBytes -= bytes;
  }

  /** Tor's OOM rule: kill the owners whose oldest queued cell is oldest, down to 90% of the cap. */
  private handleOom(): void {
    this.checking = true;
    try {
      const target = Math.floor(this.maxBytes * 0.9);
      // Cell queues and unread stream data together, by the age of the oldest of each (SPEC.md §7b.9).
      const victims: Array<{ owner: QueueOwner; at: number; q: CellQueue | null }> = [];
      for (const q of this.queues) if (q.length > 0) victims.push({ owner: q.owner, at: q.oldestAt(), q });
      for (const [owner, h] of this.held) victims.push({ owner, at: h.oldestAt(), q: null });
      victims.sort((a, b) => a.at - b.at);
      // A circuit has a queue per direction and may hold stream data too: it is killed, and
      // counted, once (SPEC.md §7b.9).
      const killed = new Set<QueueOwner>();
      for (const { owner, q } of victims) {
        if (this.usedBytes + this.heldBytes <= target) break;
        if (!killed.has(owner)) {
          killed.add(owner);
          this.oomKills++;
          owner.killForMemory(); // the owner clears its queues and closes its streams, releasing their bytes
        }
        if (q && q.length > 0) q.clear();
        this.hold(owner, 0);
      }
    } finally {
      this.checking = false;
    }
  }
}

/** A bounded FIFO of cells for one circuit and direction. */
export class CellQueue {
  private slots: Slot[] = [];
  private head = 0;

  constructor(readonly budget: QueueBudget, readonly owner: QueueOwner, readonly maxCells: number) {}

  get length(): number {
    return this.slots.length - this.head;
  }

  /** Time the oldest queued cell was queued (Infinity when empty). */
  oldestAt(): number {
    return this.length > 0 ? this.slots[this.head].at : Infinity;
  }

  /**
   * Copy a cell in. Returns false (and queues nothing) when this queue is full: the
   * caller then kills the circuit (RESOURCELIMIT). `payload` may be a short view; the
   * rest is zero-filled so the queued copy is a whole 509-byte payload.
   */
  push(circId: number, command: number, payload: Uint8Array): boolean {
    if (this.length >= this.maxCells) return false;
    const copy = this.budget.pool.take();
    copy.set(payload.subarray(0, CELL_PAYLOAD_LEN), 0);
    if (payload.length < CELL_PAYLOAD_LEN) copy.fill(0, payload.length);
    if (this.length === 0) this.budget.register(this);
    this.slots.push({ circId, command, payload: copy, at: this.budget.stamp() });
    this.budget.charge(QueueBudget.CELL_COST);
    return true;
  }

  /** The oldest cell, without removing it (its payload stays valid until `drop()`). */
  peek(): Readonly<Slot> | undefined {
    return this.length > 0 ? this.slots[this.head] : undefined;
  }

  /** Remove the oldest cell and return its buffer to the pool. */
  drop(): void {
    if (this.length === 0) return;
    const s = this.slots[this.head];
    this.slots[this.head] = undefined as unknown as Slot;
    this.head++;
    this.budget.pool.give(s.payload);
    this.budget.release(QueueBudget.CELL_COST);
    if (this.head === this.slots.length) {
      this.slots = [];
      this.head = 0;
      this.budget.unregister(this);
    } else if (this.head > 1024 && this.head * 2 > this.slots.length) {
      this.slots = this.slots.slice(this.head);
      this.head = 0;
    }
  }

  clear(): void {
    while (this.length > 0) this.drop();
  }
}
