// SPEC.md §9.20.3: an authority's signed audit report for one epoch, in two parts. The signed
// summary (the body's exact bytes are signed) names, per audited node, the bytes credited, the number
// of results and the BLAKE2b-256 digest of the node's page; a page (unsigned JSON text, served by
// itself) carries that node's results, each with the commitment it was checked against (share id,
// size, audit root, the contract naming it), the challenge and the node's answer, so anyone can
// recheck each result without the share (§9.17.5) and recompute the bytes credited. The summary
// grows by one short entry per node; a page is bounded by the per-node sample. A summary or page
// that does not verify is AUDIT_REPORT_INVALID.
import { err } from '../errors';
import { blake2b, ed25519Sign, ed25519Verify } from '../crypto/primitives';
import { verifyKeyCertificate } from '../dir/certificate';
import type { AuthorityInfo } from '../dir/authorities';
import { recheckAuditResult, type AuditResult } from './auditor';
import { MAX_AUDIT_BLOCKS } from './audit';
import { MAX_SHARE_BYTES } from './share';
import { AUDIT_NONCE_MAX_BYTES, AUDIT_NONCE_MIN_BYTES } from './protocol';

export const AUDIT_REPORT_VERSION = 2;
export const AUDIT_REPORT_SIG_PREFIX = Buffer.from('bitcloud storage audit report v2\0', 'ascii');
/**
 * SPEC.md §9.20.3: the largest signed summary (its JSON text as served) another authority reads. A
 * node's entry is about 150 bytes, so 16 MiB holds over 100 000 audited nodes.
 */
export const AUDIT_REPORT_MAX_BYTES = 16 * 1024 * 1024;
/** SPEC.md §9.20.2, §9.20.3: results of one node in one epoch (the per-node sample), so of one page, at most. */
export const AUDIT_PAGE_MAX_RESULTS = 64;
/**
 * SPEC.md §9.20.3: the largest page (its JSON text as served) a reader takes: 64 results, each at
 * most a 16-block answer in hex (about 164 KB) and its fields, are about 10.6 MB.
 */
export const AUDIT_PAGE_MAX_BYTES = 16 * 1024 * 1024;

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

/** A node's entry in the signed summary. */
export interface AuditNodeEntry {
  /** Bytes credited: the sum of the sizes of the distinct shares (by share id and by audit root) that passed (§9.20.2). */
  stored: number;
  /** Results on the node's page (0..AUDIT_PAGE_MAX_RESULTS). */
  results: number;
  /** BLAKE2b-256 (64 hex) of the page's exact bytes as served. */
  page: string;
}

/** The signed summary's body (SPEC.md §9.20.3). */
export interface AuditReportBody {
  version: number;
  /** The authority's identity fingerprint. */
  authority: string;
  epoch: number;
  /** Per audited node (fingerprint), in ascending order as produced. */
  nodes: Record<string, AuditNodeEntry>;
}

/** One node's page: its results of the epoch. */
export interface AuditPage {
  epoch: number;
  node: string;
  results: ReportedAudit[];
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

/**
 * SPEC.md §9.20.2: per node, the sizes of the distinct shares that passed, summed. A share is
 * distinct by its share id and by its audit root: a share id is the hash of the share's bytes
 * (§9.1) and the root commits to them, so two passing pairs of one node with one root are the same
 * bytes stored once, under share ids at most one of which is genuine, and are credited once.
 */
export function storedBytes(results: readonly ReportedAudit[]): Map<string, number> {
  const seen = new Set<string>();
  const out = new Map<string, number>();
  for (const r of results) {
    if (!r.ok) continue;
    const k = `${r.node}/${r.shareId}`;
    const byRoot = `${r.node}#${r.root}`;
    if (seen.has(k) || seen.has(byRoot)) continue;
    seen.add(k);
    seen.add(byRoot);
    out.set(r.node, (out.get(r.node) ?? 0) + r.size);
  }
  return out;
}

/**
 * SPEC.md §9.20.3: the summary body and the pages (their exact bytes) of an epoch's results: one
 * page per node, in ascending node order, its results in the order given.
 */
export function buildAuditReport(authority: string, epoch: number, results: readonly ReportedAudit[]): { body: AuditReportBody; pages: Map<string, Buffer> } {
  const byNode = new Map<string, ReportedAudit[]>();
  for (const r of results) {
    let l = byNode.get(r.node);
    if (!l) byNode.set(r.node, (l = []));
    l.push(r);
  }
  const stored = storedBytes(results);
  const nodes: Record<string, AuditNodeEntry> = {};
  const pages = new Map<string, Buffer>();
  for (const fp of [...byNode.keys()].sort()) {
    const page: AuditPage = { epoch, node: fp, results: byNode.get(fp)! };
    const bytes = Buffer.from(JSON.stringify(page), 'utf8');
    pages.set(fp, bytes);
    nodes[fp] = { stored: stored.get(fp) ?? 0, results: page.results.length, page: blake2b(bytes).toString('hex') };
  }
  return { body: { version: AUDIT_REPORT_VERSION, authority, epoch, nodes }, pages };
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

/** A result as §9.20.3 allows it, rechecked against its own commitment (§9.17.5); else AUDIT_REPORT_INVALID. */
function checkResult(r: ReportedAudit, i: number): void {
  if (!r || typeof r !== 'object' || !HEX64.test(r.node) || !HEX64.test(r.shareId) || !HEX64.test(r.root) || !HEX64.test(r.contract) || !Number.isSafeInteger(r.size) || r.size < 1
    || r.size > MAX_SHARE_BYTES || typeof r.ok !== 'boolean' || typeof r.nonce !== 'string' || !NONCE_HEX.test(r.nonce) || !Array.isArray(r.blocks)
    || r.blocks.length > MAX_AUDIT_BLOCKS || !r.blocks.every((b) => Number.isSafeInteger(b) && b >= 0)
    || (r.answer !== undefined && (typeof r.answer !== 'string' || !/^(?:[0-9a-f]{2})*$/.test(r.answer)))) bad(`result ${i} is malformed`);
  if (!recheckAuditResult(r, { shareId: Buffer.from(r.shareId, 'hex'), size: r.size, root: Buffer.from(r.root, 'hex') })) {
    bad(`result ${i} (node ${r.node.slice(0, 16)}…, share ${r.shareId.slice(0, 16)}…) does not recheck: its answer ${r.ok ? 'does not prove' : 'proves'} the share`);
  }
}

/**
 * Verify a served summary (SPEC.md §9.20.3): the certificate verifies, names a configured authority
 * (the one the body names) and certifies the signing key; the signature covers the body; the body
 * is version 2 of the epoch asked, and every node entry is well formed (fingerprint of 64 hex,
 * `stored` an integer ≥ 0, `results` in 0..64, `page` 64 hex). The results are checked page by
 * page (verifyAuditPage). Returns the body. Throws AUDIT_REPORT_INVALID with the first reason.
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
  if (!body || typeof body !== 'object') bad('body is not an object');
  if (body.version !== AUDIT_REPORT_VERSION) bad(`version ${String(body.version)} is not ${AUDIT_REPORT_VERSION}`);
  if (body.authority !== cert.fingerprint) bad('the body names another authority than the certificate');
  if (!Number.isSafeInteger(body.epoch) || body.epoch < 0) bad('bad epoch');
  if (expectEpoch !== undefined && body.epoch !== expectEpoch) bad(`report is for epoch ${body.epoch}, not ${expectEpoch}`);
  if (typeof body.nodes !== 'object' || body.nodes === null || Array.isArray(body.nodes)) bad('nodes missing');
  for (const [fp, n] of Object.entries(body.nodes)) {
    if (!HEX64.test(fp) || !n || typeof n !== 'object' || !Number.isSafeInteger(n.stored) || n.stored < 0 || !Number.isSafeInteger(n.results) || n.results < 0
      || n.results > AUDIT_PAGE_MAX_RESULTS || typeof n.page !== 'string' || !HEX64.test(n.page)) bad(`node entry ${fp.slice(0, 16)}… is malformed`);
  }
  return body;
}

/**
 * Verify one node's page (SPEC.md §9.20.3) against a verified summary: its bytes hash to the
 * digest the summary names for `node`; it is the page of that epoch and node; it holds as many
 * results as the summary says, each well formed, naming that node and rechecking against its own
 * `size` and `root` (§9.17.5); and the summary's `stored` is exactly what its passing results give.
 * Returns the results. Throws AUDIT_REPORT_INVALID with the first reason.
 */
export function verifyAuditPage(report: AuditReportBody, node: string, bytes: Buffer): ReportedAudit[] {
  if (!HEX64.test(node) || !Object.hasOwn(report.nodes, node)) bad(`the report names no node ${node.slice(0, 16)}…`);
  const entry = report.nodes[node];
  if (bytes.length > AUDIT_PAGE_MAX_BYTES) bad(`the page is over ${AUDIT_PAGE_MAX_BYTES} bytes`);
  if (!blake2b(bytes).equals(Buffer.from(entry.page, 'hex'))) bad(`the page of node ${node.slice(0, 16)}… does not match its digest in the report`);
  let page: AuditPage;
  try { page = JSON.parse(bytes.toString('utf8')) as AuditPage; } catch { bad('page is not JSON'); }
  if (!page || typeof page !== 'object') bad('page is not an object');
  if (page.epoch !== report.epoch) bad(`the page is of epoch ${String(page.epoch)}, not ${report.epoch}`);
  if (page.node !== node) bad('the page is of another node');
  if (!Array.isArray(page.results) || page.results.length !== entry.results) bad(`the page does not hold the ${entry.results} results the report names`);
  for (const [i, r] of page.results.entries()) {
    checkResult(r, i);
    if (r.node !== node) bad(`result ${i} names another node`);
  }
  if ((storedBytes(page.results).get(node) ?? 0) !== entry.stored) bad('stored bytes do not match the passing results');
  return page.results;
}
