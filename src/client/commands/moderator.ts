// `bitcloud moderator keygen | add-deny ID... | remove-deny ID... | deny-content CAP... |
// content-ids CAP | allow CLASS | disallow CLASS | limit BYTES | show | publish`
// (docs/moderators.md, SPEC.md §10). With --json every command prints exactly one JSON document
// on one line on stdout (`"ok": false` with the error code on failure). The moderator key and the
// working policy live in a data directory (default ~/.bitcloud/moderator, key file 0600);
// `publish` signs the next version (a delta when it can) and hands the chain to the authorities
// and to the DHT, where subscribed storage nodes find it.
import os from 'node:os';
import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { err, errorCode } from '../../errors';
import { createLogger } from '../../ops/log';
import { parseCapability } from '../../storage/capability';
import { allContentIds, contentIds, type ContentIds } from '../../moderation/content-ids';
import { openStorageSession } from '../storage-client-setup';
import { clientConfigPath, loadDirClientConfig } from '../../dir/client-config';
import { fetchVerifiedConsensus } from '../../dir/consensus-fetch';
import { hostPort } from '../../dir/config-fields';
import { dhtBootstrapList, type DhtAddress } from '../../storage/dht';
import { stateBundle } from '../../moderation/chain';
import { parseDenyTarget } from '../../moderation/denylist';
import { openToolDht, publishPolicyToDht } from '../../moderation/dht';
import { uploadPolicy } from '../../moderation/sources';
import { ModeratorWorkspace } from '../../moderation/workspace';

export const DEFAULT_MODERATOR_DIR = path.join(os.homedir(), '.bitcloud', 'moderator');

export interface Output { out(s: string): void; err(s: string): void }
const stdio: Output = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

export interface PublishOptions {
  authority?: string[];
  config?: string;
  dht?: string[];
  noDht?: boolean;
  snapshot?: boolean;
  lifetimeDays?: number;
  json?: boolean;
}

/** The authorities to upload to: --authority URLs, else the client config's authorities. */
function authorityUrls(o: PublishOptions): { urls: string[]; warning?: string } {
  if (o.authority?.length) return { urls: o.authority.map((u) => (/^https?:\/\//.test(u) ? u : `http://${u}`)) };
  try {
    return { urls: loadDirClientConfig(clientConfigPath(o.config)).authorities.map((a) => a.url) };
  } catch (e) {
    return { urls: [], warning: `no authorities to publish to (${(e as Error).message}); use --authority or --config` };
  }
}

/** DHT bootstrap nodes: --dht, else the storage nodes of the verified consensus. */
async function dhtBootstrap(o: PublishOptions): Promise<{ nodes: DhtAddress[]; warning?: string }> {
  if (o.noDht) return { nodes: [] };
  if (o.dht?.length) return { nodes: o.dht.map((d, i) => hostPort(d, `--dht[${i}]`)) };
  try {
    const cfg = loadDirClientConfig(clientConfigPath(o.config));
    const r = await fetchVerifiedConsensus(cfg.authorities.map((a) => a.url), cfg.authorities, { now: Date.now, have: null, timeoutMs: 10_000 });
    if (!r.consensus) return { nodes: [], warning: 'no valid consensus: not publishing to the DHT' };
    return { nodes: dhtBootstrapList(r.consensus.relays) };
  } catch (e) {
    return { nodes: [], warning: `not publishing to the DHT: ${(e as Error).message}` };
  }
}

/** `publish`: returns the exit code (0 when at least one place took the version). */
export async function publishCommand(dir: string, o: PublishOptions, io: Output = stdio): Promise<number> {
  const ws = await ModeratorWorkspace.open(dir);
  const state = await ws.signNext({ snapshot: o.snapshot, lifetimeDays: o.lifetimeDays });
  const head = state.chain[state.chain.length - 1].content;
  const bundle = stateBundle(state);
  const results: Array<{ target: string; ok: boolean; detail: string }> = [];
  const { urls, warning } = authorityUrls(o);
  if (warning) io.err(`bitcloud moderator: ${warning}`);
  for (const url of urls) {
    try {
      const r = await uploadPolicy(url, ws.fingerprint, bundle);
      results.push({ target: url, ok: true, detail: `${r.result}, seq ${r.seq}` });
    } catch (e) {
      results.push({ target: url, ok: false, detail: (e as Error).message });
    }
  }
  const boot = await dhtBootstrap(o);
  if (boot.warning) io.err(`bitcloud moderator: ${boot.warning}`);
  if (boot.nodes.length > 0) {
    const dht = await openToolDht(boot.nodes);
    try {
      const n = await publishPolicyToDht(dht, ws.key, bundle, state.seq);
      results.push({ target: 'dht', ok: true, detail: `head stored on ${n} nodes` });
    } catch (e) {
      results.push({ target: 'dht', ok: false, detail: `${errorCode(e)}: ${(e as Error).message}` });
    } finally {
      await dht.close();
    }
  }
  const kind = head.previous ? 'delta' : 'snapshot';
  if (o.json) {
    io.out(JSON.stringify({ ok: results.some((r) => r.ok), moderator: ws.fingerprint, seq: state.seq, kind, denylist: state.deny.size, bundleBytes: bundle.length, results }));
  } else {
    io.out(`signed policy version ${state.seq} (${kind}: +${head.denyAdd.length} -${head.denyRemove.length} entries; ${state.deny.size} denied; classes ${state.classes.map((c) => c.name).join(', ') || 'none'})`);
    for (const r of results) io.out(`  ${r.ok ? 'published to' : 'FAILED    '} ${r.target}: ${r.detail}`);
    if (results.length === 0) io.out('  not published anywhere (saved locally; run publish again with --authority or --config)');
  }
  return results.some((r) => r.ok) ? 0 : 1;
}

type Args = { 'data-dir': string; json: boolean };

function dirOf(a: Args): string { return path.resolve(a['data-dir']); }

/** One result: one JSON line with --json (ok: true plus `fields`), else the text. */
function say(a: Args, fields: Record<string, unknown>, text: string): void {
  stdio.out(a.json ? JSON.stringify({ ok: true, ...fields }) : text);
}

async function run(a: Args, f: () => Promise<number | void>): Promise<void> {
  try {
    process.exitCode = (await f()) ?? 0;
  } catch (e) {
    const code = errorCode(e);
    const message = (e as Error).message.replace(/^[A-Z0-9_]+: /, '');
    if (a.json) stdio.out(JSON.stringify({ ok: false, error: { code, message } }));
    else stdio.err(`bitcloud moderator: ${code}: ${message}`);
    process.exitCode = code === 'CONFIG_INVALID' || code === 'POLICY_BAD_ID' || code === 'CAP_MALFORMED' ? 2 : 1;
  }
}

async function edit(a: Args, change: (ws: ModeratorWorkspace) => { text: string } & Record<string, unknown>): Promise<number> {
  const ws = await ModeratorWorkspace.open(dirOf(a));
  const { text, ...fields } = change(ws);
  await ws.saveWorking();
  say(a, { moderator: ws.fingerprint, ...fields, denied: ws.working.deny.length, published: false }, `${text} (not yet published; run \`bitcloud moderator publish\`)`);
  return 0;
}

type NetArgs = Args & { config?: string; direct: boolean; 'log-level'?: string };

/** The content ids of each capability, read from the network as `get` reads a manifest (SPEC.md §10.3). */
async function readContentIds(a: NetArgs, caps: string[]): Promise<ContentIds[]> {
  const parsed = caps.map((c) => parseCapability(c.trim()));
  const log = createLogger('bitcloud', { level: a['log-level'] ?? 'warn' });
  const session = await openStorageSession({ config: a.config, direct: a.direct, log });
  try {
    const out: ContentIds[] = [];
    for (const cap of parsed) out.push(await contentIds(session.client, cap));
    return out;
  } finally {
    for (const cap of parsed) cap.fileKey.fill(0);
    await session.close();
  }
}

const hex = (ids: Buffer[]) => ids.map((b) => b.toString('hex'));

/** Options of the commands that read content from the network. */
function netOptions<T>(c: Argv<T>): Argv<T> {
  return c
    .option('config', { type: 'string', describe: 'Client config file (authorities), default $BITCLOUD_CONFIG or ~/.bitcloud/config.json' })
    .option('direct', { type: 'boolean', default: false, describe: 'Read from storage nodes directly (reveals your address to them)' })
    .option('log-level', { type: 'string', describe: 'pino level on stderr (default warn)' }) as Argv<T>;
}

/** The yargs command, registered in src/bin/bitcloud.ts. */
export const moderatorCommandModule: CommandModule<object, Args> = {
  command: 'moderator <command>',
  describe: 'Act as a moderator: keep a signing key, edit a policy, publish signed versions.',
  builder: (y) => (y as Argv<object>)
    .option('data-dir', { type: 'string', default: DEFAULT_MODERATOR_DIR, describe: 'Moderator data directory (key, working policy, published chain)' })
    .option('json', { type: 'boolean', default: false, describe: 'Print JSON' })
    .command('keygen', 'Make a new moderator key (never replaces one) and a policy admitting encrypted-private', (c) => c.option('name', { type: 'string', default: '', describe: 'Human name shown in the policy' }),
      (a) => run(a as Args, async () => {
        const ws = await ModeratorWorkspace.create(dirOf(a as Args), String((a as { name?: string }).name ?? ''));
        say(a as Args, { moderator: ws.fingerprint }, `moderator key ${ws.fingerprint}\nnodes subscribe with "moderators": ["${ws.fingerprint}"]`);
      }))
    .command('add-deny <ids..>', 'Deny share or manifest ids (64 hex, base32 manifest id, or a bitcloud: capability: its manifest id only; see deny-content)', (c) => c.positional('ids', { type: 'string', array: true }),
      (a) => run(a as Args, () => edit(a as Args, (ws) => { const added = ws.addDeny(((a as { ids: string[] }).ids).map(parseDenyTarget)); return { added, text: `${added} entries added; ${ws.working.deny.length} denied` }; })))
    .command('remove-deny <ids..>', 'Withdraw denylist entries', (c) => c.positional('ids', { type: 'string', array: true }),
      (a) => run(a as Args, () => edit(a as Args, (ws) => { const removed = ws.removeDeny(((a as { ids: string[] }).ids).map(parseDenyTarget)); return { removed, text: `${removed} entries removed; ${ws.working.deny.length} denied` }; })))
    .command('deny-content <caps..>', 'Deny a file by content: its manifest id and the ids of all its shares, read from the network (SPEC.md §10.3)', (c) => netOptions(c.positional('caps', { type: 'string', array: true })),
      (a) => run(a as Args, async () => {
        const x = a as unknown as NetArgs & { caps: string[] };
        const found = await readContentIds(x, x.caps);
        const ids = found.flatMap(allContentIds);
        return edit(x, (ws) => {
          const added = ws.addDeny(ids);
          return { added, ids: ids.length, dataShares: found.reduce((t, f) => t + f.dataShares.length, 0), text: `${added} entries added (${ids.length} ids of ${found.length} file(s)); ${ws.working.deny.length} denied` };
        });
      }))
    .command('content-ids <cap>', 'Print the ids a content deny lists for a file: manifest id, manifest shares, data shares (64 hex each)', (c) => netOptions(c.positional('cap', { type: 'string' })),
      (a) => run(a as Args, async () => {
        const x = a as unknown as NetArgs & { cap: string };
        const [f] = await readContentIds(x, [x.cap]);
        const view = { manifestId: f.manifestId.toString('hex'), manifestShares: hex(f.manifestShares), dataShares: hex(f.dataShares), contentClass: f.contentClass, chunkSize: f.chunkSize, coding: f.coding };
        say(x, view, [`manifest ${view.manifestId}`, ...view.manifestShares.map((h) => `manifest-share ${h}`), ...view.dataShares.map((h) => `data-share ${h}`)].join('\n'));
      }))
    .command('allow <class>', 'Admit a content class (encrypted-private, public-video, public-any, ...)', (c) => c.positional('class', { type: 'string' }).option('max-share-bytes', { type: 'number', default: 0, describe: 'Share size limit for this class (0 = none)' }),
      (a) => run(a as Args, () => edit(a as Args, (ws) => { const x = a as { class: string; 'max-share-bytes': number }; ws.allow(x.class, x['max-share-bytes']); return { class: x.class, allowed: true, text: `class ${x.class} allowed` }; })))
    .command('disallow <class>', 'Stop admitting a content class', (c) => c.positional('class', { type: 'string' }),
      (a) => run(a as Args, () => edit(a as Args, (ws) => { const x = (a as { class: string }).class; const was = ws.disallow(x); return { class: x, allowed: false, changed: was, text: was ? `class ${x} no longer allowed` : `class ${x} was not allowed` }; })))
    .command('limit <bytes>', 'Share size limit for every class (0 = none)', (c) => c.positional('bytes', { type: 'number' }),
      (a) => run(a as Args, () => edit(a as Args, (ws) => {
        const n = Number((a as { bytes: number }).bytes);
        if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw err('CONFIG_INVALID', 'limit must be 0..4294967295 bytes');
        ws.working.maxShareBytes = n;
        return { maxShareBytes: n, text: `share size limit ${n || 'none'}` };
      })))
    .command('show', 'Print the working policy and the last published version', (c) => c,
      (a) => run(a as Args, async () => {
        const ws = await ModeratorWorkspace.open(dirOf(a as Args));
        const p = ws.published;
        const view = { moderator: ws.fingerprint, working: ws.working, published: p ? { seq: p.seq, validUntil: new Date(p.validUntil).toISOString(), chain: p.chain.length, denied: p.deny.size } : null };
        if ((a as Args).json) say(a as Args, view, '');
        else {
          stdio.out(`moderator ${ws.fingerprint}${ws.working.name ? ` (${ws.working.name})` : ''}`);
          stdio.out(`classes: ${ws.working.classes.map((c) => (c.maxShareBytes ? `${c.name} (shares ≤ ${c.maxShareBytes} B)` : c.name)).join(', ') || 'none'}; share limit ${ws.working.maxShareBytes || 'none'}; ${ws.working.deny.length} denied`);
          stdio.out(p ? `published: version ${p.seq}, ${p.deny.size} denied, valid until ${view.published!.validUntil}` : 'published: nothing yet');
        }
      }))
    .command('publish', 'Sign the next version and publish it to the authorities and the DHT', (c) => c
      .option('authority', { type: 'string', array: true, describe: 'Authority base URL or HOST:PORT (default: the client config\'s authorities)' })
      .option('config', { type: 'string', describe: 'Client config file (authorities; consensus for the DHT bootstrap)' })
      .option('dht', { type: 'string', array: true, describe: 'DHT bootstrap HOST:PORT (default: storage nodes of the consensus)' })
      .option('skip-dht', { type: 'boolean', default: false, describe: 'Do not publish to the DHT' })
      .option('snapshot', { type: 'boolean', default: false, describe: 'Publish a full snapshot instead of a delta' })
      .option('lifetime-days', { type: 'number', default: 30, describe: 'Validity of this version, days' }),
    (a) => run(a as Args, () => {
      const x = a as unknown as Args & { authority?: string[]; config?: string; dht?: string[]; 'skip-dht': boolean; snapshot: boolean; 'lifetime-days': number };
      return publishCommand(dirOf(x), { authority: x.authority, config: x.config, dht: x.dht, noDht: x['skip-dht'], snapshot: x.snapshot, lifetimeDays: x['lifetime-days'], json: x.json });
    }))
    .demandCommand(1, 'Name a moderator command (see --help).') as never,
  handler: () => {},
};
