// SPEC.md §1.5: circuit id allocation on a link. The initiator's ids have the high bit set, the
// responder's do not, so the two ends never pick the same id; 0 is never a circuit id.
import { err } from '../errors';
import { CIRCID_INITIATOR_BIT } from '../wire/cell';
import { randomBytes } from '../crypto/primitives';

/** Tries before giving up: only reachable with a large part of a 2^31 space in use. */
const MAX_TRIES = 64;

export class CircIdAllocator {
  private readonly inUse = new Set<number>();

  constructor(readonly isInitiator: boolean) {}

  /**
   * A fresh id from this end's half, chosen at random (as Tor does, so ids do not count circuits).
   * Throws LINK_CIRCID_EXHAUSTED if no free id turns up.
   */
  allocate(taken?: (id: number) => boolean): number {
    for (let i = 0; i < MAX_TRIES; i++) {
      const low = randomBytes(4).readUInt32BE(0) & 0x7fff_ffff;
      const id = this.isInitiator ? (low | CIRCID_INITIATOR_BIT) >>> 0 : low;
      // SPEC.md §1.5: never an id in use on the link, ours or (defensively) one the owner holds.
      if (id === 0 || this.inUse.has(id) || taken?.(id)) continue;
      this.inUse.add(id);
      return id;
    }
    throw err('LINK_CIRCID_EXHAUSTED', `no free circuit id after ${MAX_TRIES} tries`, { inUse: this.inUse.size });
  }

  release(id: number): void {
    this.inUse.delete(id);
  }

  get size(): number { return this.inUse.size; }

  /** Whether `id` lies in the half that the link's initiator allocates from. */
  static isInitiatorId(id: number): boolean {
    return (id & CIRCID_INITIATOR_BIT) !== 0;
  }
}
