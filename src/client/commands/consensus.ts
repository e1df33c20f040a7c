// `bitcloud consensus [--json] [--config FILE] [--from HOST:PORT]...` (SPEC.md §6.8):
// fetch the consensus from a relay mirror or an authority, verify it against the configured
// authorities, print its relays. A refused consensus is reported with its reason; the last
// valid one is kept on disk and used until it expires, and the command says so.
import { consensusIfModifiedSince, isConsensusStale } from '../../dir/consensus';
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { CONFIG_OPTION, DATA_DIR_OPTION } from './options';
import { errorCode } from '../../errors';
import { exitStatusOf } from '../exit-status';
import { clientConfigPath, loadDirClientConfig, normalizeSource } from '../../dir/client-config';
import { fetchVerifiedConsensus, type ConsensusSource } from '../../dir/consensus-fetch';
import { CircuitBuilder } from '../circuit-builder';
import { guardDirSources } from '../guard-dir';
import { GuardSet, lineAtEnd, saveAtCommandEnd } from '../guards';
import { CONSENSUS_CACHE_FILE, isBetterConsensus, loadConsensusCache, saveConsensusCache } from '../../dir/consensus-cache';
import { ALL_FLAGS, type VerifiedConsensus } from '../../dir/types';
import { shuffle } from '../../crypto/primitives';
import { isoTime } from '../../ops/log';


export interface ConsensusCommandOptions {
  config?: string;
  json?: boolean;
  from?: string[];
  dataDir?: string;
}

export interface Output { out(s: string): void; err(s: string): void }
const stdio: Output = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

/** Runs the command; returns the exit code (0: a valid consensus was printed; 1: none). */
export async function consensusCommand(o: ConsensusCommandOptions, io: Output = stdio, now: () => number = Date.now): Promise<number> {
  // SPEC.md §7.2 (State): the "guard state not saved" line comes at the command's end, after its
  // result and its warnings.
  const guardLine = lineAtEnd((line) => io.err(`bitcloud consensus: ${line}`));
  try {
    return await consensusRun(o, io, now, guardLine.warn);
  } finally {
    guardLine.flush();
  }
}

async function consensusRun(o: ConsensusCommandOptions, io: Output, now: () => number, warnUnsaved: (line: string) => void): Promise<number> {
  const cfg = loadDirClientConfig(clientConfigPath(o.config), { dataDir: o.dataDir });
  const cacheFile = path.join(cfg.dataDir, CONSENSUS_CACHE_FILE);
  const cached = await loadConsensusCache(cacheFile, cfg.authorities, now());
  const warnings: string[] = [];
  if (!cached.consensus && cached.code !== 'CACHE_EMPTY') warnings.push(`saved consensus not usable: ${cached.reason}`);

  const have = cached.consensus;
  // SPEC.md §6.10.1: with a valid cached consensus and a guard in state.json, ask only the guards'
  // mirrors (one-hop circuit, BEGIN_DIR); --from, or no guard/consensus yet, goes direct.
  const guards = GuardSet.load(path.join(cfg.dataDir, 'state.json'));
  const builder = new CircuitBuilder({ relays: () => have?.relays ?? null, guards, enforceDistinctSubnets: false });
  const viaGuards = o.from?.length || !have || now() > have.validUntil ? [] : guardDirSources(builder, guards, have.relays);
  const sources: ConsensusSource[] = o.from?.length ? o.from.map(normalizeSource)
    : viaGuards.length ? viaGuards : [...cfg.mirrors, ...shuffle(cfg.authorities.map((a) => a.url))];
  let r: Awaited<ReturnType<typeof fetchVerifiedConsensus>>;
  try {
    // SPEC.md §6.10.1 step 2: a holder sends its fresh_until; a 304 keeps the one held.
    r = await fetchVerifiedConsensus(sources, cfg.authorities, { now, have, ifModifiedSince: have ? consensusIfModifiedSince(have) : undefined, timeoutMs: 10_000, fetcher: 'client' });
  } finally {
    await builder.close();
    // SPEC.md §7.2 (State): guards sampled here are kept for the client's other processes (the
    // lock waited for 2 s at most; the command never fails for it, and says on stderr when skipped).
    await saveAtCommandEnd(guards, warnUnsaved);
  }
  if (viaGuards.length && r.source) r.source = 'guard';
  for (const f of r.failures) warnings.push(`refused consensus from ${f.source}: ${f.code}: ${stripCode(f.reason, f.code)}`);

  let chosen: VerifiedConsensus | null = null;
  let from: string;
  if (r.consensus && isBetterConsensus(have, r.consensus)) {
    chosen = r.consensus;
    from = r.source!;
    await saveConsensusCache(cacheFile, chosen).catch((e) => warnings.push(`could not save the consensus: ${(e as Error).message}`));
  } else if (have) {
    chosen = have;
    from = 'cache';
    const why = r.consensus || r.notModified.length ? 'the network has nothing newer' : 'no source gave a valid consensus';
    warnings.push(`using the last valid consensus kept on disk (valid until ${isoTime(have.validUntil)}): ${why}`);
  } else {
    from = 'none';
  }
  if (chosen && isConsensusStale(chosen, now())) {
    warnings.push(`consensus is stale: fresh until ${isoTime(chosen.freshUntil)}, and the next one was due by ${isoTime(chosen.freshUntil + chosen.periodSeconds * 1000)}; no newer one has been published`);
  }

  if (o.json) {
    io.out(JSON.stringify(chosen ? toJson(chosen, from, warnings, cfg.authorities.length) : { ok: false, source: null, warnings, error: { code: 'CONSENSUS_NOT_AVAILABLE', message: 'no valid consensus available' } }));
  } else {
    if (chosen) printText(chosen, from, cfg.authorities.length, io);
  }
  for (const w of warnings) io.err(`bitcloud consensus: ${w}`);
  if (!chosen) {
    io.err('bitcloud consensus: no valid consensus available; refusing to use anything else');
    return 1;
  }
  return 0;
}

export { isConsensusStale as isStale } from '../../dir/consensus';

function stripCode(reason: string, code: string): string {
  return reason.startsWith(`${code}: `) ? reason.slice(code.length + 2) : reason;
}



function toJson(c: VerifiedConsensus, source: string, warnings: string[], total: number): Record<string, unknown> {
  return {
    ok: true,
    source,
    validAfter: isoTime(c.validAfter), freshUntil: isoTime(c.freshUntil), validUntil: isoTime(c.validUntil),
    periodSeconds: c.periodSeconds,
    digest: c.digest.toString('hex'),
    signers: c.signers, voters: c.voters, authorities: total,
    warnings,
    relays: c.relays.map((r) => ({
      fingerprint: r.fingerprint, nickname: r.nickname, address: r.address, orPort: r.orPort, dirPort: r.dirPort,
      storagePort: r.storagePort, onionKey: r.onionKey.toString('hex'), flags: ALL_FLAGS.filter((f) => r.flags.has(f)),
      weight: r.weight, roles: r.roles, exitPolicy: r.exitPolicy, family: r.family, moderators: r.moderators,
      unmoderated: r.unmoderated, version: r.version,
    })),
  };
}

/** SPEC.md §10.6: a storage node's moderators (first 16 hex of each), or "unmoderated". */
function moderation(r: VerifiedConsensus['relays'][number]): string {
  if (!r.roles.includes('storage')) return '-';
  return r.unmoderated ? 'unmoderated' : r.moderators.map((m) => m.slice(0, 16)).join(',');
}

function printText(c: VerifiedConsensus, source: string, total: number, io: Output): void {
  io.out(`consensus valid-after ${isoTime(c.validAfter)}  fresh-until ${isoTime(c.freshUntil)}  valid-until ${isoTime(c.validUntil)}`);
  io.out(`signed by ${c.signers.length} of ${total} authorities; ${c.relays.length} relays; from ${source}`);
  const rows = c.relays.map((r) => [r.nickname, r.fingerprint.slice(0, 16), `${r.address}:${r.orPort}`, ALL_FLAGS.filter((f) => r.flags.has(f)).join(','), String(r.weight), r.roles.join(','), moderation(r)]);
  const head = ['nickname', 'fingerprint', 'address', 'flags', 'weight', 'roles', 'moderators'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((x, i) => x.padEnd(w[i])).join('  ').trimEnd();
  io.out(line(head));
  for (const r of rows) io.out(line(r));
}

/** The yargs command, registered in src/bin/bitcloud.ts beside the other client commands. */
export const consensusCommandModule: CommandModule<object, { config?: string; json: boolean; from?: string[]; 'data-dir'?: string }> = {
  command: 'consensus',
  describe: 'Fetch, verify and print the network consensus (keeps the last valid one on disk).',
  builder: (y) => y
    .option('config', CONFIG_OPTION)
    .option('json', { type: 'boolean', default: false, describe: 'Print one JSON document on one line' })
    .option('from', { type: 'string', array: true, describe: 'Fetch from this HOST:PORT or URL (a relay mirror or an authority) instead' })
    .option('data-dir', DATA_DIR_OPTION) as never,
  handler: async (a) => {
    try {
      process.exitCode = await consensusCommand({ config: a.config, json: a.json, from: a.from, dataDir: a['data-dir'] });
    } catch (e) {
      process.stderr.write(`bitcloud consensus: ${(e as Error).message}\n`);
      process.exitCode = exitStatusOf(errorCode(e));
    }
  },
};

/** For tests and tools: the cache file's path for a data directory. */
export function consensusCachePath(dataDir: string): string {
  return path.join(dataDir, CONSENSUS_CACHE_FILE);
}
