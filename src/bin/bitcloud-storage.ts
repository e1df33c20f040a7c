import { makeCli } from '../ops/cli';

await makeCli('bitcloud-storage', 'Bitcloud storage node.').parseAsync();
