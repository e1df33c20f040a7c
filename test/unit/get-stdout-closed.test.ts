// SPEC.md §9.9.1, §9.10: `bitcloud get -o - CAP | head -c 100`. When stdout's reader goes away
// (EPIPE) the command stops at once, prints nothing and exits with 141 (128 + SIGPIPE), as `cat`
// does; stdout refusing the bytes otherwise (EIO, ENOSPC) is still IO_NOT_WRITABLE, reported, exit 2.
// The command runs in this process against real storage nodes on 127.0.0.1: the consensus and
// the circuits are stand-ins (a circuit's stream is a direct session to the node).
import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ConsensusRelay } from '../../src/dir/types';
import { randomBytes } from '../../src/crypto/primitives';
import { connectStorageDirect } from '../../src/storage/direct';
import * as clientConfig from '../../src/dir/client-config';
import { StorageClient, storageNodesOf } from '../../src/client/storage-client';
import { putFile } from '../../src/client/storage-client-put';
import { getCommand } from '../../src/client/commands/get';
import { startNode, stopNode, type TestNode } from '../helpers/storage-nodes';

const relays = vi.hoisted(() => [] as ConsensusRelay[]);

vi.mock('../../src/client/dir-keeper', () => ({
  DirKeeper: class {
    useGuards(): void {}
    async start(): Promise<void> {}
    async refresh(): Promise<void> {}
    consensus(): object { return {}; }
    relays(): ConsensusRelay[] { return relays; }
    stop(): void {}
  },
}));

vi.mock('../../src/client/circuit-manager', () => ({
  CircuitManager: class {
    async buildCircuitTo(r: ConsensusRelay): Promise<ConsensusRelay> { return r; }
    openStream(r: ConsensusRelay) { return connectStorageDirect({ host: r.address, port: r.storagePort, expectedIdentity: r.identity, timeoutMs: 2000 }); }
    async close(): Promise<void> {}
  },
}));

const KiB = 1024;
const CHUNK = 64 * KiB;
const CHUNKS = 40;
let root: string;
let cfg: string;
let cap: string;
let data: Buffer;
const nodes: TestNode[] = [];
const stdout = Object.getOwnPropertyDescriptor(process, 'stdout')!;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-get-closed-'));
  for (let i = 0; i < 6; i++) nodes.push(await startNode(root, i, 256 * 1024 * KiB));
  relays.push(...nodes.map((n) => n.relay));
  data = randomBytes(CHUNKS * CHUNK);
  const file = path.join(root, 'input.bin');
  await fsp.writeFile(file, data);
  const c = new StorageClient({
    nodes: storageNodesOf(relays),
    open: (n) => connectStorageDirect({ host: n.address, port: n.storagePort, expectedIdentity: n.identity, timeoutMs: 2000 }),
  });
  cap = (await putFile(c, file, { chunkSize: CHUNK, workers: false })).capability;
  await c.close();
  cfg = path.join(root, 'client.json');
  await fsp.writeFile(cfg, '{}');
});

afterAll(async () => {
  for (const n of nodes) await stopNode(n);
  await fsp.rm(root, { recursive: true, force: true });
});

afterEach(() => {
  Object.defineProperty(process, 'stdout', stdout);
  vi.restoreAllMocks();
});

/** Run `get CAP -o -` with `out` as stdout; its exit status, what it printed on stderr, and its share requests. */
async function run(out: NodeJS.WritableStream, json: boolean) {
  const dataDir = await fsp.mkdtemp(path.join(root, 'data-'));
  vi.spyOn(clientConfig, 'loadDirClientConfig').mockReturnValue({ authorities: [], mirrors: [], dataDir, file: cfg });
  const stderr: string[] = [];
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => { stderr.push(String(chunk)); return true; });
  const real = StorageClient.prototype.getShare;
  const asked: number[] = [];
  vi.spyOn(StorageClient.prototype, 'getShare').mockImplementation(function (this: StorageClient, fp, id) {
    asked.push(Date.now());
    return real.call(this, fp, id);
  });
  Object.defineProperty(process, 'stdout', { value: out, configurable: true, writable: true });
  let status: number;
  try {
    status = await getCommand({ cap, output: '-', json, direct: false, config: cfg, 'data-dir': dataDir });
  } finally {
    Object.defineProperty(process, 'stdout', stdout);
  }
  return { status, stderr, asked };
}

describe('get -o - when stdout\'s reader goes away (SPEC.md §9.9.1, §9.10)', () => {
  it.each([true, false])('exits with 141 and prints nothing (--json: %s); no share is asked for after it', async (json) => {
    // A real pipe whose reader exits after 100 bytes.
    const head = spawn('head', ['-c', '100'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const read: Buffer[] = [];
    head.stdout.on('data', (b: Buffer) => read.push(b));
    const headExit = new Promise<number | null>((r) => head.on('close', (code) => r(code)));
    const { status, stderr, asked } = await run(head.stdin, json);
    expect(await headExit).toBe(0);
    expect(Buffer.concat(read).equals(data.subarray(0, 100))).toBe(true);
    expect(status).toBe(141);
    // --json prints no progress; without it only progress lines, never the failure.
    if (json) expect(stderr).toEqual([]);
    else expect(stderr.filter((l) => !/^get: \d+% /.test(l))).toEqual([]);
    // Stopped at once: far fewer than every chunk's k shares were asked for, and nothing since.
    const n = asked.length;
    expect(n).toBeLessThan(CHUNKS * 4);
    await new Promise((r) => setTimeout(r, 300));
    expect(asked.length).toBe(n);
  }, 30_000);

  it('stdout refusing the bytes otherwise (EIO) is still IO_NOT_WRITABLE: reported, exit status 2', async () => {
    const eio = new Writable({
      write(_chunk, _enc, cb) { cb(Object.assign(new Error('EIO: i/o error, write'), { code: 'EIO' })); },
    });
    const { status, stderr } = await run(eio, false);
    expect(status).toBe(2);
    const lines = stderr.filter((l) => l.startsWith('bitcloud get:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^bitcloud get: IO_NOT_WRITABLE: .*EIO/);
    // A reader that went away is IO_OUTPUT_CLOSED: this message does not offer that as a cause.
    expect(lines[0]).toMatch(/stdout refused the bytes/);
    expect(lines[0]).not.toMatch(/reader closed/);
  }, 30_000);

  it('stdout on a full disk (ENOSPC) is IO_NOT_WRITABLE saying the disk is full, exit status 2', async () => {
    const full = new Writable({
      write(_chunk, _enc, cb) { cb(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' })); },
    });
    const { status, stderr } = await run(full, false);
    expect(status).toBe(2);
    const lines = stderr.filter((l) => l.startsWith('bitcloud get:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^bitcloud get: IO_NOT_WRITABLE: .*ENOSPC.*the disk is full/);
  }, 30_000);
});
