// `bitcloud-relay status` / `bitcloud-storage status` (issue 5: "shows the operator their proven
// bandwidth and earnings"). Read-only, run beside the daemon on the operator's machine:
//   - what peers countersigned, per epoch, from <dataDir>/bandwidth.json (SPEC.md §8.10);
//   - what the authorities proved: the node's entry in a verified consensus (weight, proven cells
//     of the consensus's proven epoch, SPEC.md §8.6);
//   - what it earned: its balance and allocations in the whole verified reward chain (§8.7.3).
// Each part is reported on its own: an unreachable authority does not hide the local counts.
import fs from 'node:fs/promises';
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { errorCode } from '../../errors';
import type { AuthorityInfo } from '../../dir/authorities';
import { currentConsensus } from '../../dir/consensus-cache';
import type { VerifiedConsensus } from '../../dir/types';
import { fingerprint, loadEd25519Secret, IDENTITY_KEY_FILE } from '../../crypto/keys';
import { CELL_LEN } from '../../wire/cell';
import { fetchRewardChain, formatCoins } from '../rewards';
import type { Output } from './consensus';
import type { Argv } from 'yargs';
import { isoTime } from '../../ops/log';
import { PolicySubscriptions, POLICY_DIR, POLICY_STATUS_FILE, type ModeratorStatus, type PolicyStatusFile } from '../../moderation/subscription';
import { processAlive, processStartId } from '../../ops/file-lock';

export interface NodeStatusOptions {
  /** 'relay' or 'storage node', for the text. */
  kind: string;
  dataDir: string;
  authorities: readonly AuthorityInfo[];
  json?: boolean;
  /** How many recent epochs and allocations to print (text). */
  recent?: number;
  timeoutMs?: number;
  /**
   * A storage node: the moderators it subscribes to (SPEC.md §10.6.1). The policies the running
   * node enforces (its policy-status.json) are shown, each with `expired` and its saved copy
   * flagged when that is not the one enforced; with no node running, the policies saved on disk.
   */
  subscribedModerators?: readonly string[];
}

interface EpochLine {
  epoch: number; receipts: number; cellsSent: number; cellsReceived: number; peers: number;
  uploaded?: Record<string, number>; refused?: Record<string, number>; pending?: number; expired?: number;
}
interface BandwidthFile { identity?: string; periodSeconds?: number | null; epochs?: EpochLine[]; disagreements?: Record<string, number> }

const stdio: Output = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };
const amount = (u: bigint) => ({ units: u.toString(), coins: formatCoins(u) });

export interface NodeStatusView {
  ok: boolean;
  /** When `ok` is false: why, as in every command's failure document (SPEC.md §9.10). */
  error?: { code: string; message: string };
  fingerprint: string | null;
  countersigned: { file: string; available: boolean; periodSeconds: number | null; epochs: EpochLine[]; totalCells: number; disagreements: Record<string, number> };
  consensus: { available: boolean; error?: string; validAfter?: string; listed?: boolean; nickname?: string; flags?: string[]; weightKBps?: number; provenEpoch?: number | null; provenCells?: number; provenKBps?: number; storedBytes?: number };
  rewards: {
    available: boolean; error?: string; height?: number; blocks?: number;
    /** Sum of the node's allocations; `balance` is that ± its transfers (SPEC.md §8.11). */
    earned?: { units: string; coins: string };
    balance?: { units: string; coins: string }; allocations?: { height: number; epoch: number; units: string; coins: string; blockMinted: string }[];
    /** SPEC.md §9.20.4: per paid contract that paid this node, what it paid and how far it runs. */
    contracts?: { contract: string; units: string; coins: string; epochsPaid: number; endEpoch: number | null; refunded: boolean; cancelledAt: number | null }[] };
  /** A storage node's subscribed moderators and the policy it holds for each (SPEC.md §10.6.1). */
  policies?: ModeratorStatus[];
}

async function readBandwidth(file: string): Promise<BandwidthFile | null> {
  try { return JSON.parse(await fs.readFile(file, 'utf8')) as BandwidthFile; } catch { return null; }
}

/** Builds the status view; never throws for a missing part (each part says whether it is available). */
export async function nodeStatus(o: NodeStatusOptions): Promise<NodeStatusView> {
  const file = path.join(o.dataDir, 'bandwidth.json');
  const bw = await readBandwidth(file);
  let fp: string | null = bw?.identity && /^[0-9a-f]{64}$/.test(bw.identity) ? bw.identity : null;
  let keyError: unknown = null;
  if (!fp) {
    try { fp = fingerprint((await loadEd25519Secret(path.join(o.dataDir, IDENTITY_KEY_FILE))).publicKey); } catch (e) { fp = null; keyError = e; }
  }
  const epochs = (bw?.epochs ?? []).map((e) => ({ ...e }));
  const view: NodeStatusView = {
    ok: fp !== null,
    ...(fp === null ? { error: { code: errorCode(keyError), message: `no identity key in ${o.dataDir} (has the ${o.kind} run yet?)` } } : {}),
    fingerprint: fp,
    countersigned: {
      file, available: bw !== null, periodSeconds: bw?.periodSeconds ?? null, epochs,
      totalCells: epochs.reduce((s, e) => s + e.cellsSent + e.cellsReceived, 0), disagreements: bw?.disagreements ?? {},
    },
    consensus: { available: false },
    rewards: { available: false },
    ...(o.subscribedModerators ? { policies: moderatorPolicies(o.dataDir, o.subscribedModerators) } : {}),
  };
  if (!fp) return view;

  let consensus: VerifiedConsensus | null = null;
  try {
    // The node keeps its consensus in its data folder (the daemon writes it): use it while fresh,
    // never write there from this read-only command.
    consensus = await currentConsensus({
      dataDir: o.dataDir, authorities: o.authorities, sources: o.authorities.map((a) => a.url), save: false, timeoutMs: o.timeoutMs,
    });
    const me = consensus.relays.find((r) => r.fingerprint === fp);
    const provenEpoch = consensus.provenEpoch;
    const provenCells = me?.proven ?? 0;
    view.consensus = {
      available: true, validAfter: isoTime(consensus.validAfter), listed: me !== undefined,
      ...(me ? { nickname: me.nickname, flags: [...me.flags].sort(), weightKBps: me.weight } : {}),
      provenEpoch, provenCells,
      provenKBps: Math.floor(provenCells * CELL_LEN / consensus.periodSeconds / 1000),
      // SPEC.md §9.20.2: a storage node's contracted bytes that passed the authorities' audits.
      storedBytes: me?.stored ?? 0,
    };
  } catch (e) {
    view.consensus = { available: false, error: `${errorCode(e)}: ${(e as Error).message}` };
  }

  if (consensus) {
    try {
      const chain = await fetchRewardChain({ authorities: o.authorities, periodSeconds: consensus.periodSeconds, timeoutMs: o.timeoutMs });
      const allocations = chain.blocks
        .filter((b) => b.block.allocations.has(fp!))
        .map((b) => ({ height: b.block.height, epoch: b.block.epoch, ...amount(b.block.allocations.get(fp!)!), blockMinted: b.block.minted.toString() }));
      const earned = chain.blocks.reduce((t, b) => t + (b.block.allocations.get(fp!) ?? 0n), 0n);
      const paid = new Map<string, { units: bigint; epochs: number }>();
      for (const b of chain.blocks) {
        for (const op of b.block.escrow ?? []) {
          if (op.kind !== 'pay' || op.node !== fp) continue;
          const x = paid.get(op.contract) ?? { units: 0n, epochs: 0 };
          paid.set(op.contract, { units: x.units + op.amount, epochs: x.epochs + 1 });
        }
      }
      const contracts = [...paid].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, x]) => {
        const e = chain.state.escrows.get(id);
        return { contract: id, ...amount(x.units), epochsPaid: x.epochs, endEpoch: e?.endEpoch ?? null, refunded: e ? e.refunded !== null : false, cancelledAt: e?.cancelledAt ?? null };
      });
      view.rewards = {
        available: true, height: chain.state.height, blocks: chain.blocks.length,
        earned: amount(earned), balance: amount(chain.state.balances.get(fp) ?? 0n), allocations, contracts,
      };
    } catch (e) {
      view.rewards = { available: false, error: `${errorCode(e)}: ${(e as Error).message}` };
    }
  }
  return view;
}

/**
 * SPEC.md §10.6.1: the policies a storage node saved in its data folder, read and verified as the
 * node reads them at start (nothing fetched, nothing written), each with `expired` as the node's
 * gauge and warning judge it.
 */
function savedPolicies(dataDir: string, moderators: readonly string[]): ModeratorStatus[] {
  if (moderators.length === 0) return [];
  const subs = PolicySubscriptions.open({ moderators, dataDir });
  // Never started: nothing was written, so close() has no write to wait for.
  try { return subs.status(); } finally { void subs.close(); }
}

/** policy-status.json of a node (at most 16 moderators, SPEC.md §10.6.1) is far smaller than this. */
const POLICY_STATUS_MAX_BYTES = 1 << 20;

/**
 * The text of policy-status.json, null when it is not a regular file of at most
 * POLICY_STATUS_MAX_BYTES. Opened without blocking, so that a FIFO at the path cannot hang status.
 */
function readPolicyStatusFile(file: string): string | null {
  let fd: number;
  try { fd = openSync(file, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0)); } catch { return null; }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.size > POLICY_STATUS_MAX_BYTES) return null;
    const buf = Buffer.alloc(POLICY_STATUS_MAX_BYTES + 1);
    let n = 0;
    for (let r; n < buf.length && (r = readSync(fd, buf, n, buf.length - n, null)) > 0;) n += r;
    return n > POLICY_STATUS_MAX_BYTES ? null : buf.subarray(0, n).toString('utf8');
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}

const isTime = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0 && (x as number) <= 8.64e15;
const isCount = (x: unknown): boolean => Number.isSafeInteger(x) && (x as number) >= 0;
const isCodeMessage = (x: unknown): boolean => typeof x === 'object' && x !== null && typeof (x as { code?: unknown }).code === 'string' && typeof (x as { message?: unknown }).message === 'string';

/** One entry of policy-status.json as a node writes it (ModeratorStatus of PolicySubscriptions.status()). */
function isStatusEntry(x: unknown): x is ModeratorStatus {
  if (typeof x !== 'object' || x === null) return false;
  const e = x as Record<string, unknown>;
  if (typeof e.moderator !== 'string' || !/^[0-9a-f]{64}$/.test(e.moderator)) return false;
  if (typeof e.name !== 'string' || !Array.isArray(e.classes) || !e.classes.every((c) => typeof c === 'string')) return false;
  if (!isCount(e.denylistEntries) || !isCount(e.approvals) || typeof e.expired !== 'boolean') return false;
  if (e.error !== undefined && !isCodeMessage(e.error)) return false;
  if (e.seq === null) return e.digest === null && e.validUntil === null && e.loadedAt === null;
  return isCount(e.seq) && typeof e.digest === 'string' && /^[0-9a-f]{64}$/.test(e.digest) && isTime(e.validUntil) && (e.loadedAt === null || isTime(e.loadedAt));
}

/**
 * SPEC.md §10.6.1: the policies the running node enforces, from the policy-status.json it writes,
 * null when no node runs (no file, not a regular file, not the JSON a node writes, or its process
 * has ended).
 */
function enforcedPolicies(dataDir: string): ModeratorStatus[] | null {
  const text = readPolicyStatusFile(path.join(dataDir, POLICY_STATUS_FILE));
  if (text === null) return null;
  let doc: unknown;
  try { doc = JSON.parse(text); } catch { return null; }
  if (typeof doc !== 'object' || doc === null) return null;
  const { pid, started, policies } = doc as Partial<PolicyStatusFile>;
  if (!Number.isSafeInteger(pid) || pid! <= 0 || !Array.isArray(policies) || !policies.every(isStatusEntry) || !processAlive(pid!)) return null;
  // A file left by a node that crashed, whose process id another process now has (after a reboot
  // or a container restart, say): that process started at another time.
  if (typeof started === 'string') {
    const now = processStartId(pid!);
    if (now !== null && now !== started) return null;
  }
  return policies.map((p) => ({
    moderator: p.moderator, seq: p.seq, name: p.name, classes: p.classes, denylistEntries: p.denylistEntries, approvals: p.approvals,
    validUntil: p.validUntil, expired: p.expired, ...(p.error ? { error: { code: p.error.code, message: p.error.message } } : {}),
    digest: p.digest, loadedAt: p.loadedAt,
  }));
}

/**
 * SPEC.md §10.6.1: per moderator, what the running node enforces (`from: 'daemon'`) with its saved
 * copy flagged (`saved`) when that copy cannot be read, is not a regular file, does not verify or
 * is not the policy enforced; with no node running, the saved policies (`from: 'disk'`).
 */
function moderatorPolicies(dataDir: string, moderators: readonly string[]): ModeratorStatus[] {
  // No node holds these in memory: loadedAt (when a node took the policy) is null, not this read's time.
  const fromDisk = () => savedPolicies(dataDir, moderators).map((p) => ({ ...p, from: 'disk' as const, loadedAt: null }));
  const enforced = enforcedPolicies(dataDir);
  if (!enforced) return fromDisk();
  // The node's own list: it enforces the moderators of the config it started with. A file whose
  // moderators are not fingerprints was not written by a node: the disk, as with no node running.
  let saved0: ModeratorStatus[];
  try { saved0 = savedPolicies(dataDir, enforced.map((p) => p.moderator)); } catch { return fromDisk(); }
  const disk = new Map(saved0.map((p) => [p.moderator, p]));
  return enforced.map((p) => {
    const d = disk.get(p.moderator);
    const file = path.join(dataDir, POLICY_DIR, `${p.moderator}.bundle`);
    let saved: { code: string; message: string } | undefined;
    if (d?.error) saved = { code: d.error.code, message: `${file}: ${d.error.message}` };
    else if ((d?.digest ?? null) !== p.digest) {
      saved = {
        code: 'POLICY_SAVED_DIFFERS',
        message: `${file} holds ${d?.seq != null ? `seq ${d.seq} (digest ${d.digest!.slice(0, 16)}…)` : 'no policy'}, not the seq ${p.seq ?? 'none'} enforced`,
      };
    }
    return { ...p, expired: p.validUntil !== null && Date.now() > p.validUntil, from: 'daemon' as const, ...(saved ? { saved } : {}) };
  });
}

function printText(v: NodeStatusView, kind: string, recent: number, io: Output): void {
  const c = v.consensus;
  io.out(`${kind} ${c.nickname ?? ''} ${v.fingerprint}`.replace(/\s+/g, ' ').trim());
  if (!c.available) io.out(`consensus: not available (${c.error})`);
  else if (!c.listed) io.out(`consensus of ${c.validAfter}: not listed`);
  else {
    io.out(`consensus of ${c.validAfter}: listed, flags ${c.flags!.join(' ')}, weight ${c.weightKBps} KB/s`);
    if (c.provenEpoch === null) io.out('proven by the authorities: no measured epoch in this consensus yet');
    else io.out(`proven by the authorities for epoch ${c.provenEpoch}: ${c.provenCells} cells (${c.provenKBps} KB/s)`);
    if (c.provenEpoch !== null && kind.includes('storage')) io.out(`storage audited by the authorities for epoch ${c.provenEpoch}: ${c.storedBytes ?? 0} bytes of contracted shares passed (SPEC.md §9.20)`);
  }
  const s = v.countersigned;
  if (!s.available) io.out(`countersigned by peers: ${s.file} not written yet (the node writes it at each epoch boundary)`);
  else {
    io.out(`countersigned by peers (before the authorities' bounds): ${s.totalCells} cells over ${s.epochs.length} epochs`);
    io.out('  epoch        receipts  peers  cells sent  cells received  uploaded  pending');
    for (const e of s.epochs.slice(-recent)) {
      const up = Object.values(e.uploaded ?? {});
      io.out(`  ${String(e.epoch).padEnd(12)} ${String(e.receipts).padStart(8)}  ${String(e.peers).padStart(5)}  ${String(e.cellsSent).padStart(10)}  ${String(e.cellsReceived).padStart(14)}  ${String(up.length ? Math.min(...up) : 0).padStart(8)}  ${String(e.pending ?? 0).padStart(7)}`);
    }
    const dis = Object.entries(s.disagreements).filter(([, n]) => n > 0);
    io.out(`disagreements: ${dis.length ? dis.map(([r, n]) => `${r} ${n}`).join(', ') : 'none'}`);
  }
  if (v.policies) {
    if (v.policies.length === 0) io.out('moderation: unmoderated');
    for (const p of v.policies) {
      if (p.from === 'daemon') {
        // SPEC.md §10.6.1: what the running node enforces, from the node itself; then its saved copy
        // when that is not the one enforced (the node keeps what it holds; a restart reads the disk).
        io.out(p.seq === null
          ? `policy of moderator ${p.moderator}: the running node enforces none${p.error ? ` (its saved policy was not usable at start: ${p.error.code})` : ''}: until it fetches the moderator's policy, it refuses every upload (POLICY_UNAVAILABLE)`
          : `policy of moderator ${p.moderator}: the running node enforces seq ${p.seq}${p.name ? ` (${p.name})` : ''}, digest ${p.digest!.slice(0, 16)}…, loaded ${p.loadedAt !== null ? isoTime(p.loadedAt) : 'at an unknown time'}, valid until ${isoTime(p.validUntil!)}, expired: ${p.expired}${p.expired ? ' (still enforced until the moderator publishes a newer one)' : ''}`);
        if (p.saved) io.out(`  saved copy not the one enforced (${p.saved.code}: ${p.saved.message}); the node keeps enforcing what it holds, and reads the saved copy again only when it restarts`);
        continue;
      }
      // SPEC.md §10.6.1: "none saved yet" only when no file is saved; a saved file that cannot be
      // read or does not verify is not used by the node, which holds nothing of that moderator.
      io.out(p.error
        ? `policy of moderator ${p.moderator}: saved policy unreadable (${p.error.code}: ${p.error.message}); the node uses none from it: until it fetches the moderator's policy, it refuses every upload (POLICY_UNAVAILABLE) and denies nothing from that moderator's list`
        : p.seq === null
        ? `policy of moderator ${p.moderator}: none saved yet`
        : `policy of moderator ${p.moderator}: seq ${p.seq}${p.name ? ` (${p.name})` : ''}, valid until ${isoTime(p.validUntil!)}, expired: ${p.expired}${p.expired ? ' (still enforced until the moderator publishes a newer one)' : ''}`);
    }
  }
  const r = v.rewards;
  if (!r.available) io.out(`earnings: not available (${r.error ?? 'no consensus'})`);
  else {
    io.out(`earnings: ${r.earned!.coins} coins (${r.earned!.units} units) from ${r.allocations!.length} of ${r.blocks} blocks (chain height ${r.height})`);
    io.out(`balance: ${r.balance!.coins} coins after transfers (spend it: bitcloud wallet send --key <data dir>/identity.key TO AMOUNT)`);
    for (const a of r.allocations!.slice(-recent)) io.out(`  block ${a.height} (epoch ${a.epoch}): +${a.coins} coins of ${formatCoins(BigInt(a.blockMinted))}`);
    if (r.contracts?.length) {
      io.out(`paid contracts (escrow, SPEC.md §9.20.4): ${r.contracts.length}`);
      for (const c of r.contracts) io.out(`  ${c.contract.slice(0, 16)}…: +${c.coins} coins over ${c.epochsPaid} epochs${c.cancelledAt !== null ? `, cancelled by its payer at epoch ${c.cancelledAt}` : c.endEpoch !== null ? `, ${c.refunded ? 'ended' : 'runs until'} epoch ${c.endEpoch - 1}` : ''}`);
    }
  }
}

/** Prints the status; exit code 0 when the node's identity is known, 1 otherwise. */
export async function nodeStatusCommand(o: NodeStatusOptions, io: Output = stdio): Promise<number> {
  const v = await nodeStatus(o);
  if (o.json) io.out(JSON.stringify(v));
  else if (!v.fingerprint) io.err(`bitcloud: no identity key in ${o.dataDir} (has the ${o.kind} run yet?)`);
  else printText(v, o.kind, o.recent ?? 10, io);
  return v.ok ? 0 : 1;
}

/** Adds the `status` subcommand of a daemon's bin: `load` reads the daemon's config file. */
export function withNodeStatusCommand<T>(
  y: Argv<T>, kind: string, describe: string, configDescribe: string,
  load: (file: string, dataDir: string | undefined) => { dataDir: string; authorities: readonly AuthorityInfo[]; subscribedModerators?: readonly string[] },
): Argv<T> {
  return y.command('status', describe, (yy) => yy
    .option('config', { type: 'string', demandOption: true, describe: configDescribe })
    .option('data-dir', { type: 'string', describe: 'Overrides dataDir from the config' })
    .option('json', { type: 'boolean', default: false, describe: 'Machine-readable output' })
    .option('recent', { type: 'number', default: 10, describe: 'Epochs and blocks to list' }),
  async (a) => {
    const cfg = load(a.config, a['data-dir']);
    process.exitCode = await nodeStatusCommand({ kind, dataDir: cfg.dataDir, authorities: cfg.authorities, subscribedModerators: cfg.subscribedModerators, json: a.json, recent: a.recent });
  });
}
