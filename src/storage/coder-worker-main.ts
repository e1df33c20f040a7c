// The chunk coder pool's worker (coder-pool.ts): encodes data chunks exactly as encodeChunk and
// verifyChunkOf do on the main thread (SPEC.md §9.2, §9.3, §9.18.2), so the thread that drives
// the client's circuits never waits for encryption, Reed–Solomon or hashing.
import { parentPort } from 'node:worker_threads';
import { errorCode, isBitcloudError } from '../errors';
import { decodeChunk, encodeChunk, type ChunkKind } from './encode';
import { auditRoot } from './audit';
import type { CoderReply, CoderTask } from './coder-pool';

const port = parentPort!;
port.on('message', (t: CoderTask) => {
  try {
    if (t.op === 'decode') {
      // Share `present[j]` is `parts[j]` (moved here), or packed in `plain` at j·size.
      const shares: (Buffer | null)[] = new Array(t.n).fill(null);
      t.present.forEach((i, j) => {
        const part = t.parts?.[j];
        shares[i] = part ? Buffer.from(part.buffer, part.byteOffset, part.byteLength) : Buffer.from(t.plain.buffer, t.plain.byteOffset + j * t.size, t.size);
      });
      const ref = { encLen: t.encLen, shareIds: t.shareIds };
      const out = decodeChunk(t.key, t.index, shares, { k: t.k, n: t.n }, ref, t.kind as ChunkKind, { screened: true });
      const whole = out.byteOffset === 0 && out.buffer.byteLength === out.length;
      const buf = whole ? out.buffer : new Uint8Array(out.buffer, out.byteOffset, out.length).slice().buffer;
      const reply: CoderReply = { id: t.id, ok: true, buf, size: out.length, encLen: t.encLen, ids: new Uint8Array(0), roots: new Uint8Array(0) };
      port.postMessage(reply, [buf as ArrayBuffer]);
      return;
    }
    const plain = Buffer.from(t.plain.buffer, t.plain.byteOffset, t.plain.byteLength);
    const enc = encodeChunk(t.key, t.index, plain, { k: t.k, n: t.n }, t.kind as ChunkKind);
    const n = enc.shares.length;
    const ids = new Uint8Array(n * 32);
    const roots = new Uint8Array(t.auditRoots ? n * 32 : 0);
    enc.shares.forEach((s, i) => {
      ids.set(s.id, i * 32);
      if (t.auditRoots) roots.set(auditRoot(s.bytes), i * 32);
    });
    // The shares are views of one buffer (encodeChunk): hand the whole buffer over, no copy.
    // A small buffer may sit in Node's shared pool, which must not be handed over: copy that one.
    const first = enc.shares[0].bytes;
    const whole = first.byteOffset === 0 && first.buffer.byteLength === n * first.length;
    const buf = whole ? first.buffer : new Uint8Array(first.buffer, first.byteOffset, n * first.length).slice().buffer;
    const reply: CoderReply = { id: t.id, ok: true, buf, size: first.length, encLen: enc.encLen, ids, roots };
    port.postMessage(reply, [buf as ArrayBuffer, ids.buffer, ...(roots.length ? [roots.buffer] : [])]);
  } catch (e) {
    const reply: CoderReply = {
      id: t.id, ok: false, code: errorCode(e), message: e instanceof Error ? e.message.replace(/^[A-Z0-9_]+: /, '') : String(e),
      detail: isBitcloudError(e) ? e.detail : undefined,
    };
    port.postMessage(reply);
  }
});
port.postMessage({ ready: true });
