// SPEC.md §7b.9 with the real circuit engine (RelayCircuits) behind a real TLS listener: the
// exemption by address at accept lasts only until the handshake ends, so links from a listed
// relay's address that finish as unauthenticated clients are counted under the connection cap;
// a link proving the listed relay's identity is not. One proven identity holds at most 8 links.
import { afterEach, describe, expect, it } from 'vitest';
import { metric, parsePrometheus } from '../helpers/localnet';
import { startRelay, type TestRelay } from '../helpers/inprocess-relays';
import { connectLink, type Channel } from '../../src/link';

let relays: TestRelay[] = [];
const links: Channel[] = [];
afterEach(async () => {
  for (const l of links.splice(0)) l.destroy();
  for (const r of relays) await r.stop();
  relays = [];
});

async function scrapeOf(r: TestRelay) { return parsePrometheus(await r.registry.metrics()); }

/** Relay `r` whose consensus lists `peer` (at 127.0.0.1, the address every test link comes from). */
async function listedPeerPair(): Promise<{ r: TestRelay; peer: TestRelay }> {
  const peer = await startRelay('peer', []);
  relays.push(peer);
  const r = await startRelay('r', [], { consensus: () => ({ relays: [peer.info] }) });
  relays.push(r);
  return { r, peer };
}

describe('connection cap at a listed relay\'s address (SPEC.md §7b.9)', () => {
  it('links that end their handshake as unauthenticated clients are counted: those past 50 are closed; the relay\'s own link is not counted', async () => {
    const { r, peer } = await listedPeerPair();
    const clients: Channel[] = [];
    for (let i = 0; i < 60; i++) {
      const ch = await connectLink({ host: '127.0.0.1', port: r.info.orPort, expectedIdentity: r.info.identity });
      clients.push(ch);
      links.push(ch);
    }
    await expect.poll(() => clients.filter((c) => c.closed).length, { timeout: 5000 }).toBe(10);
    // The ones past the cap are the last ten; the first fifty stay.
    expect(clients.slice(0, 50).every((c) => !c.closed)).toBe(true);
    expect(metric(await scrapeOf(r), 'bitcloud_dos_refusals_total', { kind: 'connections_per_address' })).toBe(10);
    // The listed relay, at the same address, proves its identity: not counted, not closed.
    const relayLink = await connectLink({ host: '127.0.0.1', port: r.info.orPort, expectedIdentity: r.info.identity, identity: peer.keys.identity });
    links.push(relayLink);
    await new Promise((res) => setTimeout(res, 200));
    expect(relayLink.closed).toBe(false);
    expect(metric(await scrapeOf(r), 'bitcloud_dos_refusals_total', { kind: 'connections_per_address' })).toBe(10);
    // Once the clients are gone the address is forgotten: the relay's link holds no place.
    for (const c of clients) c.close('test done');
    await expect.poll(() => r.rc.dos.size, { timeout: 5000 }).toBe(0);
    expect(relayLink.closed).toBe(false);
  }, 20_000);
});

describe('handshakes from an exempt address (SPEC.md §7b.9)', () => {
  it('are capped per address key apart from the connection cap, and give their place back once', async () => {
    const { DosGuard, resolveRelayLimits } = await import('../../src/circuit/dos-limits');
    const g = new DosGuard(resolveRelayLimits({ maxConnectionsPerAddress: 2 }));
    const a = g.admitExemptHandshake('10.0.0.1');
    const b = g.admitExemptHandshake('10.0.0.1');
    expect(a && b).toBeTruthy();
    expect(g.admitExemptHandshake('10.0.0.1')).toBeNull();
    // A count apart: the connection cap of the same address is untouched, and so is another address.
    expect(g.admit('10.0.0.1')).not.toBeNull();
    expect(g.admitExemptHandshake('10.0.0.2')).not.toBeNull();
    a!.release(); a!.release();
    expect(g.admitExemptHandshake('10.0.0.1')).not.toBeNull();
    expect(g.admitExemptHandshake('10.0.0.1')).toBeNull();
  });
});

describe('links per proven identity (SPEC.md §7b.9)', () => {
  it('a listed relay holds at most 8 links: the 9th is closed right after its handshake and counted, the 8 stay', async () => {
    const { r, peer } = await listedPeerPair();
    const own: Channel[] = [];
    for (let i = 0; i < 9; i++) {
      const ch = await connectLink({ host: '127.0.0.1', port: r.info.orPort, expectedIdentity: r.info.identity, identity: peer.keys.identity });
      own.push(ch);
      links.push(ch);
    }
    await expect.poll(() => own[8].closed, { timeout: 5000 }).toBe(true);
    await new Promise((res) => setTimeout(res, 100));
    expect(own.slice(0, 8).every((c) => !c.closed)).toBe(true);
    const s = await scrapeOf(r);
    expect(metric(s, 'bitcloud_dos_refusals_total', { kind: 'links_per_identity' })).toBe(1);
    expect(metric(s, 'bitcloud_relay_links_open', { direction: 'inbound' })).toBe(8);
    // One closes: its identity may link again.
    own[0].close('test done');
    await expect.poll(async () => metric(await scrapeOf(r), 'bitcloud_relay_links_open', { direction: 'inbound' }), { timeout: 2000 }).toBe(7);
    const again = await connectLink({ host: '127.0.0.1', port: r.info.orPort, expectedIdentity: r.info.identity, identity: peer.keys.identity });
    links.push(again);
    await new Promise((res) => setTimeout(res, 200));
    expect(again.closed).toBe(false);
    expect(metric(await scrapeOf(r), 'bitcloud_dos_refusals_total', { kind: 'links_per_identity' })).toBe(1);
  }, 20_000);
});
