// `npm run bench -- --only storage`: chunk coding (SPEC.md §9.2–9.3) and share store (§9.8)
// throughput, each beside a raw baseline measured in the same run on the same bytes; then put and
// get through circuits and direct (storage-net.ts) beside the raw circuit and disk.
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { BenchModule, BenchRow } from './types';
import { blake2b, randomBytes, xchachaEncrypt } from '../../src/crypto/primitives';
import { writeFileAtomic } from '../../src/ops/fsutil';
import { decodeChunk, encodeChunk } from '../../src/storage/encode';
import { erasureEncodeInPlace, shareSizeFor } from '../../src/storage/erasure';
import { ShareStore } from '../../storage/share-store';
import { netRows } from './storage-net';
import { auditRoot, challengeBlocks, verifyAuditAnswer } from '../../src/storage/audit';
import { rebuildShares } from '../../src/client/storage-client-verify';
import { shareId } from '../../src/storage/share';
import { ed25519Generate } from '../../src/crypto/primitives';
import { makeKeyCertificate } from '../../src/dir/certificate';
import { silentLogger } from '../../src/ops/log';
import type { ConsensusRelay, VerifiedConsensus } from '../../src/dir/types';
import { encodeContract, sortContractEntries } from '../../src/wire/storage-contract';
import { handleRequest } from '../../storage/handler';
import { responseError } from '../../src/storage/protocol';
import { StorageAudits } from '../../directory/storage-audits';

const MIB = 1024 * 1024;

/** MB/s of `op` over `bytes` per call, run for about `ms` after a warm-up call. */
function mbps(op: () => void, bytes: number, ms: number): number {
  op();
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    op();
    n++;
    now = performance.now();
  }
  return (n * bytes) / 1e6 / ((now - start) / 1000);
}

async function mbpsAsync(op: (i: number) => Promise<void>, bytes: number, count: number): Promise<number> {
  const start = performance.now();
  for (let i = 0; i < count; i++) await op(i);
  return (count * bytes) / 1e6 / ((performance.now() - start) / 1000);
}

function codingRows(ms: number): BenchRow[] {
  const key = randomBytes(32);
  const nonce = randomBytes(24);
  const chunk = randomBytes(MIB);
  const aead = mbps(() => { xchachaEncrypt(key, nonce, chunk); }, MIB, ms);
  const hash = mbps(() => { blake2b(chunk); }, MIB, ms);
  const aeadBase = { name: 'XChaCha20-Poly1305 alone', value: aead, unit: 'MB/s' };
  const rows: BenchRow[] = [];
  for (const c of [{ k: 4, n: 6 }, { k: 3, n: 10 }]) {
    const size = shareSizeFor(MIB + 40, c.k);
    const buf = Buffer.alloc(c.n * size);
    chunk.copy(buf);
    rows.push({
      group: 'storage', name: `Reed–Solomon parity ${c.k}-of-${c.n} (1 MiB chunk)`, unit: 'MB/s',
      value: mbps(() => erasureEncodeInPlace(c, buf, size), MIB, ms),
      baseline: { name: 'BLAKE2b-256 of the same bytes', value: hash, unit: 'MB/s' },
    });
    rows.push({
      group: 'storage', name: `encodeChunk ${c.k}-of-${c.n} (encrypt + RS + share hashes)`, unit: 'MB/s',
      value: mbps(() => { encodeChunk(key, 0, chunk, c); }, MIB, ms), baseline: aeadBase,
    });
    const enc = encodeChunk(key, 0, chunk, c);
    const ref = { encLen: enc.encLen, shareIds: enc.shares.map((s) => s.id) };
    const data = enc.shares.map((s, i) => (i < c.k ? s.bytes : null));
    const parity = enc.shares.map((s, i) => (i >= c.n - c.k ? s.bytes : null));
    rows.push({
      group: 'storage', name: `decodeChunk ${c.k}-of-${c.n} from the data shares`, unit: 'MB/s',
      value: mbps(() => { decodeChunk(key, 0, data, c, ref); }, MIB, ms), baseline: aeadBase,
    });
    rows.push({
      group: 'storage', name: `decodeChunk ${c.k}-of-${c.n} from the last k shares (RS rebuild)`, unit: 'MB/s',
      value: mbps(() => { decodeChunk(key, 0, parity, c, ref); }, MIB, ms), baseline: aeadBase,
    });
  }
  return rows;
}

async function storeRows(count: number): Promise<BenchRow[]> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-bench-store-'));
  try {
    const shares = Array.from({ length: count }, () => randomBytes(MIB));
    const ids = shares.map((s) => blake2b(s));
    const rawDir = path.join(dir, 'raw');
    const rawWrite = await mbpsAsync((i) => writeFileAtomic(path.join(rawDir, `f${i}`), shares[i], 0o600), MIB, count);
    const rawRead = await mbpsAsync(async (i) => { await fsp.readFile(path.join(rawDir, `f${i}`)); }, MIB, count);
    const store = await ShareStore.open({ dir: path.join(dir, 'node'), quotaBytes: 4 * count * MIB, cacheBytes: 0 });
    try {
      const put = await mbpsAsync(async (i) => { await store.put(ids[i], shares[i]); }, MIB, count);
      const get = await mbpsAsync(async (i) => { await store.get(ids[i]); }, MIB, count);
      return [
        { group: 'storage', name: 'share store put (1 MiB shares: verify, atomic write, lease journal)', value: put, unit: 'MB/s', baseline: { name: 'raw atomic write (temp, fsync, rename)', value: rawWrite, unit: 'MB/s' } },
        { group: 'storage', name: 'share store get (cache off: read + verify)', value: get, unit: 'MB/s', baseline: { name: 'raw fs.readFile', value: rawRead, unit: 'MB/s' } },
      ];
    } finally {
      await store.close();
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

/** SPEC.md §9.17, §9.18.3: audit cost per share (node and auditor) and repair (rebuild) throughput. */
export async function auditRows(ms: number): Promise<BenchRow[]> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-bench-audit-'));
  const rows: BenchRow[] = [];
  try {
    const c = { k: 4, n: 6 };
    const enc = encodeChunk(randomBytes(32), 0, randomBytes(MIB), c);
    const share = enc.shares[0].bytes;
    const id = enc.shares[0].id;
    const root = auditRoot(share);
    const store = await ShareStore.open({ dir: path.join(dir, 'node'), quotaBytes: 8 * MIB, cacheBytes: 0 });
    try {
      await store.put(id, share);
      const nonce = randomBytes(32);
      const blocks = challengeBlocks(nonce, id, share.length, 4);
      const answer = await store.auditChallenge(id, nonce, blocks);
      const count = Math.max(8, Math.round(ms / 10));
      const t0 = performance.now();
      for (let i = 0; i < count; i++) await store.auditChallenge(id, nonce, blocks);
      const nodeMs = (performance.now() - t0) / count;
      const t1 = performance.now();
      for (let i = 0; i < count; i++) await store.get(id);
      const getMs = (performance.now() - t1) / count;
      const vcount = count * 50;
      const t2 = performance.now();
      for (let i = 0; i < vcount; i++) verifyAuditAnswer(answer, { root, size: share.length, nonce, blocks });
      const verifyUs = ((performance.now() - t2) / vcount) * 1000;
      const kib = Math.round(share.length / 1024);
      rows.push({ group: 'storage', name: `audit, node side (${kib} KiB share of a 1 MiB 4-of-6 chunk, 4 blocks: disk read + verify + Merkle tree)`, value: nodeMs, unit: 'ms/share', baseline: { name: 'share store get of the same share (cache off)', value: getMs, unit: 'ms/share' } });
      rows.push({ group: 'storage', name: 'audit, auditor side (check 4 blocks and paths against the audit root)', value: verifyUs, unit: 'µs/share', note: `answer ${answer.length} bytes; the auditor keeps 32 bytes + size per share` });
    } finally {
      await store.close();
    }
    // Repair: rebuild all 6 shares of a 1 MiB chunk from the last 4 (RS reconstruct + re-encode + hash checks).
    const size = enc.shares[0].bytes.length;
    const some = enc.shares.map((x, j) => (j >= c.n - c.k ? x.bytes : null));
    rows.push({
      group: 'storage', name: 'repair rebuild 4-of-6 from the last 4 shares (reconstruct, re-encode, check ids + audit roots)', unit: 'MB/s',
      value: mbps(() => { for (const [j, b] of rebuildShares(c, some, size).entries()) { if (j < 2) { shareId(b); auditRoot(b); } } }, MIB, ms),
      baseline: { name: 'Reed–Solomon parity 4-of-6 alone', value: mbps(() => erasureEncodeInPlace(c, Buffer.alloc(c.n * size), size), MIB, ms), unit: 'MB/s' },
      note: 'local compute only; fetching k shares and storing the rebuilt ones goes over circuits like get and put',
    });
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  return rows;
}

/**
 * SPEC.md §9.20.2: an authority's audit of one epoch for one node at the per-node cap (64 shares
 * of 256 KiB: a 1 MiB 4-of-6 chunk's share), with the node's store answering in process (no
 * network): challenges, checks, the signed report.
 */
export async function authorityAuditRows(): Promise<BenchRow[]> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-bench-epoch-'));
  try {
    const store = await ShareStore.open({ dir: path.join(dir, 'node'), quotaBytes: 64 * MIB, cacheBytes: 0 });
    const key = ed25519Generate();
    const entries = [];
    for (let i = 0; i < 64; i++) {
      const b = randomBytes(256 * 1024);
      await store.put(shareId(b), b);
      entries.push({ node: key.publicKey, shareId: shareId(b), shareSize: b.length, auditRoot: auditRoot(b) });
    }
    const id = ed25519Generate();
    const sk = ed25519Generate();
    const signer = { identity: id.publicKey, signingKey: sk, certificate: makeKeyCertificate(id, sk.publicKey, Date.now() - 3_600_000, Date.now() + 3_600_000) };
    const audits = new StorageAudits({
      dataDir: path.join(dir, 'auth'), signer, periodSeconds: 3600, log: silentLogger,
      connect: async () => ({ close() {}, send: async (req) => { const r = await handleRequest(store, req, { viaCircuit: true }); if (r.type === 'error') throw responseError(r); return r; } }),
    });
    const e = audits.epochNow;
    await audits.accept(encodeContract({ startEpoch: e, endEpoch: e + 1, entries: sortContractEntries(entries) }));
    const relay = { identity: key.publicKey, fingerprint: key.publicKey.toString('hex'), address: '127.0.0.1', storagePort: 1, flags: new Set(['Storage']) } as unknown as ConsensusRelay;
    audits.onConsensus({ validAfter: 0, relays: [relay] } as unknown as VerifiedConsensus);
    const t0 = performance.now();
    await audits.auditEpoch(e);
    const ms = performance.now() - t0;
    await store.close();
    // SPEC.md §9.20.3: the signed summary and the node's page.
    const reportBytes = audits.reportText(e)!.length;
    const pageBytes = (await audits.pageText(e, relay.fingerprint))?.length ?? 0;
    return [{ group: 'storage', name: 'authority audit of one epoch, one node at the cap (64 × 256 KiB shares, 4 blocks each, signed report)', value: ms, unit: 'ms', note: `summary ${reportBytes} B, page ${Math.round(pageBytes / 1024)} KiB; node and authority on one core, no network` }];
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

const bench: BenchModule = {
  name: 'storage',
  async run({ quick }) {
    return [...codingRows(quick ? 300 : 2000), ...(await storeRows(quick ? 8 : 64)), ...(await auditRows(quick ? 300 : 2000)), ...(await authorityAuditRows()), ...(await netRows(quick))];
  },
};
export default bench;
