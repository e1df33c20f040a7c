// SPEC.md §9.21.8: a hidden node's uploads (its relay descriptor, its hidden descriptors and its
// pseudonym registrations, §9.21.7) go over a 3-hop circuit to a relay's directory mirror, which passes
// them on to every authority and answers with each authority's status. The authorities see the
// mirror's address, not the node's.
import { err } from '../errors';
import type { AuthorityInfo } from '../dir/authorities';
import type { UploadResult } from '../dir/publish';
import { overMirrorCircuit, type MirrorCircuitOptions } from './client';

/** One authority's answer as the mirror reports it: `status` 0 when the mirror could not reach it. */
export interface ForwardedResult { authority: string; status: number; code?: string }

const MAX_ANSWER = 16 * 1024;

function parseForwarded(body: Buffer): ForwardedResult[] {
  let j: unknown;
  try { j = JSON.parse(body.toString('utf8')); } catch { throw err('DIR_FETCH_FAILED', 'the mirror\'s answer is not JSON'); }
  const list = (j as { forwarded?: unknown }).forwarded;
  if (!Array.isArray(list) || list.length > 64) throw err('DIR_FETCH_FAILED', 'the mirror\'s answer has no list of authorities');
  return list.map((x: unknown) => {
    const f = x as { authority?: unknown; status?: unknown; code?: unknown };
    if (typeof f.authority !== 'string' || !Number.isInteger(f.status)) throw err('DIR_FETCH_FAILED', 'the mirror\'s answer is malformed');
    return { authority: f.authority, status: f.status as number, ...(typeof f.code === 'string' ? { code: f.code.slice(0, 64) } : {}) };
  });
}

/**
 * SPEC.md §9.21.8: true when the mirror's list shows that no authority took the upload or judged it:
 * every entry 429 (the mirror's budget there is spent), 5xx or 0 (unreachable).
 */
export function noAuthorityAccepted(forwarded: readonly ForwardedResult[]): boolean {
  return forwarded.every((f) => f.status === 0 || f.status === 429 || f.status >= 500);
}

/**
 * POST `body` to `path` (PATHS.descriptor, HS_DESC_PATH or HS_PSEUDONYM_PATH) at a mirror over a circuit. Resolves
 * with what each authority answered once a mirror passed it on; a mirror that refuses it (4xx,
 * 5xx), cannot be reached, or whose answer shows no authority accepted it (noAuthorityAccepted)
 * is followed by another (up to 3; SPEC.md §9.21.8). When every mirror tried answered so, resolves
 * with the last such answer. Never contacts an authority itself.
 */
export async function uploadOverCircuit(o: MirrorCircuitOptions, path: string, body: Buffer): Promise<ForwardedResult[]> {
  let unaccepted: ForwardedResult[] | null = null;
  try {
    return await overMirrorCircuit(o, { method: 'POST', path, body, maxBytes: MAX_ANSWER }, (r) => {
      if (r.status === 200) {
        const forwarded = parseForwarded(r.body);
        if (forwarded.length === 0 || !noAuthorityAccepted(forwarded)) return forwarded;
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
    return { authority: a.name, ok: f.status === 200, detail: f.status === 200 ? 'accepted (through a mirror)' : `${f.code ?? 'HTTP'} ${f.status} (through a mirror)` };
  });
}
