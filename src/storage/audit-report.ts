// SPEC.md §9.20.3: an authority's signed audit report for one epoch. The body is JSON text (the
// exact bytes are signed); every result carries the commitment it was checked against (share id,
// size, audit root, the contract naming it), the challenge and the node's answer, so anyone can
// recheck each result without the share (§9.17.5) and recompute the stored bytes the authority
// credits each node. A report that does not verify is AUDIT_REPORT_INVALID.
import { err } from '../errors';
import { ed25519Sign, ed25519Verify } from '../crypto/primitives';
import { verifyKeyCertificate } from '../dir/certificate';
import type { AuthorityInfo } from '../dir/authorities';
import { recheckAuditResult, type AuditResult } from './auditor';
import { MAX_AUDIT_BLOCKS } from './audit';
import { MAX_SHARE_BYTES } from './share';
import { AUDIT_NONCE_MAX_BYTES, AUDIT_NONCE_MIN_BYTES } from './protocol';

export const AUDIT_REPORT_VERSION = 1;
export const AUDIT_REPORT_SIG_PREFIX = Buffer.from('bitcloud storage audit report v1\0', 'ascii');
/** SPEC.md §9.20.3: the largest served report (its JSON text) another authority reads. */
export const AUDIT_REPORT_MAX_BYTES = 64 * 1024 * 1024;

/** One audit of one (node, share) in the epoch. */
export interface ReportedAudit extends AuditResult {
  /** The storage node's fingerprint (64 hex). */
  node: string;
  /** Id (64 hex) of a contract that names this (node, share). */
  contract: string;
  size: number;
  /** Audit root (64 hex) the answer was checked against. */
  root: string;
}

export interface AuditReportBody {
  version: number;
  /** The authority's identity fingerprint. */
  authority: string;
  epoch: number;
  results: ReportedAudit[];
  /** Bytes credited per node: the sum of the sizes of the distinct shares that passed (§9.20.2). */
  stored: Record<string, number>;
}

/** What an authority serves: the body's exact bytes and its signature. */
export interface SignedAuditReport {
  body: string;
  /** Signing key (hex) certified by the authority's identity key. */
  signingKey: string;
  signature: string;
  /** The key certificate envelope (hex), SPEC.md §6.3. */
  certificate: string;
}

/** SPEC.md §9.20.2: per node, the sizes of the distinct shares that passed, summed. */
export function storedBytes(results: readonly ReportedAudit[]): Map<string, number> {
  const seen = new Set<string>();
  const out = new Map<string, number>();
  for (const r of results) {
    if (!r.ok) continue;
    const k = `${r.node}/${r.shareId}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.set(r.node, (out.get(r.node) ?? 0) + r.size);
  }
  return out;
}

export function signAuditReport(body: AuditReportBody, signer: { signingKey: { publicKey: Buffer; secretKey: Buffer }; certificate: Buffer }): SignedAuditReport {
  const text = JSON.stringify(body);
  const sig = ed25519Sign(Buffer.concat([AUDIT_REPORT_SIG_PREFIX, Buffer.from(text, 'utf8')]), signer.signingKey.secretKey);
  return { body: text, signingKey: signer.signingKey.publicKey.toString('hex'), signature: sig.toString('hex'), certificate: signer.certificate.toString('hex') };
}

const HEX64 = /^[0-9a-f]{64}$/;
/** A challenge nonce as §9.17.2 allows it: 16..64 bytes, in hex. */
const NONCE_HEX = new RegExp(`^(?:[0-9a-f]{2}){${AUDIT_NONCE_MIN_BYTES},${AUDIT_NONCE_MAX_BYTES}}$`);

function bad(reason: string): never {
  throw err('AUDIT_REPORT_INVALID', reason);
}

/**
 * Verify a served report (SPEC.md §9.20.3): the certificate verifies, names a configured authority
 * (the one the body names) and certifies the signing key; the signature covers the body; every
 * result rechecks against its audit root; `stored` is exactly what the passing results give.
 * Returns the body. Throws AUDIT_REPORT_INVALID with the first reason.
 */
export function verifyAuditReport(doc: unknown, authorities: readonly AuthorityInfo[], expectEpoch?: number): AuditReportBody {
  const d = doc as Partial<SignedAuditReport>;
  if (!d || typeof d.body !== 'string' || typeof d.signingKey !== 'string' || typeof d.signature !== 'string' || typeof d.certificate !== 'string') bad('not a signed audit report');
  let cert;
  try { cert = verifyKeyCertificate(Buffer.from(d.certificate, 'hex')); } catch (e) { bad(`certificate: ${(e as Error).message}`); }
  if (!authorities.some((a) => a.identity.equals(cert.identity))) bad('the certificate names no configured authority');
  if (cert.signingKey.toString('hex') !== d.signingKey) bad('the certificate does not certify the signing key');
  if (!/^[0-9a-f]{128}$/.test(d.signature)) bad('signature is not 64 bytes of hex');
  if (!ed25519Verify(Buffer.from(d.signature, 'hex'), Buffer.concat([AUDIT_REPORT_SIG_PREFIX, Buffer.from(d.body, 'utf8')]), cert.signingKey)) bad('signature does not verify');
  let body: AuditReportBody;
  try { body = JSON.parse(d.body) as AuditReportBody; } catch { bad('body is not JSON'); }
  if (body.version !== AUDIT_REPORT_VERSION) bad(`version ${String(body.version)} is not ${AUDIT_REPORT_VERSION}`);
  if (body.authority !== cert.fingerprint) bad('the body names another authority than the certificate');
  if (!Number.isSafeInteger(body.epoch) || body.epoch < 0) bad('bad epoch');
  if (expectEpoch !== undefined && body.epoch !== expectEpoch) bad(`report is for epoch ${body.epoch}, not ${expectEpoch}`);
  if (!Array.isArray(body.results) || typeof body.stored !== 'object' || body.stored === null) bad('results or stored missing');
  for (const [i, r] of body.results.entries()) {
    if (!r || !HEX64.test(r.node) || !HEX64.test(r.shareId) || !HEX64.test(r.root) || !HEX64.test(r.contract) || !Number.isSafeInteger(r.size) || r.size < 1
      || r.size > MAX_SHARE_BYTES || typeof r.ok !== 'boolean' || typeof r.nonce !== 'string' || !NONCE_HEX.test(r.nonce) || !Array.isArray(r.blocks)
      || r.blocks.length > MAX_AUDIT_BLOCKS || !r.blocks.every((b) => Number.isSafeInteger(b) && b >= 0)
      || (r.answer !== undefined && (typeof r.answer !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(r.answer)))) bad(`result ${i} is malformed`);
    if (!recheckAuditResult(r, { shareId: Buffer.from(r.shareId, 'hex'), size: r.size, root: Buffer.from(r.root, 'hex') })) {
      bad(`result ${i} (node ${r.node.slice(0, 16)}…, share ${r.shareId.slice(0, 16)}…) does not recheck: its answer ${r.ok ? 'does not prove' : 'proves'} the share`);
    }
  }
  const want = storedBytes(body.results);
  const got = Object.entries(body.stored);
  if (got.length !== want.size || got.some(([fp, v]) => want.get(fp) !== v)) bad('stored bytes do not match the passing results');
  return body;
}
