import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { FileEncoder, newFileKey } from '../../src/storage/file-encoder';
import { decodeChunk } from '../../src/storage/encode';
import { chunkOffsets, decodeManifest, decodeRoot, encodeManifest, encodeRoot, makeManifest, manifestBytesFor, MANIFEST_VERSION, MAX_MANIFEST_BYTES, type Layout } from '../../src/storage/manifest';
import { manifestName } from '../../src/client/storage-client-put';
import { decodeManifestChunk, openManifest, openRoot, sealManifest } from '../../src/storage/seal';
import { ChunkKind, encryptChunk } from '../../src/storage/encode';
import { MAX_CHUNK_SIZE, shareId } from '../../src/storage/share';
import { fetchManifest } from '../../src/client/storage-client-get';
import type { StorageClient } from '../../src/client/storage-client';
import { encodeProto, pb } from '../../src/storage/proto';
import { isBitcloudError } from '../../src/errors';

function codeOf(f: () => unknown): string | undefined {
  try { f(); } catch (e) { return isBitcloudError(e) ? e.code : `NOT_BITCLOUD:${String(e)}`; }
  return undefined;
}

/** Encode a whole buffer through FileEncoder, feeding it in uneven pieces. */
function encodeFile(data: Buffer, chunkSize: number, key = newFileKey()) {
  const enc = new FileEncoder({ fileKey: key, chunkSize });
  const chunks = [];
  for (let off = 0; off < data.length; off += 7777) chunks.push(...enc.push(data.subarray(off, off + 7777)));
  chunks.push(...enc.end());
  return { key, chunks, manifest: enc.manifest({ name: 'f.bin', contentType: 'application/octet-stream' }) };
}

function decodeFile(key: Buffer, layout: Layout, shareOf: (id: Buffer) => Buffer | null): Buffer {
  return Buffer.concat(layout.chunks.map((c, i) => decodeChunk(key, i, c.shareIds.map(shareOf), layout.coding, c)));
}

describe('file encoder and manifest (SPEC §9.2, §9.4)', () => {
  for (const size of [0, 1, 4096, 4097, 50_000]) {
    it(`${size}-byte file round-trips through shares, manifest and root`, () => {
      const data = Buffer.from(Array.from({ length: size }, (_, i) => (i * 31) & 0xff));
      const { key, chunks, manifest } = encodeFile(data, 4096);
      expect(manifest.layout.size).toBe(size);
      expect(manifest.layout.chunks.length).toBe(Math.ceil(size / 4096));
      expect(chunks.map((c) => c.offset)).toEqual(chunkOffsets(manifest.layout));

      const store = new Map<string, Buffer>();
      for (const c of chunks) for (const s of c.shares) store.set(s.id.toString('hex'), s.bytes);
      // Small manifest chunks force the manifest itself over several chunks.
      const sealed = sealManifest(key, manifest, { chunkSize: 64 });
      for (const c of sealed.chunks) for (const s of c.shares) store.set(s.id.toString('hex'), s.bytes);
      expect(sealed.root.id.equals(sealed.manifestId)).toBe(true);

      // A reader holding only (manifest id, key) and the root share:
      const layout = openRoot(key, sealed.manifestId, sealed.root.bytes);
      const get = (id: Buffer) => store.get(id.toString('hex')) ?? null;
      const parts = layout.chunks.map((c, i) => decodeManifestChunk(key, layout, i, c.shareIds.map(get)));
      const m = openManifest(layout, parts);
      expect(m).toEqual(manifest);
      expect(decodeFile(key, m.layout, get).equals(data)).toBe(true);
    });
  }

  it('manifest encode/decode is the identity on valid manifests', () => {
    const { manifest } = encodeFile(Buffer.alloc(10_000, 1), 3000);
    expect(decodeManifest(encodeManifest(manifest))).toEqual(manifest);
  });

  it('root with the wrong key → CHUNK_AUTH_FAILED; wrong bytes → SHARE_HASH_MISMATCH', () => {
    const { key, manifest } = encodeFile(Buffer.alloc(10, 1), 4096);
    const sealed = sealManifest(key, manifest);
    expect(codeOf(() => openRoot(newFileKey(), sealed.manifestId, sealed.root.bytes))).toBe('CHUNK_AUTH_FAILED');
    const bad = Buffer.from(sealed.root.bytes); bad[0] ^= 1;
    expect(codeOf(() => openRoot(key, sealed.manifestId, bad))).toBe('SHARE_HASH_MISMATCH');
  });

  it('invalid manifests → MANIFEST_MALFORMED', () => {
    const { manifest } = encodeFile(Buffer.alloc(5000, 1), 4096);
    const good = {
      version: 1, contentType: '', name: 'x', contentClass: 'encrypted-private',
      layout: {
        size: 5000, chunkSize: 4096, coding: { scheme: 1, k: 4, n: 6 },
        chunks: manifest.layout.chunks.map((c) => ({ encLen: c.encLen, shareIds: c.shareIds })),
      },
    };
    const bad = (patch: (m: typeof good & Record<string, unknown>) => void) => {
      const m = structuredClone(good) as typeof good & Record<string, unknown>;
      patch(m);
      return codeOf(() => decodeManifest(encodeProto(pb.Manifest, m)));
    };
    expect(bad(() => {})).toBeUndefined();
    expect(bad((m) => { m.version = 2; })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.layout.size = 5001; })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.layout.coding.scheme = 0; })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.layout.coding.k = 7; })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.layout.chunkSize = 0; })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.layout.chunkSize = 1000; })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.layout.chunks[0].shareIds = m.layout.chunks[0].shareIds.slice(1); })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.layout.chunks[0].shareIds[0] = Buffer.alloc(31); })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.layout.chunks[1].encLen = 40; })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.name = '../etc/passwd'; })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.contentClass = ''; })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { m.contentType = 'x'.repeat(256); })).toBe('MANIFEST_MALFORMED');
    expect(bad((m) => { (m as Record<string, unknown>).layout = undefined; })).toBe('MANIFEST_MALFORMED');
    expect(codeOf(() => decodeManifest(Buffer.from([0xff, 0xff, 0xff])))).toBe('MANIFEST_MALFORMED');
    expect(codeOf(() => decodeManifest(Buffer.alloc(0)))).toBe('MANIFEST_MALFORMED');
  });

  it('property: decodeManifest/decodeRoot on random bytes return a value or throw MANIFEST_MALFORMED', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
      for (const f of [decodeManifest, decodeRoot]) {
        try { f(b); } catch (e) { if (!isBitcloudError(e, 'MANIFEST_MALFORMED')) return false; }
      }
      return true;
    }), { numRuns: 2000 });
  });

  it('a root naming a manifest over MAX_MANIFEST_BYTES is refused before any manifest chunk is fetched (SPEC.md §9.4)', async () => {
    expect(MAX_MANIFEST_BYTES).toBe(64 * 1024 * 1024);
    // A hostile uploader's root: a few 16 MiB manifest chunks that add up to one byte over the limit.
    const coding = { k: 1, n: 1 };
    const lens = [...Array<number>(MAX_MANIFEST_BYTES / MAX_CHUNK_SIZE).fill(MAX_CHUNK_SIZE), 1];
    const huge: Layout = { size: MAX_MANIFEST_BYTES + 1, chunkSize: MAX_CHUNK_SIZE, coding, chunks: lens.map((l) => ({ encLen: l + 40, shareIds: [Buffer.alloc(32, 7)] })) };
    expect(codeOf(() => decodeRoot(encodeRoot({ version: MANIFEST_VERSION, manifest: huge })))).toBe('MANIFEST_MALFORMED');
    const atLimit: Layout = { ...huge, size: MAX_MANIFEST_BYTES, chunks: huge.chunks.slice(0, -1) };
    expect(decodeRoot(encodeRoot({ version: MANIFEST_VERSION, manifest: atLimit })).manifest.size).toBe(MAX_MANIFEST_BYTES);

    const key = newFileKey();
    const root = encryptChunk(key, 0, encodeRoot({ version: MANIFEST_VERSION, manifest: huge }), ChunkKind.ROOT);
    const cap = { manifestId: shareId(root), fileKey: key };
    const asked: string[] = [];
    const client = {
      fingerprints: ['aa'.repeat(32), 'bb'.repeat(32)],
      isDead: () => false,
      getShare: (_fp: string, id: Buffer) => { asked.push(id.toString('hex')); return Promise.resolve(root); },
    } as unknown as StorageClient;
    await expect(fetchManifest(client, cap, { corruptShares: 0, missingShares: 0, sharesFetched: 0 })).rejects.toMatchObject({ code: 'MANIFEST_MALFORMED' });
    expect(asked).toEqual([cap.manifestId.toString('hex')]); // the root share only
  });

  it('sealManifest refuses a manifest over MAX_MANIFEST_BYTES: STORAGE_MANIFEST_TOO_LARGE (SPEC.md §9.5)', () => {
    // 64 share ids a chunk, about 2.2 kB of manifest each: 31 000 chunks pass the limit.
    const ids = Array.from({ length: 64 }, () => Buffer.alloc(32, 1));
    const n = 31_000;
    const layout: Layout = { size: n, chunkSize: 1, coding: { k: 1, n: 64 }, chunks: Array.from({ length: n }, () => ({ encLen: 41, shareIds: ids })) };
    expect(codeOf(() => sealManifest(newFileKey(), makeManifest(layout)))).toBe('STORAGE_MANIFEST_TOO_LARGE');
  });

  it('makeManifest refuses bad metadata', () => {
    const { manifest } = encodeFile(Buffer.alloc(10, 1), 4096);
    expect(codeOf(() => makeManifest(manifest.layout, { name: 'a/b' }))).toBe('STORAGE_BAD_MANIFEST_INPUT');
    expect(codeOf(() => makeManifest(manifest.layout, { contentClass: 'Public' }))).toBe('STORAGE_BAD_MANIFEST_INPUT');
  });

  it('manifestName keeps a base name only when it is a valid manifest name (SPEC.md §9.4)', () => {
    expect(manifestName('/tmp/x/report.pdf')).toBe('report.pdf');
    for (const bad of ['/tmp/a\\b.txt', 'c\\', '/tmp/..', '.', 'x/' + 'y'.repeat(256), '/tmp/nul\0x']) expect(manifestName(bad), bad).toBe('');
  });

  it('manifestBytesFor gives, before any chunk is cut, the exact length of the manifest the encoder writes (SPEC.md §9.4, §9.5)', () => {
    for (const [size, chunkSize, k, n, name] of [
      [0, 4096, 4, 6, ''], [1, 1, 1, 1, 'a'], [10, 4096, 4, 6, 'f.bin'], [5000, 1000, 3, 10, 'r\u00e9sum\u00e9.txt'], [5001, 1000, 1, 64, ''],
      [300, 127, 2, 3, 'x'.repeat(255)], [70_000, 200, 4, 6, 'big'],
    ] as const) {
      const enc = new FileEncoder({ fileKey: newFileKey(), chunkSize, coding: { k, n } });
      enc.push(Buffer.alloc(size, 7));
      enc.end();
      const m = enc.manifest({ name, contentType: 'text/plain', contentClass: 'public-any' });
      expect(manifestBytesFor(size, chunkSize, { k, n }, { name, contentType: 'text/plain', contentClass: 'public-any' }), `${size}/${chunkSize}/${n}`).toBe(encodeManifest(m).length);
    }
    // A large file is counted without cutting it: 300 GiB in 1 MiB chunks of 4-of-6 fits, 400 GiB does not.
    expect(manifestBytesFor(300 * 2 ** 30, 2 ** 20, { k: 4, n: 6 }, {})).toBeLessThan(MAX_MANIFEST_BYTES);
    expect(manifestBytesFor(400 * 2 ** 30, 2 ** 20, { k: 4, n: 6 }, {})).toBeGreaterThan(MAX_MANIFEST_BYTES);
    expect(codeOf(() => manifestBytesFor(10, 10, { k: 1, n: 1 }, { name: 'a\\b' }))).toBe('STORAGE_BAD_MANIFEST_INPUT');
  });

  it('file encoder refuses bad chunk sizes and keys', () => {
    expect(codeOf(() => new FileEncoder({ fileKey: newFileKey(), chunkSize: 0 }))).toBe('STORAGE_BAD_MANIFEST_INPUT');
    expect(codeOf(() => new FileEncoder({ fileKey: Buffer.alloc(8) }))).toBe('STORAGE_KEY_INVALID');
  });
});
