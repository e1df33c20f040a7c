// SPEC.md §5.6.4: the tagging attack by a hostile relay, with the real relay code behind real TLS
// links on 127.0.0.1 (relays in this process so that the test can play the hostile hop). The guard
// flips one bit of a cell it forwards; the exit (the hostile guard's accomplice) looks at what it
// decrypts. With tor1 it sees the honest plaintext with exactly that bit flipped (the tag shows
// through); with CGO it sees noise, and the circuit is destroyed. Backward, a middle relay flips a
// bit of a cell toward the client: with CGO the client recognizes nothing and closes the circuit,
// and no altered byte reaches the application.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from '../../src/crypto/primitives';
import type { BitcloudError } from '../../src/errors';
import { RUN_FROM_PREV, type RelayCircuit } from '../../src/circuit/relay-circuit';
import { manualCircuit, startRelay, startEchoServer, type TestRelay } from '../helpers/inprocess-relays';

let guard: TestRelay, middle: TestRelay, exit: TestRelay;
let echo: Awaited<ReturnType<typeof startEchoServer>>; let echoPort = 0;

beforeAll(async () => {
  guard = await startRelay('cgo-guard', ['Guard']);
  middle = await startRelay('cgo-middle', []);
  exit = await startRelay('cgo-exit', ['Exit'], { exitPolicy: ['accept 127.0.0.1:*', 'reject *:*'] });
  echo = await startEchoServer();
  echoPort = echo.port;
});

afterAll(async () => {
  for (const r of [guard, middle, exit]) await r?.stop();
  await echo?.close();
});

/** The one open circuit of relay `r` (each test builds one circuit at a time). */
const circuitAt = (r: TestRelay): RelayCircuit => [...r.rc.switch.circuits].find((x) => !x.isClosed)!;

const DATA_BYTE = 0x5a;
const DATA_LEN = 400;

describe('tagging by a hostile guard, seen by a colluding exit', () => {
  for (const alg of ['tor1', 'cgo'] as const) {
    it(`${alg}: ${alg === 'tor1' ? 'the exit sees the flipped bit in otherwise honest plaintext' : 'the exit sees noise, and the circuit is destroyed'}`, async () => {
      const c = await manualCircuit([guard, middle, exit], alg);
      const { stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
      stream.on('error', () => {});
      const closed = new Promise<BitcloudError>((r) => c.once('close', r));
      // The guard flips bit 0 of data byte 200 in the next cell it forwards.
      const g = circuitAt(guard);
      const gFromPrev = g.fromPrev.bind(g);
      let tagged = false;
      const dataOffset = alg === 'cgo' ? 21 : 11; // SPEC.md §5.6.3, §2.5
      g.fromPrev = (command, payload) => {
        if (!tagged) {
          tagged = true;
          // The guard's own layer comes off first (inside fromPrev); tag what it passes on by
          // flipping a bit of the input, which is the same position in the output for tor1 (CTR).
          payload[dataOffset + 200] ^= 0x01;
        }
        gFromPrev(command, payload);
      };
      // tor1 cells from one link read reach a relay as a run (SPEC §5.4, one cipher call per
      // layer): the hostile guard tags the first cell of the first run the same way.
      const gFlushRun = g.flushRun.bind(g);
      g.flushRun = (run) => {
        if (!tagged && run.tag === RUN_FROM_PREV && run.n > 0) { tagged = true; run.views[0][dataOffset + 200] ^= 0x01; }
        gFlushRun(run);
      };
      // The exit records what it decrypts, recognized or not.
      const x = circuitAt(exit);
      const xFromPrev = x.fromPrev.bind(x);
      const seen: Buffer[] = [];
      x.fromPrev = (command, payload) => {
        try { xFromPrev(command, payload); } finally { seen.push(Buffer.from(payload)); }
      };
      const xFlushRun = x.flushRun.bind(x);
      x.flushRun = (run) => {
        // Without a per-cell fallback the run is decrypted in place, cell by cell in order.
        const n = run.n;
        try { xFlushRun(run); } finally { if (run.tag === RUN_FROM_PREV) for (let k = 0; k < n; k++) seen.push(Buffer.from(run.views[k])); }
      };
      stream.write(Buffer.alloc(DATA_LEN, DATA_BYTE));
      const why = await closed;
      expect(why.code).toBe('CIRCUIT_DESTROYED');
      expect(tagged).toBe(true);
      expect(seen.length).toBeGreaterThanOrEqual(1);
      const atExit = seen[0];
      let differ = 0;
      for (let i = dataOffset; i < dataOffset + DATA_LEN; i++) if (atExit[i] !== DATA_BYTE) differ++;
      if (alg === 'tor1') {
        // The tag shows through three layers: one byte differs, by the flipped bit.
        expect(differ).toBe(1);
        expect(atExit[dataOffset + 200]).toBe(DATA_BYTE ^ 0x01);
      } else {
        // Noise: almost every byte differs (a random byte equals 0x5a with probability 1/256).
        expect(differ).toBeGreaterThan(DATA_LEN * 0.9);
      }
      expect(await exit.registry.getSingleMetricAsString('bitcloud_circuit_errors_total')).toContain('code="RELAY_UNRECOGNIZED"');
    });
  }
});

describe('tagging toward the client (CGO)', () => {
  it('a middle relay flips one bit of a cell toward the client: the client recognizes nothing, closes the circuit, and delivers nothing altered', async () => {
    const c = await manualCircuit([guard, middle, exit], 'cgo');
    const { stream } = await c.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
    const received: Buffer[] = [];
    stream.on('data', (d: Buffer) => received.push(Buffer.from(d)));
    stream.on('error', () => {});
    // An honest round trip first.
    const hello = randomBytes(30_000);
    stream.write(hello);
    for (let i = 0; i < 400 && Buffer.concat(received).length < hello.length; i++) await new Promise((r) => setTimeout(r, 10));
    expect(Buffer.concat(received).equals(hello)).toBe(true);

    const m = circuitAt(middle);
    const mFromNext = m.fromNext.bind(m);
    let tagged = false;
    m.fromNext = (command, payload) => {
      if (!tagged) { tagged = true; payload[100] ^= 0x10; }
      mFromNext(command, payload);
    };
    const mFlushRun = m.flushRun.bind(m);
    m.flushRun = (run) => {
      if (!tagged && run.tag !== RUN_FROM_PREV && run.n > 0) { tagged = true; run.views[0][100] ^= 0x10; }
      mFlushRun(run);
    };
    const closed = new Promise<BitcloudError>((r) => c.once('close', r));
    stream.write(Buffer.alloc(DATA_LEN, DATA_BYTE));
    const why = await closed;
    expect(tagged).toBe(true);
    expect(why.code).toBe('RELAY_UNRECOGNIZED');
    // What the application got: the honest bytes, and of the tagged reply nothing at all.
    expect(Buffer.concat(received).equals(hello)).toBe(true);
  });
});
