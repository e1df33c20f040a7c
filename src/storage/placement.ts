// SPEC.md §9.7: which storage nodes hold which shares. Rendezvous (highest random weight) hashing:
// weight(share, node) = BLAKE2b-256("bitcloud-placement-v1" | share id | node identity key), compared
// as a 256-bit big-endian integer, highest first. Anyone with the share id and the node list computes
// the same ranking, so a reader finds shares without asking anyone; adding or removing a node moves
// only the shares that ranked it first.
import { err } from '../errors';
import { blake2b } from '../crypto/primitives';
import { SHARE_ID_BYTES } from './share';

const LABEL = Buffer.from('bitcloud-placement-v1', 'ascii');
const FINGERPRINT = /^[0-9a-f]{64}$/;

/** A storage node, by fingerprint (64 lowercase hex of its Ed25519 identity key). */
export type NodeFingerprint = string;
/** Moderation and reachability choices of the uploader (SPEC.md §9.7, §10.8): false skips the node. */
export type NodeFilter = (node: NodeFingerprint) => boolean;

export function placementWeight(shareId: Uint8Array, node: NodeFingerprint): Buffer {
  return blake2b([LABEL, shareId, Buffer.from(node, 'hex')], 32);
}

function checkShareId(shareId: Uint8Array): void {
  if (shareId.length !== SHARE_ID_BYTES) throw err('STORAGE_INTERNAL', 'share id must be 32 bytes');
}

/** The distinct nodes of a list, each checked to be a fingerprint (PLACEMENT_NODE_INVALID). */
function distinctNodes(nodes: readonly NodeFingerprint[]): NodeFingerprint[] {
  const seen = new Set<string>();
  for (const n of nodes) {
    if (typeof n !== 'string' || !FINGERPRINT.test(n)) throw err('PLACEMENT_NODE_INVALID', 'node ids are 64 lowercase hex characters', { node: n });
    seen.add(n);
  }
  return [...seen];
}

/** Every distinct node, best first for this share (ties, which need a hash collision, by fingerprint). */
export function rankNodes(shareId: Uint8Array, nodes: readonly NodeFingerprint[]): NodeFingerprint[] {
  checkShareId(shareId);
  return distinctNodes(nodes)
    .map((node) => ({ node, w: placementWeight(shareId, node) }))
    .sort((a, b) => b.w.compare(a.w) || (a.node < b.node ? -1 : 1))
    .map((x) => x.node);
}

/**
 * Nodes for the n shares of one chunk, all distinct: share i goes to the first node of its own
 * ranking that the filter allows and that no share before it in the chunk took.
 * Fewer than n allowed distinct nodes → PLACEMENT_TOO_FEW_NODES.
 */
export function placeChunk(shareIds: ReadonlyArray<Uint8Array>, nodes: readonly NodeFingerprint[], filter: NodeFilter = () => true): NodeFingerprint[] {
  shareIds.forEach(checkShareId);
  const allowed = distinctNodes(nodes).filter((n) => filter(n));
  if (allowed.length < shareIds.length) {
    throw err('PLACEMENT_TOO_FEW_NODES', `need ${shareIds.length} distinct storage nodes, ${allowed.length} allowed`, { need: shareIds.length, have: allowed.length });
  }
  const taken = new Set<NodeFingerprint>();
  return shareIds.map((id) => {
    const node = rankNodes(id, allowed).find((n) => !taken.has(n))!;
    taken.add(node);
    return node;
  });
}

/** The `count` best allowed nodes for one share stored whole on several nodes (the root share). */
export function placeReplicas(shareId: Uint8Array, nodes: readonly NodeFingerprint[], count: number, filter: NodeFilter = () => true): NodeFingerprint[] {
  const ranked = rankNodes(shareId, nodes).filter(filter);
  if (ranked.length < count) throw err('PLACEMENT_TOO_FEW_NODES', `need ${count} distinct storage nodes, ${ranked.length} allowed`, { need: count, have: ranked.length });
  return ranked.slice(0, count);
}
