// yargs options shared by the client commands (config file, data folder, log level, JSON output,
// direct transport), so each command module lists only the options of its own.
import type { Argv } from 'yargs';

/** --config, as every client command describes it. */
export const CONFIG_OPTION = { type: 'string', describe: 'Client config file (default $BITCLOUD_CONFIG or ~/.bitcloud/config.json)' } as const;
/** --data-dir with the plain description. */
export const DATA_DIR_OPTION = { type: 'string', describe: 'Overrides dataDir from the config' } as const;
/** --json printing one JSON object. */
export const JSON_OPTION = { type: 'boolean', default: false, describe: 'Print the result as one JSON object' } as const;
/** --direct for the storage commands. */
export const DIRECT_OPTION = { type: 'boolean', default: false, describe: 'Connect to storage nodes directly (reveals your address to them)' } as const;

/** Adds --config, --data-dir and --log-level (stderr, default warn), in that order. */
export function fileOptions<T>(y: T, dataDirDescribe: string = DATA_DIR_OPTION.describe): T {
  return (y as unknown as Argv)
    .option('config', CONFIG_OPTION)
    .option('data-dir', { type: 'string', describe: dataDirDescribe })
    .option('log-level', { type: 'string', describe: 'pino level on stderr (default warn)' }) as unknown as T;
}
