// SPEC.md §9.17.4: the auditor's side of an audit. It holds, per share, only the audit root and the
// share's size; it draws a fresh nonce, derives the blocks from it, asks the node (over whatever
// transport the caller gives: circuits by default, so the node never learns who audits), and
// checks the answer. Every failure — an error answer, no answer, a malformed, replayed or forged
// answer — is a failed audit with a stable code; nothing here throws for a bad node.
import { errorCode } from '../errors';
import { randomBytes } from '../crypto/primitives';
import { DEFAULT_AUDIT_BLOCKS, auditAnswerMaxBytes, challengeBlocks, verifyAuditAnswer } from './audit';
import type { StorageRequest, StorageResponse } from './protocol';

/** What an auditor keeps per share instead of the share (SPEC.md §9.17.1). */
export interface AuditCommitment {
  shareId: Buffer;
  /** Share size in bytes. */
  size: number;
  /** Audit root (32 bytes). */
  root: Buffer;
}

/** One audit's outcome: the challenge and, on failure, why. Enough for anyone to recheck it. */
export interface AuditResult {
  shareId: string;
  ok: boolean;
  /** AUDIT_PROOF_INVALID, AUDIT_REPLAYED, AUDIT_ANSWER_MALFORMED, SHARE_NOT_FOUND, STORAGE_TIMEOUT, … */
  code?: string;
  nonce: string;
  blocks: number[];
  /**
   * The node's answer (hex), when it sent one: with the audit root, anyone can recheck it. A failed
   * answer longer than any valid answer to its blocks is left out (SPEC.md §9.20.3).
   */
  answer?: string;
}

/** Sends a challenge and resolves with the node's successful answer (rejects with its error). */
export type ChallengeSender = (req: StorageRequest & { type: 'challenge' }) => Promise<StorageResponse>;

export interface AuditOptions {
  /** Blocks named per challenge (default 4, at most 16). */
  blocks?: number;
  /** A given nonce (tests, rechecks); default 32 fresh random bytes. */
  nonce?: Buffer;
}

/** Audit one share held by one node. Never throws for the node's faults. */
export async function auditShare(send: ChallengeSender, c: AuditCommitment, opts: AuditOptions = {}): Promise<AuditResult> {
  const nonce = opts.nonce ?? randomBytes(32);
  const blocks = challengeBlocks(nonce, c.shareId, c.size, opts.blocks ?? DEFAULT_AUDIT_BLOCKS);
  const base = { shareId: c.shareId.toString('hex'), nonce: nonce.toString('hex'), blocks };
  let answer: Buffer;
  try {
    const res = await send({ type: 'challenge', id: c.shareId, nonce, blocks });
    if (res.type !== 'challenge') return { ...base, ok: false, code: 'STORAGE_BAD_RESPONSE' };
    answer = res.answer;
  } catch (e) {
    return { ...base, ok: false, code: errorCode(e) };
  }
  try {
    verifyAuditAnswer(answer, { root: c.root, size: c.size, nonce, blocks });
    return { ...base, ok: true, answer: answer.toString('hex') };
  } catch (e) {
    // SPEC.md §9.20.3: a failed answer is kept only up to what a valid answer to these blocks can
    // take: a node answering junk of the largest answer size (MAX_AUDIT_ANSWER_BYTES, for 16 blocks)
    // would otherwise put that much into the report for every pair. Kept whole or not at all (a cut
    // answer could verify, and the result would then not recheck).
    const kept = answer.length <= auditAnswerMaxBytes(c.size, nonce.length, blocks);
    return { ...base, ok: false, code: errorCode(e), ...(kept ? { answer: answer.toString('hex') } : {}) };
  }
}

/**
 * SPEC.md §9.17.2, §9.18.3, §9.20.2: the waits (ms) before asking again an audit a node answered
 * with STORAGE_BUSY. Its node-wide audit queue is full, which anyone can bring about by sending
 * challenges: the answer says nothing about the share, so it is asked again, up to 3 times.
 */
export const AUDIT_BUSY_RETRY_MS: readonly number[] = [1000, 2000, 4000];

/**
 * Runs `audit` and, while it answers STORAGE_BUSY, again after each wait of `retryMs` in turn.
 * The result of the last try: still STORAGE_BUSY when the node was busy every time. When `signal`
 * aborts (a `keep run` or an authority stopping), a wait ends at once and no more tries are sent:
 * it rejects with the signal's AbortError instead of holding the stop for up to 7 s.
 */
export async function auditRetryingBusy(audit: () => Promise<AuditResult>, retryMs: readonly number[] = AUDIT_BUSY_RETRY_MS, signal?: AbortSignal): Promise<AuditResult> {
  let r = await audit();
  for (const ms of retryMs) {
    if (r.ok || r.code !== 'STORAGE_BUSY') break;
    await waitOrAbort(ms, signal);
    r = await audit();
  }
  return r;
}

/** Resolves after `ms`, or rejects with the signal's reason (an AbortError) as soon as it aborts. */
function waitOrAbort(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) { reject(signal.reason as Error); return; }
    const onAbort = () => { clearTimeout(t); reject(signal!.reason as Error); };
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Recheck a published result against the audit root (SPEC.md §9.17.5): true when it holds as published. */
export function recheckAuditResult(r: AuditResult, c: AuditCommitment): boolean {
  if (!r.answer) return !r.ok;
  const nonce = Buffer.from(r.nonce, 'hex');
  let blocks: number[];
  try {
    blocks = challengeBlocks(nonce, c.shareId, c.size, r.blocks.length);
  } catch {
    return false; // a nonce or size no challenge could carry (§9.17.2): it cannot hold as published
  }
  if (r.blocks.join(',') !== blocks.join(',')) return false;
  try {
    verifyAuditAnswer(Buffer.from(r.answer, 'hex'), { root: c.root, size: c.size, nonce, blocks: r.blocks });
    return r.ok;
  } catch {
    return !r.ok;
  }
}
