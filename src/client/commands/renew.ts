// `bitcloud renew CAP [--lease-seconds N] [--json] [--direct]` (SPEC.md §9.9.2, RENEW §9.6.3): audit
// every holder of a file's shares and extend the leases of those that pass, so the storage nodes
// keep it. Wiring only.
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
      // SPEC.md §9.9.2: every holder that answered its audit and failed, which got no renewal.
      if (r.failures.length) process.stdout.write(`${r.failures.length} holder(s) failed their audit and were not renewed:\n`);
      for (const f of r.failures) process.stdout.write(`  ${f.kind} share ${f.shareId} at ${f.node}: ${f.code}\n`);
      // Busy on every try, or no answer (timeout, lost connection): renewed unproven, not failed.
      if (r.busy.length) process.stderr.write(`bitcloud renew: ${r.busy.length} audit(s) stayed busy or got no answer; those holders were renewed without proof\n`);
      if (!r.audited) process.stderr.write('bitcloud renew: no reachable node has this file\'s verify record (or it was stored before verify records): its holders were renewed without an audit\n');
      if (r.missing > 0) process.stderr.write(`bitcloud renew: ${r.missing} share(s) are held by no reachable node that proved them${r.unreadableChunks ? `; ${r.unreadableChunks} chunk(s) can no longer be read` : ' (every chunk can still be read)'}\n`);
    }
    // SPEC.md §9.9.2: 1 when a chunk can no longer be read whole, or a holder answered its audit and
    // failed (a busy or silent one does not count).
    return r.unreadableChunks > 0 || r.failures.length > 0 ? 1 : 0;
  });
}

export const renewCommandModule: CommandModule<object, Args> = {
  command: 'renew <cap>',
  describe: 'Audit every holder of a file\'s shares (root, manifest, data) and extend the leases of those that pass, so storage nodes keep it.',
  builder: (y) => fileOptions(y
    .positional('cap', { type: 'string', describe: 'The read capability printed by put' })
    .option('lease-seconds', { type: 'number', default: 0, describe: 'Lease to ask for (0: each node\'s default, 7 days unless configured)' })
    .option('json', JSON_OPTION)
    .option('direct', DIRECT_OPTION)) as never,
  handler: async (a) => { process.exitCode = await renewCommand(a); },
};
