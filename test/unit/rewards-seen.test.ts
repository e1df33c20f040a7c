// SPEC.md §8.7.7 step 2: rewards-seen.json keeps, per chain, the highest tip verified; the higher
// height wins, also when several processes record at once.
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REWARDS_SEEN_FILE, readRewardTipsSeen, rememberRewardTip, rewardAuthoritySetId } from '../../src/client/rewards-seen';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-rewards-seen-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const id = Buffer.alloc(32, 0xa1);
const hashAt = (h: number): Buffer => Buffer.alloc(32, h);

describe('rewards-seen.json (SPEC §8.7.7)', () => {
  it('keeps the highest height when records are written at the same time', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'race-'));
    // Highest first: each record read the file before any was written; the last write must not lower it.
    const heights = Array.from({ length: 12 }, (_, i) => 12 - i);
    await Promise.all(heights.map((h) => rememberRewardTip(dir, id, h, hashAt(h))));
    expect(readRewardTipsSeen(dir)[id.toString('hex')]).toEqual({ height: 12, hash: hashAt(12).toString('hex') });
    // Another chain recorded at the same time as a higher tip of the first keeps both.
    const other = Buffer.alloc(32, 0xb2);
    await Promise.all([rememberRewardTip(dir, id, 20, hashAt(20)), rememberRewardTip(dir, other, 3, hashAt(3))]);
    expect(readRewardTipsSeen(dir)).toEqual({
      [id.toString('hex')]: { height: 20, hash: hashAt(20).toString('hex') },
      [other.toString('hex')]: { height: 3, hash: hashAt(3).toString('hex') },
    });
    expect(fs.statSync(path.join(dir, REWARDS_SEEN_FILE)).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).sort()).toEqual([REWARDS_SEEN_FILE]);
  });

  it('records into a data folder not made yet', async () => {
    const dir = path.join(tmp, 'fresh', 'data');
    await rememberRewardTip(dir, id, 4, hashAt(4));
    expect(readRewardTipsSeen(dir)[id.toString('hex')]?.height).toBe(4);
  });

  it('keeps the authority set a tip was read under; an entry written before sets were kept still reads, and gets the set when its tip is read again', async () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'set-'));
    const keys = [0x11, 0x22, 0x33].map((b) => ({ identity: Buffer.alloc(32, b) }));
    const set = rewardAuthoritySetId(keys);
    expect(set).toMatch(/^[0-9a-f]{64}$/);
    expect(rewardAuthoritySetId([...keys].reverse())).toBe(set);
    expect(rewardAuthoritySetId(keys.slice(0, 2))).not.toBe(set);
    fs.writeFileSync(path.join(dir, REWARDS_SEEN_FILE), JSON.stringify({ [id.toString('hex')]: { height: 5, hash: hashAt(5).toString('hex') } }));
    expect(readRewardTipsSeen(dir)).toEqual({ [id.toString('hex')]: { height: 5, hash: hashAt(5).toString('hex') } });
    await rememberRewardTip(dir, id, 5, hashAt(5), { authorities: set });
    expect(readRewardTipsSeen(dir)).toEqual({ [id.toString('hex')]: { height: 5, hash: hashAt(5).toString('hex'), authorities: set } });
    await rememberRewardTip(dir, id, 6, hashAt(6), { authorities: set });
    expect(readRewardTipsSeen(dir)[id.toString('hex')]).toEqual({ height: 6, hash: hashAt(6).toString('hex'), authorities: set });
    // A lower tip changes nothing; a set that does not read is left out, the entry kept.
    await rememberRewardTip(dir, id, 4, hashAt(4), { authorities: rewardAuthoritySetId(keys.slice(0, 2)) });
    expect(readRewardTipsSeen(dir)[id.toString('hex')]?.authorities).toBe(set);
    fs.writeFileSync(path.join(dir, REWARDS_SEEN_FILE), JSON.stringify({ [id.toString('hex')]: { height: 6, hash: hashAt(6).toString('hex'), authorities: 'x' } }));
    expect(readRewardTipsSeen(dir)).toEqual({ [id.toString('hex')]: { height: 6, hash: hashAt(6).toString('hex') } });
  });
});
