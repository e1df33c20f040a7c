// `npm run localnet:stop-node -- NAME [NAME...]`: stop nodes of the running local network by
// name (store1, relay3, auth2... as listed in DIR/network.json), by PID with SIGTERM, the way an
// operator's node goes away. Used by the README's "lose two storage nodes" step.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const argv = await yargs(hideBin(process.argv))
  .scriptName('npm run localnet:stop-node --')
  .usage('$0 NAME [NAME...]\n\nStop nodes of the running local network (names as in network.json).')
  .option('dir', { type: 'string', default: path.join(REPO, '.localnet'), describe: 'The local network folder (npm start --dir)' })
  .demandCommand(1, 'name at least one node, e.g. store1')
  .strict()
  .help()
  .parseAsync();

interface NodeEntry { name: string; pid: number; running: boolean; role: string }
const file = path.join(path.resolve(argv.dir), 'network.json');
let nodes: NodeEntry[];
try {
  nodes = (JSON.parse(fs.readFileSync(file, 'utf8')) as { nodes: NodeEntry[] }).nodes;
} catch (e) {
  process.stderr.write(`bitcloud: no local network described in ${file} (${(e as Error).message}); start one with npm start\n`);
  process.exit(1);
}
let failed = 0;
for (const name of argv._.map(String)) {
  const n = nodes.find((x) => x.name === name);
  if (!n) { process.stderr.write(`bitcloud: no node named ${name} (known: ${nodes.map((x) => x.name).join(', ')})\n`); failed++; continue; }
  try {
    process.kill(n.pid, 'SIGTERM');
    process.stdout.write(`stopped ${n.name} (${n.role}, pid ${n.pid})\n`);
  } catch {
    process.stdout.write(`${n.name} (pid ${n.pid}) was not running\n`);
  }
}
process.exit(failed ? 1 : 0);
