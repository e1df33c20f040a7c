// `node bin/run-ts.js scripts/bench/link-read.ts [--cells N] [--runs R]`: the CPU of the end that
// opened a link (connectLink, which reads into one reused buffer: SPEC.md §1.6, src/link/reader.ts)
// while it receives N RELAY cells on 4 circuits from a relay's listener in another process, as
// the client reads a download from its guard. Prints MiB/s and that end's CPU-s per GiB
// (process.cpuUsage from its first cell to its last), per run. Compare two commits interleaved.
import { fork } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ed25519Generate } from '../../src/crypto/primitives';
import { connectLink, createLinkListener } from '../../src/link';
import { CELL_LEN, CELL_PAYLOAD_LEN, CellCommand } from '../../src/wire/cell';

const argv = process.argv.slice(2);
const opt = (name: string, def: number) => { const i = argv.indexOf(name); return i >= 0 ? Number(argv[i + 1]) : def; };
const cells = opt('--cells', 2_000_000);
const runs = opt('--runs', 3);
const here = path.dirname(fileURLToPath(import.meta.url));

if (argv[0] === 'responder') {
  const id = ed25519Generate();
  const l = await createLinkListener({ host: '127.0.0.1', port: 0, identity: id, onChannel: (ch) => {
    const p = Buffer.alloc(CELL_PAYLOAD_LEN, 3);
    let left = cells;
    const pump = (): void => {
      while (left > 0) { left--; if (!ch.send(0x8000_0001 + (left % 4), CellCommand.RELAY, p)) { ch.once('drain', pump); return; } }
    };
    setTimeout(pump, 100);
  } });
  process.send!({ port: l.port, id: id.publicKey.toString('hex') });
} else {
  for (let r = 0; r < runs; r++) {
    const child = fork(path.join(here, '../../bin/run-ts.js'), [fileURLToPath(import.meta.url), 'responder', '--cells', String(cells)]);
    try {
      const { port, id } = await new Promise<{ port: number; id: string }>((resolve) => child.once('message', (m) => resolve(m as { port: number; id: string })));
      const ch = await connectLink({ host: '127.0.0.1', port, expectedIdentity: Buffer.from(id, 'hex') });
      let n = 0;
      let c0 = process.cpuUsage();
      let t0 = performance.now();
      await new Promise<void>((resolve) => ch.on('cell', () => {
        if (++n === 1) { c0 = process.cpuUsage(); t0 = performance.now(); }
        if (n === cells) resolve();
      }));
      const c = process.cpuUsage(c0);
      const gib = (cells - 1) * CELL_LEN / 2 ** 30;
      console.log(`run ${r + 1}: ${(gib * 1024 / ((performance.now() - t0) / 1000)).toFixed(0)} MiB/s; reading end ${((c.user + c.system) / 1e6 / gib).toFixed(3)} CPU-s/GiB`);
      ch.destroy();
    } finally {
      child.kill();
    }
  }
}
