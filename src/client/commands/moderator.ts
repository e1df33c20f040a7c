// `bitcloud moderator keygen | add-deny ID... | remove-deny ID... | deny-content CAP... |
// content-ids CAP | approve CAP... --tag T | unapprove ID... | list [--moderator FP] [--tag T] |
// allow CLASS | disallow CLASS | limit BYTES | show | publish`
// (docs/moderators.md, SPEC.md §10). With --json every command prints exactly one JSON document
// on one line on stdout (`"ok": false` with the error code on failure). The moderator key and the
// working policy live in a data directory (default ~/.bitcloud/moderator, key file 0600);
// `publish` signs the next version (a delta when it can) and hands the chain to the authorities
// and to the DHT, where subscribed storage nodes find it.
import os from 'node:os';
import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { err, errorCode } from '../../errors';
import { exitStatusOf } from '../exit-status';
import { createLogger, isoTime } from '../../ops/log';
import { parseCapability } from '../../storage/capability';
import { allContentIds, contentIds, fileContentIds, type ContentIds } from '../../moderation/content-ids';
import { formatCapability } from '../../storage/capability';
import { checkCoding, parseCoding } from '../../storage/coding';
import { PUBLIC_CONTENT_KEY, checkContentClass, checkTag, checkTags, parseModerator } from '../../moderation/policy';
import { fetchModeratorPolicies } from '../../moderation/placement';
import { authoritySource } from '../../moderation/sources';
import type { PolicyState } from '../../moderation/chain';
import { openCircuitNames, openNetwork, openStorageSession, type Network } from '../storage-client-setup';
import { clientConfigPath, loadDirClientConfig } from '../../dir/client-config';
import { stateBundle } from '../../moderation/chain';
import { parseDenyTarget } from '../../moderation/denylist';
import { publishPolicyVia } from '../../moderation/dht';
import type { Ed25519KeyPair } from '../../crypto/primitives';
import { uploadPolicy } from '../../moderation/sources';
import { ModeratorWorkspace } from '../../moderation/workspace';

export const DEFAULT_MODERATOR_DIR = path.join(os.homedir(), '.bitcloud', 'moderator');

export interface Output { out(s: string): void; err(s: string): void }
const stdio: Output = { out: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

export interface PublishOptions {
  authority?: string[];
  config?: string;
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

/**
 * SPEC.md §10.7.2 over circuits (§9.14.1): the policy's parts and head go as DhtPuts to storage
 * nodes reached over circuits; this process opens no DHT socket. Needs a client config (its
 * consensus names the storage nodes). A consensus with no public storage node has no DHT: the
 * step is skipped with a warning (§9.14.2).
 */
async function publishThroughCircuits(o: PublishOptions, key: Ed25519KeyPair, bundle: Buffer, seq: number): Promise<{ target: string; ok: boolean; detail: string } | { warning: string }> {
  let cfgFile: string;
  try {
    cfgFile = clientConfigPath(o.config);
    loadDirClientConfig(cfgFile);
  } catch (e) {
    return { warning: `not publishing to the DHT: no client config (${(e as Error).message}); use --config` };
  }
  const log = createLogger('bitcloud', { level: 'warn' });
  let network: Network | null = null;
  let session: Awaited<ReturnType<typeof openCircuitNames>> | null = null;
  try {
    network = await openNetwork({ config: cfgFile, log });
    session = await openCircuitNames(network, log);
    const names = session.names;
    // SPEC.md §9.14.2: with no public storage node there is no DHT; name mirrors keep signed
    // names only, and subscribers (hidden nodes included) read policies from the authorities
    // through mirrors (§10.7.1).
    if (names.via === 'mirrors') return { warning: 'not publishing to the DHT: the consensus lists no storage node with a public address (subscribers read the policy from the authorities)' };
    const n = await publishPolicyVia({ immutable: (v) => names.put({ immutable: v }), signed: (item) => names.put({ item }) }, key, bundle, seq);
    return { target: 'dht', ok: true, detail: `head stored on ${n} nodes (through a storage node over a circuit)` };
  } catch (e) {
    return { target: 'dht', ok: false, detail: `${errorCode(e)}: ${(e as Error).message}` };
  } finally {
    await session?.close();
    network?.close();
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
  if (!o.noDht) {
    const r = await publishThroughCircuits(o, ws.key, bundle, state.seq);
    if ('warning' in r) io.err(`bitcloud moderator: ${r.warning}`);
    else results.push(r);
  }
  const kind = head.previous ? 'delta' : 'snapshot';
  if (o.json) {
    io.out(JSON.stringify({ ok: results.some((r) => r.ok), moderator: ws.fingerprint, seq: state.seq, kind, denylist: state.deny.size, bundleBytes: bundle.length, results }));
  } else {
    io.out(`signed policy version ${state.seq} (${kind}: denylist +${head.denyAdd.length} -${head.denyRemove.length}, allowlist +${head.allowAdd.length} -${head.allowRemove.length}, approvals +${head.approveAdd.length} -${head.approveRemove.length}; ${state.deny.size} denied; classes ${state.classes.map((c) => c.name).join(', ') || 'none'})`);
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
    process.exitCode = exitStatusOf(code);
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

/** SPEC.md §10.3.2: the approvals of a state, optionally only those carrying `tag`, as readers see them. */
export function listApprovals(s: PolicyState, tag?: string): Array<{ capability: string; manifestId: string; contentClass: string; tags: string[] }> {
  return [...s.approvals.values()]
    .filter((a) => !tag || a.tags.includes(tag))
    .map((a) => ({ capability: formatCapability({ manifestId: a.manifestId, fileKey: PUBLIC_CONTENT_KEY }), manifestId: a.manifestId.toString('hex'), contentClass: a.contentClass, tags: a.tags }))
    .sort((x, y) => (x.manifestId < y.manifestId ? -1 : 1));
}

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
    .command('approve [caps..]', 'Approve public files and tag them: listed for readers, and stored by nodes in allow-only mode (SPEC.md §10.3.2)', (c) => netOptions(c.positional('caps', { type: 'string', array: true })
      .option('tag', { type: 'string', array: true, default: [], describe: 'A tag ([a-z0-9-], e.g. music, education); repeat for several' })
      .option('file', { type: 'string', describe: 'Approve a local file before it is uploaded: its ids as `put FILE --class C` will make them' })
      .option('class', { type: 'string', describe: 'With --file: the public class it will be uploaded as' })
      .option('k', { type: 'number', describe: 'With --file: the -k it will be uploaded with' })
      .option('n', { type: 'number', describe: 'With --file: the -n it will be uploaded with' })
      .option('profile', { type: 'string', describe: 'With --file: the coding profile (default, durable)' })
      .option('chunk-size', { type: 'number', describe: 'With --file: the chunk size (default 1 MiB)' })
      .option('name', { type: 'string', describe: 'With --file: the stored name (default: the file name)' })),
    (a) => run(a as Args, async () => {
      const x = a as unknown as NetArgs & { caps?: string[]; tag: string[]; file?: string; class?: string; k?: number; n?: number; profile?: string; 'chunk-size'?: number; name?: string };
      const tags = checkTags(x.tag.map(String), 'POLICY_BAD_TAG');
      let found: ContentIds[];
      if (x.file !== undefined) {
        if (x.caps?.length) throw err('CONFIG_INVALID', 'give capabilities or --file, not both');
        const cls = checkContentClass(x.class ?? '', 'CONFIG_INVALID');
        const coding = x.k !== undefined || x.n !== undefined ? checkCoding(Number(x.k), Number(x.n)) : parseCoding(x.profile ?? 'default');
        found = [await fileContentIds(x.file, { contentClass: cls, coding, chunkSize: x['chunk-size'], name: x.name })];
      } else {
        if (!x.caps?.length) throw err('CONFIG_INVALID', 'name the files to approve: capabilities, or --file FILE --class CLASS');
        found = await readContentIds(x, x.caps);
      }
      return edit(x, (ws) => {
        let added = 0;
        for (const f of found) if (ws.approve(f.manifestId, f.contentClass, allContentIds(f), tags)) added++;
        const caps = found.map((f) => formatCapability({ manifestId: f.manifestId, fileKey: PUBLIC_CONTENT_KEY }));
        return { approved: caps, added, tags: [...new Set(tags)].sort(), text: `${found.length} file(s) approved${tags.length ? ` with tags ${tags.join(', ')}` : ''} (${added} new); ${ws.working.approved?.length ?? 0} approved\n${caps.join('\n')}` };
      });
    }))
    .command('unapprove <ids..>', 'Withdraw approvals (capability, base32 or hex manifest id)', (c) => c.positional('ids', { type: 'string', array: true }),
      (a) => run(a as Args, () => edit(a as Args, (ws) => { const removed = ws.unapprove(((a as { ids: string[] }).ids).map(parseDenyTarget)); return { removed, text: `${removed} approvals withdrawn; ${ws.working.approved?.length ?? 0} approved` }; })))
    .command('list', 'List a moderator\'s approved files (optionally with one tag): its published policy, or with --moderator FP the one the authorities serve', (c) => c
      .option('moderator', { type: 'string', describe: 'Fingerprint of the moderator to list (default: the one in --data-dir, as last published)' })
      .option('tag', { type: 'string', describe: 'Only files carrying this tag' })
      .option('config', { type: 'string', describe: 'Client config file (authorities), default $BITCLOUD_CONFIG or ~/.bitcloud/config.json' }),
    (a) => run(a as Args, async () => {
      const x = a as unknown as Args & { moderator?: string; tag?: string; config?: string };
      const tag = x.tag === undefined ? undefined : checkTag(String(x.tag), 'POLICY_BAD_TAG');
      let state: PolicyState | null;
      let fp: string;
      if (x.moderator !== undefined) {
        fp = String(x.moderator);
        parseModerator(fp);
        const cfg = loadDirClientConfig(clientConfigPath(x.config));
        state = (await fetchModeratorPolicies([fp], cfg.authorities.map((au) => authoritySource(au.url)))).get(fp) ?? null;
        if (!state) throw err('POLICY_NOT_FOUND', `no authority serves a valid policy of moderator ${fp}`, { moderator: fp });
      } else {
        const ws = await ModeratorWorkspace.open(dirOf(x));
        fp = ws.fingerprint;
        state = ws.published;
        if (!state) throw err('POLICY_NOT_FOUND', 'nothing published yet from this data directory', { moderator: fp });
      }
      const files = listApprovals(state, tag);
      say(x, { moderator: fp, seq: state.seq, tag: tag ?? null, files },
        files.length ? files.map((f) => `${f.capability}  ${f.contentClass}  ${f.tags.join(',') || '-'}`).join('\n') : `no approved files${tag ? ` tagged ${tag}` : ''} (moderator ${fp.slice(0, 16)}…, version ${state.seq})`);
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
        const view = { moderator: ws.fingerprint, working: ws.working, published: p ? { seq: p.seq, validUntil: isoTime(p.validUntil), chain: p.chain.length, denied: p.deny.size, approved: p.approvals.size } : null };
        if ((a as Args).json) say(a as Args, view, '');
        else {
          stdio.out(`moderator ${ws.fingerprint}${ws.working.name ? ` (${ws.working.name})` : ''}`);
          stdio.out(`classes: ${ws.working.classes.map((c) => (c.maxShareBytes ? `${c.name} (shares ≤ ${c.maxShareBytes} B)` : c.name)).join(', ') || 'none'}; share limit ${ws.working.maxShareBytes || 'none'}; ${ws.working.deny.length} denied; ${ws.working.approved?.length ?? 0} approved`);
          stdio.out(p ? `published: version ${p.seq}, ${p.deny.size} denied, valid until ${view.published!.validUntil}` : 'published: nothing yet');
        }
      }))
    .command('publish', 'Sign the next version and publish it to the authorities and the DHT', (c) => c
      .option('authority', { type: 'string', array: true, describe: 'Authority base URL or HOST:PORT (default: the client config\'s authorities)' })
      .option('config', { type: 'string', describe: 'Client config file (authorities; the consensus whose storage nodes take the DHT items over circuits)' })
      .option('skip-dht', { type: 'boolean', default: false, describe: 'Do not publish to the DHT' })
      .option('snapshot', { type: 'boolean', default: false, describe: 'Publish a full snapshot instead of a delta' })
      .option('lifetime-days', { type: 'number', default: 30, describe: 'Validity of this version, days (above 0, at most 366)' }),
    (a) => run(a as Args, () => {
      const x = a as unknown as Args & { authority?: string[]; config?: string; 'skip-dht': boolean; snapshot: boolean; 'lifetime-days': number };
      return publishCommand(dirOf(x), { authority: x.authority, config: x.config, noDht: x['skip-dht'], snapshot: x.snapshot, lifetimeDays: x['lifetime-days'], json: x.json });
    }))
    .demandCommand(1, 'Name a moderator command (see --help).') as never,
  handler: () => {},
};
