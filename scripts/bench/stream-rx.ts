// `node bin/run-ts.js scripts/bench/stream-rx.ts`: the CPU a circuit stream's receive side costs per GiB
// (SPEC.md §7b.6): DATA cells arrive 32 per read (one TLS record) and go to a reader in flowing
// mode, gathered per read (stream.ts). No sockets: an A/B figure for this process only.
import { CircuitStream, type StreamHost } from '../../src/circuit/stream';
import { randomBytes } from '../../src/crypto/primitives';
const host: StreamHost = { canPackage: () => true, maxData: 498, sendData() {}, sendStreamSendme() {}, sendEnd() {}, release() {}, readerProgress() {}, unreadChanged() {}, violation(c, m) { throw new Error(c + m); } };
const s = new CircuitStream(1, host);
s.markOpen();
let got = 0;
s.on('data', (b: Buffer) => { got += b.length; });
const cell = randomBytes(509);
const total = 256 * 2 ** 20;
const t0 = process.cpuUsage();
let fed = 0;
await new Promise<void>((resolve) => {
  const tick = () => {
    for (let k = 0; k < 32 && fed < total; k++) {
      s.onDataFrom(cell, 11, 498); fed += 498;
    }
    if (fed >= total) setImmediate(() => setImmediate(resolve)); else setImmediate(tick);
  };
  tick();
});
const u = process.cpuUsage(t0);
console.log(`got ${(got / 2 ** 20).toFixed(0)} MiB, ${((u.user + u.system) / 1e6 / (got / 2 ** 30)).toFixed(2)} CPU-s/GiB`);
