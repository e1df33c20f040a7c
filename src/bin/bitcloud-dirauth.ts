import { makeCli } from '../ops/cli';

await makeCli('bitcloud-dirauth', 'Bitcloud directory authority.').parseAsync();
