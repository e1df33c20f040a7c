// SPEC.md §9.9: a storage stream that could not be opened (over circuits: every build attempt
// destroyed, a BEGIN_STORAGE refused) is opened once more, on a new circuit, before the node counts
// as unreachable for the run. One failed opening must not fail a 2-of-4 put on four nodes, where
// every node holds a share of each chunk and none is left to take a share elsewhere.
import net from 'node:net';
import { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StorageClient } from '../../src/client/storage-client';
import { storeChunk } from '../../src/client/storage-client-put';
import { err } from '../../src/errors';
import { randomBytes } from '../../src/crypto/primitives';
import { shareId } from '../../src/storage/share';
import { FrameDecoder } from '../../src/storage/framing';
import { decodeRequest, encodeResponseFrame } from '../../src/storage/protocol';

let server: net.Server;
let port = 0;

beforeAll(async () => {
  // Answers every stat and put as a storage node would.
  server = net.createServer((sock) => {
    const dec = new FrameDecoder();
    sock.on('error', () => {});
    sock.on('data', (d) => {
      for (const f of dec.push(d)) {
        const { reqId, req } = decodeRequest(f);
        if (req.type === 'put') sock.write(encodeResponseFrame(reqId, { type: 'put', expiresAt: Math.floor(Date.now() / 1000) + 3600 }));
        else sock.write(encodeResponseFrame(reqId, { type: 'stat', capacity: 100, used: 1, shares: 1, maxLeaseSeconds: 60, maxShareBytes: 1 << 20 }));
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as net.AddressInfo).port;
});

afterAll(() => new Promise<void>((r) => server.close(() => r())));

const connect = (): Promise<net.Socket> => new Promise((resolve, reject) => {
  const s = net.connect(port, '127.0.0.1', () => resolve(s));
  s.once('error', reject);
});

/** A client over `fps` whose openings fail while `failing(fp)` says so (each call counts one opening). */
function client(fps: string[], failing: (fp: string, opening: number) => boolean): { c: StorageClient; opens: Map<string, number> } {
  const opens = new Map<string, number>();
  const c = new StorageClient({
    nodes: fps.map((fingerprint) => ({ fingerprint }) as never),
    open: (node) => {
      const n = (opens.get(node.fingerprint) ?? 0) + 1;
      opens.set(node.fingerprint, n);
      return failing(node.fingerprint, n)
        ? Promise.reject(err('CIRCUIT_DESTROYED', 'the circuit was destroyed (reason 6)', { destroyReason: 6 }))
        : connect();
    },
    requestTimeoutMs: 10_000,
  });
  return { c, opens };
}

describe('storage client: a session whose opening failed (SPEC.md §9.9)', () => {
  it('one failed opening is tried once more on a new stream: the request is answered and the node is not marked dead', async () => {
    const fp = 'ab'.repeat(32);
    const { c, opens } = client([fp], (_, n) => n === 1);
    try {
      await expect(c.stat(fp)).resolves.toMatchObject({ type: 'stat', capacity: 100 });
      expect(opens.get(fp)).toBe(2);
      expect(c.isDead(fp)).toBe(false);
    } finally {
      await c.close();
    }
  });

  it('a node whose second opening fails too is marked dead: later requests fail at once without opening again', async () => {
    const fp = 'cd'.repeat(32);
    const { c, opens } = client([fp], () => true);
    try {
      await expect(c.stat(fp)).rejects.toMatchObject({ code: 'CIRCUIT_DESTROYED' });
      expect(opens.get(fp)).toBe(2);
      expect(c.deadNodes()).toEqual([{ fingerprint: fp, code: 'CIRCUIT_DESTROYED' }]);
      await expect(c.stat(fp)).rejects.toMatchObject({ code: 'CIRCUIT_DESTROYED' });
      expect(opens.get(fp)).toBe(2);
    } finally {
      await c.close();
    }
  });

  it('a 2-of-4 chunk on exactly four nodes is stored though one node\'s first opening failed', async () => {
    const fps = ['01', '02', '03', '04'].map((b) => b.repeat(32));
    const { c, opens } = client(fps, (fp, n) => fp === fps[0] && n === 1);
    const shares = [0, 1, 2, 3].map(() => { const bytes = randomBytes(1000); return { id: shareId(bytes), bytes }; });
    const tally = { shares: 0, bytes: 0, relocated: 0 };
    try {
      await storeChunk(c, shares, tally);
      expect(tally).toEqual({ shares: 4, bytes: 4000, relocated: 0 });
      expect(opens.get(fps[0])).toBe(2);
      expect(c.deadNodes()).toEqual([]);
    } finally {
      await c.close();
    }
  });
});

describe('storage client: a stream the node closed while idle (SPEC.md §9.6.1, §9.9)', () => {
  it('is no failure of the next request: one failed opening after it still leaves the node reachable', async () => {
    const fp = 'ef'.repeat(32);
    const streams: net.Socket[] = [];
    const atNode: net.Socket[] = [];
    const onConnection = (sock: net.Socket) => { atNode.push(sock); };
    server.on('connection', onConnection);
    const opens = new Map<string, number>();
    const c = new StorageClient({
      nodes: [{ fingerprint: fp } as never],
      open: async (node) => {
        const n = (opens.get(node.fingerprint) ?? 0) + 1;
        opens.set(node.fingerprint, n);
        // The second opening (the first after the idle close) fails once, as one failed circuit does.
        if (n === 2) throw err('CIRCUIT_DESTROYED', 'the circuit was destroyed (reason 6)', { destroyReason: 6 });
        const s = await connect();
        streams.push(s);
        return s;
      },
      requestTimeoutMs: 10_000,
    });
    try {
      await expect(c.stat(fp)).resolves.toMatchObject({ type: 'stat' });
      // The node closes the stream, idle for 120 s (STORAGE_IDLE_TIMEOUT): the session is closed
      // before the next request is sent on it.
      const closed = new Promise((r) => streams[0].once('close', r));
      atNode[0].destroy();
      await closed;
      await expect(c.stat(fp)).resolves.toMatchObject({ type: 'stat' });
      expect(opens.get(fp)).toBe(3);
      expect(c.isDead(fp)).toBe(false);
    } finally {
      server.off('connection', onConnection);
      await c.close();
    }
  });
});

describe('storage client: a node that closes every stream as soon as it opens (SPEC.md §9.9)', () => {
  it('fails the request twice and is marked unreachable: a stream opened for the request is no idle close', async () => {
    const fp = 'ab'.repeat(32);
    let opens = 0;
    const c = new StorageClient({
      nodes: [{ fingerprint: fp } as never],
      open: async () => {
        opens++;
        // The node closes the stream as soon as it opens: the client's channel on it is closed
        // before the request is sent (the case an idle close of a stream open before the request
        // is replaced for free, which this one is not).
        const d = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
        const hook = (ev: string | symbol) => {
          if (ev !== 'close') return;
          d.off('newListener', hook);
          queueMicrotask(() => d.emit('close'));
        };
        d.on('newListener', hook);
        return d;
      },
      requestTimeoutMs: 10_000,
    });
    try {
      await expect(c.stat(fp)).rejects.toMatchObject({ code: 'STORAGE_CHANNEL_CLOSED' });
      expect(opens).toBe(2);
      expect(c.isDead(fp)).toBe(true);
    } finally {
      await c.close();
    }
  });
});
