// Cells waiting for a congested link (SPEC.md §7b.9, "queues and the memory cap").
// A relay keeps, per circuit and direction, a bounded FIFO of cells that the next link
// could not take yet. Every queue draws from one QueueBudget; when the budget is
// exceeded the owners whose oldest queued cell is the oldest are killed first, as in
// Tor's OOM handler (circuits_handle_oom), until usage is back under 90% of the cap.
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

export class QueueBudget {
  /** Bytes accounted per queued cell: the whole cell, as on the wire. */
  static readonly CELL_COST = CELL_LEN;
  usedBytes = 0;
  oomKills = 0;
  private readonly queues = new Set<CellQueue>();
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
    if (this.usedBytes > this.maxBytes && !this.checking) this.handleOom();
  }
  /** @internal */ release(bytes: number): void {
    this.usedBytes -= bytes;
  }

  /** Tor's OOM rule: kill the owners whose oldest queued cell is oldest, down to 90% of the cap. */
  private handleOom(): void {
    this.checking = true;
    try {
      const target = Math.floor(this.maxBytes * 0.9);
      const victims = [...this.queues].filter((q) => q.length > 0).sort((a, b) => a.oldestAt() - b.oldestAt());
      // A circuit has a queue per direction: it is killed, and counted, once (SPEC.md §7b.9).
      const killed = new Set<QueueOwner>();
      for (const q of victims) {
        if (this.usedBytes <= target) break;
        if (killed.has(q.owner)) { if (q.length > 0) q.clear(); continue; }
        killed.add(q.owner);
        this.oomKills++;
        q.owner.killForMemory(); // the owner clears its queues, releasing their bytes
        if (q.length > 0) q.clear();
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
