// SPEC.md §6.4–6.5: the descriptors an authority knows, and what its reachability tests found.
// Kept in memory and saved to the data directory so a restarted authority can vote at once.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../src/ops/fsutil';
import { verifyDescriptor, type VerifiedDescriptor } from '../src/dir/descriptor';

export interface RelayRecord {
  descriptor: VerifiedDescriptor;
  /** ms of the last reachability test, 0 = never tested. */
  lastTested: number;
  /** Result of the last test. */
  reachable: boolean;
  /** Start of the current unbroken run of successful tests (ms), 0 when not reachable. */
  runningSince: number;
  /** Error code of the last failed test. */
  lastError?: string;
}

export type IntakeResult = 'new' | 'updated' | 'unchanged';

const FILE = 'descriptors.bin';

/** SPEC.md §6.9: whether two descriptors of one relay name the same address, port and onion key. */
export function sameEndpoint(a: VerifiedDescriptor, b: VerifiedDescriptor): boolean {
  return a.address === b.address && a.orPort === b.orPort && a.onionKey.equals(b.onionKey);
}

export class DescriptorStore {
  private readonly relays = new Map<string, RelayRecord>();

  constructor(private readonly dataDir: string) {}

  get size(): number { return this.relays.size; }
  get(fp: string): RelayRecord | undefined { return this.relays.get(fp); }
  all(): RelayRecord[] { return [...this.relays.values()]; }

  /**
   * Keep the newer of two descriptors for one relay. A new descriptor that moves the relay
   * (address, port or keys) must pass a fresh reachability test.
   */
  add(d: VerifiedDescriptor): IntakeResult {
    const old = this.relays.get(d.fingerprint);
    if (!old) {
      this.relays.set(d.fingerprint, { descriptor: d, lastTested: 0, reachable: false, runningSince: 0 });
      return 'new';
    }
    if (this.keepsHeld(d)) return 'unchanged';
    const moved = !sameEndpoint(old.descriptor, d);
    old.descriptor = d;
    if (moved) { old.lastTested = 0; old.reachable = false; old.runningSince = 0; }
    return 'updated';
  }

  /**
   * Whether add(d) would keep the descriptor held for d's relay ('unchanged'): d is the held one,
   * or published before it. SPEC.md §6.4.1: the authority answers such an upload before it looks
   * at its identity proof.
   */
  keepsHeld(d: VerifiedDescriptor): boolean {
    const old = this.relays.get(d.fingerprint);
    return old !== undefined && (d.published < old.descriptor.published || d.digest.equals(old.descriptor.digest));
  }

  /**
   * The result of a test of `tested`. SPEC.md §6.9: it counts only while the relay's current
   * descriptor names the address, port and onion key that were tested; a result for an
   * endpoint the relay has since left is dropped (the new one is tested on its own).
   */
  recordTest(tested: VerifiedDescriptor, ok: boolean, now: number, code?: string): void {
    const r = this.relays.get(tested.fingerprint);
    if (!r || !sameEndpoint(r.descriptor, tested)) return;
    r.lastTested = now;
    if (ok) {
      if (!r.reachable) r.runningSince = now;
      r.reachable = true;
      r.lastError = undefined;
    } else {
      r.reachable = false;
      r.runningSince = 0;
      r.lastError = code;
    }
  }

  /** Drop descriptors that have expired. Returns how many went. */
  expire(now: number): number {
    let n = 0;
    for (const [fp, r] of this.relays) if (r.descriptor.expires < now) { this.relays.delete(fp); n++; }
    return n;
  }

  /** File: a sequence of u32 BE length | descriptor envelope bytes. */
  async save(): Promise<void> {
    const parts: Buffer[] = [];
    for (const r of this.relays.values()) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(r.descriptor.raw.length);
      parts.push(len, r.descriptor.raw);
    }
    await writeFileAtomic(path.join(this.dataDir, FILE), Buffer.concat(parts), 0o600);
  }

  /** Load what was saved, re-verifying each descriptor; bad or expired ones are skipped. */
  load(now: number): number {
    let buf: Buffer;
    try { buf = fs.readFileSync(path.join(this.dataDir, FILE)); } catch { return 0; }
    let off = 0, n = 0;
    while (off + 4 <= buf.length) {
      const len = buf.readUInt32BE(off);
      off += 4;
      if (off + len > buf.length) break;
      try {
        const d = verifyDescriptor(buf.subarray(off, off + len), { now });
        this.add(d);
        n++;
      } catch { /* skipped: expired or damaged */ }
      off += len;
    }
    return n;
  }
}
