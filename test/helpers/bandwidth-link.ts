// Two relays' proof-of-bandwidth ends on a real TLS link over 127.0.0.1, for the bandwidth link
// tests (SPEC.md §8.1–§8.3): each side is the real CircuitSwitch with its ReceiptExchange (or the
// whole NodeBandwidth a daemon holds) on the link-level hook, as relay/circuits.ts wires it.
// Everything made here is registered in `cleanups`; the test file runs them in afterEach.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { Registry, type Counter } from 'prom-client';
import { x25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { connectLink, createLinkListener, counterValue, type Channel } from '../../src/link';
import { CircuitSwitch } from '../../src/circuit/switch';
import { CellCommand } from '../../src/wire/cell';
import { encodeCreate2 } from '../../src/wire/messages';
import { ReceiptExchange } from '../../src/bandwidth/exchange';
import { NodeBandwidth } from '../../src/bandwidth/node-bandwidth';
import { ReceiptMetrics } from '../../src/bandwidth/receipt-metrics';
import type { Disagreement } from '../../src/bandwidth/link-receipts';
import type { Receipt } from '../../src/bandwidth/receipt';

export const HOST = '127.0.0.1';

export interface LinkClock { periodSeconds: number; now: number }

/**
 * A bare link from `initiator` to a listener of `responder` on 127.0.0.1 (no circuit switch):
 * `out` is the initiator's end, `inbound` the responder's. Both are closed by `cleanups`.
 */
export async function bareLink(responder: Ed25519KeyPair, initiator: Ed25519KeyPair, cleanups: Array<() => unknown>): Promise<{ out: Channel; inbound: Channel }> {
  let onInbound!: (ch: Channel) => void;
  const inboundP = new Promise<Channel>((r) => { onInbound = r; });
  const listener = await createLinkListener({ host: HOST, port: 0, identity: responder, onChannel: (ch) => onInbound(ch) });
  cleanups.push(() => listener.close());
  const out = await connectLink({ host: HOST, port: listener.port, expectedIdentity: responder.publicKey, identity: initiator });
  cleanups.push(() => out.destroy());
  return { out, inbound: await inboundP };
}

/** Polls `cond` (every 5 ms, at most 10 s), then asserts it. */
export async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 2000 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 5));
  expect(await cond()).toBe(true);
}

export interface Side {
  ex: ReceiptExchange;
  nb?: NodeBandwidth;
  reg: Registry;
  receipts: Receipt[];
  disagreements: Disagreement[];
  sw: CircuitSwitch<Channel>;
}

/** `node`: run the whole NodeBandwidth (what the daemons hold) rather than the bare exchange. */
export async function side(identity: Ed25519KeyPair, clock: LinkClock, cleanups: Array<() => unknown>, o: { node?: boolean } = {}): Promise<Side> {
  const reg = new Registry();
  const receipts: Receipt[] = [];
  const disagreements: Disagreement[] = [];
  let ex: ReceiptExchange;
  let nb: NodeBandwidth | undefined;
  if (o.node) {
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'bitcloud-bw-link-'));
    cleanups.push(() => fs.rm(dataDir, { recursive: true, force: true }));
    nb = new NodeBandwidth({
      identity, dataDir, authorities: [], periodSeconds: () => clock.periodSeconds, now: () => clock.now, registry: reg,
      settings: { shutdownGraceMs: 10_000 },
    });
    ex = nb.exchange;
    const add = nb.totals.add.bind(nb.totals);
    nb.totals.add = (r: Receipt) => { receipts.push(r); add(r); };
  } else {
    ex = new ReceiptExchange({
      identity, periodSeconds: () => clock.periodSeconds, now: () => clock.now, metrics: ReceiptMetrics.for(reg),
      onReceipt: (r) => receipts.push(r), onDisagreement: (d) => disagreements.push(d),
    });
  }
  const sw = new CircuitSwitch<Channel>({ identity: identity.publicKey, onionKeys: () => [x25519Generate()], onLinkCell: (ch, cell) => ex.onLinkCell(ch, cell) });
  cleanups.push(() => { ex.stop(); sw.close(); });
  return { ex, nb, reg, receipts, disagreements, sw };
}

export async function metric(reg: Registry, name: string, labels: Record<string, string>): Promise<number> {
  return counterValue(reg.getSingleMetric(name) as Counter<string>, labels);
}

/**
 * B opens a link to A (B initiator, A responder). `anonymous`: B does not prove an identity (a
 * client), so neither end counts the link.
 */
export async function relayLink(
  relayA: Ed25519KeyPair, relayB: Ed25519KeyPair, clock: LinkClock, cleanups: Array<() => unknown>,
  o: { anonymous?: boolean; nodeA?: boolean } = {},
): Promise<{ a: Side; b: Side; inbound: Channel; out: Channel }> {
  const a = await side(relayA, clock, cleanups, { node: o.nodeA });
  const b = await side(relayB, clock, cleanups);
  let onInbound!: (ch: Channel) => void;
  const inboundP = new Promise<Channel>((r) => { onInbound = r; });
  const listener = await createLinkListener({
    host: HOST, port: 0, identity: relayA,
    onChannel: (ch) => { a.sw.attach(ch); a.ex.attach(ch); onInbound(ch); },
  });
  cleanups.push(() => listener.close());
  const out = await connectLink({ host: HOST, port: listener.port, expectedIdentity: relayA.publicKey, identity: o.anonymous ? undefined : relayB });
  cleanups.push(() => out.destroy());
  b.sw.attach(out);
  if (!o.anonymous) b.ex.attach(out);
  const inbound = await inboundP;
  return { a, b, inbound, out };
}

/** n CREATE2 cells the responder cannot answer (it sends DESTROY for each) and m RELAY cells to no circuit. */
export function traffic(out: Channel, n: number, m: number): void {
  for (let i = 0; i < n; i++) out.send(out.allocateCircId(), CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: Buffer.alloc(84, 7) }));
  for (let i = 0; i < m; i++) out.send(0x8000_7777, CellCommand.RELAY, Buffer.alloc(509));
}
