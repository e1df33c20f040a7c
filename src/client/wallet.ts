// SPEC.md §8.11.4: the client's wallet. A wallet is an Ed25519 key pair in the client's data
// folder (`wallet.key`, the key-file format of SPEC §3.3, mode 0600, written atomically, made once), or any
// identity key file given with --key (a relay operator spends the relay's earnings that way).
// Balances, nonces and history come from the verified reward chain; transfers are submitted to
// the authorities (POST /bitcloud/transfers, SPEC §8.11.3), which carry them into the chain.
import path from 'node:path';
import { err, errorCode, isBitcloudError } from '../errors';
import { ed25519Generate, ed25519Verify, type Ed25519KeyPair } from '../crypto/primitives';
import { loadEd25519Secret, saveEd25519SecretExclusive } from '../crypto/keys';
import { UNITS_PER_COIN } from '../bandwidth/reward';
import { MAX_PENDING_PER_SENDER } from '../bandwidth/transfer';
import { errorBodyReason, httpRequest, PATHS } from '../dir/fetch';
import type { AuthorityInfo } from '../dir/authorities';
import { TRANSFER_BYTES, decodeTransfer, encodeTransfer, isChainBound, transferSignedBytes, type Transfer } from '../wire/transfer';
import type { VerifiedRewardBlock } from './rewards';
import { encodeEscrowCancel, type EscrowCancel } from '../wire/escrow-cancel';
import { mkdirDurableSync } from '../ops/fsutil';

export const WALLET_KEY_FILE = 'wallet.key';

/** The wallet key: `keyFile` when given (it must exist), else `<dataDir>/wallet.key`, made on first use. */
export async function loadWalletKey(dataDir: string, keyFile?: string): Promise<{ key: Ed25519KeyPair; file: string; created: boolean }> {
  if (keyFile) return { key: await loadEd25519Secret(keyFile), file: keyFile, created: false };
  const file = path.join(dataDir, WALLET_KEY_FILE);
  try {
    return { key: await loadEd25519Secret(file), file, created: false };
  } catch (e) {
    if (!isBitcloudError(e, 'KEY_NOT_FOUND')) throw e;
  }
  mkdirDurableSync(dataDir, 0o700);
  const key = ed25519Generate();
  // SPEC §8.11.4: made once. Another command may have made it since the look above (two started
  // together on a fresh folder); the key on disk is then the wallet, never replaced by this one.
  if (await saveEd25519SecretExclusive(file, key)) return { key, file, created: true };
  return { key: await loadEd25519Secret(file), file, created: false };
}

/** "1.5" coins → 150 000 000 units; at most 8 decimals; 1 .. 2^53 − 1 units. Throws CONFIG_INVALID. */
export function parseCoins(s: string): bigint {
  const m = /^(\d{1,16})(?:\.(\d{1,8}))?$/.exec(s.trim());
  if (!m) throw err('CONFIG_INVALID', `amount ${JSON.stringify(s)} is not a number of coins with at most 8 decimals`, { key: 'amount' });
  const units = BigInt(m[1]) * UNITS_PER_COIN + BigInt((m[2] ?? '').padEnd(8, '0'));
  if (units < 1n || units > BigInt(Number.MAX_SAFE_INTEGER)) throw err('CONFIG_INVALID', `amount must be 1 to ${Number.MAX_SAFE_INTEGER} units`, { key: 'amount' });
  return units;
}

/** A key as 64 lowercase hex characters (SPEC.md §3.1: one spelling, never normalised). Throws CONFIG_INVALID. */
export function parseKey(s: string): Buffer {
  if (!/^[0-9a-f]{64}$/.test(s)) throw err('CONFIG_INVALID', `${JSON.stringify(s)} is not a key: 64 lowercase hexadecimal characters (upper case is refused, not converted)`, { key: 'to' });
  return Buffer.from(s, 'hex');
}

export interface HistoryEntry {
  height: number;
  epoch: number;
  /** `escrow_pay`: a storage contract's escrow paid this node; `escrow_back`: the rest of an escrow this key funded came back (refund at the end, or its cancel). SPEC.md §9.20.4. */
  kind: 'reward' | 'sent' | 'received' | 'escrow_pay' | 'escrow_back';
  /** Signed: + for rewards and transfers received, − for transfers sent. */
  units: bigint;
  /** The other side of a transfer (hex); null for a reward. */
  counterparty: string | null;
  nonce: number | null;
}

/** Every credit and debit of `key` (hex) in the verified chain, in chain order (escrow payments and returns included). */
export function walletHistory(blocks: readonly VerifiedRewardBlock[], key: string): HistoryEntry[] {
  const out: HistoryEntry[] = [];
  const payers = new Map<string, string>();
  for (const { block } of blocks) {
    const a = block.allocations.get(key);
    if (a) out.push({ height: block.height, epoch: block.epoch, kind: 'reward', units: a, counterparty: null, nonce: null });
    for (const t of block.transfers ?? []) {
      const from = t.from.toString('hex');
      const to = t.to.toString('hex');
      if (from === key) out.push({ height: block.height, epoch: block.epoch, kind: 'sent', units: -t.amount, counterparty: to, nonce: t.nonce });
      if (to === key) out.push({ height: block.height, epoch: block.epoch, kind: 'received', units: t.amount, counterparty: from, nonce: t.nonce });
    }
    for (const op of block.escrow ?? []) {
      if (op.kind === 'open') payers.set(op.contract, op.payer);
      else if (op.kind === 'pay' && op.node === key) out.push({ height: block.height, epoch: block.epoch, kind: 'escrow_pay', units: op.amount, counterparty: op.contract, nonce: null });
      else if ((op.kind === 'refund' || op.kind === 'cancel') && op.amount > 0n && payers.get(op.contract) === key) {
        out.push({ height: block.height, epoch: block.epoch, kind: 'escrow_back', units: op.amount, counterparty: op.contract, nonce: null });
      }
    }
  }
  return out;
}

/** The first chain block that carries exactly `t` (its encoding), or null. */
export function findTransfer(blocks: readonly VerifiedRewardBlock[], t: Transfer): VerifiedRewardBlock | null {
  const want = encodeTransfer(t);
  return blocks.find((b) => (b.block.transfers ?? []).some((x) => encodeTransfer(x).equals(want))) ?? null;
}

/**
 * GET /bitcloud/transfers/pending?from=KEY from each authority: the transfers by `key` they hold
 * that can follow the chain, whose last nonce for the key is `chainNonce` (SPEC.md §8.11.4). Only
 * transfers of version 3 or 4 whose signature verifies under `key` for the chain `chainId` (the
 * hash of its block 0, SPEC.md §8.11.1) count (an authority cannot invent one, nor replay one
 * signed on another network: no pool holds a version 1 or 2 transfer, §8.11.3), one per nonce, and
 * only the run chainNonce + 1, + 2, … without a gap (what the pool can hold, §8.11.3):
 * a transfer the chain already carries, or one past a gap, is left out. Nonces above
 * chainNonce + 16 (more than a pool holds of one sender) are skipped before any verification, and
 * only an answer's first entry of each nonce is verified: an answer costs at most 16 verifications.
 */
export async function pendingFrom(authorities: readonly AuthorityInfo[], key: string, chainNonce: number, chainId: Buffer | null, timeoutMs = 10_000): Promise<Transfer[]> {
  const byNonce = new Map<number, Transfer>();
  await Promise.all(authorities.map(async (a) => {
    try {
      const r = await httpRequest(`${a.url}${PATHS.transfersPending}?from=${key}`, { maxBytes: TRANSFER_BYTES * 10_000, timeoutMs });
      if (r.status !== 200 || r.body.length % TRANSFER_BYTES !== 0) return;
      // Nonces of this answer already tried: a pool holds one transfer per nonce of a sender, so
      // an answer repeating a nonce gets one verification for it, not one per entry.
      const tried = new Set<number>();
      for (let i = 0; i < r.body.length; i += TRANSFER_BYTES) {
        let t: Transfer;
        try { t = decodeTransfer(r.body.subarray(i, i + TRANSFER_BYTES)); } catch { continue; }
        // Only nonces a pool can hold (SPEC §8.11.3: 16 per sender), before any signature is verified.
        if (t.from.toString('hex') !== key || t.nonce <= chainNonce || t.nonce > chainNonce + MAX_PENDING_PER_SENDER || byNonce.has(t.nonce) || tried.has(t.nonce)) continue;
        // SPEC §8.11.1, §8.11.3: only versions 3 and 4, verified against the chain's id (none before
        // block 0). No pool holds a version 1 or 2 transfer: one served is a transfer this key signed
        // on another network, replayed, and would skew the nonce and balance of the next send.
        if (!isChainBound(t) || !chainId) continue;
        tried.add(t.nonce);
        if (!ed25519Verify(t.signature, transferSignedBytes(t, chainId), t.from)) continue;
        byNonce.set(t.nonce, t);
      }
    } catch { /* an authority that does not answer holds nothing we can count on */ }
  }));
  const run: Transfer[] = [];
  for (let n = chainNonce + 1; byNonce.has(n); n++) run.push(byNonce.get(n)!);
  return run;
}

export interface SubmitResult {
  /** Authorities that hold the transfer now ('added' or 'held'). */
  accepted: string[];
  /** Authorities that refused it, with their code and reason. */
  refused: { authority: string; code: string; reason: string }[];
  /** Authorities that could not be reached. */
  unreachable: { authority: string; reason: string }[];
}

/**
 * POST the transfer to every authority (directly: SPEC §8.11.4 says what that reveals). Resolves
 * with who took it and who refused; the caller fails when nobody took it.
 */
export async function submitTransfer(authorities: readonly AuthorityInfo[], t: Transfer, timeoutMs = 10_000): Promise<SubmitResult> {
  return submitToAuthorities(authorities, PATHS.transfers, encodeTransfer(t), timeoutMs);
}

/** POST a payer's escrow cancel (SPEC.md §9.20.4) to every authority, as `submitTransfer` does. */
export async function submitEscrowCancel(authorities: readonly AuthorityInfo[], c: EscrowCancel, timeoutMs = 10_000): Promise<SubmitResult> {
  return submitToAuthorities(authorities, PATHS.escrowCancel, encodeEscrowCancel(c), timeoutMs);
}

async function submitToAuthorities(authorities: readonly AuthorityInfo[], route: string, body: Buffer, timeoutMs: number): Promise<SubmitResult> {
  const res: SubmitResult = { accepted: [], refused: [], unreachable: [] };
  await Promise.all(authorities.map(async (a) => {
    try {
      const r = await httpRequest(a.url + route, { method: 'POST', body, maxBytes: 64 * 1024, timeoutMs });
      if (r.status === 200) { res.accepted.push(a.name); return; }
      let code = `HTTP_${r.status}`;
      try { code = String((JSON.parse(r.body.toString('utf8')) as { code?: unknown }).code ?? code); } catch { /* not JSON */ }
      res.refused.push({ authority: a.name, code, reason: errorBodyReason(r) });
    } catch (e) {
      res.unreachable.push({ authority: a.name, reason: `${errorCode(e)}: ${(e as Error).message}` });
    }
  }));
  return res;
}
