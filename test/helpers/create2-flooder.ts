// A CREATE2 flooder in its own process (a hostile client on one address, as another machine would
// be): `node bin/run-ts.js test/helpers/create2-flooder.ts JSON` with JSON
// { host, port, identity (hex), onionKey (hex), localAddress?, links?, valid? }.
// It opens `links` links from `localAddress` and keeps writing CREATE2 cells on all of them, with
// valid ntor onionskins (valid: true, each one a fresh X25519 key) or random ones (cheaper for the
// attacker; a relay that does public-key work before its DoS check pays the most for those).
// It writes as fast as each link takes cells (waiting for 'drain'), reads every answer, and prints
// one JSON line per second: { sent, created, refused, other, closed }. It stops on SIGTERM.
import { connectLink, type Channel } from '../../src/link';
import { CellCommand, type Cell } from '../../src/wire/cell';
import { DestroyReason, decodeDestroy, encodeCreate2 } from '../../src/wire/messages';
import { ntorClientCreate } from '../../src/crypto/ntor';
import { randomBytes } from '../../src/crypto/primitives';

interface Opts { host: string; port: number; identity: string; onionKey: string; localAddress?: string; links?: number; valid?: boolean }

const o = JSON.parse(process.argv[2] ?? '{}') as Opts;
const identity = Buffer.from(o.identity, 'hex');
const onionKey = Buffer.from(o.onionKey, 'hex');
const counts = { sent: 0, created: 0, refused: 0, other: 0, closed: 0 };
let stopping = false;

process.on('SIGTERM', () => { stopping = true; report(); process.exit(0); });
function report(): void { process.stdout.write(JSON.stringify(counts) + '\n'); }

function onionskin(): Buffer {
  if (o.valid === false) return randomBytes(84);
  return ntorClientCreate({ id: identity, onionKey }).onionskin;
}

async function flood(ch: Channel): Promise<void> {
  ch.on('cell', (c: Cell) => {
    if (c.command === CellCommand.CREATED2) {
      counts.created++;
      // Keep nothing open: tear the accepted circuit down again, as a flooder that only wants CPU would.
      try { ch.send(c.circId, CellCommand.DESTROY, Buffer.from([DestroyReason.NONE])); } catch { /* closing */ }
    } else if (c.command === CellCommand.DESTROY) {
      if (decodeDestroy(c.payload) === DestroyReason.RESOURCELIMIT) counts.refused++; else counts.other++;
    }
  });
  const closed = new Promise<void>((r) => ch.once('close', () => { counts.closed++; r(); }));
  while (!stopping && !ch.closed) {
    let ok = true;
    // A batch per macrotask, so answers are read between batches.
    for (let i = 0; i < 64 && ok && !ch.closed; i++) {
      ok = ch.send(ch.allocateCircId(), CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: onionskin() }));
      counts.sent++;
    }
    if (!ok) await Promise.race([new Promise<void>((r) => ch.once('drain', () => r())), closed]);
    else await new Promise((r) => setImmediate(r));
  }
}

async function main(): Promise<void> {
  const n = o.links ?? 8;
  const links = await Promise.all(Array.from({ length: n }, () => connectLink({
    host: o.host, port: o.port, expectedIdentity: identity, localAddress: o.localAddress, timeoutMs: 30_000,
  })));
  setInterval(report, 1000).unref();
  report();
  await Promise.all(links.map((ch) => flood(ch)));
  report();
}

main().catch((e) => { process.stderr.write(`flooder: ${(e as Error).message}\n`); process.exit(1); });
