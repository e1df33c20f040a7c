// SPEC.md §9.21.7 over a real TLS link on 127.0.0.1: a hidden node's CircuitBuilder opens its guard
// link authenticated under the pseudonym P (never its identity), the guard — an unchanged
// ReceiptExchange on the CircuitSwitch hook, as relay/circuits.ts wires it — counts the link and
// countersigns the node's proposal naming P; a new pseudonym opens new links and the retired
// one's links are closed. Every listener and link is closed in afterEach; no test asserts on time.
import { afterEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { ed25519Generate, x25519Generate } from '../../src/crypto/primitives';
import { generateTlsCredentials } from '../../src/crypto/tls';
import { fingerprint } from '../../src/crypto/keys';
import { createLinkListener, type Channel } from '../../src/link';
import { CircuitBuilder, type LinkIdentity } from '../../src/client/circuit-builder';
import { ReceiptExchange } from '../../src/bandwidth/exchange';
import { ReceiptMetrics } from '../../src/bandwidth/receipt-metrics';
import { epochAt } from '../../src/bandwidth/link-receipts';
import { verifyReceipt, type Receipt } from '../../src/bandwidth/receipt';
import { HOST, side, traffic, until } from '../helpers/bandwidth-link';
import { prom } from '../../src/ops/metrics';
import { randomBytes } from '../../src/crypto/primitives';
import { recordRegistration } from '../../storage/hidden-receipts';

const P_SECONDS = 10;
const NOW = 1_700_000_003_000;
const E = epochAt(NOW, P_SECONDS) - 1;
const clock = { periodSeconds: P_SECONDS, now: NOW };
const cleanups: Array<() => unknown> = [];
afterEach(async () => { for (const c of cleanups.splice(0).reverse()) await c(); });

describe('a hidden node\'s guard link under its pseudonym (SPEC.md §9.21.7)', () => {
  it('proves P, not the identity; the unchanged guard countersigns the receipt naming P; a new P opens new links and the old ones close', async () => {
    const guardKey = ed25519Generate();
    const identity = ed25519Generate();
    const guard = await side(guardKey, clock, cleanups);
    const inbound: Channel[] = [];
    const listener = await createLinkListener({
      host: HOST, port: 0, identity: guardKey,
      onChannel: (ch) => { guard.sw.attach(ch); guard.ex.attach(ch); inbound.push(ch); },
    });
    cleanups.push(() => listener.close());

    const mine: Receipt[] = [];
    const node = new ReceiptExchange({
      identity, periodSeconds: () => P_SECONDS, now: () => NOW, metrics: new ReceiptMetrics(new Registry()), onReceipt: (r) => mine.push(r),
    });
    cleanups.push(() => node.stop());
    let id: LinkIdentity = { key: ed25519Generate(), tls: await generateTlsCredentials() };
    const opened: Channel[] = [];
    const builder = new CircuitBuilder({
      relays: () => null, linkIdentity: () => id,
      onLink: (ch, key) => { node.attach(ch, key); ch.on('cell', (c) => { if (c.circId === 0) node.onLinkCell(ch, c); }); opened.push(ch); },
    });
    cleanups.push(() => builder.close());
    const target = { identity: guardKey.publicKey, fingerprint: fingerprint(guardKey.publicKey), onionKey: x25519Generate().publicKey, address: HOST, orPort: listener.port };

    const link = await builder.linkTo(target);
    await until(() => inbound.length === 1);
    // The guard sees P: the identity never crosses the link.
    expect(inbound[0].peerIdentity!.equals(id.key.publicKey)).toBe(true);
    expect(inbound[0].peerIdentity!.equals(identity.publicKey)).toBe(false);
    expect(guard.ex.linkCount).toBe(1);
    expect(node.linkCount).toBe(1);
    expect(await builder.linkTo(target)).toBe(link); // reused while P is current

    traffic(link.ch as Channel, 3, 7);
    const cg = guard.ex.linkReceipts(inbound[0])!.counter;
    await until(() => cg.received === 10);
    // The guard answers the 3 CREATE2s; the node proposes what it has received by the boundary,
    // so it waits for those answers too (otherwise it rightly proposes, and gets signed, fewer).
    const cn = node.linkReceipts(link.ch as Channel)!.counter;
    await until(() => cn.received === 3);
    expect(node.boundary(E, { delay: false })).toBe(1);
    await until(() => guard.receipts.length === 1 && mine.length === 1);
    const r = guard.receipts[0];
    expect(verifyReceipt(r)).toBe(true);
    expect(r.body.initiator.equals(id.key.publicKey)).toBe(true);
    expect(r.body.responder.equals(guardKey.publicKey)).toBe(true);
    expect(r.body).toMatchObject({ epoch: E, cellsI2R: 10, cellsR2I: 3 });
    expect(mine[0].bodyBytes.equals(r.bodyBytes)).toBe(true);

    // A new period: a new key opens a new link; closing the links of keys no longer kept ends the old one.
    const old = id;
    id = { key: ed25519Generate(), tls: await generateTlsCredentials() };
    const link2 = await builder.linkTo(target);
    expect(link2).not.toBe(link);
    await until(() => inbound.length === 2);
    expect(inbound[1].peerIdentity!.equals(id.key.publicKey)).toBe(true);
    builder.closeLinksExcept(new Set([id.key.publicKey.toString('hex')]));
    await until(() => opened[0].closed);
    expect(opened[1].closed).toBe(false);
    expect(old.key.publicKey.equals(id.key.publicKey)).toBe(false);
  });
});

describe('a hidden node reading a mirror\'s answer to its pseudonym registration (SPEC.md §9.21.7, §9.21.8)', () => {
  it('counts only known error codes (others as one series) and takes as accepted only the authorities it sealed to', async () => {
    const registry = new Registry();
    const events = new prom.Counter({ name: 'x_events_total', help: 'x', labelNames: ['event'], registers: [registry] });
    const sealedTo = new Set(['aa'.repeat(32), 'bb'.repeat(32)]);
    const accepted = new Set<string>();
    for (let tick = 0; tick < 10; tick++) {
      const forwarded = Array.from({ length: 64 }, (_, i) => ({
        authority: i % 2 === 0 ? randomBytes(32).toString('hex') : 'aa'.repeat(32),
        status: i % 3 === 0 ? 200 : 400 + (i % 100), code: randomBytes(32).toString('hex'),
      }));
      recordRegistration(forwarded.concat([{ authority: 'bb'.repeat(32), status: 409, code: 'HIDDEN_PSEUDONYM_STALE' }]), sealedTo, accepted, events);
    }
    const series = (await registry.getMetricsAsJSON())[0].values.map((v) => v.labels.event);
    expect(series.length).toBeLessThanOrEqual(3);
    expect(series).toContain('register_HIDDEN_PSEUDONYM_STALE');
    expect([...accepted]).toEqual(['aa'.repeat(32)]);
  });
});
