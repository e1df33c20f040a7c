// SPEC.md §9.21.8: a relay's directory mirror passes a hidden node's uploads on to the
// authorities. The node reaches the mirror over a 3-hop circuit (BEGIN_DIR at the mirror), so
// the authorities see the mirror's address, never the node's:
//   POST /bitcloud/descriptor   a relay descriptor with the hidden role (SPEC.md §9.21.1) only
//   POST /bitcloud/hs/desc      a hidden descriptor (SPEC.md §9.21.3)
//   POST /bitcloud/hs/pseudonym a pseudonym registration, sealed to each authority (SPEC.md §9.21.7):
//                               the mirror cannot open it; it checks the layout and that each entry
//                               is sealed to a distinct current authority signing key
// The mirror checks the layout and signature (never forwards junk under its own address), sends
// the body unchanged to every authority, and answers 200 with each authority's status (and, for a
// 200, the authority's signed ack; for a 4xx, its signed nack: the node checks both). A body it
// passed on within the last minute is not passed on again: the repeat gets the first answer.
// A body is read before one of the 16 places to pass it on is taken, and repeats waiting for an
// upload still being passed on are bounded (16 per upload, 256 in all) (SPEC.md §9.21.8).
import type http from 'node:http';
import { err, errorCode, isBitcloudError } from '../src/errors';
import type { AuthorityInfo } from '../src/dir/authorities';
import { verifyDescriptor } from '../src/dir/descriptor';
import { CONSENSUS_SKEW_MS, authoritySigningKeys } from '../src/dir/consensus';
import type { VerifiedConsensus } from '../src/dir/types';
import { FETCHER_HEADER, PATHS, httpRequest } from '../src/dir/fetch';
import { readBody, sendJson, sendJsonError } from '../src/dir/http-serve';
import { checkHsDescriptorOuter } from '../src/hidden/descriptor';
import { HS_DESC_PATH } from '../src/hidden/store';
import { HS_DESC_MAX } from '../src/wire/hidden';
import { HS_PSEUDONYM_PATH } from '../src/hidden/pseudonym';
import { PSEUDONYM_UPLOAD_MAX, decodePseudonymUpload } from '../src/wire/pseudonym';
import type { ForwardedResult } from '../src/hidden/upload';
import { LIMITS } from '../src/wire/docs';
import { blake2b } from '../src/crypto/primitives';
import { UPLOAD_ACK_MAX_CHARS } from '../src/dir/upload-ack';
import { oncePerRegistry, prom } from '../src/ops/metrics';

/**
 * SPEC.md §9.21.8: uploads being passed on to the authorities at the same time; more are answered
 * 503 (the node tries another mirror). A place is taken once the body is read and checked, only
 * while it is sent to the authorities.
 */
export const FORWARD_MAX_IN_FLIGHT = 16;
/**
 * SPEC.md §9.21.8: upload bodies being read at the same time (each at most 4 481 bytes, for at most
 * the dir port's 30 s request deadline, §6.10); more are answered 503 at once. The dir port bounds
 * neither its connections nor the BEGIN_DIR streams spliced into it as a whole, so this does.
 */
export const FORWARD_MAX_READING = 64;

/** SPEC.md §9.21.8: bodies passed on that the mirror remembers (the oldest is forgotten first)… */
export const FORWARD_REMEMBER_MAX = 4096;
/** …and for how long: a repeat within this time gets the first answer and is not passed on again. */
export const FORWARD_REMEMBER_MS = 60_000;
/**
 * SPEC.md §9.21.8: repeats waiting for an upload still being passed on, in all and per upload. A
 * waiting repeat holds no place, so without these its number would be bounded only by the dir
 * port's connections; past either the repeat is answered 503 RATE_LIMITED at once.
 */
export const FORWARD_MAX_WAITING = 256;
export const FORWARD_MAX_WAITING_PER_UPLOAD = 16;

/** A body passed on: its answer (or pending result), and the repeats waiting for it while pending. */
interface Passed {
  at: number;
  forwarded: Promise<ForwardedResult[]>;
  /** Set once `forwarded` has settled: a repeat then takes it without waiting. */
  done: ForwardedResult[] | null;
  waiters: number;
}

/** SPEC.md §9.21.8: the form of an authority's error code a mirror copies into `forwarded`. */
const UPSTREAM_CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

/** An authority's answer that settles an upload: anything but unreachable (0), 429 or 5xx. */
function decided(f: ForwardedResult): boolean {
  return f.status !== 0 && f.status !== 429 && f.status < 500;
}

export const forwardMetric = oncePerRegistry((reg) => new prom.Counter({
  name: 'bitcloud_relay_uploads_forwarded_total', help: 'Hidden nodes\' uploads this mirror passed on to the authorities (SPEC.md §9.21.8), by kind and result (forwarded, refused, repeat: a body passed on within the last minute, repeat_busy: a repeat refused because too many wait for uploads still being passed on, or the mirror\'s refusal code)',
  labelNames: ['kind', 'result'], registers: [reg],
}));

/**
 * SPEC.md §9.21.8: the signing keys a mirror checks pseudonym registrations against: those of the
 * configured authorities that signed its current consensus, as certified there (what a hidden node
 * seals to, §9.21.7). Worked out again for each new consensus, and at most a minute after the
 * last time (a certificate may expire while a consensus is held).
 */
export function mirrorSigningKeys(
  consensus: () => VerifiedConsensus | null, authorities: readonly AuthorityInfo[],
  now: () => number = Date.now, clock: () => number = () => performance.now(),
): () => ReadonlyMap<string, Buffer> | null {
  let last: { c: VerifiedConsensus; at: number; keys: ReadonlyMap<string, Buffer> } | null = null;
  return () => {
    const c = consensus();
    if (!c) return null;
    if (!last || last.c !== c || clock() - last.at >= 60_000) last = { c, at: clock(), keys: authoritySigningKeys(c, authorities, now()) };
    return last.keys;
  };
}

export class UploadForwarder {
  private inFlight = 0;
  private reading = 0;
  /** Repeats waiting for a pending forward, all uploads together (FORWARD_MAX_WAITING). */
  private waiting = 0;
  /** By kind and BLAKE2b-256 of the body, oldest first: the answer of each body passed on (or its pending result). */
  private readonly recent = new Map<string, Passed>();
  constructor(
    private readonly authorities: () => readonly AuthorityInfo[],
    private readonly now: () => number = Date.now,
    /** Counts by kind (descriptor, hs_desc, hs_pseudonym) and result (forwarded, refused, or the mirror's refusal code). */
    private readonly onResult: (kind: string, result: string) => void = () => {},
    /**
     * A monotonic clock (ms) for how long a body passed on is remembered (FORWARD_REMEMBER_MS), so
     * that a step of the wall clock neither stretches nor cuts that time; `now` (the wall clock)
     * judges the uploads' own times.
     */
    private readonly clock: () => number = () => performance.now(),
    /**
     * SPEC.md §9.21.8: the signing keys of the current authorities, by fingerprint, as certified in
     * the mirror's consensus (authoritySigningKeys); null while it holds none. A pseudonym
     * registration is passed on only when each entry is sealed to one of them.
     */
    private readonly signingKeys: () => ReadonlyMap<string, Buffer> | null = () => null,
  ) {}

  /** True when `p` is an upload path this mirror forwards. */
  static handles(method: string | undefined, p: string): boolean {
    return method === 'POST' && (p === PATHS.descriptor || p === HS_DESC_PATH || p === HS_PSEUDONYM_PATH);
  }


  async serve(req: http.IncomingMessage, res: http.ServerResponse, p: string): Promise<void> {
    const kind = p === HS_DESC_PATH ? 'hs_desc' : p === HS_PSEUDONYM_PATH ? 'hs_pseudonym' : 'descriptor';
    // SPEC.md §9.21.8: the body is read (and its size checked) before a place to pass it on is
    // taken, so slow senders (over circuits every client looks like loopback) hold none of the 16
    // places; the bodies being read at once have their own bound.
    if (this.reading >= FORWARD_MAX_READING) {
      req.resume();
      this.onResult(kind, 'RATE_LIMITED');
      return sendJsonError(res, 503, 'RATE_LIMITED', 'this mirror is reading as many uploads as it may; try another');
    }
    this.reading++;
    let body: Buffer | null;
    try {
      body = await readBody(req, kind === 'hs_desc' ? HS_DESC_MAX : kind === 'hs_pseudonym' ? PSEUDONYM_UPLOAD_MAX : LIMITS.descriptorBytes);
    } finally {
      this.reading--;
    }
    if (body === null) {
      this.onResult(kind, 'too_large');
      return sendJsonError(res, 413, kind === 'hs_desc' ? 'HIDDEN_DESC_MALFORMED' : kind === 'hs_pseudonym' ? 'HIDDEN_PSEUDONYM_MALFORMED' : 'DOC_TOO_LARGE', 'upload too large');
    }
    // SPEC.md §9.21.8: a repeat of a body passed on within FORWARD_REMEMBER_MS gets the first
    // answer (or waits for it) and reaches no authority again, so resending one upload does not
    // spend this mirror's budgets at the authorities.
    const key = `${kind}:${blake2b(body).toString('hex')}`;
    const now = this.clock();
    for (const [k, e] of this.recent) { if (now - e.at < FORWARD_REMEMBER_MS) break; this.recent.delete(k); }
    const seen = this.recent.get(key);
    if (seen) {
      let forwarded = await this.waitFor(seen);
      if (!forwarded) return this.waitersBusy(res, kind);
      // A repeat is a retry for the authorities that could not take it (unreachable, 429, 5xx):
      // it goes to those again, and to no other.
      const retry = new Set(forwarded.filter((f) => !decided(f)).map((f) => f.authority));
      const latest = this.recent.get(key);
      if (retry.size > 0 && latest === seen) {
        const sent = this.passOn(p, body, retry);
        if (!sent) return this.busy(res, kind);
        const prior = forwarded;
        const again = this.remember(key, seen.at, sent.then((r) => prior.map((f) => r.find((x) => x.authority === f.authority) ?? f)));
        forwarded = await again.forwarded;
      } else if (retry.size > 0) {
        forwarded = latest ? await this.waitFor(latest) : forwarded;
        if (!forwarded) return this.waitersBusy(res, kind);
      }
      this.onResult(kind, 'repeat');
      return sendJson(res, 200, { forwarded });
    }
    try {
      if (kind === 'hs_desc') checkHsDescriptorOuter(body, { nowMs: this.now() });
      else if (kind === 'hs_pseudonym') this.checkPseudonymUpload(body);
      else {
        // SPEC.md §6.2.4: the same 60 s skew the authorities allow by default, so a node whose clock
        // runs a little ahead is not refused here when every authority would accept it.
        const d = verifyDescriptor(body, { now: this.now(), skewMs: CONSENSUS_SKEW_MS });
        if (!d.roles.includes('hidden')) throw err('DIR_UPLOAD_NOT_HIDDEN', 'not a hidden storage node');
      }
    } catch (e) {
      const code = errorCode(e);
      this.onResult(kind, code);
      return sendJsonError(res, code === 'CONSENSUS_NOT_AVAILABLE' ? 503 : 400, code, code === 'DIR_UPLOAD_NOT_HIDDEN'
        ? 'a mirror passes on relay descriptors of hidden storage nodes only; others upload directly'
        : isBitcloudError(e) ? e.message : 'malformed upload');
    }
    const pending = this.passOn(p, body);
    if (!pending) return this.busy(res, kind);
    this.remember(key, now, pending);
    while (this.recent.size > FORWARD_REMEMBER_MAX) this.recent.delete(this.recent.keys().next().value as string);
    const forwarded = await pending;
    this.onResult(kind, forwarded.some((f) => f.status === 200) ? 'forwarded' : 'refused');
    sendJson(res, 200, { forwarded });
  }

  /**
   * SPEC.md §9.21.8: pass `body` on in one of the FORWARD_MAX_IN_FLIGHT places, held until every
   * authority asked has answered (or failed); null when none is free.
   */
  private passOn(p: string, body: Buffer, only?: ReadonlySet<string>): Promise<ForwardedResult[]> | null {
    if (this.inFlight >= FORWARD_MAX_IN_FLIGHT) return null;
    this.inFlight++;
    return this.forward(p, body, only).finally(() => { this.inFlight--; });
  }

  /** Keep `forwarded` as the answer of `key` (the body passed on at `at`), noting when it settles. */
  private remember(key: string, at: number, forwarded: Promise<ForwardedResult[]>): Passed {
    const e: Passed = { at, forwarded, done: null, waiters: 0 };
    void forwarded.then((r) => { e.done = r; });
    this.recent.set(key, e);
    return e;
  }

  /**
   * SPEC.md §9.21.8: the answer of `e` for a repeat, waiting for it while it is still being passed
   * on, as one of at most FORWARD_MAX_WAITING_PER_UPLOAD waiters on it and FORWARD_MAX_WAITING in
   * all; null when either is reached (the repeat is refused at once).
   */
  private async waitFor(e: Passed): Promise<ForwardedResult[] | null> {
    if (e.done) return e.done;
    if (this.waiting >= FORWARD_MAX_WAITING || e.waiters >= FORWARD_MAX_WAITING_PER_UPLOAD) return null;
    this.waiting++;
    e.waiters++;
    try {
      return await e.forwarded;
    } finally {
      this.waiting--;
      e.waiters--;
    }
  }

  private waitersBusy(res: http.ServerResponse, kind: string): void {
    this.onResult(kind, 'repeat_busy');
    sendJsonError(res, 503, 'RATE_LIMITED', 'too many repeats of uploads this mirror is still passing on wait for them; try again later');
  }

  private busy(res: http.ServerResponse, kind: string): void {
    this.onResult(kind, 'RATE_LIMITED');
    sendJsonError(res, 503, 'RATE_LIMITED', 'this mirror is passing on as many uploads as it may; try another');
  }

  /**
   * SPEC.md §9.21.8: a pseudonym registration upload decodes (count 1..16, exact length), has no
   * more entries than there are current authority signing keys, and each entry is sealed to a
   * distinct one of them; else HIDDEN_PSEUDONYM_MALFORMED. The mirror cannot open the entries, but
   * one sealed to no authority is junk that only spends the authorities' mirror bucket. With no
   * key known (no consensus yet) it passes none on: CONSENSUS_NOT_AVAILABLE (503).
   */
  private checkPseudonymUpload(body: Buffer): void {
    const entries = decodePseudonymUpload(body);
    const keys = this.signingKeys();
    if (!keys || keys.size === 0) throw err('CONSENSUS_NOT_AVAILABLE', 'this mirror knows no authority signing key yet (no consensus); try another');
    if (entries.length > keys.size) {
      throw err('HIDDEN_PSEUDONYM_MALFORMED', `a registration upload holds ${entries.length} entries; there are ${keys.size} current authority signing keys`);
    }
    const current = new Set([...keys.values()].map((k) => k.toString('hex')));
    const seen = new Set<string>();
    for (const e of entries) {
      const k = e.recipient.toString('hex');
      if (seen.has(k)) throw err('HIDDEN_PSEUDONYM_MALFORMED', 'two entries of the registration upload are sealed to the same key');
      if (!current.has(k)) throw err('HIDDEN_PSEUDONYM_MALFORMED', 'an entry of the registration upload is sealed to a key that is no current authority\'s signing key');
      seen.add(k);
    }
  }

  /** Send `body` to `p` at every authority at once; never rejects (an unreachable one is status 0). */
  private forward(p: string, body: Buffer, only?: ReadonlySet<string>): Promise<ForwardedResult[]> {
    return Promise.all(this.authorities().filter((a) => !only || only.has(a.fingerprint)).map(async (a): Promise<ForwardedResult> => {
      try {
        const r = await httpRequest(a.url + p, { method: 'POST', body, maxBytes: 64 * 1024, timeoutMs: 10_000, headers: { [FETCHER_HEADER]: 'mirror' } });
        let code: string | undefined;
        let ack: string | undefined;
        let nack: string | undefined;
        try {
          const j = JSON.parse(r.body.toString('utf8')) as { code?: unknown; ack?: unknown; nack?: unknown };
          // SPEC.md §9.21.8 "Upload acknowledgements": a 200's ack and a 4xx's nack are copied
          // verbatim (the node checks them); one that is no string or longer than
          // UPLOAD_ACK_MAX_CHARS is dropped.
          if (r.status !== 200) {
            // SPEC.md §9.21.8: the authority's error code is kept when it is one (an upper-case
            // name of at most 64 characters, §6.11), else dropped: whatever else an authority put
            // there (up to its 64 KiB answer) would be remembered with the upload and sent on.
            if (typeof j.code === 'string' && UPSTREAM_CODE.test(j.code)) code = j.code;
            if (r.status >= 400 && r.status < 500 && typeof j.nack === 'string' && j.nack.length <= UPLOAD_ACK_MAX_CHARS) nack = j.nack;
          } else if (typeof j.ack === 'string' && j.ack.length <= UPLOAD_ACK_MAX_CHARS) ack = j.ack;
        } catch { /* not JSON */ }
        return { authority: a.fingerprint, status: r.status, ...(code ? { code } : {}), ...(ack ? { ack } : {}), ...(nack ? { nack } : {}) };
      } catch (e) {
        return { authority: a.fingerprint, status: 0, code: errorCode(e) };
      }
    }));
  }
}
