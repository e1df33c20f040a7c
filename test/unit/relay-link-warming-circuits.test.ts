// SPEC.md §1.9 with the real circuit engine (RelayCircuits) behind real TLS listeners in this
// process: a consensus makes two relays link once, in the background; an EXTEND2 then reuses
// that link; and a relay that linked to us before our consensus listed it leaves the
// per-address connection count (§7b.9) once a consensus lists it; that count starts at the TCP
// accept, before any handshake.
import { afterEach, describe, expect, it } from 'vitest';
import type { ConsensusRelay } from '../../src/dir/types';
import { metric, parsePrometheus } from '../helpers/localnet';
import { manualCircuit, startRelay, type TestRelay } from '../helpers/inprocess-relays';
import { holdConnections } from '../helpers/connections';
import { DEFAULT_LINK_WARMING, type WarmingHost } from '../../relay/link-warming';
import { NodeBandwidth } from '../../src/bandwidth/node-bandwidth';
import { connectLink, type Channel } from '../../src/link';
import { CellCommand } from '../../src/wire/cell';
import { Registry } from 'prom-client';

let relays: TestRelay[] = [];
afterEach(async () => { for (const r of relays) await r.stop(); relays = []; });

const warming = { ...DEFAULT_LINK_WARMING, paceMs: 10 };
async function scrapeOf(r: TestRelay) { return parsePrometheus(await r.registry.metrics()); }

/** Two relays, each reading its consensus from `views[i]`; `bandwidth[i]`, when given, counts relay i's links. */
async function pair(views: Array<{ relays: ConsensusRelay[] }>, bandwidth: Array<() => NodeBandwidth> = []) {
  const bw = (i: number) => bandwidth[i] && {
    attach: (ch: Channel) => bandwidth[i]().attach(ch),
    onLinkCell: (ch: Channel, c: Parameters<NodeBandwidth['onLinkCell']>[1]) => bandwidth[i]().onLinkCell(ch, c),
    beforeClose: (chs?: Iterable<Channel>) => bandwidth[i]().beforeClose(chs),
    beforeClosing: (ch: Channel) => bandwidth[i]().beforeClosing(ch),
  };
  const a = await startRelay('a', ['Guard'], { linkWarming: warming, consensus: () => views[0], bandwidth: bw(0) });
  const b = await startRelay('b', [], { linkWarming: warming, consensus: () => views[1], bandwidth: bw(1) });
  relays.push(a, b);
  // A follower's pass waits out the link handshake bound (10 s) after the leaders'; these links
  // open in milliseconds, so every idlePass here needs only a little of it.
  for (const r of [a, b]) r.rc.warmer!.followGraceMs = 200;
  return [a, b] as const;
}

describe('relay link warming with the real circuit engine', () => {
  it('a consensus links the two relays once; an EXTEND2 between them reuses that link', async () => {
    const views = [{ relays: [] as ConsensusRelay[] }, { relays: [] as ConsensusRelay[] }];
    const [a, b] = await pair(views);
    // A new consensus object each time, as the mirror installs them.
    views[0] = { relays: [a.info, b.info] };
    views[1] = { relays: [a.info, b.info] };
    // The relay whose fingerprint sorts lower opens the link; the other, given the consensus
    // after that, finds the link open and opens none.
    const [first, second] = a.info.fingerprint < b.info.fingerprint ? [a, b] : [b, a];
    first.rc.onConsensus(views[first === a ? 0 : 1]);
    await first.rc.warmer!.idlePass;
    second.rc.onConsensus(views[second === a ? 0 : 1]);
    await second.rc.warmer!.idlePass;
    const [ma, mb] = [await scrapeOf(a), await scrapeOf(b)];
    // One link between them: opened by whichever fingerprint sorts lower, accepted by the other.
    const lead = a.info.fingerprint < b.info.fingerprint ? ma : mb;
    const other = lead === ma ? mb : ma;
    expect(metric(lead, 'bitcloud_relay_links_warmed_total', { result: 'opened' })).toBe(1);
    expect(metric(other, 'bitcloud_relay_links_warmed_total')).toBe(0);
    expect(metric(lead, 'bitcloud_relay_links_open', { direction: 'outbound' })).toBe(1);
    expect(metric(other, 'bitcloud_relay_links_open', { direction: 'inbound' })).toBe(1);

    const c = await manualCircuit([a, b]);
    const after = await scrapeOf(a);
    expect(metric(after, 'bitcloud_relay_extend_links_total', { link: 'reused' })).toBe(1);
    expect(metric(after, 'bitcloud_relay_extend_links_total', { link: 'opened' })).toBe(0);
    c.destroy();
  });

  it('a relay counted as a client (our consensus did not list it yet) leaves the count when a consensus lists it', async () => {
    const views = [{ relays: [] as ConsensusRelay[] }, { relays: [] as ConsensusRelay[] }];
    const [a, b] = await pair(views);
    // The relay whose fingerprint sorts lower (the one that opens the link) lists both; the other's
    // consensus lists neither (not even an address at 127.0.0.1), so it takes the incoming link
    // for a client's.
    const [warmer, accepter] = a.info.fingerprint < b.info.fingerprint ? [a, b] : [b, a];
    const wi = warmer === a ? 0 : 1;
    views[wi] = { relays: [a.info, b.info] };
    views[1 - wi] = { relays: [] };
    warmer.rc.onConsensus(views[wi]);
    await warmer.rc.warmer!.idlePass;
    expect(metric(await scrapeOf(warmer), 'bitcloud_relay_links_warmed_total', { result: 'opened' })).toBe(1);
    expect(accepter.rc.dos.size).toBe(1); // counted as one connection from 127.0.0.1
    views[1 - wi] = { relays: [a.info, b.info] }; // a new consensus object, as the mirror installs
    accepter.rc.onConsensus(views[1 - wi]);
    expect(accepter.rc.dos.size).toBe(0);
  });

  it('connections still in their handshake count against the per-address cap: the one past it is closed at once (SPEC.md §7b.9)', async () => {
    // No consensus lists 127.0.0.1, so nothing from it is exempt.
    const r = await startRelay('cap', [], { consensus: () => ({ relays: [] }), limits: { maxConnectionsPerAddress: 3 } });
    relays.push(r);
    // One finished link (counted once, not again when its handshake completes) and two connections
    // that never send a byte: their TLS handshakes stay in progress.
    const link = await connectLink({ host: '127.0.0.1', port: r.info.orPort, expectedIdentity: r.info.identity });
    const held = await holdConnections(r.info.orPort, 2);
    const [fourth] = await holdConnections(r.info.orPort, 1);
    // Closed long before the 10 s handshake timeout would close it (the test's own timeout is 5 s).
    await fourth.closed;
    expect(held.every((h) => !h.socket.destroyed) && !link.closed).toBe(true);
    expect(metric(await scrapeOf(r), 'bitcloud_dos_refusals_total', { kind: 'connections_per_address' })).toBe(1);
    expect(r.rc.dos.size).toBe(1);
    // Each closed connection gives its place back exactly once: then the address is forgotten.
    for (const h of held) h.socket.destroy();
    link.close('test done');
    await expect.poll(() => r.rc.dos.size, { timeout: 2000 }).toBe(0);
    // A new connection is admitted again: counted under its address, with no second refusal.
    const [again] = await holdConnections(r.info.orPort, 1);
    await expect.poll(() => r.rc.dos.size, { timeout: 2000 }).toBe(1);
    expect(metric(await scrapeOf(r), 'bitcloud_dos_refusals_total', { kind: 'connections_per_address' })).toBe(1);
    expect(again.socket.destroyed).toBe(false);
  }, 5000);

  /**
   * Two listed relays with bandwidth exchange (epochs of `periodSeconds`; 0: no consensus for it),
   * linked by the warmer of the one that leads: that relay's exchange, its warming host and the link.
   */
  async function idleWarmedLink(periodSeconds: number): Promise<{ nb: NodeBandwidth; host: WarmingHost<Channel>; link: Channel }> {
    const views = [{ relays: [] as ConsensusRelay[] }, { relays: [] as ConsensusRelay[] }];
    const nbs: NodeBandwidth[] = [];
    const [a, b] = await pair(views, [() => nbs[0], () => nbs[1]]);
    for (const r of [a, b]) {
      nbs.push(new NodeBandwidth({ identity: r.keys.identity, dataDir: r.dir, authorities: [], periodSeconds: () => periodSeconds, registry: new Registry(), settings: { shutdownGraceMs: 2000 } }));
    }
    const [lead, li] = a.info.fingerprint < b.info.fingerprint ? [a, 0] : [b, 1];
    views[0] = views[1] = { relays: [a.info, b.info] };
    lead.rc.onConsensus(views[li]);
    await lead.rc.warmer!.idlePass;
    const host = (lead.rc.warmer as unknown as { host: WarmingHost<Channel> }).host;
    const [{ link }] = host.outboundLinks();
    return { nb: nbs[li], host, link };
  }

  it('an idle link on which a cell was counted after the closing proposal\'s cut is not closed (SPEC.md §1.9, §8.3 step 10)', async () => {
    const { nb, host, link } = await idleWarmedLink(10);
    link.send(0x8000_1234, CellCommand.RELAY, Buffer.alloc(509)); // the segment the proposal will close
    // While the proposal waits for its answer, a circuit carries a cell (opened and gone again).
    const propose = nb.beforeClosing.bind(nb);
    nb.beforeClosing = (ch) => { const p = propose(ch); ch.send(0x8000_1234, CellCommand.RELAY, Buffer.alloc(509)); return p; };
    expect(await host.closeIdle(link)).toBe(false);
    expect(link.closed).toBe(false);
    nb.beforeClosing = propose; // nothing more is carried: the next proposal settles it and the link closes
    expect(await host.closeIdle(link)).toBe(true);
    expect(link.closed).toBe(true);
  });

  it('with no consensus for the bandwidth exchange (no epoch, nothing to propose), an idle link that counted cells is closed (SPEC.md §1.9)', async () => {
    const { host, link } = await idleWarmedLink(0);
    link.send(0x8000_1234, CellCommand.RELAY, Buffer.alloc(509)); // a cell counted, never to be proposed
    expect(await host.closeIdle(link)).toBe(true);
    expect(link.closed).toBe(true);
  });
});
