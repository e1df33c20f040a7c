import { makeCli } from '../ops/cli';

await makeCli('bitcloud-relay', 'Bitcloud relay daemon.').parseAsync();
