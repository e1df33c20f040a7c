// `bitcloud resolve NAME [--json]` (SPEC.md §9.14): find the newest signed item for NAME in the
// private DHT, asked through storage nodes over circuits (§9.14.1), and print the capability. Wiring only.
import fs from 'node:fs';
import path from 'node:path';
import type { CommandModule } from 'yargs';
import { fileOptions, JSON_OPTION } from './options';
import { err } from '../../errors';
import { formatCapability } from '../../storage/capability';
import { formatName, parseName } from '../../storage/name';
import { loadOrCreatePublisherKey, runNamesCommand } from '../storage-client-setup';

type Args = { name: string; json: boolean; config?: string; 'data-dir'?: string; 'log-level'?: string };

export async function resolveCommand(a: Args): Promise<number> {
  return runNamesCommand('resolve', a, async (network, names) => {
    // A bare label means one of our own names: only then is the publisher key read.
    const own = !a.name.includes('/') && fs.existsSync(path.join(network.dirCfg.dataDir, 'publisher.key'))
      ? (await loadOrCreatePublisherKey(network.dirCfg.dataDir)).publicKey : undefined;
    const ref = parseName(a.name, own);
    const r = await (await names()).resolve(ref.publisher, ref.label);
    if (!r) throw err('NAME_NOT_FOUND', `nothing is published under ${formatName(ref)}`);
    const capability = formatCapability(r.cap);
    if (a.json) process.stdout.write(JSON.stringify({ ok: true, name: formatName(ref), seq: r.seq, capability }) + '\n');
    else process.stdout.write(capability + '\n');
    return 0;
  });
}

export const resolveCommandModule: CommandModule<object, Args> = {
  command: 'resolve <name>',
  describe: 'Print the capability a name points to (the newest signed version in the DHT).',
  builder: (y) => fileOptions(y
    .positional('name', { type: 'string', describe: '<publisher key>/<label>, or a label of your own' })
    .option('json', JSON_OPTION)) as never,
  handler: async (a) => { process.exitCode = await resolveCommand(a); },
};
