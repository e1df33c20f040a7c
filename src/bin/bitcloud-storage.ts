// bitcloud-storage: the storage node (storage/). A bin entry is the one place under src/ allowed
// to reach a daemon folder: it only parses flags and calls the daemon's main.
import { makeCli } from '../ops/cli';
import { runStorage } from '../../storage/main';
import { loadStorageConfig } from '../../storage/config';
import { withNodeStatusCommand } from '../client/commands/node-status';

await withNodeStatusCommand(makeCli('bitcloud-storage', 'Bitcloud storage node: keeps encrypted shares, serves them on circuits (BEGIN_STORAGE) and direct sessions, joins the private DHT.')
  .command('run', 'Run the storage node (keys are created in the data directory on first start).', (y) => y
    .option('config', { type: 'string', demandOption: true, describe: 'JSON config file: every setting and its default in SPEC.md §9.13.3' })
    .option('data-dir', { type: 'string', describe: 'Overrides dataDir from the config' })
    .option('or-port', { type: 'number', describe: 'Overrides orPort (circuits end here)' })
    .option('storage-port', { type: 'number', describe: 'Overrides storagePort (TCP direct sessions, UDP DHT)' })
    .option('metrics-port', { type: 'number', describe: 'Overrides metricsPort (/metrics on metricsHost, default 127.0.0.1; 0 = off)' })
    .option('nickname', { type: 'string', describe: 'Overrides nickname' })
    .option('log-level', { type: 'string', describe: 'pino level: debug, info, warn, error' }),
  async (a) => {
    await runStorage({
      config: a.config, dataDir: a['data-dir'], orPort: a['or-port'], storagePort: a['storage-port'],
      metricsPort: a['metrics-port'], nickname: a.nickname, logLevel: a['log-level'],
    });
  }), 'storage node', "Show this node's countersigned cells (links with relays), what the authorities proved, its cloudcoin earnings, and the moderator policies it enforces (each with expired: true|false).",
  'The storage node\'s JSON config file', (file, dataDir) => {
    const cfg = loadStorageConfig(file, { dataDir });
    return { ...cfg, subscribedModerators: cfg.moderators };
  })
  .parseAsync();
