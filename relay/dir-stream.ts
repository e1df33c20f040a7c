// BEGIN_DIR (SPEC.md §7b.7): a stream to this relay's own directory mirror. The client
// speaks HTTP over the stream exactly as it would to the mirror's HTTP port (as in Tor), so
// the relay just splices the stream to that port on loopback — or, given the HTTP server
// object itself, hands the stream to it as a connection without any socket.
import net from 'node:net';
import type http from 'node:http';
import { EndReason } from '../src/wire/messages';
import type { IncomingStream } from '../src/circuit/types';
import { pipeStreamSocket } from './exit';

export type DirTarget =
  | { port: number; host?: string }
  | { server: http.Server };

/** The BEGIN_DIR handler; `target()` returns null when the relay mirrors nothing (END NOTDIRECTORY). */
export function createDirStreamHandler(target: () => DirTarget | null): (inc: IncomingStream) => void {
  return (inc) => {
    const t = target();
    if (!t) { inc.refuse(EndReason.NOTDIRECTORY); return; }
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
    sock.on('error', () => { if (inc.stream.state === 'opening') inc.refuse(EndReason.NOTDIRECTORY); });
    sock.once('connect', () => {
      if (inc.stream.state !== 'opening') { sock.destroy(); return; }
      inc.accept();
      pipeStreamSocket(inc.stream, sock);
    });
    inc.stream.once('close', () => { if (sock.connecting) sock.destroy(); });
  };
}
