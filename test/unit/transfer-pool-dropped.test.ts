// SPEC.md §8.11.3: the funding transfers a pool dropped for their age are remembered across a
// restart in <dataDir>/transfer-dropped.json (atomic, mode 0600): a pool started again from that
// folder still refuses one posted again (TRANSFER_REPLAYED). A file that does not read as one is
// logged at warn with the reason and ignored.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ed25519FromSeed } from '../../src/crypto/primitives';
import { signFundingTransfer } from '../../src/bandwidth/transfer';
import { expectCode } from '../helpers/errors';
import { TRANSFER_DROPPED_FILE, TransferPool } from '../../directory/transfer-pool';

const payer = ed25519FromSeed(Buffer.alloc(32, 21));
const PAYER = payer.publicKey.toString('hex');
const contract = Buffer.alloc(32, 22);
const CHAIN_ID = Buffer.alloc(32, 23); // the pool's chain (SPEC §8.11.1)
const base = (height: number, nonce = 0) => ({ chainId: CHAIN_ID, balances: new Map([[PAYER, 10_000n]]), nonces: new Map([[PAYER, nonce]]), height });

const dirs: string[] = [];
function tmpDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-dropped-'));
  dirs.push(d);
  return d;
}
afterEach(() => { for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true }); });

function logged(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { lines, log: pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s) as Record<string, unknown>); } }) };
}

describe('funding transfers dropped for their age survive a restart (SPEC.md §8.11.3)', () => {
  it('a pool started again from the same folder refuses the dropped funding transfer posted again', async () => {
    const dir = tmpDir();
    const file = path.join(dir, TRANSFER_DROPPED_FILE);
    const fund = signFundingTransfer(payer, contract, 1000n, 1, CHAIN_ID);
    const before = new TransferPool(base(10));
    before.keepDroppedIn(file, logged().log);
    expect(before.add(fund)).toBe('added');
    expect(before.rebase(base(34))).toBe(1);
    expect(before.expired).toEqual({ funding: 1, after: 0 });
    await before.flushDropped();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir)).toEqual([TRANSFER_DROPPED_FILE]); // no temporary file left

    // The authority restarts: a new pool on the same chain, from the same folder.
    const { log, lines } = logged();
    const after = new TransferPool(base(34));
    after.keepDroppedIn(file, log);
    expectCode(() => after.add(fund), 'TRANSFER_REPLAYED');
    expect(after.size).toBe(0);
    expect(lines.filter((l) => (l.level as number) >= 40)).toEqual([]);

    // Once the chain used the payer's nonce the file's entry is forgotten, on disk too.
    after.rebase(base(35, 1));
    await after.flushDropped();
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ version: 1, dropped: [] });
  });

  it('a corrupt file is logged at warn with the reason and ignored: the pool starts without it', async () => {
    const dir = tmpDir();
    const file = path.join(dir, TRANSFER_DROPPED_FILE);
    const fund = signFundingTransfer(payer, contract, 1000n, 1, CHAIN_ID);
    for (const [content, reason] of [
      ['{"version":1,"dropped":["ab', /JSON|Unterminated|Unexpected/],
      ['{"version":7,"dropped":[]}', /not a version 1/],
      ['{"version":1,"dropped":["00"]}', /entry 0 is not a transfer's 145 bytes/],
    ] as const) {
      fs.writeFileSync(file, content);
      const { log, lines } = logged();
      const pool = new TransferPool(base(10));
      expect(() => pool.keepDroppedIn(file, log)).not.toThrow();
      const warns = lines.filter((l) => l.level === 40);
      expect(warns).toHaveLength(1);
      expect(warns[0]!.msg).toMatch(/dropped funding transfers file not usable; ignored/);
      expect(String(warns[0]!.reason)).toMatch(reason);
      expect(pool.add(fund)).toBe('added');
      // The next change replaces it with a file that reads.
      pool.rebase(base(34));
      await pool.flushDropped();
      expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ version: 1, dropped: [expect.stringMatching(/^[0-9a-f]{290}$/)] });
    }
  });
});
