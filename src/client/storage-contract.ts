// SPEC.md §9.20.1: the client side of a storage contract. After a keeper pass (§9.18.3) has found,
// by audit, one node holding each share of a file, the contract lists those (node, share, size,
// audit root) for epochs [start, end) and is uploaded to every authority, which audits them each
// epoch (§9.20.2). The upload goes straight to the authorities (their addresses are public; the
// uploader's address is seen by them: §9.20.5).
import { err, errorCode } from '../errors';
import { blake2b } from '../crypto/primitives';
import { httpRequest, errorBodyReason } from '../dir/fetch';
import type { AuthorityInfo } from '../dir/authorities';
import { encodeContract, MAX_CONTRACT_ENTRIES, sortContractEntries, type StorageContract } from '../wire/storage-contract';
import type { KeepReport } from './storage-client-verify';

export const CONTRACTS_PATH = '/bitcloud/storage/contracts';

/**
 * SPEC.md §9.20.1: the chunk shares a contract of a file of `size` bytes lists, n per data chunk and
 * per manifest chunk (before the file is stored). The manifest is counted as one chunk: a file of at
 * most MAX_CONTRACT_ENTRIES chunk shares has a manifest of at most about 34 · 4 096 + 7 · 4 096 / n
 * bytes (§9.4), well under its 1 MiB chunks (§9.5), so the count is exact up to the limit and a
 * lower bound above it.
 */
export function fileChunkShares(size: number, chunkSize: number, n: number): number {
  return n * (Math.ceil(size / chunkSize) + 1);
}

/** SPEC.md §9.20.1: CONTRACT_TOO_LARGE when a file's chunk shares would not fit in one contract. */
export function checkContractShares(shares: number): void {
  if (shares > MAX_CONTRACT_ENTRIES) {
    throw err('CONTRACT_TOO_LARGE', `this file has ${shares} chunk shares; a storage contract lists at most ${MAX_CONTRACT_ENTRIES} (store it with a larger chunk size or a smaller n)`, { shares, max: MAX_CONTRACT_ENTRIES });
  }
}

/** The contract for a keeper pass's placed shares over `epochs` epochs from `startEpoch`. */
export function contractFromPass(placed: KeepReport['placed'], startEpoch: number, epochs: number): { contract: StorageContract; bytes: Buffer; id: string } {
  const seen = new Set<string>();
  const entries = sortContractEntries(placed.filter((p) => {
    const k = `${p.node}/${p.shareId.toString('hex')}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  }).map((p) => ({ node: Buffer.from(p.node, 'hex'), shareId: p.shareId, shareSize: p.size, auditRoot: p.root })));
  const contract: StorageContract = { startEpoch, endEpoch: startEpoch + epochs, entries };
  const bytes = encodeContract(contract);
  return { contract, bytes, id: blake2b(bytes).toString('hex') };
}

export interface ContractUpload { authority: string; ok: boolean; result?: string; code?: string; reason?: string }

/** POST the contract to every authority; one line per authority. */
export async function uploadContract(authorities: readonly AuthorityInfo[], bytes: Buffer, timeoutMs = 10_000): Promise<ContractUpload[]> {
  return Promise.all(authorities.map(async (a): Promise<ContractUpload> => {
    try {
      const r = await httpRequest(a.url + CONTRACTS_PATH, { method: 'POST', body: bytes, maxBytes: 64 * 1024, timeoutMs });
      if (r.status === 200) return { authority: a.name, ok: true, result: String((JSON.parse(r.body.toString('utf8')) as { result?: string }).result) };
      let code = `HTTP_${r.status}`;
      try { code = String((JSON.parse(r.body.toString('utf8')) as { code?: string }).code ?? code); } catch { /* not JSON */ }
      return { authority: a.name, ok: false, code, reason: errorBodyReason(r) };
    } catch (e) {
      return { authority: a.name, ok: false, code: errorCode(e), reason: (e as Error).message };
    }
  }));
}
