// SPEC.md §10.6: what a storage node enforces, as the storage handler's policy hook (SPEC.md
// §9.8.5). A node that subscribes to moderators enforces ALL of their policies, on store (put) and
// on serve (get, audit); every refusal carries a stable code and names the moderator that caused
// it. A node that subscribes to nobody is unmoderated: it stores only encrypted content, and only
// from BEGIN_STORAGE streams on circuits (SPEC.md §10.6).
import { err, type ErrorCode } from '../errors';
import type { StorageRequest } from '../storage/protocol';
import { admittingRule, type PolicyState } from './chain';
import { ContentClass } from './policy';

/** The storage handler's hook (structurally storage/handler.ts PolicyCheck; src/ cannot import storage/). */
export type PolicyCheck = (req: StorageRequest, ctx: { viaCircuit: boolean }) => void | Promise<void>;

/** What enforcement needs to know about a node's subscriptions (subscription.ts implements it). */
export interface SubscriptionView {
  /** True when the node subscribes to no moderator. */
  readonly unmoderated: boolean;
  /** Subscribed moderator fingerprints, in configuration order. */
  readonly moderators: readonly string[];
  /** The moderator's current policy; null while none has been obtained. */
  policy(moderator: string): PolicyState | null;
  /**
   * Allow-only classes (SPEC.md §10.6): a put of one of these classes is stored only when a
   * subscribed moderator approved it (its share id is on the policy's allowlist). "public-any"
   * covers every public class.
   */
  readonly approvedOnly?: readonly string[];
}

/** Is class `cls` one of the allow-only classes? */
export function isApprovedOnly(cls: string, approvedOnly: readonly string[] | undefined): boolean {
  if (!approvedOnly?.length) return false;
  return approvedOnly.includes(cls) || (cls.startsWith('public-') && approvedOnly.includes(ContentClass.PUBLIC_ANY));
}

/** The class a put declares (SPEC.md §9.6.3 `content_class`; empty or absent = encrypted-private). */
export function declaredClass(req: StorageRequest): string {
  const c = (req as { contentClass?: unknown }).contentClass;
  return typeof c === 'string' && c !== '' ? c : ContentClass.ENCRYPTED_PRIVATE;
}

/** Shares shorter than this are not judged by looksEncrypted (too few bytes to tell). */
export const RANDOMNESS_MIN_BYTES = 2048;
/** At most this many leading bytes are examined. */
export const RANDOMNESS_SAMPLE_BYTES = 65536;
/**
 * Chi-square bound for 255 degrees of freedom: the Wilson–Hilferty z-score of 553 is about 10, so
 * uniformly random bytes (ciphertext, and Reed–Solomon parity of ciphertext) exceed it with
 * probability below 1e-20, while text, markup, base64 or uncompressed media exceed it by far.
 */
export const RANDOMNESS_CHI2_MAX = 553;

const histogram = new Uint32Array(256); // reused: one put at a time runs this synchronously

/**
 * SPEC.md §10.6 (randomness check): a sanity check that a share is ciphertext: the byte histogram of its first
 * 64 KiB must be consistent with uniform bytes. It catches plaintext sent as encrypted-private; it
 * cannot tell ciphertext from compressed data, so it is a check, not a proof.
 */
export function looksEncrypted(data: Uint8Array): boolean {
  if (data.length < RANDOMNESS_MIN_BYTES) return true;
  const n = Math.min(data.length, RANDOMNESS_SAMPLE_BYTES);
  histogram.fill(0);
  for (let i = 0; i < n; i++) histogram[data[i]]++;
  const expected = n / 256;
  let chi2 = 0;
  for (let b = 0; b < 256; b++) {
    const d = histogram[b] - expected;
    chi2 += (d * d) / expected;
  }
  return chi2 <= RANDOMNESS_CHI2_MAX;
}

/** The codes a storage node refuses a request with by moderation (SPEC.md §10.6, §10.9). */
export const MODERATION_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'POLICY_UNAVAILABLE', 'POLICY_DENIED', 'POLICY_CLASS_NOT_ALLOWED', 'POLICY_TOO_LARGE', 'POLICY_NOT_ENCRYPTED',
  'UNMODERATED_CIRCUIT_ONLY', 'UNMODERATED_ENCRYPTED_ONLY',
]);

function refuse(code: ErrorCode, moderator: string, why: string, extra: Record<string, unknown> = {}): never {
  throw err(code, `${why} (moderator ${moderator})`, { moderator, ...extra });
}

/** The share size limit of one policy for one class rule: the smaller non-zero limit, or none. */
function sizeLimit(a: number, b: number): number {
  if (a === 0) return b;
  if (b === 0) return a;
  return Math.min(a, b);
}

/**
 * Build the storage node's policy hook. Put: unmoderated rules, or, for each subscribed moderator
 * in order, POLICY_UNAVAILABLE (no policy yet), POLICY_DENIED, POLICY_CLASS_NOT_ALLOWED,
 * POLICY_TOO_LARGE; then, for an allow-only class, POLICY_NOT_APPROVED unless some subscribed
 * policy's allowlist holds the share. Get, audit and challenge: POLICY_DENIED for an id any subscribed policy lists. Other
 * requests pass.
 */
export function makePolicyCheck(subs: SubscriptionView): PolicyCheck {
  return (req, ctx) => {
    switch (req.type) {
      case 'put': {
        const cls = declaredClass(req);
        if (subs.unmoderated) {
          if (!ctx.viaCircuit) {
            throw err('UNMODERATED_CIRCUIT_ONLY', 'this node is unmoderated: it stores shares only from circuits (BEGIN_STORAGE), never on a direct link');
          }
          if (cls !== ContentClass.ENCRYPTED_PRIVATE) {
            throw err('UNMODERATED_ENCRYPTED_ONLY', `this node is unmoderated: it stores only encrypted-private content, not ${cls}`, { contentClass: cls });
          }
        }
        if (cls === ContentClass.ENCRYPTED_PRIVATE && !looksEncrypted(req.data)) {
          throw err(subs.unmoderated ? 'UNMODERATED_ENCRYPTED_ONLY' : 'POLICY_NOT_ENCRYPTED', 'share declared encrypted-private does not look encrypted');
        }
        for (const m of subs.moderators) {
          const p = subs.policy(m);
          if (!p) refuse('POLICY_UNAVAILABLE', m, 'this node has not yet obtained the policy of a moderator it enforces; try another node');
          if (p.deny.deniesId(req.id)) refuse('POLICY_DENIED', m, 'share is on the denylist');
          const rule = admittingRule(p, cls);
          if (!rule) refuse('POLICY_CLASS_NOT_ALLOWED', m, `content class ${cls} is not allowed`, { contentClass: cls });
          const limit = sizeLimit(rule.maxShareBytes, p.maxShareBytes);
          if (limit > 0 && req.data.length > limit) {
            refuse('POLICY_TOO_LARGE', m, `share of ${req.data.length} bytes exceeds the limit of ${limit} for ${cls}`, { size: req.data.length, limit });
          }
        }
        if (isApprovedOnly(cls, subs.approvedOnly) && !subs.moderators.some((m) => subs.policy(m)?.allow.hasId(req.id))) {
          throw err('POLICY_NOT_APPROVED', `this node stores ${cls} content only when a moderator it follows approved it (moderators ${subs.moderators.map((m) => m.slice(0, 16)).join(', ')})`, { contentClass: cls });
        }
        return;
      }
      case 'get':
      case 'audit':
      case 'challenge':
        for (const m of subs.moderators) {
          if (subs.policy(m)?.deny.deniesId(req.id)) refuse('POLICY_DENIED', m, 'share is on the denylist');
        }
        return;
      default:
        return;
    }
  };
}

/** A fixed view, for tests and tools: `unmoderated` or a map of moderator → policy. */
export function staticSubscriptions(policies: ReadonlyMap<string, PolicyState | null> | 'unmoderated', approvedOnly: readonly string[] = []): SubscriptionView {
  if (policies === 'unmoderated') return { unmoderated: true, moderators: [], policy: () => null };
  const moderators = [...policies.keys()];
  return { unmoderated: moderators.length === 0, moderators, policy: (m) => policies.get(m) ?? null, approvedOnly };
}
