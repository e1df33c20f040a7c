// SPEC.md §9.21.8, §9.20.3, §8.7.5: places for answers handed on to readers nobody trusts (a relay
// mirror's pass-through, an authority's audit report pages and reward chain bundles). At most `max` are under way at once,
// at most `perAddress` of them for one client address, and each is held only until its answer has
// been handed on in full, its connection is gone, or its answer deadline has passed.
import type http from 'node:http';
import { addressKey, isLoopback, plainAddress } from '../wire/address-key';
import { KeyCounts } from '../ops/key-counts';

/**
 * SPEC.md §9.21.8, §9.20.3: the per-address key of a request — its client's address key (§7b.9
 * "Address key": an IPv4 address, an IPv4-mapped one too, or an IPv6 /64; an address that does not
 * parse, its text) — or null for a request from this host itself (loopback, or its own address: on
 * a relay, a BEGIN_DIR stream spliced to the dir port, §7b.7), which counts under no per-address
 * limit, only under the bound of all.
 */
export function clientAddressKey(remote: string | undefined, local: string | undefined): string | null {
  if (!remote || remote === local || isLoopback(remote)) return null;
  return addressKey(remote) ?? remote;
}

export class AnswerPlaces {
  private inFlight = 0;
  /** Places held per client address key; an address holding none is absent. */
  private readonly perAddress = new KeyCounts();
  constructor(readonly max: number, readonly maxPerAddress: number, readonly answerDeadlineMs: number) {}

  /**
   * Run `answer` if a place is free for `key` (null: counted under `max` only), else return null
   * without running it (the caller answers 503). The place is held until the answer has been handed
   * on in full ('finish') or its connection is gone ('close'), whichever comes first, not merely
   * until it is queued; an answer not handed on in full within answerDeadlineMs of being sent has
   * its connection destroyed, so a reader that reads slowly (and is never idle long enough for the
   * dir port to drop it, §6.10) holds its place no longer.
   */
  async run<T>(res: http.ServerResponse, key: string | null, answer: () => Promise<T>): Promise<{ value: T } | null> {
    const mine = key === null ? 0 : this.perAddress.get(key);
    if (this.inFlight >= this.max || mine >= this.maxPerAddress) return null;
    this.inFlight++;
    if (key !== null) this.perAddress.add(key);
    let held = true;
    const release = () => {
      if (!held) return;
      held = false;
      this.inFlight--;
      if (key !== null) this.perAddress.remove(key);
    };
    let value: T;
    try {
      value = await answer();
    } catch (e) {
      release();
      throw e;
    }
    if (res.writableFinished || res.destroyed) { release(); return { value }; }
    const deadline = setTimeout(() => { res.destroy(); release(); }, this.answerDeadlineMs);
    deadline.unref();
    const done = () => { clearTimeout(deadline); release(); };
    res.once('finish', done);
    res.once('close', done);
    return { value };
  }
}

/**
 * SPEC.md §9.20.3, §8.7.5: an authority's places for one route's large answers, `max` in all, at most
 * `maxPerAddress` per client address; requests from this host's own address (loopback) count only
 * under the bound of all. The configured authorities' addresses (they fetch from each other, and
 * on a local network they all share one address) have `max` places of their own, with no
 * per-address share: slow readers at a few addresses holding every other place do not keep an
 * authority from the pages or bundle it checks a block or catches up by.
 */
export class AuthorityAnswerPlaces {
  readonly places: AnswerPlaces;
  /** The configured authorities' own places. */
  readonly authorityPlaces: AnswerPlaces;
  private readonly exempt: ReadonlySet<string>;
  constructor(authorities: readonly { host: string }[], max: number, maxPerAddress: number, answerDeadlineMs: number) {
    this.places = new AnswerPlaces(max, maxPerAddress, answerDeadlineMs);
    this.authorityPlaces = new AnswerPlaces(max, max, answerDeadlineMs);
    this.exempt = new Set(authorities.map((a) => plainAddress(a.host.replace(/^\[(.*)\]$/, '$1'))));
  }

  /** Whether `req` comes from a configured authority's address. */
  private fromAuthority(req: http.IncomingMessage): boolean {
    const remote = req.socket.remoteAddress;
    return remote !== undefined && this.exempt.has(plainAddress(remote));
  }

  /** AnswerPlaces.run under the key of `req`: null (answer 503) when no place is free. */
  run<T>(req: http.IncomingMessage, res: http.ServerResponse, answer: () => Promise<T>): Promise<{ value: T } | null> {
    if (this.fromAuthority(req)) return this.authorityPlaces.run(res, null, answer);
    return this.places.run(res, clientAddressKey(req.socket.remoteAddress, req.socket.localAddress), answer);
  }
}
