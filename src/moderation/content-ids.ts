// SPEC.md §10.3: deny by content. A storage node sees only share ids (§9.1), so a moderator who
// wants a node to refuse the same bytes under another name denies the ids of the file's shares —
// every share of every data chunk, every share of every manifest chunk, and the manifest id (the
// root share) — not the manifest id alone (the manifest holds the file name, so a copy under
// another name has another manifest id). This reads them from a capability: the root share, then
// the manifest (fetched and checked as `get` does, §9.9). Public content (§10.1) is stored under
// one key for everyone, so the same bytes cut with the same chunk size and coding give the same
// data share ids whoever uploads them, under any name.
import type { Capability } from '../storage/capability';
import type { StorageClient } from '../client/storage-client';
import { fetchManifest, fetchRoot, type GetStats } from '../client/storage-client-get';

export interface ContentIds {
  /** The manifest id (the id of the root share). */
  manifestId: Buffer;
  /** Share ids of the manifest's chunks (depend on the file name, like the manifest id). */
  manifestShares: Buffer[];
  /** Share ids of the file's data chunks: what denies the bytes under any name. */
  dataShares: Buffer[];
  contentClass: string;
  chunkSize: number;
  coding: { k: number; n: number };
}

/** Every id a content deny lists for the file `cap` names (distinct, in file order). */
export async function contentIds(client: StorageClient, cap: Capability): Promise<ContentIds> {
  const stats: GetStats = { corruptShares: 0, missingShares: 0, sharesFetched: 0 };
  const root = await fetchRoot(client, cap, stats);
  const manifest = await fetchManifest(client, cap, stats, root);
  const distinct = (ids: Buffer[]) => [...new Map(ids.map((id) => [id.toString('hex'), id])).values()];
  return {
    manifestId: cap.manifestId,
    manifestShares: distinct(root.chunks.flatMap((c) => c.shareIds)),
    dataShares: distinct(manifest.layout.chunks.flatMap((c) => c.shareIds)),
    contentClass: manifest.contentClass,
    chunkSize: manifest.layout.chunkSize,
    coding: { k: manifest.layout.coding.k, n: manifest.layout.coding.n },
  };
}

/** All ids of a ContentIds, manifest id first. */
export function allContentIds(c: ContentIds): Buffer[] {
  return [c.manifestId, ...c.manifestShares, ...c.dataShares];
}
