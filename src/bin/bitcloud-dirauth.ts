// bitcloud-dirauth: the directory authority (directory/). A bin entry is the one place under
// src/ allowed to reach a daemon folder: it only parses flags and calls the daemon's main.
import { makeCli } from '../ops/cli';
import { keygenMain, runAuthorityMain } from '../../directory/main';

await makeCli('bitcloud-dirauth', 'Bitcloud directory authority: accepts relay descriptors, tests relays, votes, and signs the consensus.')
  .command('keygen', 'Create the identity key (if missing) and a new certified signing key in the data directory.', (y) => y
    .option('data-dir', { type: 'string', demandOption: true, describe: 'Data directory for the keys (created with mode 0700)' })
    .option('cert-days', { type: 'number', default: 90, describe: 'Days the signing-key certificate is valid' })
    .option('identity-file', { type: 'string', describe: 'Identity key file kept elsewhere (offline); default DATA_DIR/identity.key' })
    .option('json', { type: 'boolean', default: false, describe: 'Print the result as JSON' }),
  async (a) => { await keygenMain({ dataDir: a['data-dir'], certDays: a['cert-days'], identityFile: a['identity-file'], json: a.json }); })
  .command('run', 'Run the authority.', (y) => y
    .option('config', { type: 'string', demandOption: true, describe: 'JSON config file (see docs/operators-directory.md)' })
    .option('data-dir', { type: 'string', describe: 'Overrides dataDir from the config' })
    .option('period', { type: 'number', describe: 'Overrides the voting period (seconds)' })
    .option('metrics-port', { type: 'number', describe: 'Overrides metricsPort (Prometheus /metrics on metricsHost, default 127.0.0.1; 0: none)' })
    .option('log-level', { type: 'string', describe: 'pino level: debug, info, warn, error' }),
  async (a) => { await runAuthorityMain({ config: a.config, dataDir: a['data-dir'], period: a.period, metricsPort: a['metrics-port'], logLevel: a['log-level'] }); })
  .parseAsync();
