// SPEC.md §1.6, §1.8: the keepalive PADDING of an open link never adds to a backlog its peer does
// not read. A Channel over an in-memory socket that accepts writes and never drains them (a peer
// that sends but does not read), with fake timers: no real time passes and nothing is timed.
import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ed25519Generate, randomBytes } from '../../src/crypto/primitives';
import { Channel, discardLinkMetrics, SUPPORTED_LINK_VERSIONS } from '../../src/link';
import { SOCKET_WINDOW_BYTES } from '../../src/link/channel';
import { silentLogger } from '../../src/ops/log';
import { CELL_LEN, CellCommand, encodeCell } from '../../src/wire/cell';
import { encodeVersions } from '../../src/wire/messages';

/** A TLS socket whose writes are taken and, once `reading` is false, never drained: the peer does not read. */
class StuckSocket extends EventEmitter {
  reading = true;
  readonly remoteAddress = '192.0.2.1';
  readonly remotePort = 9001;
  writable = true;
  /** Every byte written stays waiting. */
  writableLength = 0;
  /** The command byte of every cell written, in order. */
  readonly commands: number[] = [];
  write(buf: Buffer, done?: () => void): boolean {
    for (let o = 0; o + CELL_LEN <= buf.length; o += CELL_LEN) this.commands.push(buf[o + 4]);
    if (this.reading) { if (done) queueMicrotask(done); return true; }
    this.writableLength += buf.length;
    return false;
  }
  isSessionReused(): boolean { return false; }
  getPeerX509Certificate(): undefined { return undefined; }
  exportKeyingMaterial(n: number): Buffer { return randomBytes(n); }
  pause(): this { return this; }
  resume(): this { return this; }
  end(): this { this.writable = false; return this; }
  destroy(): this { this.writable = false; return this; }
}

const KEEPALIVE_MS = 1_000;

/** An open responder link over a StuckSocket: the initiator's VERSIONS (anonymous) is read. */
function openLink(): { ch: Channel; s: StuckSocket } {
  const s = new StuckSocket();
  let opened: Channel | null = null;
  const ch = new Channel({
    socket: s as unknown as TLSSocket, isInitiator: false, identity: ed25519Generate(), ownCertHash: randomBytes(32),
    versions: SUPPORTED_LINK_VERSIONS, handshakeTimeoutMs: 10_000, keepaliveMs: KEEPALIVE_MS, livenessTimeoutMs: 0,
    metrics: discardLinkMetrics(), log: silentLogger, onOpen: (c) => { opened = c; }, onFail: () => {},
  });
  s.emit('data', encodeCell(0, CellCommand.VERSIONS, encodeVersions([...SUPPORTED_LINK_VERSIONS])));
  expect(opened).toBe(ch);
  vi.advanceTimersByTime(0); // the one-macrotask defer after open
  return { ch, s };
}

describe('keepalive and a peer that does not read (SPEC.md §1.6, §1.8)', () => {
  beforeEach(() => { vi.useFakeTimers(); });
  afterEach(() => { vi.useRealTimers(); });

  it('an idle link with nothing waiting gets one PADDING per keepalive interval', () => {
    const { ch, s } = openLink();
    const before = s.commands.length;
    vi.advanceTimersByTime(3.5 * KEEPALIVE_MS); // three ticks, each one's write at the end of its turn
    expect(s.commands.slice(before)).toEqual([CellCommand.PADDING, CellCommand.PADDING, CellCommand.PADDING]);
    ch.destroy();
  });

  it('no PADDING is queued behind cells still waiting to be written: the backlog does not grow', () => {
    const { ch, s } = openLink();
    s.reading = false;
    // More than the socket window: the rest waits in the channel's own queue (§8.3 step 12).
    const cells = Math.ceil((SOCKET_WINDOW_BYTES + 64 * CELL_LEN) / CELL_LEN);
    for (let i = 0; i < cells; i++) ch.send(1, CellCommand.RELAY, Buffer.alloc(10));
    vi.advanceTimersByTime(0);
    const backlog = ch.bufferedBytes;
    expect(backlog).toBeGreaterThan(SOCKET_WINDOW_BYTES);
    // A long idle spell: the peer still reads nothing, this end sends nothing more.
    vi.advanceTimersByTime(1_000 * KEEPALIVE_MS);
    expect(ch.bufferedBytes).toBe(backlog);
    expect(s.commands.filter((c) => c === CellCommand.PADDING)).toEqual([]);
    expect(ch.closed).toBe(false);
    ch.destroy();
  });
});
