// SPEC.md §9.16.6: a request whose client went away starts no further chunk fetch. BlobReader.range
// takes the request's AbortSignal: once aborted, no fetch starts, and the chunk being awaited is
// dropped when it arrives. Here the chunk fetches are stalled by hand.
import { describe, expect, it, vi } from 'vitest';
import { err } from '../../src/errors';
import { BlobReader } from '../../src/client/gateway/reader';
import { CHUNK_OVERHEAD } from '../../src/storage/encode';
import type { Manifest } from '../../src/storage/manifest';
import type { StorageClient } from '../../src/client/storage-client';

const PLAIN = 100;
const cap = { fileKey: Buffer.alloc(32, 1), manifestId: Buffer.alloc(32, 2) };
const manifest = { layout: { size: 10 * PLAIN, chunks: Array.from({ length: 10 }, () => ({ encLen: PLAIN + CHUNK_OVERHEAD, shareIds: [] })) } } as unknown as Manifest;

describe('BlobReader.range with an aborted signal (SPEC.md §9.16.6)', () => {
  it('starts no chunk fetch after the abort and yields nothing more', async () => {
    const reader = new BlobReader({ client: () => ({}) as StorageClient, cacheBytes: 0, readAhead: 2 });
    const fetches: Array<() => void> = [];
    const chunk = vi.spyOn(reader, 'chunk').mockImplementation(() => new Promise<Buffer>((resolve) => {
      fetches.push(() => resolve(Buffer.alloc(PLAIN)));
    }));
    const ac = new AbortController();
    const it = reader.range(cap, manifest, 0, 10 * PLAIN - 1, ac.signal)[Symbol.asyncIterator]();
    const first = it.next();
    await vi.waitFor(() => expect(chunk).toHaveBeenCalledTimes(3)); // the chunk sent and 2 ahead
    fetches[0]();
    expect((await first).value).toHaveLength(PLAIN);
    const second = it.next(); // fetches one more ahead (chunk 3), then awaits chunk 1, stalled
    await vi.waitFor(() => expect(chunk).toHaveBeenCalledTimes(4));
    ac.abort();
    fetches[1](); // arrives after the abort: dropped
    expect(await second).toEqual({ done: true, value: undefined });
    expect(chunk).toHaveBeenCalledTimes(4); // none started after the abort
    expect(await it.next()).toEqual({ done: true, value: undefined });
    expect(chunk).toHaveBeenCalledTimes(4);
  });

  it('an already aborted signal starts no fetch at all', async () => {
    const reader = new BlobReader({ client: () => ({}) as StorageClient, cacheBytes: 0 });
    const chunk = vi.spyOn(reader, 'chunk').mockResolvedValue(Buffer.alloc(PLAIN));
    const ac = new AbortController();
    ac.abort();
    const parts: Buffer[] = [];
    for await (const b of reader.range(cap, manifest, 0, 10 * PLAIN - 1, ac.signal)) parts.push(b);
    expect(parts).toHaveLength(0);
    expect(chunk).not.toHaveBeenCalled();
  });

  it('a manifest or chunk asked for with an already aborted signal rejects STORAGE_ABORTED and starts no fetch', async () => {
    const client = vi.fn(() => ({}) as StorageClient);
    const reader = new BlobReader({ client, cacheBytes: 0 });
    const ac = new AbortController();
    ac.abort();
    await expect(reader.manifest(cap, ac.signal)).rejects.toMatchObject({ code: 'STORAGE_ABORTED' });
    await expect(reader.chunk(cap, manifest, 0, ac.signal)).rejects.toMatchObject({ code: 'STORAGE_ABORTED' });
    expect(client).not.toHaveBeenCalled();
  });

  it('the chunks read ahead are given up when a chunk fails or the caller stops, the caller\'s signal never aborted', async () => {
    const reader = new BlobReader({ client: () => ({}) as StorageClient, cacheBytes: 0, readAhead: 2 });
    const asked: Array<{ i: number; signal: AbortSignal | undefined }> = [];
    let fail0!: () => void;
    vi.spyOn(reader, 'chunk').mockImplementation((_c, _m, i, signal) => new Promise<Buffer>((resolve, reject) => {
      asked.push({ i, signal });
      if (i === 0) fail0 = () => reject(err('CHUNK_TOO_FEW_SHARES', 'chunk 0 unavailable'));
    }));
    const ac = new AbortController(); // the request's: its client stays (it gets an error page)
    const it = reader.range(cap, manifest, 0, 10 * PLAIN - 1, ac.signal)[Symbol.asyncIterator]();
    const first = it.next();
    await vi.waitFor(() => expect(asked).toHaveLength(3)); // the chunk to send and 2 ahead
    fail0();
    await expect(first).rejects.toMatchObject({ code: 'CHUNK_TOO_FEW_SHARES' });
    expect(ac.signal.aborted).toBe(false);
    expect(asked.filter((a) => a.i > 0).map((a) => a.signal?.aborted)).toEqual([true, true]);

    // A caller stopping after the first chunk (return()) gives up those read ahead too.
    asked.length = 0;
    const fetches: Array<() => void> = [];
    vi.mocked(reader.chunk).mockImplementation((_c, _m, i, signal) => new Promise<Buffer>((resolve) => {
      asked.push({ i, signal });
      fetches.push(() => resolve(Buffer.alloc(PLAIN)));
    }));
    const again = reader.range(cap, manifest, 0, 10 * PLAIN - 1, ac.signal)[Symbol.asyncIterator]();
    const one = again.next();
    await vi.waitFor(() => expect(asked).toHaveLength(3));
    fetches[0]();
    expect((await one).value).toHaveLength(PLAIN);
    await again.return(undefined);
    expect(ac.signal.aborted).toBe(false);
    expect(asked.filter((a) => a.i > 0).every((a) => a.signal?.aborted)).toBe(true);
  });
});
