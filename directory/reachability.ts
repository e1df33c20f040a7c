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

/** Runs tests with bounded concurrency; one test per relay at a time. */
export class ReachabilityQueue {
  private readonly queue: VerifiedDescriptor[] = [];
  private readonly queued = new Set<string>();
  private running = 0;
  private closed = false;

  constructor(
    private readonly test: ReachabilityTester,
    private readonly onResult: (d: VerifiedDescriptor, r: ReachabilityResult) => void,
    private readonly opts: { concurrency: number; timeoutMs: number },
  ) {}

  enqueue(d: VerifiedDescriptor): void {
    if (this.closed || this.queued.has(d.fingerprint)) return;
    this.queued.add(d.fingerprint);
    this.queue.push(d);
    this.pump();
  }

  get pending(): number { return this.queue.length + this.running; }

  close(): void { this.closed = true; this.queue.length = 0; }

  private pump(): void {
    while (!this.closed && this.running < this.opts.concurrency && this.queue.length) {
      const d = this.queue.shift()!;
      this.running++;
      this.test(d, this.opts.timeoutMs).then((r) => {
        this.running--;
        this.queued.delete(d.fingerprint);
        if (!this.closed) this.onResult(d, r);
        this.pump();
      }, () => { this.running--; this.queued.delete(d.fingerprint); this.pump(); });
    }
  }
}
