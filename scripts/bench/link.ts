// `npm run bench -- --only link`: link throughput and handshake rate over loopback TLS 1.3,
// each beside a raw TLS socket with the same TLS settings measured in the same run.
// Both ends run in this one process, so every figure includes encryption AND decryption.
import tls from 'node:tls';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { BenchModule, BenchRow } from './types';
import { CELL_LEN, CELL_PAYLOAD_LEN, CellCommand, type Cell } from '../../src/wire/cell';
import { ed25519Generate } from '../../src/crypto/primitives';
import { generateTlsCredentials, LINK_TLS_MAX_VERSION, LINK_TLS_MIN_VERSION, type TlsCredentials } from '../../src/crypto/tls';
import { connectLink, createLinkListener, DEFAULT_BATCH_CELLS, type Channel } from '../../src/link';

const HOST = '127.0.0.1';
const WRITE_BYTES = DEFAULT_BATCH_CELLS * CELL_LEN; // the raw baseline writes what a link batch writes

/** Send n cells on ch with backpressure; resolves when all are queued. */
function pumpCells(ch: Channel, n: number, circId: number): Promise<void> {
  const p = Buffer.alloc(CELL_PAYLOAD_LEN, 0x61);
  let i = 0;
  return new Promise((resolve, reject) => {
    const onClose = (e?: Error): void => reject(e ?? new Error('link closed'));
    const go = (): void => {
      while (i < n) { i++; if (!ch.send(circId, CellCommand.RELAY, p)) { ch.once('drain', go); return; } }
      ch.off('close', onClose);
      resolve();
    };
    ch.once('close', onClose);
    go();
  });
}

function countCells(ch: Channel, n: number): Promise<void> {
  let got = 0;
  return new Promise((resolve) => {
    const on = (_c: Cell): void => { if (++got === n) { ch.off('cell', on); resolve(); } };
    ch.on('cell', on);
  });
}

/** Write `bytes` on a raw TLS socket in WRITE_BYTES writes, with backpressure. */
function pumpRaw(s: tls.TLSSocket, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(WRITE_BYTES, 0x61);
  let left = bytes;
  return new Promise((resolve) => {
    const go = (): void => {
      while (left > 0) {
        const b = left >= chunk.length ? chunk : chunk.subarray(0, left);
        left -= b.length;
        if (!s.write(b)) { s.once('drain', go); return; }
      }
      resolve();
    };
    go();
  });
}

function countRaw(s: tls.TLSSocket, bytes: number): Promise<void> {
  let got = 0;
  return new Promise((resolve) => {
    const on = (d: Buffer): void => { got += d.length; if (got >= bytes) { s.off('data', on); resolve(); } };
    s.on('data', on);
  });
}

interface RawPair { client: tls.TLSSocket; server: tls.TLSSocket; close(): Promise<void> }

async function rawPair(creds: TlsCredentials): Promise<RawPair> {
  const srv = tls.createServer({
    key: creds.keyPem, cert: creds.certPem, minVersion: LINK_TLS_MIN_VERSION, maxVersion: LINK_TLS_MAX_VERSION,
    requestCert: true, rejectUnauthorized: false,
  });
  srv.listen(0, HOST);
  await once(srv, 'listening');
  const accepted = once(srv, 'secureConnection') as Promise<[tls.TLSSocket]>;
  const client = tls.connect({ host: HOST, port: (srv.address() as AddressInfo).port, rejectUnauthorized: false, minVersion: LINK_TLS_MIN_VERSION, maxVersion: LINK_TLS_MAX_VERSION });
  await once(client, 'secureConnect');
  const [server] = await accepted;
  return {
    client, server,
    close: async () => { client.destroy(); server.destroy(); await new Promise((r) => srv.close(r)); },
  };
}

async function timed(f: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const bench: BenchModule = {
  name: 'link',
  async run({ quick }) {
    const N = quick ? 40_000 : 300_000;
    const HANDSHAKES = quick ? 40 : 300;
    const bytes = N * CELL_LEN;
    const creds = await generateTlsCredentials();
    const relay = ed25519Generate();
    const rows: BenchRow[] = [];

    let server!: Channel;
    const l = await createLinkListener({ host: HOST, port: 0, identity: relay, tls: creds, onChannel: (ch) => { server = ch; } });
    const client = await connectLink({ host: HOST, port: l.port, expectedIdentity: relay.publicKey });
    while (!server) await new Promise((r) => setImmediate(r));
    const raw = await rawPair(creds);

    // warm-up (JIT, TLS buffers) for both, not measured
    const w = Math.min(N, 20_000);
    await Promise.all([countCells(server, w), pumpCells(client, w, client.allocateCircId())]);
    await Promise.all([countRaw(raw.server, w * CELL_LEN), pumpRaw(raw.client, w * CELL_LEN)]);

    const up = client.allocateCircId();
    const down = server.allocateCircId();
    // Link and raw runs alternate, best of ROUNDS each: on a shared machine the fastest run is
    // the one least disturbed by other load, and alternating exposes both to the same load.
    const ROUNDS = quick ? 1 : 3;
    let linkOne = Infinity, rawOne = Infinity, linkBoth = Infinity, rawBoth = Infinity;
    for (let r = 0; r < ROUNDS; r++) {
      linkOne = Math.min(linkOne, await timed(async () => { await Promise.all([countCells(server, N), pumpCells(client, N, up)]); }));
      rawOne = Math.min(rawOne, await timed(async () => { await Promise.all([countRaw(raw.server, bytes), pumpRaw(raw.client, bytes)]); }));
      linkBoth = Math.min(linkBoth, await timed(async () => {
        await Promise.all([countCells(server, N), countCells(client, N), pumpCells(client, N, up), pumpCells(server, N, down)]);
      }));
      rawBoth = Math.min(rawBoth, await timed(async () => {
        await Promise.all([countRaw(raw.server, bytes), countRaw(raw.client, bytes), pumpRaw(raw.client, bytes), pumpRaw(raw.server, bytes)]);
      }));
    }
    const base = (secs: number, unit: 'cells/s' | 'MB/s', total = 1) => ({
      name: `raw TLS 1.3 socket, same bytes in ${WRITE_BYTES}-byte writes`,
      value: unit === 'cells/s' ? (N * total) / secs : (bytes * total) / secs / 1e6,
      unit,
    });
    rows.push(
      { group: 'link', name: 'cells one way over loopback TLS', value: N / linkOne, unit: 'cells/s', baseline: base(rawOne, 'cells/s'), note: `${N} cells, best of ${ROUNDS}; raw baseline counted in 514-byte units` },
      { group: 'link', name: 'throughput one way over loopback TLS', value: bytes / linkOne / 1e6, unit: 'MB/s', baseline: base(rawOne, 'MB/s') },
      { group: 'link', name: 'cells both ways at once (sum)', value: (2 * N) / linkBoth, unit: 'cells/s', baseline: base(rawBoth, 'cells/s', 2), note: `${N} cells each way` },
      { group: 'link', name: 'throughput both ways at once (sum)', value: (2 * bytes) / linkBoth / 1e6, unit: 'MB/s', baseline: base(rawBoth, 'MB/s', 2) },
    );
    client.close();
    await raw.close();

    // Handshakes, one after another: link = TCP + TLS 1.3 + AUTHENTICATE + VERSIONS.
    const serial = async (f: () => Promise<void>) => timed(async () => { for (let i = 0; i < HANDSHAKES; i++) await f(); });
    const rawSrv = tls.createServer({ key: creds.keyPem, cert: creds.certPem, minVersion: LINK_TLS_MIN_VERSION, maxVersion: LINK_TLS_MAX_VERSION, requestCert: true, rejectUnauthorized: false }, (s) => s.destroy());
    rawSrv.listen(0, HOST);
    await once(rawSrv, 'listening');
    const rawPort = (rawSrv.address() as AddressInfo).port;
    const rawHs = async () => {
      const s = tls.connect({ host: HOST, port: rawPort, rejectUnauthorized: false, minVersion: LINK_TLS_MIN_VERSION, maxVersion: LINK_TLS_MAX_VERSION });
      s.on('error', () => {});
      await once(s, 'secureConnect');
      s.destroy();
    };
    const initiator = ed25519Generate();
    const linkHs = (identity?: typeof initiator) => async () => {
      const ch = await connectLink({ host: HOST, port: l.port, expectedIdentity: relay.publicKey, identity, tls: identity ? creds : undefined });
      ch.destroy();
    };
    await serial(rawHs); // warm-up
    let tRaw = Infinity, tAnon = Infinity, tRelay = Infinity;
    for (let r = 0; r < ROUNDS; r++) {
      tRaw = Math.min(tRaw, await serial(rawHs));
      tAnon = Math.min(tAnon, await serial(linkHs()));
      tRelay = Math.min(tRelay, await serial(linkHs(initiator)));
    }
    const hsBase = { name: 'raw TLS 1.3 handshakes (same settings, no link handshake)', value: HANDSHAKES / tRaw, unit: 'handshakes/s' };
    rows.push(
      { group: 'link', name: 'link handshakes, anonymous client (TLS+AUTHENTICATE+VERSIONS)', value: HANDSHAKES / tAnon, unit: 'handshakes/s', baseline: hsBase, note: `${HANDSHAKES} sequential, best of ${ROUNDS}, both ends in one process` },
      { group: 'link', name: 'link handshakes, relay initiator (both ends authenticate)', value: HANDSHAKES / tRelay, unit: 'handshakes/s', baseline: hsBase },
    );
    await new Promise((r) => rawSrv.close(r));
    await l.close();
    return rows;
  },
};

export default bench;
