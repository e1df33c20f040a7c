// Shared fixtures of the `keep contract` unit tests (SPEC.md §9.20): a verify capability, the
// keeper pass that holds its one share, and a client folder whose config names one authority.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatVerifyCapability } from '../../src/storage/verify-cap';

export const contractVcap = formatVerifyCapability({ manifestId: Buffer.alloc(32, 5), verifyId: Buffer.alloc(32, 6), verifyKey: Buffer.alloc(32, 7) });

/** A keeper pass that found the file's one share (64 bytes) healthy on one node. */
export const keptPass = {
  shares: 1, healthy: 1, repaired: 0, lost: 0, unrecoverableChunks: 0, mismatchedChunks: 0, audits: 1, failures: [], busy: [], unknown: 0, expiresAt: 0,
  placed: [{ node: 'aa'.repeat(32), shareId: Buffer.alloc(32, 1), size: 64, root: Buffer.alloc(32, 2) }],
};

/** A fresh folder with client.json (data folder `data`, one authority); the caller removes `dir`. */
export function contractClientDir(prefix: string): { dir: string; config: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const config = path.join(dir, 'client.json');
  fs.writeFileSync(config, JSON.stringify({ dataDir: 'data', authorities: [{ name: 'a', identity: 'ab'.repeat(32), address: '127.0.0.1:1' }] }));
  return { dir, config };
}
