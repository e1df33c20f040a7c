// One process of the floor bench's bare 3-hop chain (floor.ts): `floor-node.ts ROLE`, ROLE one of
// source, exit, middle, guard, proxy, sink. No Bitcloud cell path: node:net, node:tls and node:crypto
// doing per cell the work tor1 relay crypto cannot avoid (SPEC.md §5.1–§5.5), plus the ntor halves
// of a build (src/crypto/ntor, the protocol's own crypto). Configured and queried over IPC; exits
// when the parent goes away.
//
// Cells are 514 bytes: circ id (4), command (1), body (509). Only DATA cells (downstream) carry
// relay crypto; the few upstream cells (BEGIN, stream bytes, SENDME, PING) and CONNECTED / PONG
// pass in clear: they are well under 1% of the cells of a download and microseconds of a round trip.
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { generateTlsCredentials, LINK_TLS_MAX_VERSION, LINK_TLS_MIN_VERSION } from '../../src/crypto/tls';
import { ntorClientCreate, ntorClientFinish, ntorServerRespond, NTOR_PROTOID_BITCLOUD, type NtorClientState } from '../../src/crypto/ntor';
// src/crypto/primitives' thin wrappers: node:crypto's Hash and Cipher themselves (SPEC.md §11.4).
import { aes128Ctr, createHash, ed25519Generate, x25519Generate, type StreamCipher } from '../../src/crypto/primitives';
import { RELAY_CRYPTO_KEY_LEN } from '../../src/crypto/relay-crypto';
import { plainConnect, TurnWriter } from './floor-io';

const CELL = 514, BODY = 509, HDR = 5, RHDR = 11, DATA_MAX = BODY - RHDR; // 498
const WINDOW = 1000, SENDME_EVERY = 100; // SPEC.md §7: circuit window and SENDME increment
const PING_CIRC = 0x7fff_0000;
const enum Cmd { BEGIN = 2, DATA = 3, CONNECTED = 4, SENDME = 5, PING = 6, PONG = 7, UP_BYTES = 9 }
const HOP: Record<string, number> = { guard: 1, middle: 2, exit: 3 };

/** The key of hop `hop` (1 = guard) on circuit `circ`: fixed, so both ends agree without a handshake. */
type Cipher = StreamCipher;
type Hash = ReturnType<typeof createHash>;
function layer(hop: number, circ: number): Cipher {
  return aes128Ctr(createHash('sha256').update(`floor key ${hop} ${circ}`).digest().subarray(0, 16));
}
/**
 * The first 4 bytes of a latin1 digest against a cell's digest field, in constant time (no early
 * exit). A digest read as latin1 costs about half what a Buffer digest does (node:crypto gives each
 * Buffer digest its own ArrayBuffer; src/crypto's RunningSha1 reads latin1 for the same reason), and
 * crypto.timingSafeEqual would need that Buffer.
 */
const sameWord = (d: string, w: number): boolean =>
  (((d.charCodeAt(0) << 24) | (d.charCodeAt(1) << 16) | (d.charCodeAt(2) << 8) | d.charCodeAt(3)) ^ w) === 0;
const digestFor = (circ: number): Hash => createHash('sha1').update(`floor digest ${circ}`);

function cell(circ: number, cmd: number, body?: Buffer): Buffer {
  const c = Buffer.alloc(CELL);
  c.writeUInt32BE(circ, 0);
  c[4] = cmd;
  body?.copy(c, HDR);
  return c;
}

/** Cuts a byte stream into whole cells; `on(buf, off, n)` gets runs of n cells and must be done with them on return. */
function cellReader(on: (buf: Buffer, off: number, n: number) => void): (chunk: Buffer) => void {
  const part = Buffer.alloc(CELL);
  let have = 0;
  return (chunk) => {
    let off = 0;
    if (have > 0) {
      off = chunk.copy(part, have, 0, CELL - have);
      have += off;
      if (have < CELL) return;
      on(part, 0, 1);
      have = 0;
    }
    const n = Math.floor((chunk.length - off) / CELL);
    if (n > 0) on(chunk, off, n);
    off += n * CELL;
    have = chunk.copy(part, 0, off);
  };
}

/** Copies the bodies of cells [i, i+k) of a run into `scratch`, contiguous, for one cipher update. */
function gather(buf: Buffer, off: number, i: number, k: number, scratch: Buffer): Buffer {
  for (let j = 0; j < k; j++) buf.copy(scratch, j * BODY, off + (i + j) * CELL + HDR, off + (i + j + 1) * CELL);
  return scratch.subarray(0, k * BODY);
}

let scratchBuf = Buffer.alloc(64 * BODY);
const scratch = (k: number): Buffer => (scratchBuf.length >= k * BODY ? scratchBuf : (scratchBuf = Buffer.alloc(k * BODY)));

/** For each run of consecutive cells of one circuit with command `cmd`: f(circ, i, k); other cells: g(i). */
function runs(buf: Buffer, off: number, n: number, cmd: number, f: (circ: number, i: number, k: number) => void, g: (i: number) => void): void {
  let i = 0;
  while (i < n) {
    const at = off + i * CELL;
    if (buf[at + 4] !== cmd) { g(i); i++; continue; }
    const circ = buf.readUInt32BE(at);
    let k = 1;
    while (i + k < n && buf[at + k * CELL + 4] === cmd && buf.readUInt32BE(at + k * CELL) === circ) k++;
    f(circ, i, k);
    i += k;
  }
}

const linkTls = { minVersion: LINK_TLS_MIN_VERSION, maxVersion: LINK_TLS_MAX_VERSION, rejectUnauthorized: false } as const;

/** A TLS listener as src/link/listener.ts sets one up (same versions, default ciphers and groups); resolves with its port. */
async function tlsListen(onSocket: (s: tls.TLSSocket) => void): Promise<number> {
  const creds = await generateTlsCredentials();
  const srv = tls.createServer({ ...linkTls, key: creds.keyPem, cert: creds.certPem, requestCert: true }, onSocket);
  srv.on('connection', (raw: net.Socket) => raw.setNoDelay(true));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return (srv.address() as AddressInfo).port;
}

/**
 * tls.connect as src/link/connect.ts does it: reads into one reused 16 KiB buffer (`onread`).
 * `on(buf, off, n)` gets each read's whole cells as one run, the cell a record boundary split
 * included: the buffer has a cell's room in front, where the bytes of that cell the last read
 * left are put back (as the project's CellRun takes such a cell into the next read's run), so a
 * read costs one cipher call per circuit and layer and the proxy one write to the client.
 */
function tlsConnect(port: number, on: (buf: Buffer, off: number, n: number) => void): Promise<tls.TLSSocket> {
  const room = Buffer.allocUnsafeSlow(CELL + 16 * 1024);
  let have = 0; // bytes of a split cell, at room[CELL - have, CELL)
  const onread = {
    buffer: room.subarray(CELL),
    callback: (n: number) => {
      const start = CELL - have, end = CELL + n;
      const cells = Math.floor((end - start) / CELL);
      if (cells > 0) on(room, start, cells);
      have = end - start - cells * CELL;
      room.copy(room, CELL - have, end - have, end);
      return true;
    },
  };
  const s = tls.connect({ ...linkTls, host: '127.0.0.1', port, onread } as tls.ConnectionOptions);
  s.setNoDelay(true);
  return new Promise((resolve, reject) => { s.once('secureConnect', () => resolve(s)); s.once('error', reject); });
}

type Msg = Record<string, unknown> & { id?: number; op?: string };
const send = (m: Msg): void => { process.send!(m); };
const handlers: Record<string, (m: Msg) => Promise<Msg> | Msg> = {
  cpu: () => { const c = process.cpuUsage(); return { cpu: (c.user + c.system) / 1e6 }; },
};
process.on('message', (m: Msg) => {
  const h = handlers[m.op!];
  if (!h) return;
  void Promise.resolve(h(m)).then((r) => send({ ...r, id: m.id }), (e: Error) => send({ id: m.id, error: e.message }));
});
process.on('disconnect', () => process.exit(0));
const cfg = await new Promise<Msg>((r) => process.once('message', r));
const role = process.argv[2];

/** A hop's keys, and its half of an ntor handshake for a PING that carries an onionskin. */
const identity = ed25519Generate().publicKey;
const onion = x25519Generate();
function answerPing(circ: number, body: Buffer): Buffer {
  const len = body[1];
  const reply = Buffer.alloc(BODY);
  if (len > 0) {
    const r = ntorServerRespond({ onionskin: body.subarray(2, 2 + len), id: identity, onionKeys: [onion], protoid: NTOR_PROTOID_BITCLOUD, keyLength: RELAY_CRYPTO_KEY_LEN });
    reply[0] = r.reply.length;
    r.reply.copy(reply, 1);
  }
  return cell(circ, Cmd.PONG, reply);
}
const keys = { identity: identity.toString('hex'), onion: onion.publicKey.toString('hex') };

if (role === 'source') {
  // The download's web server: on each connection, an 8-byte length, then that many bytes, fast.
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const srv = net.createServer((s) => {
    s.setNoDelay(true);
    s.once('data', (d: Buffer) => {
      let left = Number(d.readBigUInt64BE(0));
      const go = (): void => {
        while (left > 0) {
          const b = left >= chunk.length ? chunk : chunk.subarray(0, left);
          left -= b.length;
          if (!s.write(b)) { s.once('drain', go); return; }
        }
      };
      go();
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  send({ ready: true, port: (srv.address() as AddressInfo).port });
} else if (role === 'exit') {
  const sourcePort = cfg.sourcePort as number;
  const port = await tlsListen((up) => {
    interface Stream { sock: net.Socket; queue: Buffer[]; queued: number; head: number; window: number; cipher: Cipher; digest: Hash }
    const streams = new Map<number, Stream>();
    // Packages what the source sent into as many cells as the window allows: per cell the relay
    // header, SHA-1 update + copy().digest() (the running digest, SPEC.md §5.1), then one AES-CTR
    // update over the run's bodies, framed into 514-byte cells, one TLS write.
    const pump = (circ: number, st: Stream): void => {
      const n = Math.min(st.window, Math.ceil(st.queued / DATA_MAX));
      if (n > 0) {
        const bodies = scratch(n);
        for (let i = 0; i < n; i++) {
          const b = bodies.subarray(i * BODY, (i + 1) * BODY);
          let len = 0;
          while (len < DATA_MAX && st.queue.length > 0) {
            const q = st.queue[0];
            const c = q.copy(b, RHDR + len, st.head, st.head + DATA_MAX - len);
            len += c; st.head += c;
            if (st.head === q.length) { st.queue.shift(); st.head = 0; }
          }
          st.queued -= len;
          b[0] = Cmd.DATA; b.writeUInt16BE(0, 1); b.writeUInt16BE(1, 3); b.writeUInt32BE(0, 5); b.writeUInt16BE(len, 9);
          if (len < DATA_MAX) b.fill(0, RHDR + len);
          st.digest.update(b);
          const d = st.digest.copy().digest('binary');
          for (let j = 0; j < 4; j++) b[5 + j] = d.charCodeAt(j);
        }
        const enc = st.cipher.update(bodies.subarray(0, n * BODY));
        const out = Buffer.allocUnsafe(n * CELL);
        for (let i = 0; i < n; i++) { out.writeUInt32BE(circ, i * CELL); out[i * CELL + 4] = Cmd.DATA; enc.copy(out, i * CELL + HDR, i * BODY, (i + 1) * BODY); }
        up.write(out);
        st.window -= n;
      }
      if (st.window === 0 || st.queued > 256 * 1024) st.sock.pause(); else st.sock.resume();
    };
    up.on('data', cellReader((buf, off, n) => {
      for (let i = 0; i < n; i++) {
        const at = off + i * CELL, circ = buf.readUInt32BE(at), body = buf.subarray(at + HDR, at + CELL);
        const st = streams.get(circ);
        switch (buf[at + 4]) {
          case Cmd.BEGIN: {
            // The source's bytes land in one reused 64 KiB buffer (onread) and are packaged from
            // there; only what the window leaves is copied out, before the next read reuses it.
            const s: Stream = { sock: null as unknown as net.Socket, queue: [], queued: 0, head: 0, window: WINDOW, cipher: layer(3, circ), digest: digestFor(circ) };
            const sock = (s.sock = plainConnect(sourcePort, 64 * 1024, (rb, n) => {
              const read = rb.subarray(0, n);
              s.queue.push(read); s.queued += n;
              pump(circ, s);
              const last = s.queue.length - 1;
              if (last >= 0 && s.queue[last] === read) {
                s.queue[last] = Buffer.from(last === 0 ? read.subarray(s.head) : read);
                if (last === 0) s.head = 0;
              }
            }));
            streams.set(circ, s);
            sock.once('connect', () => up.write(cell(circ, Cmd.CONNECTED)));
            sock.on('error', () => {});
            sock.on('close', () => streams.delete(circ));
            break;
          }
          case Cmd.UP_BYTES: st?.sock.write(Buffer.from(body.subarray(2, 2 + body.readUInt16BE(0)))); break;
          case Cmd.SENDME: if (st) { st.window += SENDME_EVERY; pump(circ, st); } break;
          case Cmd.PING: if (body[0] === 3) up.write(answerPing(circ, body)); break;
        }
      }
    }));
    up.on('error', () => {});
  });
  send({ ready: true, port, keys });
} else if (role === 'middle' || role === 'guard') {
  // Downstream: read the link toward the exit (this end opened it: onread), one AES-CTR update per
  // run of one circuit's DATA cells, one write of the whole read to the link toward the proxy.
  // Upstream: forward, or answer a PING addressed to this hop.
  const hop = HOP[role];
  const ciphers = new Map<number, Cipher>();
  let down: tls.TLSSocket | null = null;
  // The reads of one turn of the event loop leave in one write (as a link batches its cells,
  // src/link/channel.ts): the writer's CPU per GiB falls with the write size (docs/cpu.md). Each
  // read's cells go straight into that write's buffer: no buffer per read, no join.
  const out = new TurnWriter((b) => { down?.write(b); });
  const toExit = await tlsConnect(cfg.nextPort as number, (buf, off, n) => {
    const { buf: o, at } = out.reserve(n * CELL);
    runs(buf, off, n, Cmd.DATA, (circ, i, k) => {
      let c = ciphers.get(circ);
      if (!c) ciphers.set(circ, (c = layer(hop, circ)));
      const enc = c.update(gather(buf, off, i, k, scratch(k)));
      for (let j = 0; j < k; j++) { const to = at + (i + j) * CELL; buf.copy(o, to, off + (i + j) * CELL, off + (i + j) * CELL + HDR); enc.copy(o, to + HDR, j * BODY, (j + 1) * BODY); }
    }, (i) => { buf.copy(o, at + i * CELL, off + i * CELL, off + (i + 1) * CELL); });
  });
  toExit.on('error', () => {});
  const port = await tlsListen((s) => {
    down = s;
    s.on('data', cellReader((buf, off, n) => {
      for (let i = 0; i < n; i++) {
        const at = off + i * CELL;
        if (buf[at + 4] === Cmd.PING && buf[at + HDR] === hop) s.write(answerPing(buf.readUInt32BE(at), buf.subarray(at + HDR, at + CELL)));
        else toExit.write(Buffer.from(buf.subarray(at, at + CELL)));
      }
    }));
    s.on('error', () => {});
  });
  send({ ready: true, port, keys });
} else if (role === 'proxy') {
  // Reads the guard link (onread), peels 3 layers per run of one circuit's cells, checks each
  // cell's digest (SHA-1 update + copy().digest(), 4 bytes compared in constant time), writes the
  // run's payloads to that circuit's client socket in one write, and sends a SENDME per 100 cells
  // once that socket has taken them. Also times round trips (PING/PONG) with or without ntor.
  interface Circ { sock: net.Socket; layers: Cipher[]; digest: Hash; delivered: number; owed: number; out?: Buffer }
  const circs = new Map<number, Circ>();
  let nextCirc = 1;
  let pong: ((body: Buffer) => void) | null = null;
  const sendme = (circ: number, c: Circ): void => { for (; c.owed > 0; c.owed--) guard.write(cell(circ, Cmd.SENDME)); };
  const guard = await tlsConnect(cfg.guardPort as number, (buf, off, n) => {
    runs(buf, off, n, Cmd.DATA, (circ, i, k) => {
      const c = circs.get(circ);
      if (!c) return;
      let x = gather(buf, off, i, k, scratch(k));
      for (const l of c.layers) x = l.update(x);
      const out = Buffer.allocUnsafe(k * DATA_MAX);
      let o = 0;
      for (let j = 0; j < k; j++) {
        const b = x.subarray(j * BODY, (j + 1) * BODY);
        if (b.readUInt16BE(1) !== 0) throw new Error('floor: cell not recognized');
        const got = b.readUInt32BE(5);
        b.writeUInt32BE(0, 5);
        c.digest.update(b);
        if (!sameWord(c.digest.copy().digest('binary'), got)) throw new Error('floor: digest mismatch');
        o += b.copy(out, o, RHDR, RHDR + b.readUInt16BE(9));
      }
      const owedBefore = Math.floor(c.delivered / SENDME_EVERY);
      c.delivered += k;
      c.owed += Math.floor(c.delivered / SENDME_EVERY) - owedBefore;
      if (c.sock.write(out.subarray(0, o))) sendme(circ, c);
    }, (i) => {
      const at = off + i * CELL, circ = buf.readUInt32BE(at);
      if (buf[at + 4] === Cmd.CONNECTED) circs.get(circ)?.sock.write(Buffer.from([0]));
      else if (buf[at + 4] === Cmd.PONG) pong?.(Buffer.from(buf.subarray(at + HDR, at + CELL)));
    });
  });
  guard.on('error', () => {});
  const srv = net.createServer((sock) => {
    sock.setNoDelay(true);
    const circ = nextCirc++;
    const c: Circ = { sock, layers: [layer(1, circ), layer(2, circ), layer(3, circ)], digest: digestFor(circ), delivered: 0, owed: 0 };
    circs.set(circ, c);
    sock.on('drain', () => sendme(circ, c));
    sock.on('data', (d: Buffer) => {
      for (let o = 0; o < d.length; o += DATA_MAX) {
        const b = Buffer.alloc(BODY);
        b.writeUInt16BE(d.copy(b, 2, o, o + DATA_MAX), 0);
        guard.write(cell(circ, Cmd.UP_BYTES, b));
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => circs.delete(circ));
    guard.write(cell(circ, Cmd.BEGIN));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const hops = cfg.hops as Array<{ identity: string; onion: string }>;
  // One round trip to hop `target` (1..3); with ntor, the client half here and the server half there.
  const roundTrip = async (target: number, ntor: boolean): Promise<void> => {
    const body = Buffer.alloc(BODY);
    body[0] = target;
    let state: NtorClientState | null = null;
    if (ntor) {
      const h = hops[target - 1];
      const c = ntorClientCreate({ id: Buffer.from(h.identity, 'hex'), onionKey: Buffer.from(h.onion, 'hex'), protoid: NTOR_PROTOID_BITCLOUD });
      state = c.state;
      body[1] = c.onionskin.length;
      c.onionskin.copy(body, 2);
    }
    const reply = new Promise<Buffer>((r) => { pong = r; });
    guard.write(cell(PING_CIRC, Cmd.PING, body));
    const b = await reply;
    if (state) ntorClientFinish(state, b.subarray(1, 1 + b[0]), RELAY_CRYPTO_KEY_LEN);
  };
  const ms = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e6;
  handlers.rtt = async () => { const t = process.hrtime.bigint(); await roundTrip(3, false); return { ms: ms(t) }; };
  handlers.build = async () => { const t = process.hrtime.bigint(); for (const h of [1, 2, 3]) await roundTrip(h, true); return { ms: ms(t) }; };
  send({ ready: true, port: (srv.address() as AddressInfo).port });
} else if (role === 'sink') {
  // As curl would: connect to the proxy, wait for its one-byte reply (the stream is open), ask the
  // source for `bytes`, read them all. `streams` at once; TTFB = connect to first byte of data.
  const fetchOne = (bytes: number) => new Promise<{ ttfb: number }>((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let got = -1, ttfb = 0;
    // Reads into one reused buffer (onread), as the exit reads the source: the sink is not counted,
    // but a light reader leaves the carriers more of the machine.
    const s = plainConnect(cfg.proxyPort as number, 64 * 1024, (buf, n) => {
      let d = buf.subarray(0, n);
      if (got < 0) {
        got = 0;
        const req = Buffer.alloc(8);
        req.writeBigUInt64BE(BigInt(bytes));
        s.write(req);
        d = d.subarray(1);
      }
      if (got === 0 && d.length > 0) ttfb = Number(process.hrtime.bigint() - t0) / 1e6;
      got += d.length;
      if (got >= bytes) { s.destroy(); resolve({ ttfb }); }
    });
    s.on('error', reject);
  });
  handlers.get = async (m) => {
    const got = await Promise.all(Array.from({ length: m.streams as number }, () => fetchOne(m.bytes as number)));
    return { ttfb: got[0].ttfb };
  };
  send({ ready: true });
}
