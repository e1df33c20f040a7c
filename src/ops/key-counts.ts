// Counts held per key (an address key, SPEC.md §7b.9), for the per-address bounds of SPEC.md §6.10
// and §9.21.8: a key holding none is absent, so the map never outgrows the keys in use.
export class KeyCounts {
  private readonly counts = new Map<string, number>();

  /** How many `key` holds now. */
  get(key: string): number { return this.counts.get(key) ?? 0; }

  /** One more for `key`. */
  add(key: string): void { this.counts.set(key, this.get(key) + 1); }

  /** One fewer for `key`; the key is forgotten once it holds none. */
  remove(key: string): void {
    const n = this.get(key) - 1;
    if (n > 0) this.counts.set(key, n); else this.counts.delete(key);
  }

  /** The most any key holds now (0 when none holds any). */
  max(): number {
    let most = 0;
    for (const n of this.counts.values()) most = Math.max(most, n);
    return most;
  }
}
