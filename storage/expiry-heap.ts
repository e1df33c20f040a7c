// SPEC.md §9.8.4: the share store's lease expiries in a binary min-heap, so that garbage collection
// takes only the shares whose lease has run out instead of scanning every share held. Deletion is
// lazy: an item stays when its share's lease changes or the share goes, and the store skips it when
// it comes to the top (its share is gone, or holds another expiry).

/** One expiry given to a share: `at` (Unix seconds) for the share with id `hex`. */
export interface ExpiryItem {
  at: number;
  hex: string;
}

export class ExpiryHeap {
  private items: ExpiryItem[] = [];

  get size(): number {
    return this.items.length;
  }

  /** The least expiry held (possibly a stale one), or undefined when empty. */
  peek(): ExpiryItem | undefined {
    return this.items[0];
  }

  push(at: number, hex: string): void {
    const a = this.items;
    a.push({ at, hex });
    let i = a.length - 1;
    const item = a[i];
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p].at <= item.at) break;
      a[i] = a[p];
      i = p;
    }
    a[i] = item;
  }

  pop(): ExpiryItem | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (top === undefined || last === undefined || a.length === 0) return top;
    a[0] = last;
    this.siftDown(0);
    return top;
  }

  /** Replace the contents with `items` (e.g. only the live expiries), in O(n). */
  rebuild(items: ExpiryItem[]): void {
    this.items = items;
    for (let i = (items.length >> 1) - 1; i >= 0; i--) this.siftDown(i);
  }

  private siftDown(start: number): void {
    const a = this.items;
    const n = a.length;
    const item = a[start];
    let i = start;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && a[c + 1].at < a[c].at) c++;
      if (a[c].at >= item.at) break;
      a[i] = a[c];
      i = c;
    }
    a[i] = item;
  }
}
