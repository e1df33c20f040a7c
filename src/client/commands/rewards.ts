// `bitcloud rewards [--relay FP|NICKNAME] [--json] [--config FILE] [--from HOST:PORT]... [--data-dir DIR]`
// (SPEC.md §8.7.7): fetch the whole reward chain (through the guards' mirrors, else from the
// authorities or the --from sources), verify every block against
// the configured authorities, print the height, the tip epoch, the total minted and the balance
// of every relay (nicknames from the current consensus). The consensus is needed first: its
// period P dates the certificate windows (src/dir/reward-authorities.ts).
import type { CommandModule } from 'yargs';
import { CONFIG_OPTION, DATA_DIR_OPTION } from './options';
import { err, errorCode } from '../../errors';
import { exitStatusOf } from '../exit-status';
import { clientConfigPath, loadDirClientConfig, normalizeSource } from '../../dir/client-config';
import { currentConsensus } from '../../dir/consensus-cache';
import type { VerifiedConsensus } from '../../dir/types';
import { majorityOf } from '../../dir/authorities';
import { fetchRewardChain, formatCoins, type RewardChainResult } from '../rewards';
import { readRewardTipsSeen, rememberRewardTip, rewardAuthoritySetId } from '../rewards-seen';
import type { Output } from './consensus';
import path from 'node:path';
import { CircuitBuilder } from '../circuit-builder';
import { guardDirClients, guardDirSources } from '../guard-dir';
import { GuardSet, lineAtEnd, saveAtCommandEnd } from '../guards';
import { isoTime } from '../../ops/log';

export interface RewardsCommandOptions {
  config?: string;
  json?: boolean;
  relay?: string;
  /** Reward chain sources instead of the configured authorities. */
  from?: string[];
  dataDir?: string;
}

const stdio: Output = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

const amount = (u: bigint) => ({ units: u.toString(), coins: formatCoins(u) });

/** What `withVerifiedChain` hands over: the verified chain, the consensus that dated it, the config. */
export interface VerifiedChainContext {
  chain: RewardChainResult;
  consensus: VerifiedConsensus;
  cfg: ReturnType<typeof loadDirClientConfig>;
  /** Fetch and verify the chain again (the same sources), e.g. to see a transfer land. */
  refetch(): Promise<RewardChainResult>;
}

/**
 * SPEC.md §8.7.7 steps 1–2: read the config, get a verified consensus (its period P dates the
 * certificates), then fetch and verify the whole reward chain — through the sampled guards'
 * mirrors when the client has them (§6.10.1), else from the authorities or the `--from` sources —
 * and run `fn` with it. Circuits are closed afterwards. `warn` gets the line to print on stderr
 * when the guard state's last save was skipped (§7.2 State). With `guards` (the guard set of a
 * command that opened a network: `keep contract --pay`, `put --pay`), that set is used and not
 * saved here: its owner saves it once, at its end, and says so there when the save was skipped.
 */
export async function withVerifiedChain<T>(o: { config?: string; dataDir?: string; from?: string[]; warn?: (line: string) => void; guards?: GuardSet }, now: () => number, fn: (c: VerifiedChainContext) => Promise<T>): Promise<T> {
  const cfg = loadDirClientConfig(clientConfigPath(o.config), { dataDir: o.dataDir });
  // SPEC.md §6.10.1: with a valid consensus on disk and a sampled guard (state.json), both the
  // consensus and the reward chain come through the guards' mirrors (one-hop circuit, BEGIN_DIR);
  // only a bootstrap (or --from) asks the mirrors and authorities directly.
  const guards = o.guards ?? GuardSet.load(path.join(cfg.dataDir, 'state.json'));
  let held: VerifiedConsensus | null = null;
  const builder = new CircuitBuilder({ relays: () => held?.relays ?? null, guards, enforceDistinctSubnets: false });
  const viaGuards = (c: VerifiedConsensus | null) => (c && now() <= c.validUntil ? guardDirSources(builder, guards, c.relays) : []);
  const clients: ReturnType<typeof guardDirClients> = [];
  try {
    // The period P of a verified consensus dates the authorities' certificates (SPEC.md §8.7.3).
    const consensus = await currentConsensus({
      dataDir: cfg.dataDir, authorities: cfg.authorities, now, fetcher: 'client',
      sources: (have) => {
        held = have;
        const g = viaGuards(have);
        return g.length ? g : [...cfg.mirrors, ...cfg.authorities.map((a) => a.url)];
      },
    });
    held = consensus;
    if (!o.from?.length) clients.push(...guardDirClients(builder, guards, consensus.relays));
    const sources = o.from?.length ? o.from.map(normalizeSource) : clients.length ? clients : undefined;
    // SPEC.md §8.7.7 step 2: a chain below (or beside) the highest tip verified before is refused,
    // and an empty chain when a tip was verified under the same authority set; each chain verified
    // moves that tip up, recorded with the set (a failed write is not the command's failure).
    const fetchChain = async () => {
      const chain = await fetchRewardChain({ authorities: cfg.authorities, periodSeconds: consensus.periodSeconds, sources, fetcher: 'client', seen: readRewardTipsSeen(cfg.dataDir) });
      const tip = chain.blocks.at(-1);
      if (chain.state.chainId && tip) await rememberRewardTip(cfg.dataDir, chain.state.chainId, chain.state.height, tip.hash, { authorities: rewardAuthoritySetId(cfg.authorities) }).catch(() => {});
      return chain;
    };
    const chain = await fetchChain();
    return await fn({ chain, consensus, cfg, refetch: fetchChain });
  } finally {
    for (const c of clients) c.close();
    await builder.close();
    // SPEC.md §7.2 (State): guards sampled here are kept for the client's other processes (the
    // lock waited for 2 s at most; the command never fails for it, and says on stderr when skipped).
    // A set the caller passed is the caller's to save.
    if (!o.guards) await saveAtCommandEnd(guards, o.warn);
  }
}

/** Runs the command; returns the exit code (0: a verified chain was printed; 1: none). */
export async function rewardsCommand(o: RewardsCommandOptions, io: Output = stdio, now: () => number = Date.now): Promise<number> {
  // SPEC.md §7.2 (State): the "guard state not saved" line comes at the end, after the result or the failure.
  const guardLine = lineAtEnd((w) => io.err(`bitcloud rewards: ${w}`));
  try {
    return await withVerifiedChain({ ...o, warn: guardLine.warn }, now, async ({ chain, consensus, cfg }) => {
      const nick = new Map(consensus.relays.map((r) => [r.fingerprint, r.nickname]));
      const relay = o.relay === undefined ? undefined : resolveRelay(o.relay, consensus);
      const view = toJson(chain, consensus, nick, cfg.authorities.length, relay);
      if (o.json) io.out(JSON.stringify(view));
      else printText(view, io);
      for (const f of chain.failures) io.err(`bitcloud rewards: refused the chain from ${f.source}: ${f.reason}`);
      return 0;
    });
  } catch (e) {
    const code = errorCode(e);
    const failures = (e as { detail?: { failures?: unknown } }).detail?.failures ?? [];
    // SPEC.md §9.10: the failure document of every command, plus the sources refused.
    if (o.json) io.out(JSON.stringify({ ok: false, error: { code, message: (e as Error).message.replace(/^[A-Z0-9_]+: /, '') }, failures }));
    io.err(`bitcloud rewards: ${(e as Error).message}`);
    return exitStatusOf(code);
  } finally {
    guardLine.flush();
  }
}

function resolveRelay(q: string, c: VerifiedConsensus): string {
  // SPEC.md §3.1: a fingerprint has one spelling; other case is refused, never normalised.
  if (/^[0-9a-f]{64}$/.test(q)) return q;
  if (/^[0-9a-f]{64}$/i.test(q)) throw err('CONFIG_INVALID', `--relay: ${q} is not a fingerprint: a fingerprint is 64 lowercase hexadecimal characters (upper case is refused, not converted)`, { key: 'relay' });
  const byNick = c.relays.filter((r) => r.nickname === q);
  if (byNick.length === 1) return byNick[0].fingerprint;
  throw err('CONFIG_INVALID', `--relay: ${q} is neither a fingerprint (64 hex characters) nor the nickname of exactly one relay in the consensus`, { key: 'relay' });
}

interface Amount { units: string; coins: string }

/** The --json object (documented in SPEC.md §8.7.7). Units are decimal strings. */
export interface RewardsView {
  ok: true;
  source: string;
  authorities: number;
  threshold: number;
  blocks: number;
  height: number;
  tipEpoch: number | null;
  tipEpochStart: string | null;
  tipHash: string | null;
  periodSeconds: number;
  totalMinted: Amount;
  /** Transfers carried by the chain (SPEC.md §8.11). */
  transfers: number;
  balances: ({ fingerprint: string; nickname: string | null } & Amount)[];
  relay?: {
    fingerprint: string; nickname: string | null; balance: Amount;
    allocations: ({ height: number; epoch: number; blockMinted: string } & Amount)[];
  };
}

export function toJson(chain: RewardChainResult, c: VerifiedConsensus, nick: Map<string, string>, authorities: number, relay?: string): RewardsView {
  const s = chain.state;
  const tip = chain.blocks.at(-1);
  const P = c.periodSeconds * 1000;
  const balances = [...s.balances].sort((a, b) => (a[1] === b[1] ? (a[0] < b[0] ? -1 : 1) : a[1] > b[1] ? -1 : 1))
    .map(([fp, u]) => ({ fingerprint: fp, nickname: nick.get(fp) ?? null, ...amount(u) }));
  const out: RewardsView = {
    ok: true,
    source: chain.source,
    authorities, threshold: majorityOf(authorities),
    blocks: s.height + 1,
    height: s.height,
    tipEpoch: tip ? tip.block.epoch : null,
    tipEpochStart: tip ? isoTime(tip.block.epoch * P) : null,
    tipHash: tip ? tip.hash.toString('hex') : null,
    periodSeconds: c.periodSeconds,
    totalMinted: amount(s.totalMinted),
    transfers: s.transfers,
    balances,
  };
  if (relay !== undefined) {
    out.relay = {
      fingerprint: relay, nickname: nick.get(relay) ?? null, balance: amount(s.balances.get(relay) ?? 0n),
      allocations: chain.blocks.filter((b) => b.block.allocations.has(relay)).map((b) => ({
        height: b.block.height, epoch: b.block.epoch, ...amount(b.block.allocations.get(relay)!), blockMinted: b.block.minted.toString(),
      })),
    };
  }
  return out;
}

function printText(v: RewardsView, io: Output): void {
  io.out(`reward chain: ${v.blocks} blocks (height ${v.height}), tip epoch ${v.tipEpoch ?? '-'}${v.tipEpochStart ? ` (began ${v.tipEpochStart})` : ''}; from ${v.source}`);
  io.out(`verified: every block signed by at least ${v.threshold} of ${v.authorities} configured authorities`);
  io.out(`total minted: ${v.totalMinted.coins} coins (${v.totalMinted.units} units); ${v.transfers} transfers`);
  if (v.relay) {
    const r = v.relay;
    io.out(`relay ${r.nickname ?? '(not in the consensus)'} ${r.fingerprint}`);
    io.out(`balance: ${r.balance.coins} coins (${r.balance.units} units) from ${r.allocations.length} blocks`);
    table(io, ['height', 'epoch', 'coins', 'units', 'block minted'], r.allocations.map((a) => [String(a.height), String(a.epoch), a.coins, a.units, a.blockMinted]));
    return;
  }
  if (v.balances.length === 0) { io.out('no relay has earned anything yet'); return; }
  table(io, ['nickname', 'fingerprint', 'coins', 'units'], v.balances.map((b) => [b.nickname ?? '-', b.fingerprint.slice(0, 16), b.coins, b.units]));
}

function table(io: Output, head: string[], rows: string[][]): void {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((x, i) => (i >= 2 ? x.padStart(w[i]) : x.padEnd(w[i]))).join('  ').trimEnd();
  io.out(line(head));
  for (const r of rows) io.out(line(r));
}

/** The yargs command, registered in src/bin/bitcloud.ts beside the other client commands. */
export const rewardsCommandModule: CommandModule<object, { config?: string; json: boolean; relay?: string; from?: string[]; 'data-dir'?: string }> = {
  command: 'rewards',
  describe: 'Fetch and verify the cloudcoin reward chain; print relay balances.',
  builder: (y) => y
    .option('relay', { type: 'string', describe: 'Show one relay (fingerprint or nickname) and its per-block allocations' })
    .option('json', { type: 'boolean', default: false, describe: 'Print JSON' })
    .option('config', CONFIG_OPTION)
    .option('from', { type: 'string', array: true, describe: 'Fetch the chain from this authority HOST:PORT or URL instead' })
    .option('data-dir', DATA_DIR_OPTION) as never,
  handler: async (a) => {
    try {
      process.exitCode = await rewardsCommand({ config: a.config, json: a.json, relay: a.relay, from: a.from, dataDir: a['data-dir'] });
    } catch (e) {
      process.stderr.write(`bitcloud rewards: ${(e as Error).message}\n`);
      process.exitCode = exitStatusOf(errorCode(e));
    }
  },
};
