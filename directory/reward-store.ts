// SPEC.md §8.7.6: the reward chain on an authority's disk, under <dataDir>/rewards/:
//   blocks/<height, 10 decimal digits>.blk   one signed block per file (SPEC §8.7.2 stored form)
//   certs/<identity fp>-<signing key hex>-<id>.cert  key certificates that vouch for stored
//                                            signatures (<id>: the envelope's BLAKE2b-256, all 64
//                                            hex digits, so a pair's certificates never overwrite
//                                            each other)
//   pending.blk                              the block this authority signed and is collecting
//                                            signatures for (so a restart never signs a second
//                                            body at the same height)
// Every write is atomic (temp file, fsync, rename, fsync of the folder; src/ops/fsutil) and writes happen one at a
// time, in order, so a later version of a file never loses to an earlier one. Files are never
// trusted: the ledger re-verifies everything it loads.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { blake2b } from '../src/crypto/primitives';
import { writeFileAtomic } from '../src/ops/fsutil';

const BLOCK_NAME = /^(\d{10})\.blk$/;

export function blockFileName(height: number): string {
  return `${String(height).padStart(10, '0')}.blk`;
}

/**
 * SPEC §8.7.6: `<identity fp>-<signing key hex>-<BLAKE2b-256(envelope), 64 hex digits>.cert`: the
 * whole hash, so that no two certificates an authority can make share a file (with a 64-bit prefix,
 * about 2^32 signed envelopes would find two, the later one then replacing the one that vouches
 * for stored signatures).
 */
export function certificateFileName(identityFp: string, signingKeyHex: string, raw: Uint8Array): string {
  return `${identityFp}-${signingKeyHex}-${blake2b(raw).toString('hex')}.cert`;
}

export class RewardStore {
  readonly dir: string;
  private readonly blocksDir: string;
  private readonly certsDir: string;
  /** Blocks whose write has not finished yet: served from memory meanwhile. */
  private readonly unsaved = new Map<number, Buffer>();
  private queue: Promise<void> = Promise.resolve();
  /**
   * Bumped by every block or certificate stored, rewritten or set aside: what a chain bundle is made
   * of changed (SPEC.md §8.7.5: a bundle encoded before is not served again).
   */
  changes = 0;

  constructor(dataDir: string, private readonly onWriteError: (what: string, e: Error) => void) {
    this.dir = path.join(dataDir, 'rewards');
    this.blocksDir = path.join(this.dir, 'blocks');
    this.certsDir = path.join(this.dir, 'certs');
  }

  /** Stored blocks in height order, stopping at the first gap in the file names. */
  readBlocksSync(): { height: number; raw: Buffer }[] {
    let names: string[];
    try { names = fs.readdirSync(this.blocksDir); } catch { return []; }
    const heights = names.map((n) => BLOCK_NAME.exec(n)).filter((m): m is RegExpExecArray => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b);
    const out: { height: number; raw: Buffer }[] = [];
    for (const h of heights) {
      if (h !== out.length) break;
      out.push({ height: h, raw: fs.readFileSync(path.join(this.blocksDir, blockFileName(h))) });
    }
    return out;
  }

  /** Moves the files from `height` on aside (`.rejected`), so a bad stored block cannot shadow a good one later. */
  rejectFromSync(height: number): string[] {
    this.changes++;
    let names: string[];
    try { names = fs.readdirSync(this.blocksDir); } catch { return []; }
    const moved: string[] = [];
    for (const n of names) {
      const m = BLOCK_NAME.exec(n);
      if (!m || Number(m[1]) < height) continue;
      fs.renameSync(path.join(this.blocksDir, n), path.join(this.blocksDir, `${n}.rejected`));
      moved.push(n);
    }
    return moved;
  }

  readCertificatesSync(): Buffer[] {
    let names: string[];
    try { names = fs.readdirSync(this.certsDir); } catch { return []; }
    return names.filter((n) => n.endsWith('.cert')).map((n) => fs.readFileSync(path.join(this.certsDir, n)));
  }

  readPendingSync(): Buffer | null {
    try { return fs.readFileSync(path.join(this.dir, 'pending.blk')); } catch { return null; }
  }

  /** The signed block at `height` as stored (or being stored); throws (the fs error) when it cannot be read. */
  async readBlock(height: number): Promise<Buffer> {
    const mem = this.unsaved.get(height);
    if (mem) return mem;
    // SPEC §8.7.5: a block the chain holds that cannot be read (EIO, EMFILE, a missing file) is the
    // server's failure, thrown to the caller, never taken for the end of the chain.
    return await fsp.readFile(path.join(this.blocksDir, blockFileName(height)));
  }

  /** Store (or rewrite, with more signatures) the block at `height`. */
  saveBlock(height: number, raw: Buffer): void {
    this.changes++;
    this.unsaved.set(height, raw);
    void this.enqueue(`block ${height}`, async () => {
      await writeFileAtomic(path.join(this.blocksDir, blockFileName(height)), raw, 0o644);
      if (this.unsaved.get(height) === raw) this.unsaved.delete(height);
    });
  }

  /** SPEC §8.7.6: one file per certificate; another certificate of the same pair is a file of its own. */
  saveCertificate(identityFp: string, signingKeyHex: string, raw: Buffer): void {
    this.changes++;
    const name = certificateFileName(identityFp, signingKeyHex, raw);
    void this.enqueue('certificate', () => writeFileAtomic(path.join(this.certsDir, name), raw, 0o644));
  }

  /** Resolves true once pending.blk holds `raw` durably, false when the write failed (reported). */
  savePending(raw: Buffer): Promise<boolean> {
    return this.enqueue('pending block', () => writeFileAtomic(path.join(this.dir, 'pending.blk'), raw, 0o644));
  }

  /** Resolves when every write queued so far has finished (or failed and been reported). */
  flush(): Promise<void> {
    return this.queue;
  }

  /** Queue a write; resolves true when it succeeded, false when it failed (and was reported). */
  private enqueue(what: string, job: () => Promise<void>): Promise<boolean> {
    const done = this.queue.then(job).then(() => true, (e: Error) => { this.onWriteError(what, e); return false; });
    this.queue = done.then(() => undefined);
    return done;
  }
}
