// SPEC.md §7b.9: a listener given `admit` asks it about each TCP connection at accept, before TLS.
// A refused connection is closed at once and is not a TLS handshake failure; an admitted one
// hands its admission to onChannel and gives it back once, when the connection closes.
import net from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ed25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { connectLink, counterValue, createLinkListener, createLinkMetrics, type Channel, type LinkAdmission, type LinkListener } from '../../src/link';

const HOST = '127.0.0.1';
let identity: Ed25519KeyPair;
const cleanups: Array<() => unknown> = [];
beforeAll(() => { identity = ed25519Generate(); });
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

function rawConnect(port: number): Promise<{ s: net.Socket; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, HOST, () => resolve({ s, closed: new Promise<void>((r) => { if (s.destroyed) r(); else s.once('close', () => r()); }) }));
    s.on('error', () => {});
    s.once('error', reject);
    cleanups.push(() => s.destroy());
  });
}

async function listen(admit: (address: string) => LinkAdmission | null, onChannel: (ch: Channel, a: LinkAdmission | null) => void = () => {}) {
  const metrics = createLinkMetrics(new Registry());
  const l: LinkListener = await createLinkListener({ host: HOST, port: 0, identity, admit, onChannel, metrics });
  cleanups.push(() => l.close());
  return { l, metrics };
}

describe('link listener admission (SPEC.md §7b.9)', () => {
  it('a refused connection is closed before TLS and is not counted as a TLS handshake failure', async () => {
    const asked: string[] = [];
    // The first connection is refused, any later one admitted.
    const { l, metrics } = await listen((address) => { asked.push(address); return asked.length === 1 ? null : { release() {} }; });
    const refused = await rawConnect(l.port);
    await refused.closed;
    expect(asked).toHaveLength(1);
    // A real TLS failure after it (bytes that are no TLS) is counted: exactly one, not two.
    const garbage = await rawConnect(l.port);
    garbage.s.write(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await garbage.closed;
    expect(asked).toHaveLength(2);
    await expect.poll(() => counterValue(metrics.handshakeFailures, { code: 'LINK_TLS_FAILED' }), { timeout: 2000 }).toBe(1);
    expect(await counterValue(metrics.handshakeFailures, { code: 'LINK_TLS_FAILED' })).toBe(1);
    expect(await counterValue(metrics.errors, { code: 'LINK_TLS_FAILED' })).toBe(1);
  });

  it('an admitted connection hands its admission to onChannel and gives it back once, when it closes', async () => {
    let released = 0;
    const given: LinkAdmission[] = [];
    const got: Array<LinkAdmission | null> = [];
    const { l } = await listen(() => {
      const a: LinkAdmission = { release: () => { released++; } };
      given.push(a);
      return a;
    }, (_ch, a) => { got.push(a); });
    const ch = await connectLink({ host: HOST, port: l.port, expectedIdentity: identity.publicKey });
    await expect.poll(() => got.length, { timeout: 2000 }).toBe(1);
    expect(given).toHaveLength(1);
    expect(got[0]).toBe(given[0]);
    expect(released).toBe(0);
    ch.close('test done');
    await expect.poll(() => released, { timeout: 2000 }).toBe(1);
  });
});
