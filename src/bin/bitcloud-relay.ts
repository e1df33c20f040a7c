// bitcloud-relay: the relay daemon (relay/). A bin entry is the one place under src/ allowed to
// reach a daemon folder: it only parses flags and calls the daemon's main.
import { makeCli } from '../ops/cli';
import { runRelay } from '../../relay/main';
import { loadRelayConfig } from '../../relay/config';
import { withNodeStatusCommand } from '../client/commands/node-status';

await withNodeStatusCommand(makeCli('bitcloud-relay', 'Bitcloud relay daemon: publishes its descriptor, answers links, mirrors the consensus.')
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
  }), 'relay', "Show this relay's countersigned cells, what the authorities proved, and its cloudcoin earnings.",
  'The relay\'s JSON config file', (file, dataDir) => loadRelayConfig(file, { dataDir }))
  .parseAsync();
