// SPEC.md §6.10.1, §8.7.5: a relay's directory mirror also answers GET /bitcloud/rewards?from=H,
// so clients with a guard read the reward chain through it (BEGIN_DIR) and the authorities never
// see their addresses. The mirror asks the authorities (in random order, the first 200 wins, all
// within REWARD_MIRROR_DEADLINE_MS, below the dir port's idle timeout), keeps each answer for a
// short while (one fetch serves every client asking in that time) and passes the bundle on
// unchanged: it holds no key and is not trusted, since the client verifies every block against the
// configured authorities (§8.7.3); a mirror that alters the bundle only gets the client to try its
// next guard.
import type http from 'node:http';
import { errorBodyReason, FETCHER_HEADER, httpRequest, PATHS } from '../src/dir/fetch';
import { sendJsonError } from '../src/dir/http-serve';
import { AnswerPlaces, clientAddressKey } from '../src/dir/answer-places';
import type { AuthorityInfo } from '../src/dir/authorities';
import { MAX_REWARD_BUNDLE_BYTES } from '../src/bandwidth/reward-chain';
import { err, errorCode } from '../src/errors';
import { shuffle } from '../src/crypto/primitives';

/** How long one answer is served again without asking an authority (ms). */
export const REWARD_MIRROR_TTL_MS = 10_000;
/** SPEC.md §8.7.5: how long one authority is given to answer a reward fetch (ms). */
export const REWARD_MIRROR_TRY_MS = 10_000;
/**
 * SPEC.md §8.7.5: how long all the authorities together are given for one reward fetch (each try
 * gets what is left, at most REWARD_MIRROR_TRY_MS; a monotonic clock), below the dir port's idle
 * timeout (HTTP_IDLE_TIMEOUT_MS, 60 s, §6.10): past it the clients waiting get 504
 * REWARD_FETCH_TIMEOUT while their connections are still open, and no further authority is asked.
 */
export const REWARD_MIRROR_DEADLINE_MS = 30_000;
/** Distinct `from` heights kept at once (the oldest is dropped). */
const MAX_ENTRIES = 64;
/**
 * Authority fetches running at once, all `from` heights together (SPEC §6.10.1). A fetch dropped
 * from the cache (entry cap, byte budget) still runs and still counts until it ends.
 */
export const REWARD_MIRROR_MAX_FETCHES = 4;
/** Bytes of answers held at once, all `from` heights together (the oldest are dropped): one largest bundle. */
export const REWARD_MIRROR_MAX_BYTES = MAX_REWARD_BUNDLE_BYTES;

/**
 * SPEC.md §6.10.1: reward answers handed on at once (as an authority's, §8.7.5); more are answered
 * 503 `RATE_LIMITED`. A place is held until the answer is handed on in full or its connection is gone.
 */
export const REWARD_MIRROR_MAX_ANSWERS = 16;
/** SPEC.md §6.10.1: of those places, at most this many held by one client address key (§7b.9). */
export const REWARD_MIRROR_MAX_PER_ADDRESS = 4;
/** SPEC.md §6.10.1: an answer not handed on in full within this time of being sent has its connection destroyed. */
export const REWARD_MIRROR_ANSWER_DEADLINE_MS = 120_000;

/** `bytes`: the answer's length once it arrived (0 while the fetch runs). */
interface Entry { at: number; body: Promise<Buffer>; bytes: number }

export class RewardMirror {
  /** By `from`, oldest first. */
  private readonly cache = new Map<number, Entry>();
  private bytes = 0;
  /** Authority fetches started and not yet ended, whether or not their entry is still held. */
  private fetching = 0;
  private sweeper: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly places: AnswerPlaces;

  constructor(
    private readonly authorities: readonly AuthorityInfo[],
    private readonly o: { ttlMs?: number; timeoutMs?: number; deadlineMs?: number; now?: () => number; answerDeadlineMs?: number } = {},
  ) {
    this.places = new AnswerPlaces(REWARD_MIRROR_MAX_ANSWERS, REWARD_MIRROR_MAX_PER_ADDRESS, o.answerDeadlineMs ?? REWARD_MIRROR_ANSWER_DEADLINE_MS);
  }

  /**
   * SPEC.md §8.7.5, §6.10.1: GET /bitcloud/rewards?from=H at the mirror's dir port. Each answer takes
   * a place (REWARD_MIRROR_MAX_ANSWERS in all, REWARD_MIRROR_MAX_PER_ADDRESS per client address key;
   * requests over circuits, from this host, count under the bound of all only), held until it is
   * handed on in full or its connection is gone, and cut after REWARD_MIRROR_ANSWER_DEADLINE_MS: a
   * bundle dropped from the cache is not kept alive past that by a reader that reads slowly. No
   * place free: 503 RATE_LIMITED.
   */
  async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const q = new URL(req.url ?? '/', 'http://mirror').searchParams.get('from');
    if (q !== null && !/^\d{1,15}$/.test(q)) return sendJsonError(res, 400, 'REWARD_BAD_QUERY', 'from must be a block height (a non-negative integer)');
    const ran = await this.places.run(res, clientAddressKey(req.socket.remoteAddress, req.socket.localAddress), async () => {
      try {
        const body = await this.bundle(q === null ? 0 : Number(q));
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : body);
      } catch (e) {
        // SPEC.md §8.7.5: no authority answered within REWARD_MIRROR_DEADLINE_MS: 504.
        if (errorCode(e) === 'REWARD_FETCH_TIMEOUT') sendJsonError(res, 504, 'REWARD_FETCH_TIMEOUT', (e as Error).message);
        else sendJsonError(res, 503, 'REWARD_NOT_AVAILABLE', (e as Error).message);
      }
    });
    if (!ran) sendJsonError(res, 503, 'RATE_LIMITED', 'this mirror is handing on as many reward answers as it may; try another');
  }

  /** What is held now: answers (or fetches in flight) and the bytes of the answers. */
  get held(): { entries: number; bytes: number } {
    return { entries: this.cache.size, bytes: this.bytes };
  }

  /**
   * The bundle from height `from` as an authority serves it. Concurrent and repeated requests
   * within the TTL share one fetch. Rejects with REWARD_NOT_AVAILABLE when no authority answered,
   * with REWARD_FETCH_TIMEOUT when none answered within REWARD_MIRROR_DEADLINE_MS, and at once, without asking one, when REWARD_MIRROR_MAX_FETCHES fetches are running already.
   */
  bundle(from: number): Promise<Buffer> {
    if (this.closed) return Promise.reject(err('REWARD_NOT_AVAILABLE', 'the relay is stopping: its reward mirror is closed'));
    const now = this.now();
    this.sweep(now);
    const hit = this.cache.get(from);
    if (hit) return hit.body;
    // SPEC §6.10.1: a busy mirror answers 503 at once (as a busy Tor directory does) rather than
    // start one more authority fetch of up to MAX_REWARD_BUNDLE_BYTES for each new `from`.
    if (this.fetching >= REWARD_MIRROR_MAX_FETCHES) {
      return Promise.reject(err('REWARD_NOT_AVAILABLE', `the mirror is busy: ${this.fetching} reward chain fetches running`, { fetching: this.fetching }));
    }
    this.fetching++;
    const body = this.fetch(from).finally(() => { this.fetching--; });
    const entry: Entry = { at: now, body, bytes: 0 };
    this.cache.set(from, entry);
    while (this.cache.size > MAX_ENTRIES) this.drop(this.cache.keys().next().value as number);
    body.then((b) => {
      if (this.cache.get(from) !== entry) return;
      entry.bytes = b.length;
      this.bytes += b.length;
      // Within the byte budget, the oldest answers go first (this one last). A fetch still in
      // flight holds no bytes here and stays, shared by the clients asking meanwhile.
      for (const [k, e] of [...this.cache]) {
        if (this.bytes <= REWARD_MIRROR_MAX_BYTES) break;
        if (k !== from && e.bytes > 0) this.drop(k);
      }
      if (this.bytes > REWARD_MIRROR_MAX_BYTES) this.drop(from);
    }, () => {
      // A failure is not kept: the next client asks again.
      if (this.cache.get(from) === entry) this.drop(from);
    });
    this.armSweeper();
    return body;
  }

  /**
   * The relay stops: the sweeper is cleared and the answers let go. Fetches still running end on
   * their own (their answers are not kept); bundle() rejects with REWARD_NOT_AVAILABLE from now on.
   */
  close(): void {
    this.closed = true;
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
    this.cache.clear();
    this.bytes = 0;
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  private ttl(): number {
    return this.o.ttlMs ?? REWARD_MIRROR_TTL_MS;
  }

  private drop(from: number): void {
    const e = this.cache.get(from);
    if (!e) return;
    this.bytes -= e.bytes;
    this.cache.delete(from);
  }

  /** SPEC §6.10.1: an answer is served for the TTL and then let go, asked for again or not. */
  private sweep(now: number): void {
    for (const [k, e] of this.cache) if (now - e.at >= this.ttl()) this.drop(k);
  }

  /** While anything is held, a timer (which keeps no process alive) lets expired answers go. */
  private armSweeper(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => {
      this.sweep(this.now());
      if (this.cache.size === 0 && this.sweeper) {
        clearInterval(this.sweeper);
        this.sweeper = null;
      }
    }, this.ttl());
    this.sweeper.unref();
  }

  /**
   * SPEC.md §8.7.5: ask the authorities in random order until one answers 200, all within
   * REWARD_MIRROR_DEADLINE_MS of the monotonic clock (each try gets what is left, at most
   * REWARD_MIRROR_TRY_MS). Past the deadline: REWARD_FETCH_TIMEOUT, and no further authority is asked.
   * A try's end is one timer of its own, cleared when the try ends; a try that the deadline cut
   * short and that this timer ended is the deadline passing (504), decided by that timer, not by a
   * reading of the clock once it fired (a timer may fire up to a millisecond before its delay has
   * passed on performance.now()).
   */
  private async fetch(from: number): Promise<Buffer> {
    const reasons: string[] = [];
    const deadlineMs = this.o.deadlineMs ?? REWARD_MIRROR_DEADLINE_MS;
    const tryMs = this.o.timeoutMs ?? REWARD_MIRROR_TRY_MS;
    const until = performance.now() + deadlineMs;
    const timedOut = () => err('REWARD_FETCH_TIMEOUT', `no authority gave the reward chain within ${deadlineMs} ms (${reasons.join('; ')})`, { deadlineMs });
    for (const a of shuffle([...this.authorities])) {
      const left = until - performance.now();
      if (left <= 0) throw timedOut();
      const cut = left <= tryMs;
      const ms = Math.min(tryMs, left);
      const stop = new AbortController();
      let ended = false;
      const timer = setTimeout(() => { ended = true; stop.abort(); }, ms);
      try {
        // httpRequest's own timeout is only a backstop: the timer above always ends the try first.
        const r = await httpRequest(`${a.url}${PATHS.rewards}?from=${from}`, {
          maxBytes: MAX_REWARD_BUNDLE_BYTES, timeoutMs: ms + 1000, signal: stop.signal, headers: { [FETCHER_HEADER]: 'mirror' },
        });
        if (r.status === 200) return r.body;
        reasons.push(`${a.url}: ${errorBodyReason(r)}`);
      } catch (e) {
        reasons.push(`${a.url}: ${ended ? `no answer in ${Math.round(ms)} ms` : (e as Error).message}`);
      } finally {
        clearTimeout(timer);
      }
      if (ended && cut) throw timedOut();
    }
    if (performance.now() >= until) throw timedOut();
    throw err('REWARD_NOT_AVAILABLE', `no authority gave the reward chain (${reasons.join('; ') || 'no authority'})`);
  }
}
