// `bitcloud renew CAP` (SPEC.md §9.9.2; RENEW §9.6.3, leases §9.8.2): extend the leases of every
// share of a file — the root, the verify record, the manifest chunks and the data chunks — so the
// storage nodes keep it past its first lease (GC removes expired shares). Anyone holding the
// capability can renew; requests go over the same transport as get (circuits by default), so a
// node learns nothing about who asks. A file with a verify record is checked first, as a keep pass
// checks it (§9.18.3 steps 1–3 and 5, without repair): each holder is audited, and only the holders
// that prove a share (or stay busy on every try, or do not answer) get its renewal (§9.18.3 step 6);
// the ones that answered and failed are reported. A file stored before verify records, or whose verify record no reachable
// node has, has no audit roots: each share id is sent, unaudited, to the nodes that may hold it: its expected holder and the top of its ranking
// (put moves a share down its ranking when a node is full), then, for an id none of those
// renewed, every other storage node. A node that does not hold an id answers 0 for it.
import { err, errorCode } from '../errors';
import type { Capability } from '../storage/capability';
import { MAX_IDS_PER_REQUEST } from '../storage/protocol';
import { placeChunk, rankNodes } from '../storage/placement';
import type { Layout } from '../storage/manifest';
import type { StorageClient } from './storage-client';
import { fetchRootRecord, fetchManifest, type GetStats } from './storage-client-get';
import { boundedExpiry, earliestExpiry, nowSeconds } from './lease-expiry';
import { deriveVerifyKey } from '../storage/verify-cap';
import { fetchVerifyRecord, keepFile, type AuditFailure } from './storage-client-verify';

export interface RenewResult {
  /** Distinct shares of the file (root, manifest and data shares). */
  shares: number;
  /** Shares at least one node holds and renewed. */
  renewed: number;
  /** Shares no reachable node holds any more. */
  missing: number;
  /** Chunks (manifest and data) with fewer than k renewed shares: they can no longer be read. */
  unreadableChunks: number;
  /** Earliest new expiry over the renewed shares, Unix seconds (0 when none). */
  expiresAt: number;
  nodesAsked: number;
  unreachableNodes: string[];
  /** False without a verify record (stored before them, or no copy found): no holder could be audited (SPEC.md §9.9.2). */
  audited: boolean;
  /** Holders that answered their audit and failed: none of them was renewed (SPEC.md §9.9.2, §9.18.3 step 6). */
  failures: AuditFailure[];
  /**
   * Holders busy on every try of their audit, or that did not answer it (timeout, lost connection):
   * neither passed nor failed, renewed (§9.9.2, §9.18.3 steps 3 and 6).
   */
  busy: AuditFailure[];
}

export async function renewFile(client: StorageClient, cap: Capability, leaseSeconds = 0): Promise<RenewResult> {
  const stats: GetStats = { corruptShares: 0, missingShares: 0, sharesFetched: 0 };
  const rootRecord = await fetchRootRecord(client, cap, stats);
  if (rootRecord.verifyId) {
    const audited = await renewAudited(client, cap, rootRecord.verifyId, leaseSeconds);
    if (audited) return audited;
  }
  // SPEC.md §9.9.2: no verify record (stored before them, or no node has a copy): no audit roots,
  // so the holders are renewed unaudited rather than let the file expire.
  const rootLayout = rootRecord.manifest;
  const manifest = await fetchManifest(client, cap, stats, rootLayout);
  const layouts: Layout[] = [rootLayout, manifest.layout];
  const nodes = client.fingerprints;

  // share id (hex) → candidate holders; chunk → its share ids (for the readability count).
  const candidates = new Map<string, Set<string>>();
  const ask = (id: Uint8Array, expected: string | undefined, depth: number) => {
    const hex = Buffer.from(id).toString('hex');
    let set = candidates.get(hex);
    if (!set) candidates.set(hex, (set = new Set()));
    if (expected) set.add(expected);
    for (const fp of rankNodes(id, nodes).slice(0, depth)) set.add(fp);
  };
  ask(cap.manifestId, undefined, Math.min(nodes.length, 10));
  // SPEC.md §9.18: the verify record is stored whole like the root.
  if (rootRecord.verifyId) ask(rootRecord.verifyId, undefined, Math.min(nodes.length, 10));
  const chunks: { ids: string[]; k: number }[] = [];
  for (const layout of layouts) {
    const { k, n } = layout.coding;
    for (const ref of layout.chunks) {
      let expected: string[] | null = null;
      try { expected = placeChunk(ref.shareIds, nodes); } catch { /* fewer nodes than n: rankings only */ }
      ref.shareIds.forEach((id, j) => ask(id, expected?.[j], n + 4));
      chunks.push({ ids: ref.shareIds.map((id) => Buffer.from(id).toString('hex')), k });
    }
  }

  // Group by node, RENEW in batches of at most MAX_IDS_PER_REQUEST ids.
  const best = new Map<string, number>(); // share → latest expiry any node reported (bounded, §9.9.2)
  const asked = new Set<string>();
  const renewOn = async (pairs: Iterable<[string, Iterable<string>]>) => {
    const byNode = new Map<string, string[]>();
    for (const [hex, set] of pairs) for (const fp of set) {
      asked.add(fp);
      let l = byNode.get(fp);
      if (!l) byNode.set(fp, (l = []));
      l.push(hex);
    }
    await Promise.all([...byNode].map(async ([fp, ids]) => {
      for (let i = 0; i < ids.length; i += MAX_IDS_PER_REQUEST) {
        const batch = ids.slice(i, i + MAX_IDS_PER_REQUEST);
        let r;
        const sentAt = nowSeconds();
        try {
          r = await client.request(fp, { type: 'renew', ids: batch.map((h) => Buffer.from(h, 'hex')), leaseSeconds });
        } catch {
          return; // unreachable or refusing: its shares count only if another node holds them
        }
        // SPEC.md §9.9.2: an answer counts at most until sentAt + the lease asked for (7 days for 0).
        batch.forEach((hex, j) => {
          const at = boundedExpiry(r.expiresAt[j], sentAt, leaseSeconds);
          if (at > (best.get(hex) ?? 0)) best.set(hex, at);
        });
      }
    }));
  };
  await renewOn(candidates);
  // Shares no candidate holds: an upload of a class few nodes admit placed them over those few
  // (SPEC.md §10.8). Ask every other storage node, as get searches them (§9.9).
  const unfound = [...candidates].filter(([hex]) => !best.get(hex));
  if (unfound.length) await renewOn(unfound.map(([hex, set]) => [hex, nodes.filter((fp) => !set.has(fp) && !client.isDead(fp))]));

  const renewedExpiries = [...best.values()].filter((x) => x > 0);
  const unreadableChunks = chunks.filter((c) => c.ids.filter((h) => (best.get(h) ?? 0) > 0).length < c.k).length;
  if (!best.get(cap.manifestId.toString('hex'))) {
    throw err('MANIFEST_NOT_FOUND', 'no reachable storage node renewed the root of this file', { nodes: nodes.length });
  }
  return {
    shares: candidates.size,
    renewed: renewedExpiries.length,
    missing: candidates.size - renewedExpiries.length,
    unreadableChunks,
    expiresAt: earliestExpiry(renewedExpiries),
    nodesAsked: asked.size,
    unreachableNodes: client.deadNodes().map((d) => d.fingerprint),
    audited: false,
    failures: [],
    busy: [],
  };
}

/**
 * SPEC.md §9.9.2: the renewal of a file with a verify record. The keeper's check (§9.18.3, no
 * repair) finds and audits every holder and renews each share only where it was proven (or the
 * holder stayed busy, or did not answer); a holder that answered its audit and failed is not
 * renewed and is reported. Null when no
 * reachable node has a copy of the verify record (VERIFY_RECORD_NOT_FOUND): nothing was renewed.
 */
async function renewAudited(client: StorageClient, cap: Capability, verifyId: Buffer, leaseSeconds: number): Promise<RenewResult | null> {
  const vcap = { manifestId: cap.manifestId, verifyId, verifyKey: deriveVerifyKey(cap.fileKey) };
  const renewal = { expiry: new Map<string, number>(), nodes: new Set<string>() };
  let record;
  try {
    record = await fetchVerifyRecord(client, vcap);
  } catch (e) {
    if (errorCode(e) === 'VERIFY_RECORD_NOT_FOUND') return null;
    throw e;
  }
  const r = await keepFile(client, vcap, { repair: false, renew: true, leaseSeconds, renewal, record });
  // The expiries learned are bounded already (§9.9.2); with no repair, every one is a renewal's.
  const renewedExpiries = [...renewal.expiry.values()].filter((x) => x > 0);
  if (!renewal.expiry.get(cap.manifestId.toString('hex'))) {
    throw err('MANIFEST_NOT_FOUND', 'no reachable storage node proved and renewed the root of this file', { nodes: client.fingerprints.length });
  }
  return {
    shares: r.shares,
    renewed: renewedExpiries.length,
    missing: r.shares - renewedExpiries.length,
    unreadableChunks: record.chunks.filter((c) => c.shareIds.filter((id) => (renewal.expiry.get(id.toString('hex')) ?? 0) > 0).length < record.k).length,
    expiresAt: earliestExpiry(renewedExpiries),
    nodesAsked: renewal.nodes.size,
    unreachableNodes: client.deadNodes().map((d) => d.fingerprint),
    audited: true,
    failures: r.failures,
    busy: r.busy,
  };
}
