// SPEC.md §6.9 (reachability test), §6.5: an authority votes only for relays it reached itself. It opens a link to the
// relay's ORPort as an anonymous client, expecting the identity the descriptor names
// (LINK_IDENTITY_MISMATCH otherwise), and closes it again.
import { connectLink } from '../src/link';
import { errorCode } from '../src/errors';
import type { VerifiedDescriptor } from '../src/dir/descriptor';

export type ReachabilityResult = { ok: true } | { ok: false; code: string };
export type ReachabilityTester = (d: VerifiedDescriptor, timeoutMs: number) => Promise<ReachabilityResult>;

export const linkReachabilityTest: ReachabilityTester = async (d, timeoutMs) => {
  try {
    const ch = await connectLink({ host: d.address, port: d.orPort, expectedIdentity: d.identity, timeoutMs });
    ch.close();
    return { ok: true };
  } catch (e) {
    return { ok: false, code: errorCode(e) };
  }
};

/**
 * Runs tests with bounded concurrency; one test per relay at a time. A relay waiting in the queue
 * is tested with the newest descriptor enqueued for it; one enqueued while its test runs is tested
 * again afterwards (SPEC.md §6.9: a changed descriptor is tested), unless it is the one running.
 */
export class ReachabilityQueue {
  /** Fingerprints waiting, in order, with the descriptor each will be tested with. */
  private readonly waiting = new Map<string, VerifiedDescriptor>();
  /** Fingerprints under test, with the descriptor being tested. */
  private readonly testing = new Map<string, VerifiedDescriptor>();
  /** Descriptors that arrived while their relay was under test, to test next. */
  private readonly again = new Map<string, VerifiedDescriptor>();
  private closed = false;

  constructor(
    private readonly test: ReachabilityTester,
    private readonly onResult: (d: VerifiedDescriptor, r: ReachabilityResult) => void,
    private readonly opts: { concurrency: number; timeoutMs: number },
  ) {}

  enqueue(d: VerifiedDescriptor): void {
    if (this.closed) return;
    const fp = d.fingerprint;
    const running = this.testing.get(fp);
    if (running) {
      if (running.digest.equals(d.digest)) this.again.delete(fp);
      else this.again.set(fp, d);
      return;
    }
    this.waiting.set(fp, d);
    this.pump();
  }

  get pending(): number { return this.waiting.size + this.testing.size; }

  close(): void { this.closed = true; this.waiting.clear(); this.again.clear(); }

  private pump(): void {
    while (!this.closed && this.testing.size < this.opts.concurrency && this.waiting.size) {
      const [fp, d] = this.waiting.entries().next().value as [string, VerifiedDescriptor];
      this.waiting.delete(fp);
      this.testing.set(fp, d);
      const done = (r: ReachabilityResult | null): void => {
        this.testing.delete(fp);
        if (r && !this.closed) this.onResult(d, r);
        const next = this.again.get(fp);
        this.again.delete(fp);
        if (next) this.enqueue(next);
        else this.pump();
      };
      this.test(d, this.opts.timeoutMs).then(done, () => done(null));
    }
  }
}
