// SPEC.md §6.10: directory HTTP transfers, their size limit and bounded decompression.
import { afterEach, describe, expect, it, vi } from 'vitest';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import zlib from 'node:zlib';
import { httpRequest } from '../../src/dir/fetch';

const servers: http.Server[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => { s.closeAllConnections(); s.close(r); })));
});

async function serve(body: Buffer, encoding: string): Promise<string> {
  const s = http.createServer((_req, res) => { res.writeHead(200, { 'content-encoding': encoding, 'content-length': body.length }); res.end(body); });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}/`;
}

describe('httpRequest', () => {
  it('decodes gzip and br bodies inside the limit', async () => {
    const text = Buffer.from('consensus '.repeat(100));
    expect((await httpRequest(await serve(zlib.gzipSync(text), 'gzip'), { maxBytes: 4096 })).body.equals(text)).toBe(true);
    expect((await httpRequest(await serve(zlib.brotliCompressSync(text), 'br'), { maxBytes: 4096 })).body.equals(text)).toBe(true);
  });

  for (const enc of ['br', 'gzip'] as const) {
    it(`stops inflating a ${enc} bomb once the limit is passed: the decompressor is destroyed (SPEC.md §6.10)`, async () => {
      // 32 MiB of zeros in a few hundred bytes (br) or 32 KiB (gzip), against a limit of 1 MiB.
      const plain = Buffer.alloc(32 << 20);
      const bomb = enc === 'br'
        ? zlib.brotliCompressSync(plain, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 2 } })
        : zlib.gzipSync(plain, { level: 9 });
      const url = await serve(bomb, enc);
      const made: zlib.BrotliDecompress[] = [];
      let out = 0;
      const watch = (s: zlib.BrotliDecompress) => { made.push(s); s.on('data', (c: Buffer) => { out += c.length; }); return s; };
      if (enc === 'br') {
        const real = zlib.createBrotliDecompress;
        vi.spyOn(zlib, 'createBrotliDecompress').mockImplementation((o) => watch(real(o)));
      } else {
        const real = zlib.createGunzip;
        vi.spyOn(zlib, 'createGunzip').mockImplementation((o) => watch(real(o) as unknown as zlib.BrotliDecompress) as unknown as zlib.Gunzip);
      }
      await expect(httpRequest(url, { maxBytes: 1 << 20 })).rejects.toMatchObject({ code: 'DIR_RESPONSE_TOO_LARGE' });
      expect(made).toHaveLength(1);
      const atRefusal = out;
      // The decompressor closes (a hang here is the failure), and emits nothing more.
      const d = made[0];
      if (!d.closed) await new Promise((r) => d.once('close', r));
      expect(d.destroyed).toBe(true);
      expect(out).toBe(atRefusal);
      expect(out).toBeLessThan(2 << 20);
    }, 10_000);
  }
});
