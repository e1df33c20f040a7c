import { makeCli } from '../ops/cli';

await makeCli('bitcloud', 'Bitcloud client: consensus, SOCKS5 proxy, put/get, rewards.').parseAsync();
