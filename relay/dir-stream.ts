// BEGIN_DIR (SPEC.md §7b.7): a stream to this relay's own directory mirror. The client
// speaks HTTP over the stream exactly as it would to the mirror's HTTP port (as in Tor), so
// the relay just splices the stream to that port on loopback — or, given the HTTP server
// object itself, hands the stream to it as a connection without any socket.
import net from 'node:net';
import type http from 'node:http';
import { EndReason } from '../src/wire/messages';
import type { IncomingStream } from '../src/circuit/types';
import { ResolveGate, pipeStreamSocket } from './exit';

/**
 * SPEC.md §7b.9: at most `max` BEGIN_DIR streams spliced to the dir port at once, whatever circuit
 * they came on; past it a BEGIN_DIR ends END(RESOURCELIMIT). Each splice holds two of the
 * process's sockets (its own and the dir port's end of it), and the dir port's connection caps
 * exempt the splices (SPEC.md §6.10): without this, circuits of 512 BEGIN_DIR streams each, kept
 * busy with requests, would use up the relay's file descriptors.
 */
export class DirSplices extends ResolveGate {}

export interface DirStreamOptions {
  /** The bound on splices at once; absent = none (tests). */
  splices?: DirSplices;
  /** A BEGIN_DIR refused because the bound was reached (counted by the caller). */
  onRefused?: () => void;
}

export type DirTarget =
  | { port: number; host?: string }
  | { server: http.Server };

/** The BEGIN_DIR handler; `target()` returns null when the relay mirrors nothing (END NOTDIRECTORY). */
export function createDirStreamHandler(target: () => DirTarget | null, opts: DirStreamOptions = {}): (inc: IncomingStream) => void {
  return (inc) => {
    const t = target();
    if (!t) { inc.refuse(EndReason.NOTDIRECTORY); return; }
    // SPEC.md §7b.9: a place under maxDirStreams from now until both the stream and its socket to
    // the dir port (which may linger after the stream, §7b.7 step 6) have closed; given back once.
    const splices = opts.splices;
    let holders = 0;
    const hold = (e: NodeJS.EventEmitter): void => {
      if (!splices) return;
      holders++;
      e.once('close', () => { if (--holders === 0) splices.leave(); });
    };
    if (splices) {
      if (!splices.tryEnter()) { opts.onRefused?.(); inc.refuse(EndReason.RESOURCELIMIT); return; }
      if (inc.stream.destroyed) { splices.leave(); return; } // the client gave up already
      hold(inc.stream);
    }
    if ('server' in t) {
      inc.accept();
      // node:http serves any Duplex handed to it as a connection.
      t.server.emit('connection', inc.stream);
      return;
    }
    // SPEC.md §6.10: the splice comes from the address it goes to, which the dir port's connection
    // caps exempt. Bound explicitly: the kernel's own choice for another loopback address (127.0.0.2)
    // is 127.0.0.1, under which every client of the mirror would share one address's cap.
    const host = t.host ?? '127.0.0.1';
    const sock = net.connect({ host, port: t.port, ...(net.isIP(host) ? { localAddress: host } : {}) });
    hold(sock);
    sock.on('error', () => { if (inc.stream.state === 'opening') inc.refuse(EndReason.NOTDIRECTORY); });
    sock.once('connect', () => {
      if (inc.stream.state !== 'opening') { sock.destroy(); return; }
      inc.accept();
      pipeStreamSocket(inc.stream, sock);
    });
    inc.stream.once('close', () => { if (sock.connecting) sock.destroy(); });
  };
}
