// SPEC.md §8.7.7 step 2: the highest reward chain tip this client has verified, per chain (the hash
// of its block 0, §8.11.1), kept in `<client dataDir>/rewards-seen.json` (mode 0600, written
// atomically), so that a source that answers with an older chain, or another block at a height
// verified before, is refused (REWARD_CHAIN_ROLLBACK), as a Tor client refuses a consensus older
// than the one it holds. Several `bitcloud` processes may share the file: each record is read,
// merged and written under `rewards-seen.json.lock`.
import fs from 'node:fs';
import path from 'node:path';
import { withFileLock } from '../ops/file-lock';
import { mkdirDurable, writeFileAtomic } from '../ops/fsutil';

export const REWARDS_SEEN_FILE = 'rewards-seen.json';

/** Per chain id (64 hex): the height and hash (64 hex) of the highest tip verified. */
export type RewardTipsSeen = Record<string, { height: number; hash: string }>;

const HEX32 = /^[0-9a-f]{64}$/;

/** What the file holds; entries that do not read are left out, a missing or unreadable file is empty. */
export function readRewardTipsSeen(dataDir: string): RewardTipsSeen {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(path.join(dataDir, REWARDS_SEEN_FILE), 'utf8'));
  } catch {
    return {};
  }
  const out: RewardTipsSeen = {};
  if (!raw || typeof raw !== 'object') return out;
  for (const [id, v] of Object.entries(raw as Record<string, unknown>)) {
    const t = v as { height?: unknown; hash?: unknown } | null;
    if (HEX32.test(id) && t && Number.isSafeInteger(t.height) && (t.height as number) >= 0 && typeof t.hash === 'string' && HEX32.test(t.hash)) {
      out[id] = { height: t.height as number, hash: t.hash };
    }
  }
  return out;
}

/** How long a record waits for another process's (a short-lived command's wait, as for state.json). */
export const REWARDS_SEEN_LOCK_TIMEOUT_MS = 2_000;

/**
 * Record a verified tip: while holding `rewards-seen.json.lock`, the file is read again and merged
 * (the higher height per chain wins) and written atomically, so that another process's record,
 * made meanwhile, is neither lost nor lowered. IO_STATE_LOCKED when another live process holds the
 * lock for `lockTimeoutMs`.
 */
export async function rememberRewardTip(dataDir: string, chainId: Buffer, height: number, hash: Buffer, o: { lockTimeoutMs?: number } = {}): Promise<void> {
  const id = chainId.toString('hex');
  if ((readRewardTipsSeen(dataDir)[id]?.height ?? -1) >= height) return;
  const file = path.join(dataDir, REWARDS_SEEN_FILE);
  // The lock lives beside the file: a data folder not made yet is made first (as the write would).
  await mkdirDurable(dataDir, 0o700);
  await withFileLock(`${file}.lock`, async () => {
    const seen = readRewardTipsSeen(dataDir);
    if ((seen[id]?.height ?? -1) >= height) return;
    seen[id] = { height, hash: hash.toString('hex') };
    await writeFileAtomic(file, JSON.stringify(seen), 0o600);
  }, { code: 'IO_STATE_LOCKED', timeoutMs: o.lockTimeoutMs ?? REWARDS_SEEN_LOCK_TIMEOUT_MS });
}
