// SPEC.md §9.18.3: check and repair a file with its verify capability, without the read key.
// For every share of the verify record: find the nodes holding it (HAS to its expected holder and
// the top of its ranking, then to every other node when none has it), audit each holder (§9.17),
// and, when a chunk has fewer than n good shares but at least k, fetch k good shares, rebuild the
// missing ones from the erasure code (ciphertext only: nothing is decrypted), check that each
// rebuilt share hashes to its id, and store it on a node of its ranking that holds no other share
// of the chunk (the n-distinct-nodes rule of §9.7). The two whole shares (root and verify record)
// count only holders that prove them (one hash-checked copy, then `audit` proofs, §9.18.3 step 5)
// and are copied from that copy to more nodes until n nodes hold them. Optionally every share found is
// renewed. Requests go over the client's transport (circuits by default).
import { err, errorCode, isErrorCode, kindOf } from '../errors';
import { randomBytes } from '../crypto/primitives';
import { auditRetryingBusy, type AuditResult } from '../storage/auditor';
import { auditRoot } from '../storage/audit';
import { erasureEncodeInPlace, erasureReconstruct } from '../storage/erasure';
import { placeChunk, rankNodes } from '../storage/placement';
import { auditProof, MAX_IDS_PER_REQUEST } from '../storage/protocol';
import { checkShare } from '../storage/share';
import { openVerifyRecord, type VerifyCapability } from '../storage/verify-cap';
import type { VerifyRecord } from '../wire/verify-record';
import type { StorageClient } from './storage-client';
import { boundedExpiry, earliestExpiry, nowSeconds } from './lease-expiry';

/**
 * Audits of one pass in flight to one node at once (SPEC.md §9.18.3 step 3). A node handles 8
 * requests of a stream at a time (§9.6.2) and each request's STORAGE_TIMEOUT runs from when it is
 * sent (§9.9): sent all at once, the later audits of a large file would time out at a healthy node.
 */
export const KEEP_AUDITS_PER_NODE = 16;

/**
 * SPEC.md §9.18.3 step 3: a node's audits of one pass end this many request timeouts after its
 * first audit of the pass. Without it a node answering each audit just before STORAGE_TIMEOUT
 * would hold the pass for (its audits ÷ 16) request timeouts, and every file kept after it too.
 */
export const KEEP_NODE_DEADLINE_TIMEOUTS = 4;

/**
 * SPEC.md §9.18.3 steps 3 and 5: an audit that got no answer from the node — its timeout or the
 * node's deadline (STORAGE_TIMEOUT), a lost or refused connection, a closed stream or circuit —
 * says nothing about the share, as STORAGE_BUSY does not: anyone who slows a node or its circuits
 * brings it about, and one node holding many shares of a large file reaches its deadline. It is
 * neither a pass nor a failure; only an answer (a wrong proof, SHARE_NOT_FOUND, a refusal, …) fails.
 */
export function auditUnanswered(code: string | undefined): boolean {
  if (!isErrorCode(code)) return false;
  const kind = kindOf(code);
  return kind === 'timeout' || kind === 'unreachable' || kind === 'closed';
}

export interface KeepOptions {
  /** Rebuild missing or failed shares (default true). */
  repair?: boolean;
  /** Renew the leases of every share found (default false). */
  renew?: boolean;
  /**
   * The lease (seconds; 0 = each node's default) of renewals and, when renewing or given, of the
   * shares this pass stores (rebuilt or copied); otherwise those get the client's lease.
   */
  leaseSeconds?: number;
  /** Blocks named per audit (default 4). */
  auditBlocks?: number;
  /** Waits (ms) before asking again an audit answered STORAGE_BUSY (default 1 s, 2 s, 4 s; SPEC.md §9.18.3). */
  auditBusyRetryMs?: readonly number[];
  /**
   * How long (ms) after its first audit of the pass a node's audits may run (default
   * KEEP_NODE_DEADLINE_TIMEOUTS × the client's request timeout); SPEC.md §9.18.3 step 3.
   */
  nodeDeadlineMs?: number;
  /**
   * Filled, when given, with the latest expiry learned in this pass per share (renewed or stored)
   * and the nodes a renewal was sent to: `bitcloud renew` reports from them (SPEC.md §9.9.2).
   */
  renewal?: { expiry: Map<string, number>; nodes: Set<string> };
  /** The file's verify record, when the caller fetched it already (else it is fetched first). */
  record?: VerifyRecord;
  /**
   * `keep run` stopping (SPEC.md §9.19): a wait before asking a busy audit again ends at once and
   * the pass of this file rejects with the signal's AbortError.
   */
  signal?: AbortSignal;
}

/**
 * A node caught not holding (or not proving) a share it was found with or expected to hold, or
 * busy on every try of its audit, or that did not answer it (auditUnanswered). `kind`: a chunk
 * share, or the whole root or verify record share (SPEC.md §9.18.3 steps 3 and 5).
 */
export interface AuditFailure { node: string; shareId: string; code: string; kind: ShareKind }

/** Which share an audit was of: a chunk share, the root (manifest) or the verify record. */
export type ShareKind = 'chunk' | 'root' | 'verify';

export interface KeepReport {
  /** Shares of the file (n per chunk, plus the root and the verify record). */
  shares: number;
  /** Shares that passed an audit (or, for the whole shares, are held) before any repair. */
  healthy: number;
  /** Shares rebuilt (or copied) onto new nodes in this pass. */
  repaired: number;
  /** Shares neither held nor rebuildable. */
  lost: number;
  /** Chunks with fewer than k good shares after this pass: the file cannot be read whole. */
  unrecoverableChunks: number;
  /**
   * Chunks whose rebuilt shares do not match the verify record (SHARE_HASH_MISMATCH, SPEC.md
   * §9.18.3 step 4): nothing of them was written, their missing shares count as lost.
   */
  mismatchedChunks: number;
  /**
   * Audits run (pass and fail), of chunk shares (each can be rechecked with the audit root,
   * §9.17.5) and of the whole shares' other holders (§9.18.3 step 5).
   */
  audits: number;
  /** Failed audits, of chunk and whole shares alike (`kind`). */
  failures: AuditFailure[];
  /**
   * Audits a node answered STORAGE_BUSY on every try, or did not answer (timeout, lost connection:
   * `code` says which; SPEC.md §9.18.3 steps 3 and 5), of chunk and whole shares alike: neither
   * passed nor failed; the node may hold the share, and is renewed.
   */
  busy: AuditFailure[];
  /**
   * Chunk shares whose audit is unknown this pass: no holder passed, one was busy (or, in a pass
   * without repair, did not answer). Not counted healthy nor lost, not repaired.
   */
  unknown: number;
  /**
   * Earliest lease expiry over the shares renewed or stored (rebuilt, copied) in this pass, each
   * share counted at its latest expiry (0 when none was renewed or stored). 0 too when the pass
   * renewed and a share proven held in it was renewed by no node (SPEC.md §9.19): that share's
   * lease is the one it had, which may run out before this earliest, so none is reported.
   */
  expiresAt: number;
  /**
   * After this pass, one node per chunk share that proved it by audit or received it by repair,
   * with the share's commitment: what a storage contract lists (SPEC.md §9.20.1).
   */
  placed: { node: string; shareId: Buffer; size: number; root: Buffer }[];
}

/**
 * Fetch the verify record from rank(verify id), hash-checked (VERIFY_RECORD_NOT_FOUND when no node has it).
 * SPEC.md §9.18.3 step 1: any failure of the fetch, a node's own error answer included (whatever
 * its code), moves to the next node; only bytes that hash to the id and do not open end the search.
 */
export async function fetchVerifyRecord(client: StorageClient, cap: VerifyCapability): Promise<VerifyRecord> {
  let last: unknown = null;
  for (const fp of rankNodes(cap.verifyId, client.fingerprints)) {
    if (client.isDead(fp)) continue;
    let data: Buffer;
    try {
      data = await client.getShare(fp, cap.verifyId);
    } catch (e) {
      last = e;
      continue;
    }
    try {
      return openVerifyRecord(cap, data);
    } catch (e) {
      if (errorCode(e) !== 'SHARE_HASH_MISMATCH') throw e; // CHUNK_AUTH_FAILED (wrong key) or VERIFY_RECORD_MALFORMED: no other copy can differ
      last = e;
    }
  }
  throw err('VERIFY_RECORD_NOT_FOUND', 'no reachable storage node holds the verify record', { last: last ? errorCode(last) : undefined });
}

/** Which of `ids` each node holds: HAS batched per node. Unreachable nodes hold nothing. */
async function holders(client: StorageClient, asks: Map<string, Set<string>>): Promise<Map<string, Set<string>>> {
  const byNode = new Map<string, string[]>();
  for (const [hex, nodes] of asks) for (const fp of nodes) {
    if (client.isDead(fp)) continue;
    let l = byNode.get(fp);
    if (!l) byNode.set(fp, (l = []));
    l.push(hex);
  }
  const out = new Map<string, Set<string>>();
  await Promise.all([...byNode].map(async ([fp, ids]) => {
    for (let i = 0; i < ids.length; i += MAX_IDS_PER_REQUEST) {
      const batch = ids.slice(i, i + MAX_IDS_PER_REQUEST);
      let r;
      try {
        r = await client.request(fp, { type: 'has', ids: batch.map((h) => Buffer.from(h, 'hex')) });
      } catch {
        return;
      }
      batch.forEach((hex, j) => {
        if (!r.present[j]) return;
        let s = out.get(hex);
        if (!s) out.set(hex, (s = new Set()));
        s.add(fp);
      });
    }
  }));
  return out;
}

export async function keepFile(client: StorageClient, cap: VerifyCapability, o: KeepOptions = {}): Promise<KeepReport> {
  const repair = o.repair ?? true;
  const record = o.record ?? await fetchVerifyRecord(client, cap);
  const nodes = client.fingerprints;
  const { k, n } = record;
  // SPEC.md §9.18.3 step 4, §9.19: shares this pass stores get the lease it renews with.
  const lease = o.renew || o.leaseSeconds !== undefined ? o.leaseSeconds ?? 0 : undefined;
  const expiry = new Map<string, number>(); // share hex → latest expiry learned (put or renew)
  // SPEC.md §9.9.2: a node's answer counts at most until the request was sent plus the lease asked for (7 days for 0).
  const learn = (hex: string, answered: number, sentAt: number, leaseSeconds: number | undefined) => {
    const at = boundedExpiry(answered, sentAt, leaseSeconds);
    if (at > (expiry.get(hex) ?? 0)) expiry.set(hex, at);
  };
  const report: KeepReport = { shares: 0, healthy: 0, repaired: 0, lost: 0, unrecoverableChunks: 0, mismatchedChunks: 0, audits: 0, failures: [], busy: [], unknown: 0, expiresAt: 0, placed: [] };

  // 1. Where each share may be: its expected holder and the first n + 4 of its ranking.
  const asks = new Map<string, Set<string>>();
  const want = (id: Buffer, expected: string | undefined, depth: number) => {
    const s = new Set(rankNodes(id, nodes).slice(0, depth));
    if (expected) s.add(expected);
    asks.set(id.toString('hex'), s);
  };
  const wholes = [cap.manifestId, cap.verifyId];
  for (const id of wholes) want(id, undefined, Math.min(nodes.length, Math.max(10, n + 4)));
  for (const c of record.chunks) {
    let expected: string[] | null = null;
    try { expected = placeChunk(c.shareIds, nodes); } catch { /* fewer nodes than n: rankings only */ }
    c.shareIds.forEach((id, j) => want(id, expected?.[j], n + 4));
  }
  let held = await holders(client, asks);
  const unfound = [...asks.keys()].filter((h) => !held.get(h)?.size);
  if (unfound.length) {
    const more = await holders(client, new Map(unfound.map((h) => [h, new Set(nodes.filter((fp) => !asks.get(h)!.has(fp)))])));
    held = new Map([...held, ...more]);
  }

  // 2. Audit every holder of every chunk share; a share is good when one holder passes.
  const good = new Map<string, string>(); // share hex → a node that proved it
  const proven = new Map<string, Set<string>>(); // share hex → every node that proved it
  const busy = new Map<string, Set<string>>(); // share hex → every node busy on each try of its audit, or not answering it
  // SPEC.md §9.18.3 step 3: of `busy`, the nodes that did not answer (renewed, but in a repairing
  // pass they do not keep the share from being rebuilt elsewhere).
  const silent = new Map<string, Set<string>>();
  const failed = new Map<string, Set<string>>(); // share hex → every node that failed its audit
  // SPEC.md §9.18.3 step 3: a node's audits not answered (or not started) by its deadline end
  // STORAGE_TIMEOUT, unanswered (as busy ones are), and the node is slow for the rest of the pass
  // (no repair is stored on it).
  const slots = new NodeSlots(KEEP_AUDITS_PER_NODE, o.nodeDeadlineMs ?? KEEP_NODE_DEADLINE_TIMEOUTS * client.requestTimeoutMs);
  const late = (hex: string): AuditResult => ({ shareId: hex, ok: false, code: 'STORAGE_TIMEOUT', nonce: '', blocks: [] });
  // Set when one share's audits rejected (a stop during a wait before asking a busy node again,
  // SPEC.md §9.19): the pass rejects with it, and the other audits, queued or not yet started,
  // send nothing more.
  let given: { reason: unknown } | null = null;
  await Promise.all(record.chunks.flatMap((c) => c.shareIds.map(async (id, j) => {
    const hex = id.toString('hex');
    for (const fp of held.get(hex) ?? []) {
      // SPEC.md §9.18.3 step 3: STORAGE_BUSY (the node's audit queue is full, §9.17.2) says
      // nothing about the share: asked again, and if busy every time, unknown for this pass.
      const audit = () => (given ? Promise.reject(given.reason) : client.auditShare(fp, { shareId: id, size: c.shareSize, root: c.auditRoots[j] }, { blocks: o.auditBlocks }));
      let r: AuditResult;
      try {
        r = await auditRetryingBusy(() => slots.run(fp, audit, () => late(hex)), o.auditBusyRetryMs, o.signal);
      } catch (e) {
        given ??= { reason: e };
        throw e;
      }
      report.audits++;
      if (r.ok) {
        if (!good.has(hex)) good.set(hex, fp);
        addTo(proven, hex, fp);
      } else if (r.code === 'STORAGE_BUSY' || auditUnanswered(r.code)) {
        // SPEC.md §9.18.3 step 3: busy on every try, or no answer: unknown, and still renewed.
        report.busy.push({ node: fp, shareId: hex, code: r.code!, kind: 'chunk' });
        addTo(busy, hex, fp);
        if (r.code !== 'STORAGE_BUSY') addTo(silent, hex, fp);
      } else {
        report.failures.push({ node: fp, shareId: hex, code: r.code ?? 'INTERNAL', kind: 'chunk' });
        addTo(failed, hex, fp);
      }
    }
  }))).finally(() => { slots.close(); });

  // 3. Chunks: count, and rebuild what is missing from any k good shares.
  for (const c of record.chunks) {
    report.shares += n;
    const ok = c.shareIds.map((id) => good.has(id.toString('hex')));
    const have = ok.filter(Boolean).length;
    // Unknown: no holder passed, one was busy on every try or did not answer; neither lost nor
    // rebuilt this pass. In a repairing pass a holder that did not answer does not make its share
    // unknown (SPEC.md §9.18.3 step 3): a node that stalls its audits, or died during the pass,
    // would otherwise keep its shares from being rebuilt pass after pass; only STORAGE_BUSY does.
    const unsure = c.shareIds.map((id, j) => {
      const hex = id.toString('hex');
      return !ok[j] && [...busy.get(hex) ?? []].some((fp) => !repair || !silent.get(hex)?.has(fp));
    });
    const unknown = unsure.filter(Boolean).length;
    const missing = n - have - unknown;
    report.healthy += have;
    report.unknown += unknown;
    if (missing === 0) continue;
    if (have < k || !repair) {
      report.lost += missing;
      if (have + unknown < k) report.unrecoverableChunks++;
      continue;
    }
    const shares: (Buffer | null)[] = new Array<Buffer | null>(n).fill(null);
    let fetched = 0;
    for (let j = 0; j < n && fetched < k; j++) {
      if (!ok[j]) continue;
      const hex = c.shareIds[j].toString('hex');
      try {
        const b = await client.getShare(good.get(hex)!, c.shareIds[j], undefined, c.shareSize);
        if (checkShare(c.shareIds[j], b) && b.length === c.shareSize) { shares[j] = b; fetched++; }
      } catch { /* another good share may do */ }
    }
    // Fewer than k good shares could be fetched: the chunk cannot be rebuilt (nor read whole) this
    // pass; unrecoverable unless the unknown shares could make up the difference.
    if (fetched < k) { report.lost += missing; if (fetched + unknown < k) report.unrecoverableChunks++; continue; }
    const rebuilt = rebuildShares({ k, n }, shares, c.shareSize);
    // SPEC.md §9.18.3 step 4: every rebuilt share must hash to its id and prove against the audit
    // root the record names before any of them is written: when one does not, the record and the
    // shares disagree (SHARE_HASH_MISMATCH), nothing of this chunk is written, its missing shares
    // count as lost, and the pass goes on with the other chunks.
    const mismatch = c.shareIds.findIndex((id, j) => !ok[j] && !unsure[j] && (!checkShare(id, rebuilt[j]) || !auditRoot(rebuilt[j]).equals(c.auditRoots[j])));
    if (mismatch >= 0) {
      report.mismatchedChunks++;
      report.lost += missing;
      continue;
    }
    // The first node of the ranking that holds no good share of the chunk: every node that proved
    // any of its shares is taken, not only the first found per share (SPEC.md §9.7, §9.18.3).
    const taken = new Set<string>();
    // A node busy on a share of the chunk may hold it: taken too.
    c.shareIds.forEach((id) => { for (const fp of [...proven.get(id.toString('hex')) ?? [], ...busy.get(id.toString('hex')) ?? []]) taken.add(fp); });
    for (let j = 0; j < n; j++) {
      if (ok[j] || unsure[j]) continue;
      const id = c.shareIds[j];
      const bytes = rebuilt[j];
      // Indexed by share as the audits ran: one look-up, not a scan of every failure per share.
      const failedOn = failed.get(id.toString('hex')) ?? new Set<string>();
      let placed = false;
      for (const fp of rankNodes(id, nodes)) {
        // A node that did not answer this share's audit is in `taken` (it may hold it): not stored on.
        if (taken.has(fp) || failedOn.has(fp) || slots.isLate(fp) || client.isDead(fp)) continue;
        try {
          const sentAt = nowSeconds();
          learn(id.toString('hex'), await client.putShare(fp, id, bytes, lease), sentAt, lease);
          taken.add(fp);
          good.set(id.toString('hex'), fp);
          placed = true;
          break;
        } catch { /* next node */ }
      }
      if (placed) report.repaired++; else report.lost++;
    }
  }

  for (const c of record.chunks) {
    c.shareIds.forEach((id, j) => {
      const fp = good.get(id.toString('hex'));
      if (fp) report.placed.push({ node: fp, shareId: id, size: c.shareSize, root: c.auditRoots[j] });
    });
  }

  // 4. The whole shares: keep n copies. SPEC.md §9.18.3 step 5: a `has` answer is only a claim.
  // A holder counts once it proved the share: the first by giving bytes that hash to the id, the
  // others by an `audit` proof (§9.6.3) over a fresh nonce that the checker computes from that
  // copy. Holders that claimed it and proved nothing neither count as copies nor are renewed. An
  // audit answered STORAGE_BUSY says nothing about the share: it is asked again as in step 3, and a
  // holder busy every time is not counted but is still renewed (anyone can fill a node's audit
  // queue, and that must not let a copy the node holds expire); so is one that did not answer.
  for (const id of wholes) {
    report.shares++;
    const hex = id.toString('hex');
    const have = [...(held.get(hex) ?? [])];
    let copy: Buffer | null = null;
    let from = '';
    for (const fp of have) {
      try {
        const b = await client.getShare(fp, id);
        if (checkShare(id, b)) { copy = b; from = fp; break; }
      } catch { /* next copy */ }
    }
    if (!copy) { held.set(hex, new Set()); report.lost++; continue; }
    const source: Buffer = copy;
    const proven: string[] = [from];
    const busy: string[] = [];
    // Every other claimant is audited, those whose `get` failed before the copy was found too (a
    // node busy reading, or a timeout, says nothing about the share either).
    const audited = await Promise.all(have.filter((fp) => fp !== from).map(async (fp) => {
      const r = await auditRetryingBusy(async (): Promise<AuditResult> => {
        const nonce = randomBytes(32);
        const base = { shareId: hex, nonce: nonce.toString('hex'), blocks: [] };
        try {
          const a = await client.request(fp, { type: 'audit', id, nonce });
          return a.proof.equals(auditProof(nonce, source)) ? { ...base, ok: true } : { ...base, ok: false, code: 'AUDIT_PROOF_INVALID' };
        } catch (e) { return { ...base, ok: false, code: errorCode(e) }; }
      }, o.auditBusyRetryMs, o.signal);
      return { fp, ok: r.ok, code: r.code ?? 'INTERNAL' };
    }));
    // Reported as the chunk shares' audits are: a failure or a busy holder of the root or the
    // verify record is in the report and its totals (SPEC.md §9.19).
    const kind: ShareKind = id.equals(cap.manifestId) ? 'root' : 'verify';
    for (const a of audited) {
      report.audits++;
      if (a.ok) proven.push(a.fp);
      else if (a.code === 'STORAGE_BUSY' || auditUnanswered(a.code)) { busy.push(a.fp); report.busy.push({ node: a.fp, shareId: hex, code: a.code, kind }); }
      else report.failures.push({ node: a.fp, shareId: hex, code: a.code, kind });
    }
    held.set(hex, new Set([...proven, ...busy]));
    report.healthy++;
    good.set(hex, proven[0]);
    if (!repair || proven.length >= n) continue;
    let count = proven.length;
    let added = 0;
    for (const fp of rankNodes(id, nodes)) {
      if (count >= n) break;
      if (have.includes(fp) || client.isDead(fp)) continue;
      const sentAt = nowSeconds();
      try { learn(hex, await client.putShare(fp, id, source, lease), sentAt, lease); count++; added++; held.get(hex)!.add(fp); } catch { /* next */ }
    }
    if (added) report.repaired++;
  }

  // 5. Renew every share where this pass found it held: SPEC.md §9.18.3 step 6, a chunk share at
  // each holder that proved it by audit or received it by repair in this pass, and at one busy on
  // every try or not answering (it may hold it; in a repairing pass a share only such holders had
  // is also rebuilt elsewhere, step 3); never at a holder that answered its audit and failed (it is
  // repaired elsewhere).
  // The whole shares' `held` is already their proven, busy and copied holders (step 5 above).
  if (o.renew) {
    const byNode = new Map<string, Set<string>>();
    for (const c of record.chunks) for (const id of c.shareIds) {
      const hex = id.toString('hex');
      for (const fp of [...proven.get(hex) ?? [], ...busy.get(hex) ?? []]) addTo(byNode, fp, hex);
    }
    for (const id of wholes) for (const fp of held.get(id.toString('hex')) ?? []) addTo(byNode, fp, id.toString('hex'));
    for (const [hex, fp] of good) addTo(byNode, fp, hex);
    await Promise.all([...byNode].map(async ([fp, set]) => {
      o.renewal?.nodes.add(fp);
      const ids = [...set];
      for (let i = 0; i < ids.length; i += MAX_IDS_PER_REQUEST) {
        const batch = ids.slice(i, i + MAX_IDS_PER_REQUEST);
        try {
          const sentAt = nowSeconds();
          const r = await client.request(fp, { type: 'renew', ids: batch.map((h) => Buffer.from(h, 'hex')), leaseSeconds: o.leaseSeconds ?? 0 });
          batch.forEach((hex, j) => learn(hex, r.expiresAt[j], sentAt, o.leaseSeconds));
        } catch { return; }
      }
    }));
  }
  // SPEC.md §9.19: a share proven held (or stored) in this pass that no node renewed (its node
  // unreachable, refusing, or answering 0) keeps the lease it had, which is not known here. The
  // earliest over the others would tell the keeper the file is safe past that lease, and hold off
  // the next renewal until the share, and perhaps its chunk, is gone.
  const unrenewed = o.renew === true && [...good.keys()].some((hex) => !expiry.get(hex));
  report.expiresAt = unrenewed ? 0 : earliestExpiry(expiry.values());
  for (const [hex, at] of expiry) o.renewal?.expiry.set(hex, at);
  return report;
}

/**
 * At most `limit` tasks per node at once; the others wait their turn, in order. A node's tasks end
 * `deadlineMs` after its first one started: one still running then, or started later, gives
 * `onLate()` instead (SPEC.md §9.18.3 step 3).
 */
class NodeSlots {
  private readonly nodes = new Map<string, { running: number; queued: Array<() => void>; late: boolean; expired: Promise<void>; timer: NodeJS.Timeout }>();

  constructor(private readonly limit: number, private readonly deadlineMs: number) {}

  /** True once the node's deadline has passed in this pass. */
  isLate(fp: string): boolean { return this.nodes.get(fp)?.late ?? false; }

  async run<T>(fp: string, fn: () => Promise<T>, onLate: () => T): Promise<T> {
    let n = this.nodes.get(fp);
    if (!n) {
      let expire!: () => void;
      const expired = new Promise<void>((r) => { expire = r; });
      const timer = setTimeout(() => { n!.late = true; expire(); }, this.deadlineMs);
      timer.unref();
      this.nodes.set(fp, (n = { running: 0, queued: [], late: false, expired, timer }));
    }
    const node = n;
    if (node.late) return onLate();
    if (node.running < this.limit) node.running++;
    else await new Promise<void>((r) => node.queued.push(r)); // the slot is handed over by the one that ends
    try {
      if (node.late) return onLate();
      return await Promise.race([fn(), node.expired.then(onLate)]);
    } finally {
      const next = node.queued.shift();
      if (next) next();
      else node.running--;
    }
  }

  /** Stops the deadlines' timers (the pass's audits are over). */
  close(): void {
    for (const n of this.nodes.values()) clearTimeout(n.timer);
  }
}

function addTo(m: Map<string, Set<string>>, key: string, v: string): void {
  let s = m.get(key);
  if (!s) m.set(key, (s = new Set()));
  s.add(v);
}

/** All n shares of a chunk from any k of them (SPEC.md §9.3): reconstruct the data, re-encode. */
export function rebuildShares(coding: { k: number; n: number }, shares: ReadonlyArray<Uint8Array | null>, size: number): Buffer[] {
  const data = erasureReconstruct(coding, shares, size);
  const buf = Buffer.alloc(coding.n * size);
  data.copy(buf, 0, 0, coding.k * size);
  erasureEncodeInPlace(coding, buf, size);
  return Array.from({ length: coding.n }, (_, j) => buf.subarray(j * size, (j + 1) * size));
}

