// `bitcloud keep add CAP | status [--json] | run [--once] | contract CAP | cancel CONTRACT` (SPEC.md §9.19): a keeper of files.
// It holds verify capabilities (derived from read capabilities on `add`; the read key is never
// stored), renews leases before they run out, audits every share and repairs lost ones. Wiring only.
import type { CommandModule } from 'yargs';
import { DIRECT_OPTION, fileOptions } from './options';
import { clientConfigPath, loadDirClientConfig } from '../../dir/client-config';
import { parseCapability } from '../../storage/capability';
import { deriveVerifyKey, formatVerifyCapability, isVerifyCapability, parseVerifyCapability } from '../../storage/verify-cap';
import { fetchRootRecord } from '../storage-client-get';
import { err } from '../../errors';
import { addKept, checkKeeperRun, loadKeeperState, nowSec, runKeeper, updateKeeperState, type KeeperRun, type KeeperState } from '../keeper';
import { fetchVerifyRecord, keepFile } from '../storage-client-verify';
import { reportFailure, runStorageCommand, type StorageCommandArgs, type StorageSession } from '../storage-client-setup';
import type { StorageClient } from '../storage-client';
import { checkContractShares, contractFromPass, uploadContract, type ContractUpload } from '../storage-contract';
import type { RewardChainResult, VerifiedRewardBlock } from '../rewards';
import { FUNDING_TRANSFER_VERSION, TRANSFER_VERSION, type Transfer } from '../../wire/transfer';
import { MAX_CONTRACT_EPOCHS } from '../../wire/storage-contract';
import { parseCoins } from '../wallet';
import { walletCancel, walletSend } from './wallet';
import { isoTime } from '../../ops/log';
import { fundingV2Enabled } from '../../dir/consensus-params';
import type { VerifiedConsensus } from '../../dir/types';

type Common = StorageCommandArgs;
type AddArgs = Common & { cap: string };
export type ContractArgs = Common & { cap: string; epochs: number; pay?: string; key?: string; 'no-wait'?: boolean };
type RunArgs = Common & { once: boolean; interval: number; 'renew-within': number; 'lease-seconds': number };

/** Units as coins with 8 decimals (what `parseCoins` reads back exactly). */
const formatUnits = (u: bigint) => `${u / 100_000_000n}.${(u % 100_000_000n).toString().padStart(8, '0')}`;

function dataDirOf(a: Common): string {
  return loadDirClientConfig(clientConfigPath(a.config), { dataDir: a['data-dir'] }).dataDir;
}

/**
 * The verify capability of a read capability: the root names the verify record (SPEC.md §9.18.1).
 * The root is fetched exactly as a read fetches it (§9.9 step 2, fetchRootRecord): nodes already
 * marked dead are skipped; a node's own error answer (whatever its code) moves to the next node,
 * while a failure that is no BitcloudError (a programming error) is thrown; only bytes that hash
 * to the manifest id and do not open end the search; when every node refused under moderation
 * (§10.6), that refusal is reported rather than MANIFEST_NOT_FOUND.
 */
export async function verifyCapOf(client: StorageClient, readCap: string): Promise<string> {
  const cap = parseCapability(readCap);
  const root = await fetchRootRecord(client, cap, { corruptShares: 0, missingShares: 0, sharesFetched: 0 });
  if (!root.verifyId) throw err('VERIFY_RECORD_NOT_FOUND', 'this file was stored without a verify record (an older client); it cannot be kept');
  return formatVerifyCapability({ manifestId: cap.manifestId, verifyId: root.verifyId, verifyKey: deriveVerifyKey(cap.fileKey) });
}

async function addCommand(a: AddArgs): Promise<number> {
  const text = a.cap.trim();
  const finish = async (vcap: string) => {
    const dir = dataDirOf(a);
    const added = await updateKeeperState(dir, (s) => addKept(s, vcap, nowSec()));
    const id = parseVerifyCapability(vcap).manifestId.toString('hex');
    if (a.json) process.stdout.write(JSON.stringify({ ok: true, added, manifestId: id, verifyCapability: vcap }) + '\n');
    else process.stdout.write(`${added ? 'keeping' : 'already keeping'} ${id.slice(0, 16)}…\n${vcap}\n`);
    return 0;
  };
  if (isVerifyCapability(text)) {
    try { return await finish(formatVerifyCapability(parseVerifyCapability(text))); } catch (e) { return reportFailure('keep add', e, a.json); }
  }
  return runStorageCommand('keep add', a, () => ({ readCap: (parseCapability(text), text) }), async (session, { readCap }) => finish(await verifyCapOf(session.client, readCap)));
}

/** SPEC.md §9.19: `keep status`, per file (the text line and the JSON carry the same fields). */
export function printStatus(s: KeeperState, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify({ ok: true, files: s.files.map(({ verifyCap: _v, ...f }) => f) }) + '\n');
    return;
  }
  if (!s.files.length) { process.stdout.write('no files kept\n'); return; }
  for (const f of s.files) {
    const exp = f.expiresAt ? isoTime(f.expiresAt * 1000) : 'not renewed yet';
    const when = f.lastCheck ? new Date(f.lastCheck * 1000).toISOString() : 'never';
    process.stdout.write(`${f.manifestId.slice(0, 16)}…  healthy ${f.healthy}/${f.shares}  repaired ${f.repaired} (total ${f.repairedTotal})  lost ${f.lost}  unrecoverable chunks ${f.unrecoverableChunks}  audit failures ${f.auditFailures}  busy audits ${f.busyAudits}  unknown (busy) ${f.unknown}  leases until ${exp}  checked ${when}${f.lastError ? `  error ${f.lastError}` : ''}\n`);
  }
}

async function statusCommand(a: Common): Promise<number> {
  try {
    printStatus(await loadKeeperState(dataDirOf(a)), a.json);
    return 0;
  } catch (e) {
    return reportFailure('keep status', e, a.json);
  }
}

async function runCommand(a: RunArgs): Promise<number> {
  let q: KeeperRun;
  try {
    q = checkKeeperRun({ once: a.once, interval: a.interval, renewWithin: a['renew-within'], leaseSeconds: a['lease-seconds'] });
  } catch (e) { return reportFailure('keep run', e, a.json); }
  return runStorageCommand('keep run', a, () => ({}), async (session) => {
    const { ok, state } = await runKeeper(session.network.dirCfg.dataDir, q, (cap, o) => keepFile(session.client, cap, o));
    printStatus(state, a.json);
    return ok ? 0 : 1;
  });
}

/** What `keep contract` (and `put --pay`) was asked for. */
export interface ContractRequest {
  epochs: number;
  /** Units to escrow (null: a free contract). */
  pay: bigint | null;
  config?: string;
  dataDir?: string;
  key?: string;
  noWait: boolean;
}

/** Checks --epochs (1..100 000, SPEC.md §9.20.1) and --pay before anything is sent (CONFIG_INVALID, ESCROW_UNDERFUNDED, the coins' parse errors). */
export function contractRequest(a: { epochs: number; pay?: string; key?: string; 'no-wait'?: boolean; config?: string; 'data-dir'?: string }): ContractRequest {
  if (!Number.isSafeInteger(a.epochs) || a.epochs < 1) throw err('CONFIG_INVALID', '--epochs must be a positive integer');
  if (a.epochs > MAX_CONTRACT_EPOCHS) throw err('CONFIG_INVALID', `--epochs must be at most ${MAX_CONTRACT_EPOCHS} (a contract's longest span)`);
  let pay: bigint | null = null;
  if (a.pay !== undefined) {
    pay = parseCoins(String(a.pay));
    if (pay < BigInt(a.epochs)) throw err('ESCROW_UNDERFUNDED', `--pay must buy at least one unit (10^-8 coin) per epoch: ${a.epochs} units`);
  }
  return { epochs: a.epochs, pay, config: a.config, dataDir: a['data-dir'], key: a.key, noWait: a['no-wait'] ?? false };
}

/**
 * SPEC.md §9.20.4: before a funding is sent, the contract must have no escrow in the verified chain
 * (open, refunded or cancelled) and no funding from this wallet may be pending: an open applies only
 * to a contract without one (ESCROW_ALREADY_FUNDED), so a second funding (`keep contract --pay` run
 * again in the same epoch, which makes the same contract) would open nothing; nor to one whose id
 * holds units already (§9.20.4 item 1). ESCROW_ALREADY_FUNDED, nothing sent.
 */
export function checkNotFunded(chain: RewardChainResult, pending: readonly Transfer[], id: string): void {
  const e = chain.state.escrows.get(id);
  if (e) {
    throw err('ESCROW_ALREADY_FUNDED', `contract ${id} has an escrow already (${e.refunded !== null ? 'closed' : 'open'}, paid by ${e.payer.slice(0, 16)}…): a second funding would open none; no funding was sent`, { contract: id });
  }
  // §9.20.4 item 1: units already at the id (a plain transfer carried without an open) get it no open.
  const held = chain.state.balances.get(id) ?? 0n;
  if (held > 0n) {
    throw err('ESCROW_ALREADY_FUNDED', `contract ${id} has no escrow but its id holds ${held} units already (a plain transfer carried without an open): no escrow can be opened for it; upload the contract again for a later epoch (a new contract id); no funding was sent`, { contract: id });
  }
  if (pending.some((t) => t.to.toString('hex') === id)) {
    throw err('ESCROW_ALREADY_FUNDED', `a funding of contract ${id} from this wallet is pending already: a second one would open no escrow; no funding was sent`, { contract: id });
  }
}

/**
 * SPEC.md §9.20.4: the block `b` that carried the funding transfer of contract `id` (from `payer`)
 * must have opened its escrow. When it did not, the units went to the contract id as a plain
 * transfer: no key holds that id and no refund returns them. ESCROW_NOT_OPENED, naming the block's
 * height. A funding transfer (version 4 or 2) is never carried without the open (§8.7.3 item 7); the
 * check is for a plain one (version 3, sent while the consensus has not switched on funding-v2, or
 * version 1, by an older client).
 */
export function checkEscrowOpened(chain: RewardChainResult, b: VerifiedRewardBlock, id: string, payer: string): void {
  const opened = (b.block.escrow ?? []).some((op) => op.kind === 'open' && op.contract === id && op.payer === payer);
  if (opened && chain.state.escrows.get(id)?.payer === payer) return;
  throw err('ESCROW_NOT_OPENED', `block ${b.block.height} carried the funding transfer to contract ${id} without opening its escrow: the units went to the contract id and are not refundable`, { contract: id, height: b.block.height });
}

/**
 * SPEC.md §9.20.4, §8.11.3: the transfer version a contract's funding is sent as: 4 (a funding
 * transfer) when the consensus `c` has `funding-v2 = 1`, else 3 (a plain transfer to the contract
 * id, as before funding transfers existed): while the parameter is off the authorities refuse
 * funding transfers (TRANSFER_VERSION_DISABLED). Both are bound to the chain (§8.11.1). `c` is the consensus the send verifies the chain with, just before
 * the transfer is signed, not one read before the keeper pass (which may run long).
 */
export function fundingVersion(c: Pick<VerifiedConsensus, 'params'>): typeof TRANSFER_VERSION | typeof FUNDING_TRANSFER_VERSION {
  return fundingV2Enabled(c.params) ? FUNDING_TRANSFER_VERSION : TRANSFER_VERSION;
}

/**
 * SPEC.md §9.20.1, §9.20.4: one keeper pass over the file of `vcap` (audit, repair, renew for the
 * contract's span), then a contract listing a proven holder of every share for epochs
 * [now, now + N), uploaded to every authority, and, with `pay`, funded from the wallet once every
 * authority holds it, uploaded again once the authorities took the funding (an authority that
 * evicted it meanwhile takes it back, now funded), and checked in the chain: the block that carries
 * the funding must open its escrow (ESCROW_NOT_OPENED otherwise). Returns the JSON object `keep
 * contract --json` prints, the text lines, and whether it succeeded.
 */
export async function openContract(session: StorageSession, vcap: string, q: ContractRequest): Promise<{ ok: boolean; json: Record<string, unknown>; lines: string[] }> {
  const c = session.network.dir.consensus()!;
  const P = c.periodSeconds;
  const cap = parseVerifyCapability(vcap);
  // SPEC.md §9.20.1: a contract lists every chunk share (data and manifest) and holds at most
  // 4 096; the verify record counts them, so a file with more is refused before its keeper pass.
  const record = await fetchVerifyRecord(session.client, cap);
  checkContractShares(record.chunks.length * record.n);
  const r = await keepFile(session.client, cap, { renew: true, leaseSeconds: (q.epochs + 2) * P, record });
  // SPEC.md §9.18.3 step 3, §9.20.1: a share whose audit stayed busy is neither proven nor lost;
  // the contract would silently leave it out, so none is opened until a pass knows every share.
  if (r.unknown > 0) {
    throw err('STORAGE_BUSY', `${r.unknown} share(s) of this file could not be audited (their nodes stayed busy): no contract was opened; retry later`, { unknown: r.unknown, busy: r.busy.length });
  }
  if (!r.placed.length) throw err('VERIFY_RECORD_NOT_FOUND', 'no share of this file is held by any node: nothing to contract');
  const start = Math.floor(Date.now() / (P * 1000));
  const k = contractFromPass(r.placed, start, q.epochs);
  const uploads = await uploadContract(session.network.dirCfg.authorities, k.bytes);
  const accepted = uploads.filter((u) => u.ok).length;
  let ok = accepted * 2 > uploads.length;
  // SPEC.md §9.20.4: a paid contract is funded only once every authority holds it (the proposer
  // that carries the funding transfer must hold the contract to open its escrow).
  let funding: unknown = null;
  // The second upload's answers, per authority (set once the funding was taken).
  const again: { uploads: ContractUpload[] | null } = { uploads: null };
  const lines = [`contract ${k.id}: ${k.contract.entries.length} shares on ${new Set(r.placed.map((p) => p.node)).size} nodes, epochs ${k.contract.startEpoch}..${k.contract.endEpoch - 1}`];
  for (const u of uploads) lines.push(`  ${u.authority}: ${u.ok ? u.result : `${u.code} ${u.reason ?? ''}`}`);
  // SPEC.md §9.20.4: the version of the funding transfer the authorities took (null: none was
  // sent). It is decided from the consensus the send itself verifies the chain with, not from `c`
  // read before the keeper pass: `funding-v2` may have been switched on since (§8.11.3).
  let sentVersion: typeof TRANSFER_VERSION | typeof FUNDING_TRANSFER_VERSION | null = null;
  if (q.pay !== null) {
    if (accepted !== uploads.length) {
      ok = false;
      lines.push('  not funded: not every authority took the contract');
      const refused = uploads.find((u) => !u.ok);
      funding = { ok: false, error: { code: refused?.code ?? 'INTERNAL', message: 'not every authority took the contract' } };
    } else {
      const out: string[] = [];
      // SPEC.md §9.20.1, §9.20.4: an authority at its limit may have evicted the contract (unfunded
      // until now) between the upload and the funding's arrival in its pool; once the authorities
      // took the funding it protects the contract, so it is uploaded again: one that evicted it
      // answers "accepted" and keeps it, one that held it "unchanged".
      const code = await walletSend(k.id, formatUnits(q.pay), {
        // SPEC.md §9.20.4: a funding transfer (version 4), carried with the escrow's open or not at
        // all, once the consensus switched it on (funding-v2); a plain transfer to the id before.
        config: q.config, dataDir: q.dataDir, key: q.key, json: true, noWait: q.noWait, funding: (sc) => fundingVersion(sc) === FUNDING_TRANSFER_VERSION,
        // SPEC.md §7.2 (State): the session's guard set, saved once at the command's end (which
        // prints the "not saved" line there, runStorageCommand), not by the send itself.
        guards: session.network.guards,
        afterSubmit: async (t) => {
          sentVersion = t.version === FUNDING_TRANSFER_VERSION ? FUNDING_TRANSFER_VERSION : TRANSFER_VERSION;
          again.uploads = await uploadContract(session.network.dirCfg.authorities, k.bytes);
        },
        checkBefore: (chain, pending) => checkNotFunded(chain, pending, k.id),
        checkIncluded: (chain, b, from) => checkEscrowOpened(chain, b, k.id, from),
      }, { out: (x) => out.push(x), err: (x) => process.stderr.write(x + '\n') });
      funding = out.length ? JSON.parse(out[out.length - 1]) as unknown : null;
      // Said only once the authorities took the transfer: a send that failed before (TRANSFER_OVERSPEND,
      // ESCROW_ALREADY_FUNDED, every authority refusing) sent no transfer of any version.
      if (sentVersion === TRANSFER_VERSION) lines.push(`  funding sent as a plain (version ${TRANSFER_VERSION}) transfer: the consensus has not switched on funding-v2 (SPEC.md §9.20.4)`);
      if (code !== 0) ok = false;
      for (const u of again.uploads ?? []) {
        if (!u.ok) lines.push(`  ${u.authority}: refused the contract again after the funding: ${u.code} ${u.reason ?? ''}`);
        else if (u.result === 'accepted') lines.push(`  ${u.authority}: had dropped the contract before the funding arrived; took it again`);
      }
      const f = funding as { ok?: boolean; nonce?: number; included?: { height: number } | null; error?: { code: string; message: string } } | null;
      lines.push(f?.ok ? `  funded with ${formatUnits(q.pay)} coins (nonce ${f.nonce})${f.included ? `, in block ${f.included.height}` : ', pending'}`
        : f?.error?.code === 'ESCROW_NOT_OPENED' ? `  funding lost: ESCROW_NOT_OPENED ${f.error.message}` : `  not funded: ${f?.error?.code ?? 'failed'} ${f?.error?.message ?? ''}`);
    }
  }
  const json = {
    ok, contract: k.id, startEpoch: k.contract.startEpoch, endEpoch: k.contract.endEpoch, entries: k.contract.entries.length,
    bytes: k.contract.entries.reduce((sum, e) => sum + e.shareSize, 0), healthy: r.healthy, repaired: r.repaired, lost: r.lost, authorities: uploads,
    ...(q.pay !== null ? { ...(sentVersion !== null ? { fundingVersion: sentVersion } : {}), funding, ...(again.uploads ? { reheld: again.uploads } : {}) } : {}),
  };
  return { ok, json, lines };
}

/** `bitcloud keep contract CAP --epochs N [--pay COINS]` (SPEC.md §9.20.1, §9.20.4). */
export async function contractCommand(a: ContractArgs): Promise<number> {
  const text = a.cap.trim();
  let q: ContractRequest;
  try { q = contractRequest(a); } catch (e) { return reportFailure('keep contract', e, a.json); }
  return runStorageCommand('keep contract', a, () => ({ warnUnsavedGuards: q.pay !== null }), async (session) => {
    const vcap = isVerifyCapability(text) ? text : await verifyCapOf(session.client, (parseCapability(text), text));
    const { ok, json, lines } = await openContract(session, vcap, q);
    if (a.json) process.stdout.write(JSON.stringify(json) + '\n');
    else for (const l of lines) process.stdout.write(l + '\n');
    return ok ? 0 : 1;
  });
}

const commonOptions = <T>(y: T): T => fileOptions((y as unknown as import('yargs').Argv)
  .option('json', { type: 'boolean', default: false, describe: 'Print JSON' })
  .option('direct', DIRECT_OPTION)) as unknown as T;

export const keepCommandModule: CommandModule = {
  command: 'keep',
  describe: 'Keep files alive: renew leases before they expire, audit shares, repair lost ones (verify capabilities only).',
  builder: (y) => y
    .command({
      command: 'add <cap>', describe: 'Keep a file (a read capability is turned into its verify capability; the read key is not stored)',
      builder: (yy) => commonOptions(yy.positional('cap', { type: 'string' })) as never,
      handler: async (a) => { process.exitCode = await addCommand(a as unknown as AddArgs); },
    })
    .command({
      command: 'status', describe: 'Per file: healthy shares, repaired, lost, lease expiry',
      builder: (yy) => commonOptions(yy) as never,
      handler: async (a) => { process.exitCode = await statusCommand(a as unknown as Common); },
    })
    .command({
      command: 'contract <cap>', describe: 'Audit the file, then ask the authorities to audit its holders every epoch (a storage contract, SPEC.md §9.20)',
      builder: (yy) => commonOptions(yy.positional('cap', { type: 'string' })
        .option('epochs', { type: 'number', default: 24, describe: 'Epochs (consensus periods) the contract lasts' })
        .option('pay', { type: 'string', describe: 'Coins to escrow for the contract from the wallet (SPEC.md §9.20.4): paid to the holders whose shares pass audit, the rest refunded' })
        .option('key', { type: 'string', describe: 'The wallet key file that pays (default <dataDir>/wallet.key)' })
        .option('no-wait', { type: 'boolean', default: false, describe: 'Do not wait for a block to carry the funding transfer' })) as never,
      handler: async (a) => { process.exitCode = await contractCommand(a as unknown as ContractArgs); },
    })
    .command({
      command: 'cancel <contract>', describe: 'End a paid contract early (the file is deleted): the payer\'s signed cancel returns the unspent escrow (SPEC.md §9.20.4)',
      builder: (yy) => commonOptions(yy.positional('contract', { type: 'string', describe: 'The contract id (64 hex), as `keep contract` printed it' })
        .option('key', { type: 'string', describe: 'The wallet key file that paid (default <dataDir>/wallet.key)' })
        .option('no-wait', { type: 'boolean', default: false, describe: 'Do not wait for a block to carry the cancel' })
        .option('wait-seconds', { type: 'number', describe: 'Give up waiting after this many seconds (default 12 consensus periods)' })) as never,
      handler: async (a) => {
        const x = a as unknown as Common & { contract: string; key?: string; 'no-wait'?: boolean; 'wait-seconds'?: number };
        process.exitCode = await walletCancel(String(x.contract), { config: x.config, dataDir: x['data-dir'], key: x.key, json: x.json, noWait: x['no-wait'] ?? false, waitSeconds: x['wait-seconds'] });
      },
    })
    .command({
      command: 'run', describe: 'Audit, repair and renew every kept file, every --interval seconds (or once)',
      builder: (yy) => commonOptions(yy
        .option('once', { type: 'boolean', default: false, describe: 'One pass, then exit (1 if a file cannot be read whole)' })
        .option('interval', { type: 'number', default: 3600, describe: 'Seconds between passes' })
        .option('renew-within', { type: 'number', default: 2 * 86_400, describe: 'Renew a file whose leases expire within this many seconds' })
        .option('lease-seconds', { type: 'number', default: 0, describe: 'Lease to ask for (0: each node\'s default)' })) as never,
      handler: async (a) => { process.exitCode = await runCommand(a as unknown as RunArgs); },
    })
    .demandCommand(1),
  handler: () => {},
};
