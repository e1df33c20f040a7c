// SPEC.md §9.9, §9.9.1, §9.16.6: a get asks for a window of chunks at once, each from k nodes, and
// every share request under way listens to the get's abort signal (to be abandoned at once when
// the get stops). That many listeners on one signal is by design, not a leak: a get of a file of
// many chunks, to a part file or to stdout, with or without the caller's signal, prints no
// MaxListenersExceededWarning on stderr.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from '../../src/crypto/primitives';
import { connectStorageDirect } from '../../src/storage/direct';
import { StorageClient, storageNodesOf } from '../../src/client/storage-client';
import { putFile } from '../../src/client/storage-client-put';
import { getFile } from '../../src/client/storage-client-get';
import { parseCapability } from '../../src/storage/capability';
import { startNode, stopNode, type TestNode } from '../helpers/storage-nodes';

const KiB = 1024;
const CHUNK = 16 * KiB;
const CHUNKS = 24;
let root: string;
let cap: string;
let data: Buffer;
const nodes: TestNode[] = [];

const client = () => new StorageClient({
  nodes: storageNodesOf(nodes.map((n) => n.relay)),
  open: (n) => connectStorageDirect({ host: n.address, port: n.storagePort, expectedIdentity: n.identity, timeoutMs: 2000 }),
});

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-get-listeners-'));
  for (let i = 0; i < 6; i++) nodes.push(await startNode(root, i, 64 * 1024 * KiB));
  data = randomBytes(CHUNKS * CHUNK);
  const file = path.join(root, 'input.bin');
  await fsp.writeFile(file, data);
  const c = client();
  cap = (await putFile(c, file, { chunkSize: CHUNK, workers: false })).capability;
  await c.close();
});

afterAll(async () => {
  for (const n of nodes) await stopNode(n);
  await fsp.rm(root, { recursive: true, force: true });
});

async function warningsDuring(f: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const onWarning = (w: Error) => { if (w.name === 'MaxListenersExceededWarning') seen.push(w.message); };
  process.on('warning', onWarning);
  try {
    await f();
    await new Promise((r) => setTimeout(r, 20)); // warnings are emitted on a later tick
  } finally {
    process.off('warning', onWarning);
  }
  return seen;
}

describe('a get of many chunks at once (SPEC.md §9.9)', () => {
  for (const withSignal of [false, true]) {
    it(`to a part file${withSignal ? ', with a signal,' : ''} prints no listener warning`, async () => {
      const c = client();
      const out = path.join(root, `out-${withSignal}.bin`);
      const warnings = await warningsDuring(async () => {
        await getFile(c, parseCapability(cap), { output: out, window: 16, workers: false, ...(withSignal ? { signal: new AbortController().signal } : {}) });
      });
      await c.close();
      expect(warnings).toEqual([]);
      expect((await fsp.readFile(out)).equals(data)).toBe(true);
    });

    it(`to stdout (-o -)${withSignal ? ', with a signal,' : ''} prints no listener warning`, async () => {
      const c = client();
      const parts: Buffer[] = [];
      const sink = new Writable({ write(b: Buffer, _e, cb) { parts.push(b); cb(); } });
      const warnings = await warningsDuring(async () => {
        await getFile(c, parseCapability(cap), { output: '-', stdout: sink, window: 16, workers: false, ...(withSignal ? { signal: new AbortController().signal } : {}) });
      });
      await c.close();
      expect(warnings).toEqual([]);
      expect(Buffer.concat(parts).equals(data)).toBe(true);
    });
  }
});
