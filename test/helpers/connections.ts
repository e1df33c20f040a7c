// Raw TCP connections held open against a listener, for the per-address connection cap tests
// (SPEC.md §7b.9): each connects and then sends nothing, so a TLS listener keeps its handshake in
// progress. Every one is destroyed when the test that opened it finishes.
import net from 'node:net';
import { onTestFinished } from 'vitest';

export interface HeldConnection {
  socket: net.Socket;
  /** Resolves when the socket closes (at once if the listener refused it). */
  closed: Promise<void>;
}

function holdOne(port: number): Promise<HeldConnection> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => resolve({ socket, closed }));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('error', reject);
    socket.on('error', () => {}); // a refused connection is reset: that is what the tests look for
    onTestFinished(() => { socket.destroy(); });
  });
}

/** Open `n` connections to 127.0.0.1:`port`, one after another (each once connected). */
export async function holdConnections(port: number, n: number): Promise<HeldConnection[]> {
  const held: HeldConnection[] = [];
  for (let i = 0; i < n; i++) held.push(await holdOne(port));
  return held;
}
