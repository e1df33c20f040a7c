// SPEC.md §9.21.8: a hidden node's uploads (its relay descriptor, its hidden descriptors and its
// pseudonym registrations, §9.21.7) go over a 3-hop circuit to a relay's directory mirror, which passes
// them on to every authority and answers with each authority's status. The authorities see the
// mirror's address, not the node's.
import { err } from '../errors';
import type { AuthorityInfo } from '../dir/authorities';
import type { UploadResult } from '../dir/publish';
import { PATHS } from '../dir/fetch';
import { UPLOAD_ACK_MAX_CHARS, isNackCode, uploadSignedMessage, verifyUploadAckMessage, type UploadKind } from '../dir/upload-ack';
import type { ConsensusRelay } from '../dir/types';
import type { Logger } from '../ops/log';
import { overMirrorCircuit, type MirrorCircuitOptions } from './client';
import { HS_DESC_PATH } from './store';
import { HS_PSEUDONYM_PATH } from './pseudonym';

/**
 * One authority's answer as the mirror reports it: `status` 0 when the mirror could not reach it;
 * `ack` the authority's signed acknowledgement of a 200, `nack` its signed refusal of a 4xx
 * (SPEC.md §9.21.8), each copied by the mirror.
 */
export interface ForwardedResult { authority: string; status: number; code?: string; ack?: string; nack?: string }

const MAX_ANSWER = 16 * 1024;
/** How many authorities' fingerprints one log line about a mirror's answer names. */
const LOGGED_AUTHORITIES = 4;

/**
 * SPEC.md §9.21.8: the mirror's `{"forwarded": [...]}` answer. Anything else (not JSON, not an
 * object, JSON null, a `forwarded` that is not a list of at most 64 objects, an entry without a
 * string `authority` and an integer `status`) is DIR_FETCH_FAILED naming what was wrong, never a
 * TypeError: the node then tries another mirror as for one that answered no list.
 */
function parseForwarded(body: Buffer): ForwardedResult[] {
  let j: unknown;
  try { j = JSON.parse(body.toString('utf8')); } catch { throw err('DIR_FETCH_FAILED', 'the mirror\'s answer is not JSON'); }
  if (!isObject(j)) throw err('DIR_FETCH_FAILED', 'the mirror\'s answer is not a JSON object');
  const list = j.forwarded;
  if (!Array.isArray(list) || list.length > 64) throw err('DIR_FETCH_FAILED', 'the mirror\'s answer has no list of authorities');
  return list.map((x: unknown) => {
    if (!isObject(x)) throw err('DIR_FETCH_FAILED', 'the mirror\'s list of authorities has an entry that is not an object');
    const f = x as { authority?: unknown; status?: unknown; code?: unknown };
    if (typeof f.authority !== 'string' || !Number.isInteger(f.status)) throw err('DIR_FETCH_FAILED', 'the mirror\'s answer is malformed');
    const { ack, nack } = x as { ack?: unknown; nack?: unknown };
    return {
      authority: f.authority, status: f.status as number, ...(typeof f.code === 'string' ? { code: f.code.slice(0, 64) } : {}),
      ...(typeof ack === 'string' && ack.length <= UPLOAD_ACK_MAX_CHARS ? { ack } : {}),
      ...(typeof nack === 'string' && nack.length <= UPLOAD_ACK_MAX_CHARS ? { nack } : {}),
    };
  });
}

/** A JSON object: not null, not an array. */
function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** What the node knows to check the mirror's word with (SPEC.md §9.21.8 "Upload acknowledgements"). */
export interface UploadConfirm {
  /**
   * The authorities' signing keys as the node knows them, by fingerprint: those its consensus
   * certifies (authoritySigningKeys). A 200 or 4xx from an authority not among them is not confirmed.
   */
  signingKeys: () => ReadonlyMap<string, Buffer>;
  /**
   * Where a mirror's unconfirmed 200s and 4xx are logged: one warn line per answer (the mirror's
   * fingerprint, how many, the first few authorities), and a debug line for those from authorities
   * whose signing key the node does not know.
   */
  log?: Logger;
}

/** The acknowledged kind of an upload path (SPEC.md §9.21.8): the name a mirror counts it by. */
export function uploadKindOf(path: string): UploadKind {
  if (path === HS_DESC_PATH) return 'hs_desc';
  if (path === HS_PSEUDONYM_PATH) return 'hs_pseudonym';
  if (path === PATHS.descriptor) return 'descriptor';
  throw err('INTERNAL', `no upload kind for ${path}`);
}

/**
 * SPEC.md §9.21.8: each entry of a mirror's list whose status is 200 must carry an `ack` that
 * verifies under that authority's signing key over the node's own body, and each whose status is
 * a 4xx but 429 a `nack` that verifies over the node's own body and the entry's code (any other
 * status but 0, 429 and 5xx, which no authority answers, has neither); else the mirror did not pass the upload on (or altered it), and the entry becomes status 0,
 * HIDDEN_UPLOAD_UNCONFIRMED: the node retries it as for an authority the mirror could not reach
 * (and the entry does not settle the upload, noAuthorityAccepted). One answer gives at most one
 * warn line (the mirror's fingerprint, the number of such entries, the first LOGGED_AUTHORITIES
 * authorities), so a hostile mirror cannot fill the node's log; an entry from an authority whose
 * signing key the node does not know (not in its consensus, or a rotated key) is no proof against
 * the mirror, and is logged at debug only.
 */
function confirmForwarded(forwarded: readonly ForwardedResult[], signed: (code?: string) => Buffer, confirm: UploadConfirm, mirror: ConsensusRelay): ForwardedResult[] {
  const keys = confirm.signingKeys();
  const unconfirmed: string[] = [];
  const unknownKey: string[] = [];
  const out = forwarded.map((f) => {
    // Entries that leave the upload unsettled (noAuthorityAccepted) need no proof; every other
    // one must be a 200 with its ack or a refusal with its nack. No authority answers these
    // uploads with a 1xx, another 2xx or a 3xx, so such an entry is unconfirmed too: else a mirror
    // could settle the upload with a status it never received.
    if (unsettled(f.status)) return f;
    const refusal = f.status >= 400 && f.status < 500;
    const key = keys.get(f.authority);
    if (key && f.status === 200 && verifyUploadAckMessage(signed(), f.ack, key)) return f;
    if (key && refusal && isNackCode(f.code) && verifyUploadAckMessage(signed(f.code), f.nack, key)) return f;
    (key ? unconfirmed : unknownKey).push(f.authority.slice(0, 64));
    return { authority: f.authority, status: 0, code: 'HIDDEN_UPLOAD_UNCONFIRMED' };
  });
  if (unconfirmed.length > 0) {
    confirm.log?.warn({ mirror: mirror.fingerprint, unconfirmed: unconfirmed.length, authorities: unconfirmed.slice(0, LOGGED_AUTHORITIES) },
      'a mirror reported an upload accepted or refused without the authority\'s signature; not counted as answered');
  }
  if (unknownKey.length > 0) {
    confirm.log?.debug({ mirror: mirror.fingerprint, unknownKey: unknownKey.length, authorities: unknownKey.slice(0, LOGGED_AUTHORITIES) },
      'a mirror reported an upload accepted or refused by an authority whose signing key this node does not know; not counted as answered');
  }
  return out;
}

/**
 * SPEC.md §9.21.8: true when the mirror's list shows that no authority took the upload or judged it:
 * every entry 429 (the mirror's budget there is spent), 5xx or 0 (unreachable).
 */
export function noAuthorityAccepted(forwarded: readonly ForwardedResult[]): boolean {
  return forwarded.every((f) => unsettled(f.status));
}

/**
 * SPEC.md §9.21.8: a status that leaves an upload unsettled: 0 (unreachable), 429 or a 5xx (500 to
 * 599). A status of 600 or more is no 5xx: no authority answers so, and such an entry is taken as
 * an unconfirmed 200, as a 1xx, 3xx or negative one.
 */
function unsettled(status: number): boolean {
  return status === 0 || status === 429 || (status >= 500 && status <= 599);
}

/**
 * POST `body` to `path` (PATHS.descriptor, HS_DESC_PATH or HS_PSEUDONYM_PATH) at a mirror over a circuit. Resolves
 * with what each authority answered once a mirror passed it on, each 200 confirmed by the
 * authority's ack (confirmForwarded); a mirror that refuses it (4xx, 5xx), cannot be reached, or
 * whose answer shows no authority accepted it (noAuthorityAccepted, after that check) is followed
 * by another (up to 3; SPEC.md §9.21.8). When every mirror tried answered so, resolves with the
 * last such answer. Never contacts an authority itself.
 */
export async function uploadOverCircuit(o: MirrorCircuitOptions, path: string, body: Buffer, confirm: UploadConfirm): Promise<ForwardedResult[]> {
  const kind = uploadKindOf(path);
  // The signed bytes of an ack, and of a nack per code, built when an answer first needs them.
  const messages = new Map<string, Buffer>();
  const signed = (code?: string): Buffer => {
    const k = code === undefined ? '' : `:${code}`;
    let m = messages.get(k);
    if (!m) { m = uploadSignedMessage(kind, body, code); messages.set(k, m); }
    return m;
  };
  let unaccepted: ForwardedResult[] | null = null;
  try {
    return await overMirrorCircuit(o, { method: 'POST', path, body, maxBytes: MAX_ANSWER }, (r, mirror) => {
      if (r.status === 200) {
        const forwarded = confirmForwarded(parseForwarded(r.body), signed, confirm, mirror);
        // An empty list is no authority's answer either (the mirror knew none): another mirror.
        if (!noAuthorityAccepted(forwarded)) return forwarded;
        unaccepted = forwarded;
        throw err('DIR_FETCH_FAILED', 'no authority accepted the upload through this mirror');
      }
      let code = 'DIR_FETCH_FAILED';
      try { code = String((JSON.parse(r.body.toString('utf8')) as { code?: unknown }).code ?? code); } catch { /* not JSON */ }
      throw err('DIR_FETCH_FAILED', `the mirror refused the upload: HTTP ${r.status} ${code.slice(0, 64)}`);
    });
  } catch (e) {
    if (unaccepted) return unaccepted;
    throw e;
  }
}

/** The mirror's per-authority answers as the descriptor publisher's results (SPEC.md §6.4), for `targets`. */
export function asUploadResults(targets: readonly AuthorityInfo[], forwarded: readonly ForwardedResult[]): UploadResult[] {
  return targets.map((a) => {
    const f = forwarded.find((x) => x.authority === a.fingerprint);
    if (!f) return { authority: a.name, ok: false, detail: 'the mirror did not reach it' };
    // A 4xx but 429 left in the list has a verified nack (confirmForwarded): the authority's own
    // refusal. Any other entry's code is the mirror's word (SPEC.md §9.21.8).
    const refused = f.status >= 400 && f.status < 500 && f.status !== 429 && f.code ? { refused: f.code } : {};
    return { authority: a.name, ok: f.status === 200, detail: f.status === 200 ? 'accepted (through a mirror)' : `${f.code ?? 'HTTP'} ${f.status} (through a mirror)`, ...refused };
  });
}
