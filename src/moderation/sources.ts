// SPEC.md §10.7: where policies are found. The authorities keep the chain of every moderator that
// uploads one and serve it over HTTP; the DHT carries the same bundle as BEP 44 items (dht.ts).
// A source only transports bytes: every bundle is verified by advancePolicy, so a lying source
// can withhold a policy but never change one.
import { err } from '../errors';
import { httpRequest, errorBodyReason, type HttpResponse } from '../dir/fetch';
import { BUNDLE_LIMITS, type PolicyState } from './chain';

/** A place to fetch a moderator's newest bundle. Resolves null when it has nothing newer. */
export interface PolicySource {
  readonly name: string;
  fetch(moderator: string, held: PolicyState | null): Promise<Buffer | null>;
}

export const POLICY_PATH = '/bitcloud/policy/';

/** The URL of one moderator's policy at an authority (SPEC.md §10.7.1). */
export function policyUrl(baseUrl: string, moderator: string, held?: { seq: number; digest: Buffer } | null): string {
  const q = held ? `?after=${held.seq}&digest=${held.digest.toString('hex')}` : '';
  return `${baseUrl.replace(/\/+$/, '')}${POLICY_PATH}${moderator}${q}`;
}

/**
 * GET the chain from an authority: 200 → the bundle (only the versions after `held` when the
 * authority holds the same version, else the whole chain); 304 → nothing newer; 404 → none known.
 */
export function authoritySource(baseUrl: string, o: { timeoutMs?: number } = {}): PolicySource {
  return {
    name: baseUrl,
    async fetch(moderator, held) {
      const r = await httpRequest(policyUrl(baseUrl, moderator, held), { timeoutMs: o.timeoutMs ?? 10_000, maxBytes: BUNDLE_LIMITS.bytes });
      if (r.status === 304 || r.status === 404) return null;
      if (r.status !== 200) throw err('POLICY_FETCH_FAILED', `${baseUrl}: ${errorBodyReason(r)}`, { status: r.status });
      return r.body;
    },
  };
}

/** POST a bundle to an authority. Resolves with its answer; rejects POLICY_UPLOAD_REFUSED / DIR_FETCH_FAILED. */
export async function uploadPolicy(baseUrl: string, moderator: string, bundle: Buffer, o: { timeoutMs?: number } = {}): Promise<{ result: string; seq: number }> {
  const r = await httpRequest(policyUrl(baseUrl, moderator), { method: 'POST', body: bundle, timeoutMs: o.timeoutMs ?? 10_000, maxBytes: 64 * 1024 });
  return policyUploadAnswer(baseUrl, r);
}

/** An authority's answer to a policy upload (JSON from the network: anything else is judged by the status). */
export function policyUploadAnswer(baseUrl: string, r: HttpResponse): { result: string; seq: number } {
  let j: { result?: unknown; seq?: unknown; code?: unknown } = {};
  try {
    const parsed: unknown = JSON.parse(r.body.toString('utf8'));
    if (parsed !== null && typeof parsed === 'object') j = parsed as typeof j;
  } catch { /* not JSON */ }
  if (r.status !== 200) {
    throw err('POLICY_UPLOAD_REFUSED', `${baseUrl}: ${errorBodyReason(r)}`, { status: r.status, code: typeof j.code === 'string' ? j.code : undefined });
  }
  return { result: typeof j.result === 'string' ? j.result : 'updated', seq: typeof j.seq === 'number' ? j.seq : 0 };
}
