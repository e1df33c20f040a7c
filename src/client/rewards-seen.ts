// SPEC.md §8.7.7 step 2: the highest reward chain tip this client has verified, per chain (the hash
// of its block 0, §8.11.1), kept in `<client dataDir>/rewards-seen.json` (mode 0600, written
// atomically), so that a source that answers with an older chain, or another block at a height
// verified before, is refused (REWARD_CHAIN_ROLLBACK), as a Tor client refuses a consensus older
// than the one it holds. Each entry also names the authority set it was read under, so that an
// empty chain (no block 0, hence no id) read under that set is refused too. Several `bitcloud`
// processes may share the file: each record is read, merged and written under `rewards-seen.json.lock`.
import fs from 'node:fs';
import path from 'node:path';
import { blake2b } from '../crypto/primitives';
import type { AuthorityInfo } from '../dir/authorities';
import { withFileLock } from '../ops/file-lock';
import { mkdirDurable, writeFileAtomic } from '../ops/fsutil';

export const REWARDS_SEEN_FILE = 'rewards-seen.json';

/**
 * Per chain id (64 hex): the height and hash (64 hex) of the highest tip verified, and the
 * authority set it was read under (rewardAuthoritySetId; absent in entries written before it was kept).
 */
export type RewardTipsSeen = Record<string, { height: number; hash: string; authorities?: string }>;

const HEX32 = /^[0-9a-f]{64}$/;

/**
 * SPEC.md §8.7.7 step 2: the id of an authority set, BLAKE2b-256 of the configured authorities'
 * 32-byte identity keys in ascending byte order, concatenated (64 hex). The order of the config
 * does not change it; another key (a new network) makes another set.
 */
export function rewardAuthoritySetId(authorities: readonly Pick<AuthorityInfo, 'identity'>[]): string {
  return blake2b(authorities.map((a) => a.identity).sort(Buffer.compare)).toString('hex');
}

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
    const t = v as { height?: unknown; hash?: unknown; authorities?: unknown } | null;
    if (HEX32.test(id) && t && Number.isSafeInteger(t.height) && (t.height as number) >= 0 && typeof t.hash === 'string' && HEX32.test(t.hash)) {
      // An authority set that does not read is left out: the entry reads as one written before sets were kept.
      out[id] = typeof t.authorities === 'string' && HEX32.test(t.authorities)
        ? { height: t.height as number, hash: t.hash, authorities: t.authorities }
        : { height: t.height as number, hash: t.hash };
    }
  }
  return out;
}

/** How long a record waits for another process's (a short-lived command's wait, as for state.json). */
export const REWARDS_SEEN_LOCK_TIMEOUT_MS = 2_000;

/**
 * Whether recording (height, hash) read under `authorities` changes the entry `was`: a higher
 * height, or the same tip now read under another authority set (or under one, for an entry
 * written before sets were kept).
 */
function raises(was: RewardTipsSeen[string] | undefined, height: number, hash: string, authorities: string | undefined): boolean {
  if (!was || height > was.height) return true;
  return authorities !== undefined && height === was.height && hash === was.hash && authorities !== was.authorities;
}

/**
 * Record a verified tip, read under the authority set `o.authorities` (rewardAuthoritySetId):
 * while holding `rewards-seen.json.lock`, the file is read again and merged (the higher height per
 * chain wins) and written atomically, so that another process's record, made meanwhile, is neither
 * lost nor lowered. IO_STATE_LOCKED when another live process holds the lock for `lockTimeoutMs`.
 */
export async function rememberRewardTip(dataDir: string, chainId: Buffer, height: number, hash: Buffer, o: { lockTimeoutMs?: number; authorities?: string } = {}): Promise<void> {
  const id = chainId.toString('hex');
  const hex = hash.toString('hex');
  if (!raises(readRewardTipsSeen(dataDir)[id], height, hex, o.authorities)) return;
  const file = path.join(dataDir, REWARDS_SEEN_FILE);
  // The lock lives beside the file: a data folder not made yet is made first (as the write would).
  await mkdirDurable(dataDir, 0o700);
  await withFileLock(`${file}.lock`, async () => {
    const seen = readRewardTipsSeen(dataDir);
    if (!raises(seen[id], height, hex, o.authorities)) return;
    seen[id] = o.authorities === undefined ? { height, hash: hex } : { height, hash: hex, authorities: o.authorities };
    await writeFileAtomic(file, JSON.stringify(seen), 0o600);
  }, { code: 'IO_STATE_LOCKED', timeoutMs: o.lockTimeoutMs ?? REWARDS_SEEN_LOCK_TIMEOUT_MS });
}
