// bitcloud-relay: the relay daemon (relay/). A bin entry is the one place under src/ allowed to
// reach a daemon folder: it only parses flags and calls the daemon's main.
import { makeCli } from '../ops/cli';
import { runRelay } from '../../relay/main';
import { loadRelayConfig } from '../../relay/config';
import { nodeStatusCommand } from '../client/commands/node-status';

await makeCli('bitcloud-relay', 'Bitcloud relay daemon: publishes its descriptor, answers links, mirrors the consensus.')
  .command('run', 'Run the relay (keys are created in the data directory on first start).', (y) => y
    .option('config', { type: 'string', demandOption: true, describe: 'JSON config file (see docs/operators-directory.md)' })
    .option('data-dir', { type: 'string', describe: 'Overrides dataDir from the config' })
    .option('or-port', { type: 'number', describe: 'Overrides orPort' })
    .option('dir-port', { type: 'number', describe: 'Overrides dirPort (0: no directory mirror)' })
    .option('metrics-port', { type: 'number', describe: 'Overrides metricsPort (Prometheus /metrics on metricsHost, default 127.0.0.1; 0: none)' })
    .option('nickname', { type: 'string', describe: 'Overrides nickname' })
    .option('log-level', { type: 'string', describe: 'pino level: debug, info, warn, error' }),
  async (a) => {
    await runRelay({ config: a.config, dataDir: a['data-dir'], orPort: a['or-port'], dirPort: a['dir-port'], metricsPort: a['metrics-port'], nickname: a.nickname, logLevel: a['log-level'] });
  })
  .command('status', "Show this relay's countersigned cells, what the authorities proved, and its cloudcoin earnings.", (y) => y
    .option('config', { type: 'string', demandOption: true, describe: 'The relay\'s JSON config file' })
    .option('data-dir', { type: 'string', describe: 'Overrides dataDir from the config' })
    .option('json', { type: 'boolean', default: false, describe: 'Machine-readable output' })
    .option('recent', { type: 'number', default: 10, describe: 'Epochs and blocks to list' }),
  async (a) => {
    const cfg = loadRelayConfig(a.config, { dataDir: a['data-dir'] });
    process.exitCode = await nodeStatusCommand({ kind: 'relay', dataDir: cfg.dataDir, authorities: cfg.authorities, json: a.json, recent: a.recent });
  })
  .parseAsync();
