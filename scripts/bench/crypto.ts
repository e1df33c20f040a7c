// `npm run bench -- --only crypto`: circuit-handshake and relay-crypto throughput (SPEC.md §4, §5),
// each beside a raw-primitive baseline measured in the same run on the same bytes; CGO (SPEC.md §5.6)
// per layer and through 1 and 3 hops beside tor1 doing the same work.
import type { BenchModule, BenchRow } from './types';
import { ntorClientCreate, ntorClientFinish, ntorServerRespond, NTOR_PROTOID_BITCLOUD } from '../../src/crypto/ntor';
import { RELAY_CRYPTO_KEY_LEN, clientSealOutbound, randomHopPairs } from '../../src/crypto/relay-crypto';
import { aes128Ctr, ed25519Generate, randomBytes, x25519, x25519Generate } from '../../src/crypto/primitives';
import { CELL_LEN, CELL_HEADER_LEN, CELL_PAYLOAD_LEN } from '../../src/wire/cell';
import { CGO_RELAY_DATA_MAX, RelayCommand, encodeRelayPayloadInto, RELAY_DATA_MAX } from '../../src/wire/relay-msg';
import type { RelayCryptoAlgorithm } from '../../src/crypto/hop-crypto';

/** Run `op` (which does `perCall` operations) for about `ms` after a short warm-up; ops per second. */
function rate(op: () => void, ms: number, perCall = 1): number {
  const warm = performance.now() + ms / 10;
  while (performance.now() < warm) op();
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 16; i++) op();
    n += 16;
    now = performance.now();
  }
  return (n * perCall * 1000) / (now - start);
}

/**
 * CPU microseconds per call of `op`, from process.cpuUsage over `calls` calls after a warm-up.
 * On a shared, loaded machine wall-clock rates swing by 2-3x between runs; CPU time per cell
 * stays comparable (it still includes GC threads).
 */
function cpuMicros(op: () => void, calls: number): number {
  for (let i = 0; i < calls / 10; i++) op();
  const c0 = process.cpuUsage();
  for (let i = 0; i < calls; i++) op();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / calls;
}

/** X25519 scalar multiplications in one ntor handshake: X, Y, and two DH on each side. */
const X25519_PER_HANDSHAKE = 6;

function ntorRows(ms: number): BenchRow[] {
  const identity = ed25519Generate().publicKey;
  const onion = x25519Generate();
  const handshake = () => {
    const { state, onionskin } = ntorClientCreate({ id: identity, onionKey: onion.publicKey, protoid: NTOR_PROTOID_BITCLOUD });
    const s = ntorServerRespond({ onionskin, id: identity, onionKeys: [onion], protoid: NTOR_PROTOID_BITCLOUD, keyLength: RELAY_CRYPTO_KEY_LEN });
    ntorClientFinish(state, s.reply, RELAY_CRYPTO_KEY_LEN);
  };
  const peer = x25519Generate();
  const rawX25519 = rate(() => { x25519(onion.secretKey, peer.publicKey); }, ms);
  const hs = rate(handshake, ms);
  return [
    {
      group: 'crypto', name: 'ntor handshakes (client create + server respond + client finish)', value: hs, unit: 'handshakes/s',
      baseline: { name: `raw X25519 ops/s ÷ ${X25519_PER_HANDSHAKE}`, value: rawX25519 / X25519_PER_HANDSHAKE, unit: 'handshakes/s' },
      note: `Bitcloud PROTOID, 32-byte IDs, 72 bytes of keys; raw X25519 = ${rawX25519.toFixed(0)} ops/s (sodium-native)`,
    },
  ];
}


/**
 * One cell through `n` hops: the client originates it for the last hop and adds n layers, then
 * each relay peels one layer (the last recognizes it). Baseline: the same number of plain
 * AES-128-CTR passes over 509 bytes (node:crypto, allocating as Cipher.update does).
 */
function tor1Rows(ms: number): BenchRow[] {
  const rows: BenchRow[] = [];
  const cell = Buffer.alloc(CELL_LEN);
  const payload = cell.subarray(CELL_HEADER_LEN);
  const data = randomBytes(RELAY_DATA_MAX);
  const template = Buffer.alloc(CELL_PAYLOAD_LEN);
  encodeRelayPayloadInto(template, RelayCommand.DATA, 1, data);
  for (const n of [1, 3]) {
    // Separate circuits: sealing alone advances the client's state past what relays have seen.
    const alone = randomHopPairs(n).client;
    const { client, relays } = randomHopPairs(n);
    const seal = () => {
      template.copy(payload);
      clientSealOutbound(alone, n - 1, payload);
    };
    const through = () => {
      template.copy(payload);
      clientSealOutbound(client, n - 1, payload);
      for (let i = 0; i < n; i++) {
        if (relays[i].decryptOutbound(payload)) return;
      }
      throw new Error('bench: cell not recognized');
    };
    const ciphers = Array.from({ length: 2 * n }, () => aes128Ctr(randomBytes(16)));
    const raw = (passes: number) => () => {
      for (let i = 0; i < passes; i++) ciphers[i].update(payload);
    };
    const rawSeal = rate(raw(n), ms);
    const sealRate = rate(seal, ms);
    const rawThrough = rate(raw(2 * n), ms);
    const throughRate = rate(through, ms);
    const mb = (r: number) => ((r * CELL_PAYLOAD_LEN) / 1e6).toFixed(1);
    rows.push({
      group: 'crypto', name: `tor1 client seal, ${n} layer${n > 1 ? 's' : ''} (originate + encrypt)`, value: sealRate, unit: 'cells/s',
      baseline: { name: `raw AES-128-CTR, ${n} pass${n > 1 ? 'es' : ''}/cell`, value: rawSeal, unit: 'cells/s' },
      note: `${mb(sealRate)} MB/s of relay payload`,
    });
    rows.push({
      group: 'crypto', name: `tor1 cells through ${n} hop${n > 1 ? 's' : ''} (client seal + every relay peels)`, value: throughRate, unit: 'cells/s',
      baseline: { name: `raw AES-128-CTR, ${2 * n} passes/cell`, value: rawThrough, unit: 'cells/s' },
      note: `${mb(throughRate)} MB/s of relay payload; tor1 adds two running SHA-1 digests per cell`,
    });
    const calls = Math.max(20_000, Math.round(ms * 100));
    const rawCpu = cpuMicros(raw(2 * n), calls);
    const throughCpu = cpuMicros(through, calls);
    rows.push({
      group: 'crypto', name: `tor1 CPU per cell through ${n} hop${n > 1 ? 's' : ''} (client seal + every relay peels)`, value: throughCpu, unit: 'CPU-us/cell',
      baseline: { name: `raw AES-128-CTR, ${2 * n} passes/cell`, value: rawCpu, unit: 'CPU-us/cell' },
      note: `process CPU time over ${calls} cells (robust to a loaded machine, unlike the rates)`,
    });
  }
  return rows;
}

/** A full DATA payload for `alg` (498 bytes of data with tor1, 488 with CGO). */
function fullPayload(alg: RelayCryptoAlgorithm): Buffer {
  const template = Buffer.alloc(CELL_PAYLOAD_LEN);
  encodeRelayPayloadInto(template, RelayCommand.DATA, 1, randomBytes(alg === 'cgo' ? CGO_RELAY_DATA_MAX : RELAY_DATA_MAX));
  return template;
}

/**
 * CGO beside tor1 (SPEC.md §5.6): the same operations on the same circuits shape, each row with
 * tor1 as its baseline. Per layer: a relay adding its layer to a cell it passes on (ENC_UIV / one
 * AES-CTR pass), a relay originating a cell (CGO: plus its key update), the client sealing for hop 1,
 * each in cells/s and in CPU µs per cell; end to end: a cell through 1 and 3 hops (client seal,
 * every relay peels), also in CPU time.
 */
function cgoRows(ms: number): BenchRow[] {
  const rows: BenchRow[] = [];
  const cell = Buffer.alloc(CELL_LEN);
  const payload = cell.subarray(CELL_HEADER_LEN);
  const tpl = { cgo: fullPayload('cgo'), tor1: fullPayload('tor1') };
  const perLayer = (alg: RelayCryptoAlgorithm) => {
    const { relays } = randomHopPairs(1, alg);
    const sealer = randomHopPairs(1, alg).client;
    return {
      passOn: () => { tpl[alg].copy(payload); relays[0].encryptInbound(payload); },
      originate: () => { tpl[alg].copy(payload); relays[0].originate(payload); relays[0].encryptInbound(payload); },
      seal: () => { tpl[alg].copy(payload); clientSealOutbound(sealer, 0, payload); },
    };
  };
  const c = perLayer('cgo');
  const t = perLayer('tor1');
  const mb = (r: number) => ((r * CELL_PAYLOAD_LEN) / 1e6).toFixed(1);
  for (const [what, cgoOp, tor1Op] of [
    ['relay adds its layer to a cell it passes on', c.passOn, t.passOn],
    ['relay originates a cell (CGO: and updates its keys)', c.originate, t.originate],
    ['client seals a cell for hop 1 (CGO: and updates its keys)', c.seal, t.seal],
  ] as const) {
    const tor1Rate = rate(tor1Op, ms);
    const cgoRate = rate(cgoOp, ms);
    rows.push({
      group: 'crypto', name: `CGO one layer: ${what}`, value: cgoRate, unit: 'cells/s',
      baseline: { name: 'tor1, the same operation', value: tor1Rate, unit: 'cells/s' },
      note: `${mb(cgoRate)} MB/s of relay payload; CGO/tor1 = ${(cgoRate / tor1Rate).toFixed(2)}`,
    });
    // The same operation in CPU time (stable on a loaded machine, where wall-clock rates swing).
    const calls = Math.max(5_000, Math.round(ms * 20));
    const tor1Cpu = cpuMicros(tor1Op, calls);
    const cgoCpu = cpuMicros(cgoOp, calls);
    rows.push({
      group: 'crypto', name: `CGO CPU per cell, one layer: ${what}`, value: cgoCpu, unit: 'CPU-us/cell',
      baseline: { name: 'tor1, the same operation', value: tor1Cpu, unit: 'CPU-us/cell' },
      note: `process CPU time over ${calls} cells each`,
    });
  }
  for (const n of [1, 3]) {
    const through = (alg: RelayCryptoAlgorithm) => {
      const { client, relays } = randomHopPairs(n, alg);
      return () => {
        tpl[alg].copy(payload);
        clientSealOutbound(client, n - 1, payload);
        for (let i = 0; i < n; i++) if (relays[i].decryptOutbound(payload)) return;
        throw new Error('bench: cell not recognized');
      };
    };
    const cgoThrough = through('cgo');
    const tor1Through = through('tor1');
    const tor1Rate = rate(tor1Through, ms);
    const cgoRate = rate(cgoThrough, ms);
    rows.push({
      group: 'crypto', name: `CGO cells through ${n} hop${n > 1 ? 's' : ''} (client seal + every relay peels)`, value: cgoRate, unit: 'cells/s',
      baseline: { name: 'tor1, the same circuit', value: tor1Rate, unit: 'cells/s' },
      note: `${mb(cgoRate)} MB/s of relay payload (${((cgoRate * CGO_RELAY_DATA_MAX) / 1e6).toFixed(1)} MB/s of stream data; tor1 ${((tor1Rate * RELAY_DATA_MAX) / 1e6).toFixed(1)})`,
    });
    const calls = Math.max(5_000, Math.round(ms * 20));
    const tor1Cpu = cpuMicros(tor1Through, calls);
    const cgoCpu = cpuMicros(cgoThrough, calls);
    rows.push({
      group: 'crypto', name: `CGO CPU per cell through ${n} hop${n > 1 ? 's' : ''}`, value: cgoCpu, unit: 'CPU-us/cell',
      baseline: { name: 'tor1, the same circuit', value: tor1Cpu, unit: 'CPU-us/cell' },
      note: `process CPU time over ${calls} cells each`,
    });
  }
  return rows;
}

const bench: BenchModule = {
  name: 'crypto',
  async run({ quick }) {
    const ms = quick ? 300 : 2000;
    return [...ntorRows(ms), ...tor1Rows(ms), ...cgoRows(ms)];
  },
};
export default bench;
