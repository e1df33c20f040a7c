// `bitcloud publish NAME CAP [--seq N] [--json]` (SPEC.md §9.14): sign CAP under NAME with this
// client's publisher key and store it in the private DHT as a BEP 44 mutable item, through a storage node over a circuit (§9.14.1). Wiring only.
import type { CommandModule } from 'yargs';
import { fileOptions, JSON_OPTION } from './options';
import { parseCapability } from '../../storage/capability';
import { formatName, parseName } from '../../storage/name';
import { err } from '../../errors';
import { loadOrCreatePublisherKey, runNamesCommand } from '../storage-client-setup';

type Args = { name: string; cap: string; seq?: number; json: boolean; config?: string; 'data-dir'?: string; 'log-level'?: string };

export async function publishCommand(a: Args): Promise<number> {
  return runNamesCommand('publish', a, async (network, names) => {
    const cap = parseCapability(a.cap.trim());
    const keys = await loadOrCreatePublisherKey(network.dirCfg.dataDir);
    const ref = parseName(a.name, keys.publicKey);
    if (!ref.publisher.equals(keys.publicKey)) throw err('NAME_MALFORMED', 'you can publish only under your own publisher key (give the label alone)');
    const lookups = await names();
    const r = await lookups.publish(keys, ref.label, cap, { seq: a.seq });
    const name = formatName(ref);
    if (a.json) process.stdout.write(JSON.stringify({ ok: true, name, seq: r.seq, nodes: r.nodes, via: lookups.via }) + '\n');
    else process.stdout.write(`${name}\n`);
    if (!a.json) process.stderr.write(`bitcloud publish: seq ${r.seq}, stored on ${r.nodes} ${lookups.via === 'dht' ? 'DHT node(s)' : 'name mirror(s) (SPEC.md §9.14.2)'}\n`);
    return 0;
  });
}

export const publishCommandModule: CommandModule<object, Args> = {
  command: 'publish <name> <cap>',
  describe: 'Point a name (your publisher key / label) at a capability, signed, in the DHT; newer wins.',
  builder: (y) => fileOptions(y
    .positional('name', { type: 'string', describe: 'A label (a-z 0-9 . _ -, up to 56) under your publisher key' })
    .positional('cap', { type: 'string', describe: 'The capability the name points to' })
    .option('seq', { type: 'number', describe: 'Sequence number (default: above the current one); a stale one is refused' })
    .option('json', JSON_OPTION), 'Overrides dataDir from the config (publisher.key lives there)') as never,
  handler: async (a) => { process.exitCode = await publishCommand(a); },
};
