// SPEC.md §9.21.3, §9.21.8, §6.10.1: what a relay's directory mirror passes on from the
// authorities on request (GET, unchanged, not trusted: the fetcher verifies what it gets):
//   GET /bitcloud/hs/desc/<blinded key>          a hidden descriptor (random order, first 200 wins)
//   GET /bitcloud/policy/<moderator>[?after=&digest=]  a moderator's policy (first 200 or 304 wins)
// Anyone may ask (over a circuit, the mirror cannot tell who), so the requests under way at once
// are bounded, both paths together, as the uploads it passes on are (relay/upload-forward.ts).
import type http from 'node:http';
import type { AuthorityInfo } from '../src/dir/authorities';
import { FETCHER_HEADER, httpRequest } from '../src/dir/fetch';
import { sendJsonError } from '../src/dir/http-serve';
import { HS_DESC_PATH } from '../src/hidden/store';
import { HS_DESC_MAX } from '../src/wire/hidden';
import { shuffle } from '../src/crypto/primitives';
import { POLICY_PATH } from '../src/moderation/sources';
import { BUNDLE_LIMITS } from '../src/moderation/chain';
import { AnswerPlaces, clientAddressKey } from '../src/dir/answer-places';

/**
 * SPEC.md §9.21.8: requests passed on at the same time (hidden descriptors and policies together);
 * more are answered 503 `RATE_LIMITED` (the fetcher tries another mirror).
 */
export const PASS_MAX_IN_FLIGHT = 16;

/** SPEC.md §9.21.8: of those places, at most this many held by one client address (IPv4 address, IPv6 /64). */
export const PASS_MAX_PER_ADDRESS = 4;

/**
 * SPEC.md §9.21.8: an answer passed on is handed on in full within this time from when it starts
 * to be sent, else its connection is destroyed and its place freed (16 MiB in 120 s: ~140 KB/s).
 */
export const PASS_ANSWER_DEADLINE_MS = 120_000;

/** SPEC.md §9.21.8: how long one authority is given to answer a request passed on. */
export const PASS_TRY_MS = 10_000;

/**
 * SPEC.md §9.21.8: how long all the authorities together are given (each try gets what is left,
 * at most PASS_TRY_MS), below the dir port's idle timeout (60 s, §6.10) so that the client gets
 * its 404 rather than a dropped connection when no authority answers.
 */
export const PASS_DEADLINE_MS = 30_000;

export interface DirPassOptions {
  /** PASS_ANSWER_DEADLINE_MS unless given (tests). */
  answerDeadlineMs?: number;
  /** PASS_DEADLINE_MS unless given (tests). */
  passDeadlineMs?: number;
  /** PASS_TRY_MS unless given (tests). */
  tryMs?: number;
}

export class DirPassThrough {
  private readonly places: AnswerPlaces;
  private readonly passDeadlineMs: number;
  private readonly tryMs: number;
  constructor(private readonly authorities: () => readonly AuthorityInfo[], opts: DirPassOptions = {}) {
    this.places = new AnswerPlaces(PASS_MAX_IN_FLIGHT, PASS_MAX_PER_ADDRESS, opts.answerDeadlineMs ?? PASS_ANSWER_DEADLINE_MS);
    this.passDeadlineMs = opts.passDeadlineMs ?? PASS_DEADLINE_MS;
    this.tryMs = opts.tryMs ?? PASS_TRY_MS;
  }

  /**
   * Run `ask` if a place is free, else answer 503 RATE_LIMITED. SPEC.md §9.21.8: the place is held
   * until the answer has been handed on in full ('finish') or its connection is gone ('close'),
   * whichever comes first, not merely until it is queued; an answer not handed on in full within
   * answerDeadlineMs of being sent has its connection destroyed, so a reader that reads slowly
   * (and is never idle long enough for the dir port to drop it, §6.10) holds its place no longer.
   * One client address holds at most PASS_MAX_PER_ADDRESS places.
   */
  private async bounded(req: http.IncomingMessage, res: http.ServerResponse, ask: () => Promise<void>): Promise<void> {
    const ran = await this.places.run(res, clientAddressKey(req.socket.remoteAddress, req.socket.localAddress), ask);
    if (!ran) sendJsonError(res, 503, 'RATE_LIMITED', 'this mirror is passing on as many requests as it may; try another');
  }

  /**
   * SPEC.md §9.21.3: GET /bitcloud/hs/desc/<blinded key>, passed on unchanged from an authority
   * (random order, first 200 wins). Not trusted: the client checks the signature and the seal.
   */
  async serveHsDescriptor(req: http.IncomingMessage, res: http.ServerResponse, p: string): Promise<void> {
    const key = p.slice(HS_DESC_PATH.length + 1);
    if (!/^[0-9a-f]{64}$/.test(key)) return sendJsonError(res, 404, 'HIDDEN_DESC_NOT_FOUND', 'expected /bitcloud/hs/desc/<64 lowercase hex>');
    return this.bounded(req, res, () => this.passHsDescriptor(req, res, key));
  }

  private passHsDescriptor(req: http.IncomingMessage, res: http.ServerResponse, key: string): Promise<void> {
    return this.passFromAuthorities(req, res, `${HS_DESC_PATH}/${key}`, HS_DESC_MAX, false,
      ['HIDDEN_DESC_NOT_FOUND', 'no authority holds a descriptor for that blinded key']);
  }

  /**
   * SPEC.md §10.7.1, §9.21.8: GET /bitcloud/policy/<moderator>[?after=&digest=], passed on from an
   * authority (random order; 200 or 304 wins, 404 tries the next). Not trusted: the subscriber
   * verifies every bundle. Hidden nodes fetch their moderators' policies this way over circuits.
   */
  async servePolicy(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://mirror');
    const fp = url.pathname.slice(POLICY_PATH.length);
    if (!/^[0-9a-f]{64}$/.test(fp)) return sendJsonError(res, 404, 'POLICY_BAD_MODERATOR', 'expected /bitcloud/policy/<64 lowercase hex>[?after=SEQ&digest=HEX]');
    // SPEC.md §9.21.8, §10.7.1: the query the authority's route reads, `after` and `digest`, each
    // passed on when present and well-formed as the authority checks it; one it would ignore is
    // dropped (as it would be ignored), never refused.
    const after = url.searchParams.get('after');
    const digest = url.searchParams.get('digest');
    const q = [
      ...(after !== null && /^\d{1,15}$/.test(after) ? [`after=${after}`] : []),
      ...(digest !== null && /^[0-9a-f]{64}$/.test(digest) ? [`digest=${digest}`] : []),
    ].join('&');
    return this.bounded(req, res, () => this.passPolicy(req, res, q ? `${fp}?${q}` : fp));
  }

  private passPolicy(req: http.IncomingMessage, res: http.ServerResponse, target: string): Promise<void> {
    return this.passFromAuthorities(req, res, `${POLICY_PATH}${target}`, BUNDLE_LIMITS.bytes, true,
      ['POLICY_NOT_FOUND', 'no authority holds a policy of that moderator']);
  }

  /**
   * GET `path` of the authorities in random order and pass on the first 200 (body of at most
   * `maxBytes`), or, when `allow304`, the first 304; anything else, or no answer, tries the next.
   * When none answers so within passDeadlineMs in all (each try gets what is left, at most
   * PASS_TRY_MS; measured on the monotonic clock, so a step of the wall clock neither cuts nor
   * stretches it; SPEC.md §9.21.8), 404 with `notFound` (code, reason). Once the client's
   * connection closes, the request under way is abandoned and no further authority is asked.
   */
  private async passFromAuthorities(req: http.IncomingMessage, res: http.ServerResponse, path: string, maxBytes: number, allow304: boolean, notFound: readonly [code: string, reason: string]): Promise<void> {
    const gone = new AbortController();
    const onClose = () => gone.abort();
    res.once('close', onClose);
    try {
      const until = performance.now() + this.passDeadlineMs;
      for (const a of shuffle([...this.authorities()])) {
        const left = until - performance.now();
        if (left <= 0 || gone.signal.aborted) break;
        try {
          const r = await httpRequest(`${a.url}${path}`, { maxBytes, timeoutMs: Math.min(this.tryMs, left), headers: { [FETCHER_HEADER]: 'mirror' }, signal: gone.signal });
          if (gone.signal.aborted) return;
          if (allow304 && r.status === 304) { res.writeHead(304); res.end(); return; }
          if (r.status !== 200) continue;
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': r.body.length, 'cache-control': 'no-store' });
          res.end(req.method === 'HEAD' ? undefined : r.body);
          return;
        } catch { /* next authority */ }
      }
      if (!gone.signal.aborted) sendJsonError(res, 404, notFound[0], notFound[1]);
    } finally {
      res.off('close', onClose);
    }
  }
}
