// SPEC.md §9.6.1, §9.9: a requester refuses an answer frame longer than every request awaiting an
// answer could need, before allocating anything for it; a reader asks for a share's known length.
import { Duplex } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { isBitcloudError } from '../../src/errors';
import { answerFrameBound, MAX_SMALL_ANSWER_BYTES, StorageChannel } from '../../src/storage/channel';
import { FrameDecoder, MAX_FRAME_BYTES } from '../../src/storage/framing';
import { decodeRequest, type StorageRequest } from '../../src/storage/protocol';
import { StorageClient, type StorageNode } from '../../src/client/storage-client';

/** A stream standing for a hostile node: what the requester writes is kept, `answer` sends bytes. */
function hostileNode(): { stream: Duplex; requests: StorageRequest[]; answer: (b: Buffer) => void; onRequest?: () => void } {
  const dec = new FrameDecoder();
  const node = {
    requests: [] as StorageRequest[],
    onRequest: undefined as (() => void) | undefined,
    stream: new Duplex({
      read() { /* answers are pushed */ },
      write(chunk: Buffer, _enc, cb) {
        for (const f of dec.push(chunk)) { node.requests.push(decodeRequest(f).req); node.onRequest?.(); }
        cb();
      },
    }),
    answer: (b: Buffer) => { node.stream.push(b); },
  };
  return node;
}

/** A frame header declaring `len` bytes (the node then sends nothing more). */
function header(len: number): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(len, 0);
  return h;
}

const tick = () => new Promise((r) => setImmediate(r));

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try { await p; } catch (e) { return isBitcloudError(e) ? e.code : String(e); }
  return undefined;
}

describe('answer frames longer than what was asked (SPEC.md §9.6.1)', () => {
  it('a 4 MiB frame declared in answer to a HAS closes the stream with STORAGE_FRAME_TOO_LARGE', async () => {
    const node = hostileNode();
    const ch = new StorageChannel(node.stream);
    const p = codeOf(ch.request({ type: 'has', ids: [Buffer.alloc(32, 1)] }));
    node.answer(header(4 * 1024 * 1024));
    await tick();
    expect(ch.isClosed).toBe(true);
    expect(await p).toBe('STORAGE_FRAME_TOO_LARGE');
  });

  it('a frame longer than a get of a given length can need fails it; a get to the end of the share allows any frame', async () => {
    const node = hostileNode();
    const ch = new StorageChannel(node.stream);
    const p = codeOf(ch.request({ type: 'get', id: Buffer.alloc(32, 2), offset: 0, length: 200_000 }));
    node.answer(header(200_000 + 4096 + 1));
    await tick();
    expect(ch.isClosed).toBe(true);
    expect(await p).toBe('STORAGE_FRAME_TOO_LARGE');

    const other = hostileNode();
    const open = new StorageChannel(other.stream);
    void open.request({ type: 'get', id: Buffer.alloc(32, 2), offset: 0, length: 0 }).catch(() => {});
    other.answer(header(MAX_FRAME_BYTES));
    await tick();
    expect(open.isClosed).toBe(false);
    open.destroy();
  });

  it('the bound of each request', () => {
    expect(answerFrameBound({ type: 'stat' })).toBe(MAX_SMALL_ANSWER_BYTES);
    expect(answerFrameBound({ type: 'get', id: Buffer.alloc(32), offset: 0, length: 0 })).toBe(MAX_FRAME_BYTES);
    expect(answerFrameBound({ type: 'get', id: Buffer.alloc(32), offset: 0, length: 1_000_000 })).toBe(1_000_000 + 4096);
    // A get of a small share allows as much as any other request (its answer may be an error).
    expect(answerFrameBound({ type: 'get', id: Buffer.alloc(32), offset: 0, length: 1000 })).toBe(MAX_SMALL_ANSWER_BYTES);
  });
});

describe('a reader asks for the length of a share it knows (SPEC.md §9.9)', () => {
  it('getShare with a size sends that length, and a node declaring a longer answer fails it', async () => {
    const fp = 'ab'.repeat(32);
    const nodes: ReturnType<typeof hostileNode>[] = [];
    const client = new StorageClient({
      nodes: [{ fingerprint: fp } as unknown as StorageNode],
      open: async () => {
        const node = hostileNode();
        node.onRequest = () => node.answer(header(8 * 1024 * 1024));
        nodes.push(node);
        return node.stream;
      },
    });
    expect(await codeOf(client.getShare(fp, Buffer.alloc(32, 3), undefined, 1000))).toBe('STORAGE_FRAME_TOO_LARGE');
    expect(nodes.length).toBeGreaterThan(0);
    for (const n of nodes) expect(n.requests).toEqual([expect.objectContaining({ type: 'get', offset: 0, length: 1000 })]);
    await client.close();
  });
});
