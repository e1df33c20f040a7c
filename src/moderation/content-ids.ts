// SPEC.md §10.3: deny by content. A storage node sees only share ids (§9.1), so a moderator who
// wants a node to refuse the same bytes under another name denies the ids of the file's shares —
// every share of every data chunk, every share of every manifest chunk, and the manifest id (the
// root share) — not the manifest id alone (the manifest holds the file name, so a copy under
// another name has another manifest id). This reads them from a capability: the root share, then
// the manifest (fetched and checked as `get` does, §9.9). Public content (§10.1) is stored under
// one key for everyone, so the same bytes cut with the same chunk size and coding give the same
// data share ids whoever uploads them, under any name.
import fs from 'node:fs';
import { err } from '../errors';
import type { Capability } from '../storage/capability';
import { DEFAULT_CODING, type Coding } from '../storage/coding';
import { DEFAULT_CHUNK_SIZE, FileEncoder } from '../storage/file-encoder';
import { ChunkKind, type Share } from '../storage/encode';
import { sealWithVerifyRecord, verifyChunkOf } from '../storage/verify-cap';
import type { VerifyChunk } from '../wire/verify-record';
import { isPublicClass, PUBLIC_CONTENT_KEY } from './policy';
import { manifestName } from '../client/storage-client-put';
import type { StorageClient } from '../client/storage-client';
import { fetchManifest, fetchRootRecord, type GetStats } from '../client/storage-client-get';

export interface ContentIds {
  /** The manifest id (the id of the root share). */
  manifestId: Buffer;
  /** Share ids of the manifest's chunks and of the verify record (SPEC.md §9.18; depend on the file name, like the manifest id). */
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
  const rec = await fetchRootRecord(client, cap, stats);
  const root = rec.manifest;
  const manifest = await fetchManifest(client, cap, stats, root);
  const distinct = (ids: Buffer[]) => [...new Map(ids.map((id) => [id.toString('hex'), id])).values()];
  return {
    manifestId: cap.manifestId,
    manifestShares: distinct([...root.chunks.flatMap((c) => c.shareIds), ...(rec.verifyId ? [rec.verifyId] : [])]),
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

/**
 * The ids `bitcloud put FILE --class C` would store, computed here without sending anything
 * (SPEC.md §10.3.2): public content is encrypted under the public key, so the ids depend only on
 * the bytes, the name and content type, the class, the chunk size and the coding. A publisher
 * approves its own file this way before uploading it to nodes that store approved content only.
 */
export async function fileContentIds(file: string, o: { contentClass: string; coding?: Coding; chunkSize?: number; name?: string; contentType?: string }): Promise<ContentIds> {
  if (!isPublicClass(o.contentClass)) throw err('POLICY_NOT_PUBLIC', `ids can be computed ahead only for public content (not ${o.contentClass}): a private upload uses a fresh random key`, { contentClass: o.contentClass });
  const coding = o.coding ?? DEFAULT_CODING;
  const enc = new FileEncoder({ fileKey: PUBLIC_CONTENT_KEY, coding, chunkSize: o.chunkSize ?? DEFAULT_CHUNK_SIZE });
  const data: Buffer[] = [];
  const verifyChunks: VerifyChunk[] = [];
  const add = (shares: Share[]) => {
    data.push(...shares.map((s) => s.id));
    verifyChunks.push(verifyChunkOf(ChunkKind.DATA, verifyChunks.length, shares));
  };
  try {
    for await (const buf of fs.createReadStream(file)) for (const c of enc.push(buf as Buffer)) add(c.shares);
  } catch (e) {
    throw err('IO_NOT_FOUND', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, undefined, e);
  }
  for (const c of enc.end()) add(c.shares);
  const manifest = enc.manifest({ name: o.name ?? manifestName(file), contentType: o.contentType, contentClass: o.contentClass });
  const { sealed, verify } = sealWithVerifyRecord(PUBLIC_CONTENT_KEY, manifest, verifyChunks);
  const distinct = (ids: Buffer[]) => [...new Map(ids.map((id) => [id.toString('hex'), id])).values()];
  return {
    manifestId: sealed.manifestId,
    manifestShares: distinct([...sealed.chunks.flatMap((c) => c.shares.map((s) => s.id)), verify.id]),
    dataShares: distinct(data),
    contentClass: o.contentClass,
    chunkSize: enc.chunkSize,
    coding: { k: coding.k, n: coding.n },
  };
}
