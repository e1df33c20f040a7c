// SPEC.md §9.16.2: the generated listing of a folder is bounded in bytes as well as in names, so a
// hostile folder (names that escape to several times their length) cannot make the proxy build and
// hold a page many times its listing for every request. Storage is stood in for: the reader's
// manifest and folder are replaced.
import type { Duplex } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { err } from '../../src/errors';
import { capabilityHost } from '../../src/client/gateway/host';
import { Gateway } from '../../src/client/gateway/gateway';
import { FOLDER_CONTENT_TYPE, type Folder } from '../../src/storage/folder';
import type { Manifest } from '../../src/storage/manifest';

const host = capabilityHost({ fileKey: Buffer.alloc(32, 7), manifestId: Buffer.alloc(32, 9) });
// SPEC.md §9.16.2: the largest listing page.
const MAX_PAGE = 4 * 1024 * 1024;

let gw: Gateway | null = null;
const streams: Duplex[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) s.destroy();
  await gw?.close();
  gw = null;
});

describe('folder listing pages (SPEC.md §9.16.2)', () => {
  it('a listing of names that escape to many bytes gives a page of at most 4 MiB, its first names in order', async () => {
    const g = new Gateway({ nodes: () => [], open: () => Promise.reject(err('STORAGE_TIMEOUT', 'none')) });
    gw = g;
    const m = { version: 1, name: '', contentType: FOLDER_CONTENT_TYPE, contentClass: '', layout: { size: 1, chunkSize: 1, coding: { k: 1, n: 1 }, chunks: [] } } as unknown as Manifest;
    vi.spyOn(g.reader, 'manifest').mockResolvedValue(m);
    // 2 000 names of 1 000 "&" and a number: each row takes over 8 KB once escaped (16 MB in all).
    const cap = { fileKey: Buffer.alloc(32, 1), manifestId: Buffer.alloc(32, 2) };
    const entries = Array.from({ length: 2000 }, (_, i) => ({ path: `${String(i).padStart(4, '0')}${'&'.repeat(1000)}`, cap, size: 1 }));
    vi.spyOn(g.reader, 'folder').mockResolvedValue({ entries } as Folder);
    const s = g.connect(host);
    streams.push(s);
    const parts: Buffer[] = [];
    s.on('data', (b: Buffer) => parts.push(b));
    s.on('error', () => {});
    s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await expect.poll(() => /<\/ul>(<p>[^<]*<\/p>)?\n$/.test(Buffer.concat(parts).toString('latin1')), { timeout: 10_000 }).toBe(true);
    const text = Buffer.concat(parts).toString('latin1');
    expect(text).toMatch(/^HTTP\/1\.1 200 /);
    const length = Number(/\r\ncontent-length: (\d+)\r\n/i.exec(text)![1]);
    expect(length).toBeLessThanOrEqual(MAX_PAGE);
    const body = text.slice(text.indexOf('\r\n\r\n') + 4);
    expect(body.length).toBe(length);
    // The first names, in order, and a line saying how many were left out.
    const listed = [...body.matchAll(/<li><a href="(\d{4})/g)].map((x) => x[1]);
    expect(listed.length).toBeGreaterThan(0);
    expect(listed).toEqual(Array.from({ length: listed.length }, (_, i) => String(i).padStart(4, '0')));
    expect(body).toContain(`<p>${2000 - listed.length} more not listed.</p>`);
  });
});
