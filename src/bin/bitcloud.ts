// bitcloud: the client. Each command lives in src/client/commands/<name>.ts as a yargs
// CommandModule; register it here with one `.command(...)` line.
import { makeCli } from '../ops/cli';
import { keepOldGenerationHeadroom } from '../ops/old-gen';
import { consensusCommandModule } from '../client/commands/consensus';
import { proxyCommandModule } from '../client/commands/proxy';

// SPEC.md §11.6: the proxy, put and get move many megabytes on a small live heap: give the old
// generation room to grow, or V8 runs a full collection every few megabytes moved.
keepOldGenerationHeadroom();

await makeCli('bitcloud', 'Bitcloud client: consensus, SOCKS5 proxy, put/get, rewards, wallet.')
  .command(consensusCommandModule)
  .command(proxyCommandModule)
  .command((await import('../client/commands/moderator')).moderatorCommandModule)
  .command((await import('../client/commands/put')).putCommandModule)
  .command((await import('../client/commands/get')).getCommandModule)
  .command((await import('../client/commands/renew')).renewCommandModule)
  .command((await import('../client/commands/keep')).keepCommandModule)
  .command((await import('../client/commands/publish')).publishCommandModule)
  .command((await import('../client/commands/resolve')).resolveCommandModule)
  .command((await import('../client/commands/rewards')).rewardsCommandModule)
  .command((await import('../client/commands/wallet')).walletCommandModule)
  .parseAsync();
