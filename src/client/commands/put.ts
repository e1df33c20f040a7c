// `bitcloud put FILE [--json] [--direct] [-k K -n N | --profile durable] [--chunk-size BYTES]
// [--pay COINS [--epochs N] [--key FILE]]` (SPEC.md §9.9, §9.20.4): store a file encrypted and
// erasure-coded on the storage nodes of the consensus, through circuits by default, and print its
// read capability; with --pay, also open a paid storage contract for it. Wiring only.
import fs from 'node:fs';
import type { CommandModule } from 'yargs';
import { fileOptions, JSON_OPTION } from './options';
import { err } from '../../errors';
import { checkCoding, CODING_PROFILES, parseCoding, type Coding } from '../../storage/coding';
import { putFile } from '../storage-client-put';
import { isDirectory, putFolder } from '../storage-client-folder';
import { parseCapability } from '../../storage/capability';
import { capabilityUrl } from '../gateway/host';
import { progressMode, progressReporter } from '../storage-client-progress';
import { failureOf, runStorageCommand, type Network } from '../storage-client-setup';
import type { StorageNode } from '../storage-client';
import { checkContentClass } from '../../moderation/policy';
import { selectNodesForClass } from '../../moderation/placement';
import { authoritySource } from '../../moderation/sources';
import { contractRequest, openContract, type ContractRequest } from './keep';
import { checkContractShares, fileChunkShares } from '../storage-contract';
import { DEFAULT_CHUNK_SIZE } from '../../storage/file-encoder';

type Args = {
  file: string; json: boolean; direct: boolean; k?: number; n?: number; profile?: string; 'chunk-size'?: number;
  config?: string; 'data-dir'?: string; 'log-level'?: string; class: string;
  pay?: string; epochs?: number; key?: string; 'no-wait'?: boolean;
};


/** A regular file's size, or null when it cannot be read. */
function fileSize(file: string): number | null {
  try { const st = fs.statSync(file); return st.isFile() ? st.size : null; } catch { return null; }
}

function codingOf(a: Args): Coding {
  if (a.k !== undefined || a.n !== undefined) {
    if (a.k === undefined || a.n === undefined) throw err('STORAGE_CODING_INVALID', '-k and -n go together');
    if (a.profile !== undefined) throw err('STORAGE_CODING_INVALID', 'give -k/-n or --profile, not both');
    return checkCoding(a.k, a.n);
  }
  return parseCoding(a.profile ?? 'default');
}

export async function putCommand(a: Args): Promise<number> {
  const progress = progressReporter('put', progressMode(a.json));
  return runStorageCommand('put', a, () => {
    const coding = codingOf(a);
    // SPEC.md §9.20.4: `--pay COINS --epochs N` also opens a paid contract for the file (as
    // `keep contract CAP --epochs N --pay COINS` does), checked before anything is stored.
    if (a.pay === undefined && (a.epochs !== undefined || a.key !== undefined)) throw err('CONFIG_INVALID', '--epochs and --key go with --pay');
    const contract: ContractRequest | null = a.pay === undefined ? null : contractRequest({ ...a, epochs: a.epochs ?? 24 });
    if (contract && isDirectory(a.file)) throw err('CONFIG_INVALID', '--pay contracts a file; a folder\'s files are contracted one by one (keep contract)');
    // SPEC.md §9.20.1: a contract lists at most 4 096 chunk shares; a larger file is refused before
    // it is stored (a missing file or a bad chunk size is left to the upload's own refusal).
    const chunkSize = a['chunk-size'] ?? DEFAULT_CHUNK_SIZE;
    const size = contract && Number.isInteger(chunkSize) && chunkSize >= 1 ? fileSize(a.file) : null;
    if (size !== null) checkContractShares(fileChunkShares(size, chunkSize, coding.n));
    // SPEC.md §10.8: only nodes whose moderators admit the class (policies from the authorities).
    const cls = checkContentClass(a.class, 'STORAGE_BAD_MANIFEST_INPUT');
    return {
      coding, contentClass: cls, contract, warnUnsavedGuards: contract !== null, // SPEC.md §7.2 (State)
      selectNodes: (nodes: StorageNode[], net: Network) => selectNodesForClass(nodes, cls, coding.n, net.dirCfg.authorities.map((x) => authoritySource(x.url))),
    };
  }, async (session, { coding, contentClass, contract }) => {
    const t0 = Date.now();
    const opts = { coding, chunkSize: a['chunk-size'], contentClass, onProgress: (d: number, t: number) => progress.update(d, t) };
    // SPEC.md §9.15: a folder is stored file by file, then its listing; one capability for it all.
    const folder = isDirectory(a.file) ? await putFolder(session.client, a.file, opts) : null;
    const r = folder ?? await putFile(session.client, a.file, opts);
    progress.stop();
    const url = capabilityUrl(parseCapability(r.capability));
    const seconds = (Date.now() - t0) / 1000;
    // SPEC.md §9.20.4: the file is stored whatever becomes of its contract, so its capability is
    // printed even when the contract cannot be opened (a busy node, no share held, …); the
    // contract's failure is reported after it and the exit status is 1.
    let paid: Awaited<ReturnType<typeof openContract>> | null = null;
    let failed: { code: string; message: string } | null = null;
    if (contract && 'verifyCapability' in r && r.verifyCapability) {
      try { paid = await openContract(session, r.verifyCapability, contract); } catch (e) { failed = failureOf(e); }
    }
    if (a.json) {
      process.stdout.write(JSON.stringify({
        ok: true, capability: r.capability, url, folder: folder !== null, ...(folder ? { files: folder.files, totalBytes: folder.totalBytes } : {}),
        ...(!folder && 'verifyCapability' in r ? { verifyCapability: r.verifyCapability } : {}), manifestId: r.manifestId, size: r.size, chunks: r.chunks, coding: r.coding,
        transport: a.direct ? 'direct' : 'circuits', shares: r.shares, bytesSent: r.bytesSent, relocated: r.relocated,
        seconds, mbps: r.size / 1e6 / Math.max(seconds, 0.001), ...(paid ? { ok: paid.ok, contract: paid.json } : {}), ...(failed ? { ok: false, error: failed } : {}),
      }) + '\n');
    } else {
      process.stdout.write(r.capability + '\n');
      if (folder) process.stderr.write(`bitcloud put: stored ${folder.files} files; open ${url} through the SOCKS proxy\n`);
      for (const l of paid?.lines ?? []) process.stderr.write(`bitcloud put: ${l.trim()}\n`);
      if (failed) process.stderr.write(`bitcloud put: no contract: ${failed.code}: ${failed.message}\n`);
    }
    return failed || (paid && !paid.ok) ? 1 : 0;
  }, () => progress.stop());
}

export const putCommandModule: CommandModule<object, Args> = {
  command: 'put <file>',
  describe: 'Store a file or a folder (encrypted, erasure-coded, uploaded through circuits) and print its capability.',
  builder: (y) => fileOptions(y
    .positional('file', { type: 'string', describe: 'File or folder to store (read chunk by chunk, never whole)' })
    .option('json', JSON_OPTION)
    .option('direct', { type: 'boolean', default: false, describe: 'Connect to storage nodes directly (faster; reveals your address to them)' })
    .option('k', { type: 'number', describe: 'Shares needed to rebuild a chunk (with -n; --k works too)' })
    .option('n', { type: 'number', describe: 'Shares made per chunk, on n distinct nodes (with -k; --n works too)' })
    .option('profile', { type: 'string', choices: Object.keys(CODING_PROFILES), describe: 'default = 4-of-6, durable = 3-of-10' })
    .option('chunk-size', { type: 'number', describe: 'Chunk size in bytes (default 1 MiB)' })
    .option('pay', { type: 'string', describe: 'Also open a paid storage contract: escrow these coins from the wallet (SPEC.md §9.20.4)' })
    .option('epochs', { type: 'number', describe: 'With --pay: epochs the contract lasts (default 24)' })
    .option('key', { type: 'string', describe: 'With --pay: the wallet key file that pays (default <dataDir>/wallet.key)' })
    .option('no-wait', { type: 'boolean', default: false, describe: 'With --pay: do not wait for a block to carry the funding transfer' })
    .option('class', { type: 'string', default: 'encrypted-private', describe: 'Content class: encrypted-private, public-video, public-any… (public classes are readable by anyone with the id)' })) as never,
  handler: async (a) => { process.exitCode = await putCommand(a); },
};
