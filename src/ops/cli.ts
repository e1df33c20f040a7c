// CLI plumbing (yargs) shared by every binary.
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { VERSION } from './version';
import { BitcloudError } from '../errors';

export function makeCli(scriptName: string, description: string): Argv {
  return yargs(hideBin(process.argv))
    .scriptName(scriptName)
    .usage(`$0 <command> [options]\n\n${description}`)
    .version(VERSION)
    .alias('v', 'version')
    .help()
    .alias('h', 'help')
    .strict()
    .demandCommand(1, 'Name a command (see --help).')
    .recommendCommands()
    .wrap(Math.min(100, process.stdout.columns || 100))
    .fail((msg, e) => {
      if (e instanceof BitcloudError) {
        console.error(`${scriptName}: ${e.message}`);
        process.exit(1);
      }
      if (e) {
        console.error(`${scriptName}: ${e.message}`);
        process.exit(1);
      }
      console.error(`${msg}\n\nRun '${scriptName} --help' for usage.`);
      process.exit(2);
    });
}
