// `bitcloud renew CAP [--lease-seconds N] [--json] [--direct]` (SPEC.md §9.9.2, RENEW §9.6.3): extend
// the leases of every share of a file so the storage nodes keep it. Wiring only.
import type { CommandModule } from 'yargs';
import { fileOptions, JSON_OPTION, DIRECT_OPTION } from './options';
import { parseCapability } from '../../storage/capability';
import { renewFile } from '../storage-client-renew';
import { checkLeaseSeconds } from '../lease-expiry';
import { runStorageCommand } from '../storage-client-setup';
import { isoTime } from '../../ops/log';

type Args = { cap: string; 'lease-seconds': number; json: boolean; direct: boolean; config?: string; 'data-dir'?: string; 'log-level'?: string };

export async function renewCommand(a: Args): Promise<number> {
  // SPEC.md §9.9.2: the lease is checked, as keep run's is, before any node is asked.
  const prepare = () => ({ cap: parseCapability(a.cap.trim()), leaseSeconds: checkLeaseSeconds(a['lease-seconds']) });
  return runStorageCommand('renew', a, prepare, async (session, { cap, leaseSeconds }) => {
    const r = await renewFile(session.client, cap, leaseSeconds);
    if (a.json) {
      process.stdout.write(JSON.stringify({ ok: true, ...r, expires: r.expiresAt ? isoTime(r.expiresAt * 1000) : null, transport: a.direct ? 'direct' : 'circuits' }) + '\n');
    } else {
      process.stdout.write(`renewed ${r.renewed} of ${r.shares} shares (${r.nodesAsked} nodes asked); leases now run until at least ${isoTime(r.expiresAt * 1000)}\n`);
      if (r.missing > 0) process.stderr.write(`bitcloud renew: ${r.missing} share(s) are held by no reachable node${r.unreadableChunks ? `; ${r.unreadableChunks} chunk(s) can no longer be read` : ' (every chunk can still be read)'}\n`);
    }
    return r.unreadableChunks > 0 ? 1 : 0;
  });
}

export const renewCommandModule: CommandModule<object, Args> = {
  command: 'renew <cap>',
  describe: 'Extend the leases of every share of a file (root, manifest, data) so storage nodes keep it.',
  builder: (y) => fileOptions(y
    .positional('cap', { type: 'string', describe: 'The read capability printed by put' })
    .option('lease-seconds', { type: 'number', default: 0, describe: 'Lease to ask for (0: each node\'s default, 7 days unless configured)' })
    .option('json', JSON_OPTION)
    .option('direct', DIRECT_OPTION)) as never,
  handler: async (a) => { process.exitCode = await renewCommand(a); },
};
