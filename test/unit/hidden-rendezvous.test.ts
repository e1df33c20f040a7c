// SPEC.md §9.21.4–§9.21.5 at one relay (RendezvousRelay) with fake circuits: which message each
// circuit gets back, and each refusal by its code. The relay-crypto side (joined circuits, the
// virtual hop) runs with real daemons in test/integration/hidden-storage.test.ts.
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, it, expect, vi } from 'vitest';
import { RendezvousRelay } from '../../src/circuit/rendezvous';
import type { RendezvousCircuit } from '../../src/circuit/types';
import { RelayCommand } from '../../src/wire/relay-msg';
import { ed25519Generate, ed25519Sign, randomBytes } from '../../src/crypto/primitives';
import {
  decodeEstablishIntro, decodeIntroduce, encodeEstablishIntro, encodeIntroduce, encodeStatus, encodeRendezvous1, establishIntroSignedBytes, IntroduceAckStatus, RendezvousStatus, type IntroDosParams,
} from '../../src/wire/hidden';
import { err, isBitcloudError } from '../../src/errors';
import { makeHsDescriptor, openHsDescriptor } from '../../src/hidden/descriptor';
import { openIntroduce, sealIntroduce } from '../../src/hidden/introduce';
import { connectHidden } from '../../src/hidden/client';
import { hsPeriodOf } from '../../src/crypto/blind';
import { ntorClientCreate, ntorServerRespond } from '../../src/crypto/ntor';
import { relayCryptoHandshake } from '../../src/crypto/relay-crypto';
import { HiddenService, type HiddenServiceOptions } from '../../src/hidden/service';
import type { ConsensusRelay } from '../../src/dir/types';
import type { CircuitBuilder } from '../../src/client/circuit-builder';
import { x25519Generate } from '../../src/crypto/primitives';
import { ClientCircuit, ClientLink, type HopTarget } from '../../src/client/client-circuit';
import type { CellChannel } from '../../src/link/cell-channel';
import { createClientHop, createRelayHop } from '../../src/crypto/relay-crypto';
import { CellCommand } from '../../src/wire/cell';
import { decodeRelayPayload, encodeRelayPayload } from '../../src/wire/relay-msg';
import { DestroyReason, EndReason, decodeEnd, encodeEnd } from '../../src/wire/messages';
import type { IncomingStream } from '../../src/circuit/types';

class FakeCircuit implements RendezvousCircuit {
  isClosed = false;
  extended = false;
  /** The previous hop is a listed relay (a 3-hop circuit's middle) unless set. */
  oneHop = false;
  /** Its own previous-hop link unless one is given. */
  constructor(readonly prev: object = {}) {}
  sent: Array<{ command: number; data: Buffer }> = [];
  joinedWith: RendezvousCircuit | null = null;
  destroyedWith: string | undefined;
  destroyReason: number | undefined;
  sendRelay(command: number, _streamId: number, data: Uint8Array): void { this.sent.push({ command, data: Buffer.from(data) }); }
  join(other: RendezvousCircuit): void { this.joinedWith = other; }
  destroy(reason: number, code?: string): void { this.isClosed = true; this.destroyedWith = code; this.destroyReason = reason; }
}

function codeOf(f: () => unknown): string {
  try { f(); return 'none'; } catch (e) { return isBitcloudError(e) ? e.code : 'other'; }
}

const relayId = ed25519Generate().publicKey;
const NOW = 1_750_000_000_000;

function establish(auth = ed25519Generate(), ts = NOW, ip = relayId, dos?: IntroDosParams): Buffer {
  return encodeEstablishIntro({ authKey: auth.publicKey, timestamp: ts, signature: ed25519Sign(establishIntroSignedBytes(ip, auth.publicKey, ts, dos), auth.secretKey), dos });
}

function introduceBody(authKey: Buffer): Buffer {
  return Buffer.concat([authKey, randomBytes(32), randomBytes(24), randomBytes(60)]);
}

/** INTRODUCE1 on a fresh client circuit (one each, SPEC.md §9.21.5 step 2); the ACK status it got. */
function introduceOnce(rv: RendezvousRelay, body: Buffer): number {
  const c = new FakeCircuit();
  rv.onMessage(c, RelayCommand.INTRODUCE1, body);
  return c.sent[0].data[0];
}

describe('introduction point (SPEC.md §9.21.4)', () => {
  it('ESTABLISH_INTRO answered INTRO_ESTABLISHED; INTRODUCE1 relayed unchanged as INTRODUCE2, ACK 0', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW });
    const auth = ed25519Generate();
    const svc = new FakeCircuit();
    rv.onMessage(svc, RelayCommand.ESTABLISH_INTRO, establish(auth));
    expect(svc.sent.map((s) => s.command)).toEqual([RelayCommand.INTRO_ESTABLISHED]);
    const client = new FakeCircuit();
    const body = introduceBody(auth.publicKey);
    rv.onMessage(client, RelayCommand.INTRODUCE1, body);
    expect(svc.sent[1]).toEqual({ command: RelayCommand.INTRODUCE2, data: body });
    expect(client.sent).toEqual([{ command: RelayCommand.INTRODUCE_ACK, data: Buffer.from([IntroduceAckStatus.SENT]) }]);
  });
  it('refuses a bad signature, another relay\'s identity, a stale timestamp, a circuit that goes on', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW });
    const forged = establish();
    forged[50] ^= 1;
    expect(codeOf(() => rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_INTRO, forged))).toBe('HIDDEN_ESTABLISH_INVALID');
    expect(codeOf(() => rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_INTRO, establish(undefined, NOW, ed25519Generate().publicKey)))).toBe('HIDDEN_ESTABLISH_INVALID');
    expect(codeOf(() => rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_INTRO, establish(undefined, NOW - 11 * 60_000)))).toBe('HIDDEN_ESTABLISH_INVALID');
    const onward = new FakeCircuit();
    onward.extended = true;
    expect(codeOf(() => rv.onMessage(onward, RelayCommand.ESTABLISH_INTRO, establish()))).toBe('HIDDEN_ESTABLISH_INVALID');
    expect(codeOf(() => rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_INTRO, Buffer.alloc(103)))).toBe('HIDDEN_ESTABLISH_INVALID');
    expect(rv.introCircuits).toBe(0);
  });
  it('an unknown auth key gets ACK 1, a short body ACK 2; a forgotten circuit no longer introduces', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW });
    expect(introduceOnce(rv, introduceBody(randomBytes(32)))).toBe(IntroduceAckStatus.UNKNOWN_KEY);
    expect(introduceOnce(rv, Buffer.alloc(90))).toBe(IntroduceAckStatus.MALFORMED);
    const auth = ed25519Generate();
    const svc = new FakeCircuit();
    rv.onMessage(svc, RelayCommand.ESTABLISH_INTRO, establish(auth));
    rv.forget(svc);
    const c2 = new FakeCircuit();
    rv.onMessage(c2, RelayCommand.INTRODUCE1, introduceBody(auth.publicKey));
    expect(c2.sent[0].data[0]).toBe(IntroduceAckStatus.UNKNOWN_KEY);
  });
  it('the DoS extension: INTRODUCE1s past the burst get ACK 3 and are not passed on; the bucket refills at the rate (SPEC.md §9.21.4)', () => {
    let now = NOW;
    const rv = new RendezvousRelay(() => relayId, { now: () => now });
    const auth = ed25519Generate();
    const svc = new FakeCircuit();
    rv.onMessage(svc, RelayCommand.ESTABLISH_INTRO, establish(auth, NOW, relayId, { ratePerSec: 2, burst: 3 }));
    const acks: number[] = [];
    for (let i = 0; i < 5; i++) acks.push(introduceOnce(rv, introduceBody(auth.publicKey)));
    expect(acks).toEqual([0, 0, 0, IntroduceAckStatus.RATE_LIMITED, IntroduceAckStatus.RATE_LIMITED]);
    expect(svc.sent.filter((s) => s.command === RelayCommand.INTRODUCE2)).toHaveLength(3);
    expect(rv.counts.get('ack_rate_limited')).toBe(2);
    now += 500; // one more token at 2 a second
    expect([introduceOnce(rv, introduceBody(auth.publicKey)), introduceOnce(rv, introduceBody(auth.publicKey))]).toEqual([IntroduceAckStatus.SENT, IntroduceAckStatus.RATE_LIMITED]);
    // Parameters the signature does not cover are refused: the extension is signed.
    const tampered = establish(ed25519Generate(), NOW, relayId, { ratePerSec: 2, burst: 3 });
    tampered.writeUInt32BE(1000, 108);
    expect(codeOf(() => rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_INTRO, tampered))).toBe('HIDDEN_ESTABLISH_INVALID');
  });
  it('by default the token bucket and the cookie lifetimes run on a monotonic clock: the wall clock stepping back or forward changes neither', () => {
    const wall = Date.now();
    const clock = vi.spyOn(Date, 'now').mockReturnValue(wall);
    try {
      const rv = new RendezvousRelay(() => relayId);
      const auth = ed25519Generate();
      rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_INTRO, establish(auth, wall, relayId, { ratePerSec: 1, burst: 2 }));
      const waiting = new FakeCircuit();
      rv.onMessage(waiting, RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20));
      const first = introduceOnce(rv, introduceBody(auth.publicKey));
      clock.mockReturnValue(wall - 3_600_000); // the wall clock steps back an hour
      expect([first, introduceOnce(rv, introduceBody(auth.publicKey))]).toEqual([IntroduceAckStatus.SENT, IntroduceAckStatus.SENT]);
      clock.mockReturnValue(wall + 3 * 60_000); // …then forward, past the 2 minutes a cookie may wait
      rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20));
      expect(waiting.isClosed).toBe(false);
      expect(rv.pendingCookies).toBe(2);
      rv.close();
    } finally {
      clock.mockRestore();
    }
  });
  it('without the extension the defaults apply (25 a second, burst 200)', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW });
    const auth = ed25519Generate();
    rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_INTRO, establish(auth));
    const acks: number[] = [];
    for (let i = 0; i < 201; i++) acks.push(introduceOnce(rv, introduceBody(auth.publicKey)));
    expect(acks.filter((a) => a === IntroduceAckStatus.SENT)).toHaveLength(200);
    expect(acks[200]).toBe(IntroduceAckStatus.RATE_LIMITED);
  });
  it('one INTRODUCE1 per client circuit: a second one, whatever the first got, destroys the circuit (RELAY_PROTOCOL) and is not passed on (SPEC.md §9.21.5 step 2)', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW });
    const auth = ed25519Generate();
    const svc = new FakeCircuit();
    rv.onMessage(svc, RelayCommand.ESTABLISH_INTRO, establish(auth));
    const client = new FakeCircuit();
    rv.onMessage(client, RelayCommand.INTRODUCE1, introduceBody(auth.publicKey));
    expect(codeOf(() => rv.onMessage(client, RelayCommand.INTRODUCE1, introduceBody(auth.publicKey)))).toBe('RELAY_PROTOCOL');
    expect(svc.sent.filter((s) => s.command === RelayCommand.INTRODUCE2)).toHaveLength(1);
    expect(client.sent).toHaveLength(1);
    // A refused first one (unknown key, malformed) counts too: a flood cannot probe keys on one circuit.
    const prober = new FakeCircuit();
    rv.onMessage(prober, RelayCommand.INTRODUCE1, introduceBody(randomBytes(32)));
    expect(codeOf(() => rv.onMessage(prober, RelayCommand.INTRODUCE1, introduceBody(auth.publicKey)))).toBe('RELAY_PROTOCOL');
    expect(svc.sent.filter((s) => s.command === RelayCommand.INTRODUCE2)).toHaveLength(1);
    expect(rv.counts.get('introduce1_repeated')).toBe(2);
    // Forgotten with its circuit: nothing is kept per circuit once it is gone.
    rv.forget(client);
    rv.forget(prober);
    expect((rv as unknown as { introduced: Set<unknown> }).introduced.size).toBe(0);
  });
  it('a second ESTABLISH_INTRO for the same key replaces (and destroys) the first circuit', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW });
    const auth = ed25519Generate();
    const first = new FakeCircuit();
    const second = new FakeCircuit();
    rv.onMessage(first, RelayCommand.ESTABLISH_INTRO, establish(auth));
    rv.onMessage(second, RelayCommand.ESTABLISH_INTRO, establish(auth, NOW + 1));
    expect(first.isClosed).toBe(true);
    expect(rv.introCircuits).toBe(1);
  });
  it('holds at most maxIntroCircuits', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW, limits: { maxIntroCircuits: 1 } });
    rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_INTRO, establish());
    expect(codeOf(() => rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_INTRO, establish()))).toBe('HIDDEN_RELAY_LIMIT');
  });
  it('one holder of every introduction slot does not lock a service out: a circuit by another link takes the newest slot of the link holding the most (SPEC.md §9.21.4)', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW, limits: { maxIntroCircuits: 8 } });
    // A hostile would-be service fills all 8 slots through two links (say, two middles it picked).
    const linkA = {}, linkB = {};
    const hostile = Array.from({ length: 8 }, (_, i) => new FakeCircuit(i < 5 ? linkA : linkB));
    for (const c of hostile) rv.onMessage(c, RelayCommand.ESTABLISH_INTRO, establish());
    expect(rv.introCircuits).toBe(8);
    // More through its fullest link get nothing: that link already holds the most.
    expect(codeOf(() => rv.onMessage(new FakeCircuit(linkA), RelayCommand.ESTABLISH_INTRO, establish()))).toBe('HIDDEN_RELAY_LIMIT');
    // An honest service by a third link gets a slot: the newest of link A's five is destroyed.
    const auth = ed25519Generate();
    const honest = new FakeCircuit();
    rv.onMessage(honest, RelayCommand.ESTABLISH_INTRO, establish(auth));
    expect(honest.sent.map((s) => s.command)).toEqual([RelayCommand.INTRO_ESTABLISHED]);
    expect(hostile.map((c) => c.isClosed)).toEqual([false, false, false, false, true, false, false, false]);
    expect(hostile[4].destroyedWith).toBe('HIDDEN_RELAY_LIMIT');
    expect(rv.introCircuits).toBe(8);
    expect(rv.counts.get('intro_evicted')).toBe(1);
    expect(introduceOnce(rv, introduceBody(auth.publicKey))).toBe(IntroduceAckStatus.SENT);
    // The hostile links, now holding 4 and 3, cannot take it back: the fullest holds fewer than two more than either.
    expect(codeOf(() => rv.onMessage(new FakeCircuit(linkB), RelayCommand.ESTABLISH_INTRO, establish()))).toBe('HIDDEN_RELAY_LIMIT');
    expect(honest.isClosed).toBe(false);
    // A link's share is forgotten with its circuits.
    for (const c of [...hostile, honest]) rv.forget(c);
    expect((rv as unknown as { introsByLink: Map<object, unknown> }).introsByLink.size).toBe(0);
  });
});

describe('rendezvous point (SPEC.md §9.21.5)', () => {
  it('parks a cookie, joins on RENDEZVOUS1 and sends RENDEZVOUS2; the cookie is spent afterwards', () => {
    let now = NOW;
    const rv = new RendezvousRelay(() => relayId, { now: () => now });
    const cookie = randomBytes(20);
    const client = new FakeCircuit();
    rv.onMessage(client, RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
    expect(client.sent).toEqual([{ command: RelayCommand.RENDEZVOUS_ESTABLISHED, data: Buffer.from([RendezvousStatus.OK]) }]);
    const svc = new FakeCircuit();
    const reply = randomBytes(64);
    rv.onMessage(svc, RelayCommand.RENDEZVOUS1, encodeRendezvous1({ cookie, reply }));
    expect(client.sent[1]).toEqual({ command: RelayCommand.RENDEZVOUS2, data: reply });
    expect(client.joinedWith).toBe(svc);
    expect(svc.joinedWith).toBe(client);
    // Spent: refused for an hour, then forgotten.
    const again = new FakeCircuit();
    rv.onMessage(again, RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
    expect(again.sent[0].data[0]).toBe(RendezvousStatus.COOKIE_REUSED);
    expect(again.destroyedWith).toBe('HIDDEN_COOKIE_REUSED');
    now += 3_600_001;
    const later = new FakeCircuit();
    rv.onMessage(later, RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
    expect(later.sent[0].data[0]).toBe(RendezvousStatus.OK);
  });
  it('remembers at most maxSpentCookies spent cookies within the hour, forgetting the oldest first (SPEC.md §9.21.5 step 1)', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW, limits: { maxSpentCookies: 3 } });
    const cookies = Array.from({ length: 10 }, () => randomBytes(20));
    // Joins as fast as one can make circuit pairs: the map of spent cookies does not grow past the bound.
    for (const cookie of cookies) {
      rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
      rv.onMessage(new FakeCircuit(), RelayCommand.RENDEZVOUS1, encodeRendezvous1({ cookie, reply: randomBytes(64) }));
    }
    // The three newest are still refused; an older one was forgotten.
    for (const cookie of cookies.slice(-3)) {
      const again = new FakeCircuit();
      rv.onMessage(again, RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
      expect(again.sent[0].data[0]).toBe(RendezvousStatus.COOKIE_REUSED);
    }
    const oldest = new FakeCircuit();
    rv.onMessage(oldest, RelayCommand.ESTABLISH_RENDEZVOUS, cookies[0]);
    expect(oldest.sent[0].data[0]).toBe(RendezvousStatus.OK);
    expect(rv.spentCookies).toBe(3);
  });
  it('one holder of every waiting slot does not lock clients out: a cookie by another link takes the newest slot of the link holding the most (SPEC.md §9.21.5 step 1)', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW, limits: { maxPendingCookies: 6 } });
    const link = {};
    const parked = Array.from({ length: 6 }, () => new FakeCircuit(link));
    for (const c of parked) rv.onMessage(c, RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20));
    expect(rv.pendingCookies).toBe(6);
    // More by the same link: refused, that link holds the most already.
    const more = new FakeCircuit(link);
    expect(codeOf(() => rv.onMessage(more, RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20)))).toBe('HIDDEN_RELAY_LIMIT');
    // An honest client by another link waits under its cookie; the newest parked circuit goes.
    const cookie = randomBytes(20);
    const client = new FakeCircuit();
    rv.onMessage(client, RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
    expect(client.sent).toEqual([{ command: RelayCommand.RENDEZVOUS_ESTABLISHED, data: Buffer.from([RendezvousStatus.OK]) }]);
    expect(parked.map((c) => c.isClosed)).toEqual([false, false, false, false, false, true]);
    expect(parked[5].destroyedWith).toBe('HIDDEN_RELAY_LIMIT');
    expect(rv.pendingCookies).toBe(6);
    expect(rv.counts.get('cookie_evicted')).toBe(1);
    // …and the service joins it.
    const svc = new FakeCircuit();
    rv.onMessage(svc, RelayCommand.RENDEZVOUS1, encodeRendezvous1({ cookie, reply: randomBytes(64) }));
    expect(client.joinedWith).toBe(svc);
    // Joined or gone, a circuit leaves its link's share.
    for (const c of parked) rv.forget(c);
    expect((rv as unknown as { waitingByLink: Map<object, unknown> }).waitingByLink.size).toBe(0);
    rv.close();
  });
  it('refuses a pending cookie twice, and a RENDEZVOUS1 with an unknown cookie', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW });
    const cookie = randomBytes(20);
    rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
    const dup = new FakeCircuit();
    rv.onMessage(dup, RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
    expect(dup.sent[0].data[0]).toBe(RendezvousStatus.COOKIE_REUSED);
    expect(codeOf(() => rv.onMessage(new FakeCircuit(), RelayCommand.RENDEZVOUS1, encodeRendezvous1({ cookie: randomBytes(20), reply: randomBytes(64) })))).toBe('HIDDEN_COOKIE_UNKNOWN');
    expect(codeOf(() => rv.onMessage(new FakeCircuit(), RelayCommand.ESTABLISH_RENDEZVOUS, Buffer.alloc(19)))).toBe('MSG_TRUNCATED');
  });
  it('a circuit waiting under a cookie past pendingCookieMs (2 min) is destroyed (TIMEOUT), found by the next ESTABLISH_RENDEZVOUS', () => {
    let now = NOW;
    const rv = new RendezvousRelay(() => relayId, { now: () => now });
    const old = new FakeCircuit(), young = new FakeCircuit();
    const oldCookie = randomBytes(20);
    rv.onMessage(old, RelayCommand.ESTABLISH_RENDEZVOUS, oldCookie);
    now += 60_000;
    rv.onMessage(young, RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20));
    now += 60_001; // the first has waited 120 001 ms, the second 60 001 ms
    const late = new FakeCircuit();
    rv.onMessage(late, RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20));
    expect(old.isClosed).toBe(true);
    expect(old.destroyReason).toBe(DestroyReason.TIMEOUT);
    expect(young.isClosed || late.isClosed).toBe(false);
    expect(rv.pendingCookies).toBe(2);
    expect(rv.counts.get('expired')).toBe(1);
    // Its cookie waits no more: a RENDEZVOUS1 with it finds nobody.
    expect(codeOf(() => rv.onMessage(new FakeCircuit(), RelayCommand.RENDEZVOUS1, encodeRendezvous1({ cookie: oldCookie, reply: randomBytes(64) })))).toBe('HIDDEN_COOKIE_UNKNOWN');
    rv.close();
  });
  it('with no new arrival, a timer destroys the expired waiting circuits; close() stops it', () => {
    vi.useFakeTimers({ now: NOW });
    try {
      const rv = new RendezvousRelay(() => relayId, { now: () => Date.now(), limits: { pendingCookieMs: 1000 } });
      const a = new FakeCircuit(), b = new FakeCircuit();
      rv.onMessage(a, RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20));
      vi.advanceTimersByTime(500);
      rv.onMessage(b, RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20));
      vi.advanceTimersByTime(501);
      expect([a.isClosed, b.isClosed]).toEqual([true, false]);
      vi.advanceTimersByTime(500);
      expect([a.isClosed, b.isClosed]).toEqual([true, true]);
      expect(rv.pendingCookies).toBe(0);
      expect(vi.getTimerCount()).toBe(0); // nothing waits: no timer left
      const c = new FakeCircuit();
      rv.onMessage(c, RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20));
      expect(vi.getTimerCount()).toBe(1);
      rv.close();
      expect(vi.getTimerCount()).toBe(0);
    } finally { vi.useRealTimers(); }
  });
  it('a joined circuit has a role: no ESTABLISH_INTRO, ESTABLISH_RENDEZVOUS or second RENDEZVOUS1 on it, and nothing is joined one way', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW });
    const client = new FakeCircuit(), svc = new FakeCircuit();
    const cookie = randomBytes(20);
    rv.onMessage(client, RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
    rv.onMessage(svc, RelayCommand.RENDEZVOUS1, encodeRendezvous1({ cookie, reply: randomBytes(64) }));
    expect(svc.joinedWith).toBe(client);
    for (const c of [client, svc]) {
      expect(codeOf(() => rv.onMessage(c, RelayCommand.ESTABLISH_INTRO, establish()))).toBe('HIDDEN_ESTABLISH_INVALID');
      expect(codeOf(() => rv.onMessage(c, RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20)))).toBe('RELAY_PROTOCOL');
    }
    expect(rv.introCircuits).toBe(0);
    expect(rv.pendingCookies).toBe(0);
    // A second RENDEZVOUS1 on the joined node circuit: refused before the waiting client is touched.
    const other = new FakeCircuit();
    const cookie2 = randomBytes(20);
    rv.onMessage(other, RelayCommand.ESTABLISH_RENDEZVOUS, cookie2);
    expect(codeOf(() => rv.onMessage(svc, RelayCommand.RENDEZVOUS1, encodeRendezvous1({ cookie: cookie2, reply: randomBytes(64) })))).toBe('RELAY_PROTOCOL');
    expect(other.joinedWith).toBeNull();
    expect(other.sent).toHaveLength(1);
    expect(svc.joinedWith).toBe(client);
    expect(rv.pendingCookies).toBe(1);
  });
  it('RENDEZVOUS1 for a waiting circuit that has since gone on joins neither side', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW });
    const client = new FakeCircuit(), svc = new FakeCircuit();
    const cookie = randomBytes(20);
    rv.onMessage(client, RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
    client.extended = true;
    expect(codeOf(() => rv.onMessage(svc, RelayCommand.RENDEZVOUS1, encodeRendezvous1({ cookie, reply: randomBytes(64) })))).toBe('HIDDEN_COOKIE_UNKNOWN');
    expect(client.joinedWith).toBeNull();
    expect(svc.joinedWith).toBeNull();
    expect(client.sent).toHaveLength(1);
  });
});

describe('one-hop circuits take no introduction or rendezvous role (SPEC.md §9.21.4, §9.21.5)', () => {
  const oneHop = (): FakeCircuit => { const c = new FakeCircuit(); c.oneHop = true; return c; };

  it('ESTABLISH_INTRO, INTRODUCE1 and ESTABLISH_RENDEZVOUS from a previous hop that is no listed relay are refused (HIDDEN_ONE_HOP), answered with nothing and counted', () => {
    const refused: string[] = [];
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW, onRefused: (k) => refused.push(k) });
    const direct = oneHop();
    expect(codeOf(() => rv.onMessage(direct, RelayCommand.ESTABLISH_INTRO, establish()))).toBe('HIDDEN_ONE_HOP');
    expect(direct.sent).toEqual([]);
    expect(rv.introCircuits).toBe(0);
    // An introduction point a node established through a 3-hop circuit: a client may not reach it
    // over one hop, and nothing reaches the service.
    const auth = ed25519Generate();
    const svc = new FakeCircuit();
    rv.onMessage(svc, RelayCommand.ESTABLISH_INTRO, establish(auth));
    const intro = oneHop();
    expect(codeOf(() => rv.onMessage(intro, RelayCommand.INTRODUCE1, introduceBody(auth.publicKey)))).toBe('HIDDEN_ONE_HOP');
    expect(intro.sent).toEqual([]);
    expect(svc.sent.map((m) => m.command)).toEqual([RelayCommand.INTRO_ESTABLISHED]);
    const rp = oneHop();
    expect(codeOf(() => rv.onMessage(rp, RelayCommand.ESTABLISH_RENDEZVOUS, randomBytes(20)))).toBe('HIDDEN_ONE_HOP');
    expect(rp.sent).toEqual([]);
    expect(rv.pendingCookies).toBe(0);
    expect(rv.counts.get('HIDDEN_ONE_HOP')).toBe(3);
    expect(refused).toEqual(['hidden_one_hop', 'hidden_one_hop', 'hidden_one_hop']);
  });

  it('3-hop circuits (their previous hop a listed middle) still introduce and join: a node\'s introduction circuit, a client\'s rendezvous circuit', () => {
    const rv = new RendezvousRelay(() => relayId, { now: () => NOW });
    const auth = ed25519Generate();
    const svc = new FakeCircuit();
    rv.onMessage(svc, RelayCommand.ESTABLISH_INTRO, establish(auth));
    expect(introduceOnce(rv, introduceBody(auth.publicKey))).toBe(IntroduceAckStatus.SENT);
    const cookie = randomBytes(20);
    const client = new FakeCircuit();
    rv.onMessage(client, RelayCommand.ESTABLISH_RENDEZVOUS, cookie);
    expect(client.sent[0].data[0]).toBe(RendezvousStatus.OK);
    const node = new FakeCircuit();
    rv.onMessage(node, RelayCommand.RENDEZVOUS1, encodeRendezvous1({ cookie, reply: randomBytes(64) }));
    expect(client.joinedWith).toBe(node);
    expect(rv.counts.get('HIDDEN_ONE_HOP')).toBeUndefined();
  });
});

describe('the hidden node\'s introduction points (SPEC.md §9.21.4)', () => {
  const relay = (key = ed25519Generate().publicKey): ConsensusRelay => ({
    identity: key, fingerprint: key.toString('hex'), address: '10.1.2.3', orPort: 9001, roles: ['relay'], family: [],
    flags: new Set(['Running', 'Valid', 'Fast']),
  }) as unknown as ConsensusRelay;
  async function tried(relays: ConsensusRelay[], family: string[], identity = ed25519Generate()) {
    const asked: string[] = [];
    const builder = { build: (o: { storageNode: ConsensusRelay }) => { asked.push(o.storageNode.fingerprint); return Promise.reject(new Error('no circuit here')); } } as unknown as CircuitBuilder;
    const hs = new HiddenService({
      identity, ntorKey: x25519Generate(), relays: () => relays, builder, family, onStream: () => {}, publish: () => Promise.resolve(), introPoints: 1,
    });
    let code = 'none';
    try { await hs.start(); } catch (e) { code = isBitcloudError(e) ? e.code : 'other'; }
    hs.close();
    return { asked, code };
  }
  it('never picks a relay of its family, nor itself: HIDDEN_NO_INTRO when those are the only candidates', async () => {
    const me = ed25519Generate();
    const x = relay();
    const { asked, code } = await tried([x, relay(me.publicKey)], [x.fingerprint], me);
    expect(asked).toEqual([]);
    expect(code).toBe('HIDDEN_NO_INTRO');
    // Another relay outside the family is tried.
    const y = relay();
    const r2 = await tried([x, y, relay(me.publicKey)], [x.fingerprint], me);
    expect(new Set(r2.asked)).toEqual(new Set([y.fingerprint]));
  });
});

/** A circuit the hidden node built (fake): records control messages; ESTABLISH_INTRO is answered at once. */
class FakeNodeCircuit extends EventEmitter {
  onControl: ((command: number, data: Buffer) => void) | null = null;
  sent: Array<{ command: number; data: Buffer }> = [];
  isOpen = true;
  constructor(readonly to: ConsensusRelay) { super(); }
  sendControl(command: number, data: Uint8Array): void {
    this.sent.push({ command, data: Buffer.from(data) });
    if (command === RelayCommand.ESTABLISH_INTRO) void Promise.resolve().then(() => this.onControl?.(RelayCommand.INTRO_ESTABLISHED, Buffer.alloc(0)));
  }
  /** Where the node sends the BEGIN_STORAGE streams of this circuit once it is a rendezvous circuit. */
  onStream: ((inc: IncomingStream) => void) | null = null;
  attachServiceEnd(_keys: Buffer, onStream: (inc: IncomingStream) => void): void { this.onStream = onStream; }
  destroy(): void {
    if (!this.isOpen) return;
    this.isOpen = false;
    this.emit('close', err('CIRCUIT_DESTROYED', 'destroyed'));
  }
  get authKey(): Buffer | null {
    const m = this.sent.find((s) => s.command === RelayCommand.ESTABLISH_INTRO);
    return m ? decodeEstablishIntro(m.data).authKey : null;
  }
}

function consensusRelay(key = ed25519Generate().publicKey): ConsensusRelay {
  return {
    identity: key, fingerprint: key.toString('hex'), address: '10.1.2.3', orPort: 9001, roles: ['relay'], family: [],
    flags: new Set(['Running', 'Valid', 'Fast']),
  } as unknown as ConsensusRelay;
}

/** A HiddenService over fake circuits to 8 relays; `publish` may hold a publication back. */
function nodeHarness(o: {
  introReplayMax?: number; publish?: (d: Buffer) => Promise<void>; fail?: () => boolean; introPoints?: number; introRotation?: HiddenServiceOptions['introRotation'];
  /** Holds a build back until the promise it returns resolves (the circuit exists only then). */
  hold?: () => Promise<void> | null;
  /** Sees each circuit as its build resolves (a test may close it there, as a DESTROY read with the last EXTENDED2 would). */
  built?: (c: FakeNodeCircuit) => void;
  /** The node's monotonic clock (ms). */
  clock?: () => number;
} = {}) {
  const identity = ed25519Generate();
  const relays = Array.from({ length: 8 }, () => consensusRelay());
  const circuits: FakeNodeCircuit[] = [];
  const published: Buffer[] = [];
  const builds = { n: 0 };
  const builder = {
    build: (b: { storageNode: ConsensusRelay }) => {
      builds.n++;
      if (o.fail?.()) return Promise.reject(err('CIRCUIT_DESTROYED', 'no circuit here'));
      const made = () => {
        const circ = new FakeNodeCircuit(b.storageNode);
        circuits.push(circ);
        o.built?.(circ);
        return { circ };
      };
      const held = o.hold?.();
      return held ? held.then(made) : Promise.resolve(made());
    },
  } as unknown as CircuitBuilder;
  const hs = new HiddenService({
    identity, ntorKey: x25519Generate(), relays: () => relays, builder, onStream: () => {}, now: () => NOW,
    publish: (d) => { published.push(d); return o.publish ? o.publish(d) : Promise.resolve(); },
    introReplayMax: o.introReplayMax, introPoints: o.introPoints, introRotation: o.introRotation, clock: o.clock,
  });
  const intros = () => circuits.filter((c) => c.isOpen && c.authKey);
  /** The introduction points of the last descriptor published. */
  const described = () => openHsDescriptor(published[published.length - 1], identity.publicKey, NOW).inner.intros;
  /**
   * A validly sealed INTRODUCE2 on `c`, naming a rendezvous point nobody lists, or `rp` (one of
   * `relays`) with a client's genuine ntor handshake for the node.
   */
  const introduce = (c: FakeNodeCircuit, rp?: ConsensusRelay, cookie = randomBytes(20)) => {
    const inner = openHsDescriptor(published[published.length - 1], identity.publicKey, NOW).inner;
    const ip = inner.intros.find((i) => i.authKey.equals(c.authKey!))!;
    const onionskin = rp ? ntorClientCreate({ id: identity.publicKey, onionKey: inner.ntorKey, protoid: relayCryptoHandshake('tor1').protoid }).onionskin : randomBytes(96);
    const body = encodeIntroduce(sealIntroduce(ip.authKey, ip.encKey, {
      cookie, rpLinkSpecifiers: [{ type: 'ipv4', addr: '10.9.9.9', port: 9001 }, { type: 'ed25519', id: rp ? rp.identity : randomBytes(32) }], rpOnionKey: randomBytes(32), onionskin,
    }));
    c.onControl!(RelayCommand.INTRODUCE2, body);
  };
  /** The rendezvous circuits the node built (open or not). */
  const rendezvous = () => circuits.filter((c) => c.sent.some((m) => m.command === RelayCommand.RENDEZVOUS1));
  return { hs, relays, circuits, published, builds, intros, described, introduce, rendezvous };
}

describe('the hidden node keeps its introduction points up (SPEC.md §9.21.4, §9.21.5)', () => {
  it('an introduction point whose replay cache is full is replaced: new circuit, new ESTABLISH_INTRO, new descriptor; the old circuit is closed', async () => {
    const h = nodeHarness({ introReplayMax: 4 });
    await h.hs.start();
    expect(h.intros()).toHaveLength(3);
    expect(h.published).toHaveLength(2); // periods N and N+1
    const victim = h.intros()[0];
    for (let i = 0; i < 5; i++) h.introduce(victim);
    expect(Object.fromEntries(h.hs.counts)).toMatchObject({ HIDDEN_RP_UNKNOWN: 4, HIDDEN_INTRO_REPLAY: 1 }); // 4 passed the replay check, then it was full
    await vi.waitFor(() => expect(h.published).toHaveLength(4));
    expect(victim.isOpen).toBe(false);
    expect(h.circuits).toHaveLength(4);
    expect(h.intros()).toHaveLength(3);
    const keys = h.described().map((i) => i.authKey.toString('hex'));
    expect(keys).not.toContain(victim.authKey!.toString('hex'));
    expect(new Set(keys)).toEqual(new Set(h.intros().map((c) => c.authKey!.toString('hex'))));
    h.hs.close();
  });
  it('an introduction circuit closed as its INTRO_ESTABLISHED came is not kept: another point is established and only open ones are described', async () => {
    let first = true;
    const h = nodeHarness({
      built: (c) => {
        if (!first) return;
        first = false;
        // INTRO_ESTABLISHED and a DESTROY read together: the circuit is closed before the node goes on.
        c.sendControl = function (command: number, data: Uint8Array) {
          this.sent.push({ command, data: Buffer.from(data) });
          void Promise.resolve().then(() => { this.onControl?.(RelayCommand.INTRO_ESTABLISHED, Buffer.alloc(0)); this.destroy(); });
        };
      },
    });
    await h.hs.start();
    expect(h.circuits[0].isOpen).toBe(false);
    expect(h.hs.introductionPoints).toHaveLength(3);
    expect(h.intros()).toHaveLength(3);
    const keys = h.described().map((i) => i.authKey.toString('hex'));
    expect(keys).not.toContain(h.circuits[0].authKey!.toString('hex'));
    expect(new Set(keys)).toEqual(new Set(h.intros().map((c) => c.authKey!.toString('hex'))));
    h.hs.close();
  });
  it('an introduction point lost while a publication is under way is replaced, and a new descriptor published, once that one ends', async () => {
    const gate: { open?: () => void } = {};
    const h = nodeHarness({ publish: () => (gate.open ? Promise.resolve() : new Promise<void>((r) => { gate.open = r; })) });
    const started = h.hs.start();
    await vi.waitFor(() => expect(gate.open).toBeDefined());
    const lost = h.intros()[0];
    lost.destroy();
    gate.open!();
    await started;
    await vi.waitFor(() => expect(h.published).toHaveLength(4));
    expect(h.intros()).toHaveLength(3);
    expect(h.circuits).toHaveLength(4);
    const keys = h.described().map((i) => i.authKey.toString('hex'));
    expect(keys).not.toContain(lost.authKey!.toString('hex'));
    expect(new Set(keys)).toEqual(new Set(h.intros().map((c) => c.authKey!.toString('hex'))));
    h.hs.close();
  });
  it('an introduction circuit still being established when the node closes is destroyed, not kept', async () => {
    const h = nodeHarness();
    const started = h.hs.start();
    h.hs.close(); // the first circuit is still being built
    await started.catch(() => {});
    await new Promise<void>((r) => setImmediate(r));
    expect(h.circuits.length).toBeGreaterThan(0);
    expect(h.circuits.filter((c) => c.isOpen)).toEqual([]);
    expect(h.hs.introductionPoints).toEqual([]);
  });
  it('a circuit built after the node closed is destroyed at once: no ESTABLISH_INTRO on it, no descriptor published (SPEC.md §9.21.3, §9.21.4)', async () => {
    const gate: { open?: () => void } = {};
    const h = nodeHarness({ introPoints: 1, hold: () => new Promise<void>((r) => { gate.open = r; }) });
    const started = h.hs.start();
    await vi.waitFor(() => expect(gate.open).toBeDefined());
    h.hs.close(); // the build is still pending
    gate.open!();
    await expect(started).rejects.toMatchObject({ code: 'HIDDEN_NO_INTRO' });
    await new Promise<void>((r) => setImmediate(r));
    expect(h.circuits).toHaveLength(1);
    expect(h.circuits[0].sent).toEqual([]);
    expect(h.circuits[0].isOpen).toBe(false);
    expect(h.published).toEqual([]);
    expect(h.hs.hasPublished).toBe(false);
  });
  it('a node closed while its descriptor for period N is being published does not go on to publish the one for N+1 (SPEC.md §9.21.3)', async () => {
    const gate: { open?: () => void } = {};
    const h = nodeHarness({ publish: () => (gate.open ? Promise.resolve() : new Promise<void>((r) => { gate.open = r; })) });
    const started = h.hs.start();
    await vi.waitFor(() => expect(gate.open).toBeDefined());
    expect(h.published).toHaveLength(1);
    h.hs.close();
    gate.open!();
    await expect(started).rejects.toMatchObject({ code: 'HIDDEN_NO_INTRO' });
    await new Promise<void>((r) => setImmediate(r));
    expect(h.published).toHaveLength(1);
    expect(h.hs.counts.get('published')).toBeUndefined();
    expect(h.circuits.filter((c) => c.isOpen)).toEqual([]);
  });
  it('when no replacement can be built (3 tries per missing point), the node tries again after 5 s, then 10 s, rather than at the next republication', async () => {
    vi.useFakeTimers();
    try {
      let failing = false;
      const h = nodeHarness({ fail: () => failing });
      await h.hs.start();
      expect(h.builds.n).toBe(3);
      failing = true;
      h.intros()[0].destroy();
      await vi.advanceTimersByTimeAsync(0);
      expect(h.builds.n).toBe(3 + 3); // gave up after 3 tries for the one missing point, not 3 per wanted point
      expect(h.intros()).toHaveLength(2);
      await vi.advanceTimersByTimeAsync(4_999);
      expect(h.builds.n).toBe(6);
      await vi.advanceTimersByTimeAsync(1);
      expect(h.builds.n).toBe(9);
      failing = false;
      await vi.advanceTimersByTimeAsync(9_999);
      expect(h.builds.n).toBe(9);
      await vi.advanceTimersByTimeAsync(1);
      expect(h.intros()).toHaveLength(3);
      expect(new Set(h.described().map((i) => i.authKey.toString('hex')))).toEqual(new Set(h.intros().map((c) => c.authKey!.toString('hex'))));
      h.hs.close();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('the hidden node rotates its introduction points (SPEC.md §9.21.4)', () => {
  const keyOf = (c: FakeNodeCircuit) => c.authKey!.toString('hex');
  it('one past its lifetime is replaced: a new point on another relay, a new descriptor revision, and only then the old circuit closed', async () => {
    vi.useFakeTimers();
    try {
      const gate: { held: boolean; open?: () => void } = { held: false };
      const h = nodeHarness({
        introPoints: 1, introRotation: { lifetimeMs: [60_000, 60_000] },
        publish: () => (gate.held ? new Promise<void>((r) => { gate.open = r; }) : Promise.resolve()),
      });
      await h.hs.start();
      const [old] = h.intros();
      expect(h.published).toHaveLength(2);
      gate.held = true;
      await vi.advanceTimersByTimeAsync(59_999);
      expect(h.circuits).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1);
      expect(h.circuits).toHaveLength(2); // the replacement, established first
      const fresh = h.circuits[1];
      expect(fresh.to.fingerprint).not.toBe(old.to.fingerprint);
      expect(h.hs.introductionPoints.map((r) => r.fingerprint)).toEqual([fresh.to.fingerprint]);
      expect(old.isOpen).toBe(true); // still serves clients holding the old descriptor while the new one is published
      expect(h.hs.counts.get('intro_rotated')).toBe(1);
      gate.held = false;
      gate.open!();
      await vi.advanceTimersByTimeAsync(0);
      expect(h.published).toHaveLength(4);
      expect(h.described().map((i) => i.authKey.toString('hex'))).toEqual([keyOf(fresh)]);
      expect(old.isOpen).toBe(false);
      expect(fresh.isOpen).toBe(true);
      h.hs.close();
    } finally {
      vi.useRealTimers();
    }
  });
  it('one past its introduction budget is replaced the same way; the others stay', async () => {
    vi.useFakeTimers();
    try {
      const h = nodeHarness({ introRotation: { introductions: [3, 3] } });
      await h.hs.start();
      const [victim, ...others] = h.intros();
      h.introduce(victim);
      h.introduce(victim);
      await vi.advanceTimersByTimeAsync(0);
      expect(h.circuits).toHaveLength(3);
      h.introduce(victim);
      await vi.advanceTimersByTimeAsync(0);
      expect(h.hs.counts.get('intro_rotated')).toBe(1);
      expect(h.circuits).toHaveLength(4);
      expect(h.published).toHaveLength(4);
      expect(victim.isOpen).toBe(false);
      expect(others.every((c) => c.isOpen)).toBe(true);
      const keys = h.described().map((i) => i.authKey.toString('hex'));
      expect(keys).not.toContain(keyOf(victim));
      expect(new Set(keys)).toEqual(new Set(h.intros().map(keyOf)));
      expect(new Set(h.intros().map((c) => c.to.fingerprint)).size).toBe(3);
      h.hs.close();
    } finally {
      vi.useRealTimers();
    }
  });
  it('make before break: a point past its lifetime whose replacement cannot be built stays in the descriptor and keeps its circuit until one is built (SPEC.md §9.21.4 "Rotation")', async () => {
    vi.useFakeTimers();
    try {
      let failing = false;
      const h = nodeHarness({ introPoints: 1, introRotation: { lifetimeMs: [60_000, 60_000] }, fail: () => failing });
      await h.hs.start();
      const [old] = h.intros();
      failing = true;
      await vi.advanceTimersByTimeAsync(60_000);
      expect(h.builds.n).toBe(1 + 3); // 3 tries for its replacement
      expect(h.hs.introductionPoints.map((r) => r.fingerprint)).toEqual([old.to.fingerprint]);
      expect(h.described().map((i) => i.authKey.toString('hex'))).toEqual([keyOf(old)]);
      expect(h.hs.counts.get('intro_rotated')).toBeUndefined();
      // Past the retirement wait too, and through the retries (5 s, 10 s, 20 s, ...): still serving.
      await vi.advanceTimersByTimeAsync(10 * 60_000);
      expect(h.builds.n).toBeGreaterThan(1 + 3 * 3);
      expect(old.isOpen).toBe(true);
      expect(h.hs.introductionPoints.map((r) => r.fingerprint)).toEqual([old.to.fingerprint]);
      h.introduce(old); // it still passes introductions on
      expect(h.hs.counts.get('HIDDEN_RP_UNKNOWN')).toBe(1);
      // A replacement can be built again: it takes the old one's place at the next retry, and then the old one goes.
      failing = false;
      const built = h.builds.n;
      for (let s = 0; s < 5 * 60 && h.builds.n === built; s++) await vi.advanceTimersByTimeAsync(1_000); // the retry waits at most 5 minutes
      expect(h.builds.n).toBe(built + 1);
      expect(h.hs.counts.get('intro_rotated')).toBe(1);
      const fresh = h.intros().find((c) => c !== old)!;
      expect(h.hs.introductionPoints.map((r) => r.fingerprint)).toEqual([fresh.to.fingerprint]);
      expect(h.described().map((i) => i.authKey.toString('hex'))).toEqual([keyOf(fresh)]);
      expect(old.isOpen).toBe(false);
      h.hs.close();
    } finally {
      vi.useRealTimers();
    }
  });
  it('a point past its introduction budget with no replacement keeps introducing until it is twice over, then is retired anyway (SPEC.md §9.21.4 "Rotation")', async () => {
    vi.useFakeTimers();
    try {
      let failing = false;
      const h = nodeHarness({ introPoints: 1, introRotation: { introductions: [3, 3] }, fail: () => failing });
      await h.hs.start();
      const [old] = h.intros();
      failing = true;
      for (let i = 0; i < 3; i++) h.introduce(old);
      await vi.advanceTimersByTimeAsync(0);
      expect(h.builds.n).toBe(1 + 3);
      expect(h.hs.introductionPoints.map((r) => r.fingerprint)).toEqual([old.to.fingerprint]);
      expect(old.isOpen).toBe(true);
      // Each further introduction starts no build of its own: the retry does.
      h.introduce(old);
      h.introduce(old);
      await vi.advanceTimersByTimeAsync(0);
      expect(h.builds.n).toBe(1 + 3);
      expect(h.hs.introductionPoints).toHaveLength(1);
      expect(h.hs.counts.get('intro_rotated')).toBeUndefined();
      h.introduce(old); // the 6th: twice its budget
      expect(h.hs.counts.get('intro_rotated')).toBe(1);
      expect(h.hs.introductionPoints).toEqual([]);
      h.hs.close();
    } finally {
      vi.useRealTimers();
    }
  });
  it('a retiring point whose replacement descriptor cannot be published is closed 5 minutes after it retired', async () => {
    vi.useFakeTimers();
    try {
      let failing = false;
      const h = nodeHarness({
        introPoints: 1, introRotation: { lifetimeMs: [60_000, 60_000] },
        publish: () => (failing ? Promise.reject(err('HIDDEN_NO_INTRO', 'no authority took it')) : Promise.resolve()),
      });
      await h.hs.start();
      const [old] = h.intros();
      failing = true;
      await vi.advanceTimersByTimeAsync(60_000);
      expect(h.circuits).toHaveLength(2);
      await vi.advanceTimersByTimeAsync(5 * 60_000 - 1);
      expect(old.isOpen).toBe(true);
      await vi.advanceTimersByTimeAsync(1);
      expect(old.isOpen).toBe(false);
      expect(h.circuits[1].isOpen).toBe(true);
      h.hs.close();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('the hidden node\'s rendezvous circuits are bounded (SPEC.md §9.21.5 step 3, step 6)', () => {
  it('at most 256 at once: an introduction past them is dropped before building (HIDDEN_RENDEZVOUS_LIMIT)', async () => {
    const h = nodeHarness();
    await h.hs.start();
    const ip = h.intros()[0];
    const before = h.builds.n;
    for (let i = 0; i < 300; i++) h.introduce(ip, h.relays[7]);
    await vi.waitFor(() => expect(h.hs.rendezvousCircuits).toBe(256));
    expect(h.builds.n - before).toBe(256);
    expect(h.rendezvous()).toHaveLength(256);
    expect(h.hs.counts.get('HIDDEN_RENDEZVOUS_LIMIT')).toBe(44);
    // One closes: the next introduction is served again.
    h.rendezvous()[0].destroy();
    h.introduce(ip, h.relays[7]);
    await vi.waitFor(() => expect(h.rendezvous()).toHaveLength(257));
    expect(h.hs.rendezvousCircuits).toBe(256);
    h.hs.close();
  });
  it('one rendezvous cookie is served once in 5 minutes, whatever introduction point or sealing it comes in (Tor\'s rendezvous-cookie replay cache)', async () => {
    let t = 0;
    const h = nodeHarness({ clock: () => t });
    await h.hs.start();
    const [a, b] = h.intros();
    const cookie = randomBytes(20);
    const before = h.builds.n;
    h.introduce(a, h.relays[7], cookie);
    h.introduce(b, h.relays[7], cookie); // sealed afresh: another body, the same cookie
    h.introduce(a, h.relays[7], cookie);
    await vi.waitFor(() => expect(h.rendezvous()).toHaveLength(1));
    expect(h.builds.n - before).toBe(1);
    expect(h.hs.counts.get('HIDDEN_INTRO_REPLAY')).toBe(2);
    t = 5 * 60_000 - 1;
    h.introduce(b, h.relays[7], cookie);
    expect(h.hs.counts.get('HIDDEN_INTRO_REPLAY')).toBe(3);
    t = 5 * 60_000;
    h.introduce(b, h.relays[7], cookie);
    await vi.waitFor(() => expect(h.rendezvous()).toHaveLength(2));
    h.hs.close();
  });
  it('a rendezvous circuit already closed when its build resolves holds no place: no RENDEZVOUS1, nothing held, the 256 not used up', async () => {
    let dead = false;
    const h = nodeHarness({ built: (c) => { if (dead) c.destroy(); } });
    await h.hs.start();
    dead = true;
    const ip = h.intros()[0];
    const before = h.builds.n;
    for (let i = 0; i < 3; i++) h.introduce(ip, h.relays[7]);
    // Each is built once more on a fresh path (SPEC.md §9.21.5 step 3), closed again, then dropped.
    await vi.waitFor(() => expect(h.hs.counts.get('CIRCUIT_DESTROYED')).toBe(3));
    await new Promise((r) => setImmediate(r));
    expect(h.builds.n - before).toBe(6);
    expect(h.hs.counts.get('rendezvous_retry')).toBe(3);
    expect(h.hs.rendezvousCircuits).toBe(0);
    expect(h.rendezvous()).toHaveLength(0);
    expect(h.hs.counts.get('rendezvous')).toBeUndefined();
    h.hs.close();
  });
  it('a failed rendezvous build is built once more on a fresh path: RENDEZVOUS1 goes on the second circuit (SPEC.md §9.21.5 step 3)', async () => {
    let failNext = 0;
    const h = nodeHarness({ fail: () => failNext > 0 && failNext-- > 0 });
    await h.hs.start();
    const before = h.builds.n;
    failNext = 1;
    h.introduce(h.intros()[0], h.relays[7]);
    await vi.waitFor(() => expect(h.rendezvous()).toHaveLength(1));
    expect(h.builds.n - before).toBe(2);
    expect(h.rendezvous()[0].to).toBe(h.relays[7]); // the same rendezvous point
    expect(h.hs.rendezvousCircuits).toBe(1);
    expect(h.hs.counts.get('rendezvous_retry')).toBe(1);
    expect(h.hs.counts.get('rendezvous')).toBe(1);
    expect(h.hs.counts.get('CIRCUIT_DESTROYED')).toBeUndefined();
    h.hs.close();
  });
  it('a rendezvous build that fails twice drops the introduction after exactly two builds and frees its place among the 256 (SPEC.md §9.21.5 step 3)', async () => {
    let failNext = 0;
    const h = nodeHarness({ fail: () => failNext > 0 && failNext-- > 0 });
    await h.hs.start();
    const ip = h.intros()[0];
    const before = h.builds.n;
    failNext = 2;
    h.introduce(ip, h.relays[7]);
    await vi.waitFor(() => expect(h.hs.counts.get('CIRCUIT_DESTROYED')).toBe(1));
    await new Promise((r) => setImmediate(r));
    expect(h.builds.n - before).toBe(2);
    expect(h.hs.counts.get('rendezvous_retry')).toBe(1);
    expect(h.rendezvous()).toHaveLength(0);
    // Its place is free again: 256 further introductions are all built.
    for (let i = 0; i < 256; i++) h.introduce(ip, h.relays[7]);
    await vi.waitFor(() => expect(h.hs.rendezvousCircuits).toBe(256));
    expect(h.hs.counts.get('HIDDEN_RENDEZVOUS_LIMIT')).toBeUndefined();
    h.hs.close();
  });
  it('a retried rendezvous build keeps the introduction\'s one place among the 256 while it is built, and takes no second (SPEC.md §9.21.5 step 3)', async () => {
    let failNext = 0;
    let gate: Promise<void> | null = null;
    let open = () => {};
    const h = nodeHarness({ fail: () => failNext > 0 && failNext-- > 0, hold: () => gate });
    await h.hs.start();
    const ip = h.intros()[0];
    for (let i = 0; i < 255; i++) h.introduce(ip, h.relays[7]);
    await vi.waitFor(() => expect(h.hs.rendezvousCircuits).toBe(255));
    const before = h.builds.n;
    failNext = 1;
    gate = new Promise<void>((r) => { open = r; });
    h.introduce(ip, h.relays[7]);
    await vi.waitFor(() => expect(h.builds.n - before).toBe(2)); // the retry is being built
    h.introduce(ip, h.relays[7]);
    expect(h.hs.counts.get('HIDDEN_RENDEZVOUS_LIMIT')).toBe(1);
    open();
    await vi.waitFor(() => expect(h.hs.rendezvousCircuits).toBe(256));
    expect(h.builds.n - before).toBe(2);
    h.hs.close();
  });
  it('a rendezvous circuit with no open stream is closed after 60 s: from joining, or from its last stream closing', async () => {
    vi.useFakeTimers();
    try {
      const h = nodeHarness();
      await h.hs.start();
      const ip = h.intros()[0];
      h.introduce(ip, h.relays[7]);
      h.introduce(ip, h.relays[6]);
      await vi.advanceTimersByTimeAsync(0);
      const [unused, used] = h.rendezvous();
      expect(h.hs.rendezvousCircuits).toBe(2);
      await vi.advanceTimersByTimeAsync(30_000);
      const stream = new PassThrough();
      used.onStream!({ kind: 'begin_storage', begin: null, stream: stream as unknown as IncomingStream['stream'], oneHop: false, accept: () => {}, refuse: () => {} } as IncomingStream);
      await vi.advanceTimersByTimeAsync(29_999);
      expect(unused.isOpen).toBe(true);
      await vi.advanceTimersByTimeAsync(1);
      expect(unused.isOpen).toBe(false);
      expect(h.hs.rendezvousCircuits).toBe(1);
      await vi.advanceTimersByTimeAsync(120_000);
      expect(used.isOpen).toBe(true); // its stream is open
      stream.destroy();
      await vi.advanceTimersByTimeAsync(59_999);
      expect(used.isOpen).toBe(true);
      await vi.advanceTimersByTimeAsync(1);
      expect(used.isOpen).toBe(false);
      expect(h.hs.rendezvousCircuits).toBe(0);
      h.hs.close();
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('the hidden node\'s end of a rendezvous circuit (SPEC.md §9.21.5 step 5, §7b.9)', () => {
  /**
   * The node's circuit (one hop of its own, keyed k1) with the relay end of the virtual hop (k2)
   * attached; `fromClient` delivers a message the client sealed for the virtual hop, with the
   * rendezvous point's inbound layer added; `toClient` opens what the node sent back.
   */
  function serviceEnd(nHops = 1) {
    const ks = Array.from({ length: nHops }, () => randomBytes(72)), k2 = randomBytes(72);
    // relaySides[i]: the relay end of the node's hop i (the last one is the rendezvous point).
    const relaySides = ks.map((k) => createRelayHop(Buffer.from(k))), clientSide = createClientHop(Buffer.from(k2));
    const out: Buffer[] = [];
    const ch = Object.assign(new EventEmitter(), {
      closed: false, peerIdentity: null, isInitiator: true, batchesReads: false,
      send: (_id: number, command: number, payload: Uint8Array) => { if (command === CellCommand.RELAY) out.push(Buffer.from(payload)); return true; },
      allocateCircId: () => 0x80000001, releaseCircId: () => {}, close: () => {},
    }) as unknown as CellChannel;
    const circ = ClientCircuit.allocate(new ClientLink(ch));
    ks.forEach((k, i) => {
      const hop: HopTarget = { identity: randomBytes(32), fingerprint: `hop${i}`, onionKey: randomBytes(32), address: `10.0.0.${i + 1}`, orPort: 9001 };
      (circ as unknown as { addHop(t: HopTarget, k: Buffer): void }).addHop(hop, Buffer.from(k));
    });
    const streams: IncomingStream[] = [];
    circ.attachServiceEnd(Buffer.from(k2), (inc) => streams.push(inc));
    /** Each of the node's hops from `from` back to the guard adds its inbound layer, as relays do. */
    const inbound = (p: Buffer, from: number) => {
      for (let i = from; i >= 0; i--) relaySides[i].encryptInbound(p, CellCommand.RELAY);
      circ.onCell(CellCommand.RELAY, p);
    };
    const fromClient = (command: number, streamId: number, data: Buffer) => {
      const p = encodeRelayPayload(command, streamId, data);
      clientSide.originate(p);
      clientSide.encryptOutbound(p, CellCommand.RELAY);
      inbound(p, nHops - 1);
    };
    /** A message the node's own hop `hop` originates with its hop keys (a relay's, not the client's). */
    const fromHop = (hop: number, command: number, streamId: number, data: Buffer) => {
      const p = encodeRelayPayload(command, streamId, data);
      relaySides[hop].originate(p);
      inbound(p, hop);
    };
    const toClient = () => out.splice(0).map((p) => {
      for (const r of relaySides) r.decryptOutbound(p, CellCommand.RELAY);
      expect(clientSide.decryptInbound(p, CellCommand.RELAY)).toBe(true);
      return decodeRelayPayload(p);
    });
    return { circ, streams, fromClient, fromHop, toClient };
  }
  it('at most 512 streams at once, as at any node: the 513th BEGIN_STORAGE gets END(RESOURCELIMIT)', () => {
    const s = serviceEnd();
    for (let id = 1; id <= 513; id++) s.fromClient(RelayCommand.BEGIN_STORAGE, id, Buffer.alloc(0));
    expect(s.circ.isOpen).toBe(true);
    expect(s.streams).toHaveLength(512);
    const sent = s.toClient();
    expect(sent.map((m) => [m.command, m.streamId])).toEqual([[RelayCommand.END, 513]]);
    expect(decodeEnd(sent[0].data).reason).toBe(EndReason.RESOURCELIMIT);
    s.circ.destroy();
  });
  it('holds back circuit SENDMEs while its streams hold more than 1 MiB nobody read, as a relay does (SPEC.md §7b.9)', () => {
    const s = serviceEnd();
    for (let id = 1; id <= 7; id++) s.fromClient(RelayCommand.BEGIN_STORAGE, id, Buffer.alloc(0));
    for (const inc of s.streams) inc.accept();
    s.toClient();
    // 3,000 DATA cells of 498 bytes (about 1.4 MiB) over 7 streams, none of them read: under each
    // stream's window and, once SENDMEs stop at 1 MiB unread, under the circuit's window.
    for (let i = 0; i < 3000; i++) s.fromClient(RelayCommand.DATA, 1 + (i % 7), Buffer.alloc(498, i));
    expect(s.circ.isOpen).toBe(true);
    const circuitSendmes = s.toClient().filter((m) => m.command === RelayCommand.SENDME && m.streamId === 0).length;
    // Unbounded it would be 30 (one per 100 cells); bounded, none after 1 MiB (about 2,106 cells).
    expect(circuitSendmes).toBeLessThanOrEqual(22);
    expect(circuitSendmes).toBeGreaterThanOrEqual(20);
    s.circ.destroy();
  });
  /** Three hops of the node's own (guard, middle, rendezvous point), one BEGIN_STORAGE stream (id 1) accepted. */
  function withStream() {
    const s = serviceEnd(3);
    s.fromClient(RelayCommand.BEGIN_STORAGE, 1, Buffer.alloc(0));
    expect(s.streams).toHaveLength(1);
    s.streams[0].accept();
    s.toClient();
    const got: Buffer[] = [];
    let ended = false;
    const closed: string[] = [];
    s.streams[0].stream.on('data', (b: Buffer) => got.push(b));
    s.streams[0].stream.on('end', () => { ended = true; });
    s.circ.on('close', (e: { code: string }) => closed.push(e.code));
    return { ...s, got, ended: () => ended, closed };
  }
  const settle = () => new Promise<void>((r) => setImmediate(r));
  it('DATA the rendezvous point originates with its own hop keys never reaches a stream: the circuit closes (RELAY_PROTOCOL)', async () => {
    const s = withStream();
    s.fromClient(RelayCommand.DATA, 1, Buffer.from('good'));
    await settle();
    expect(Buffer.concat(s.got).toString()).toBe('good');
    s.fromHop(2, RelayCommand.DATA, 1, Buffer.from('evil'));
    await settle();
    expect(Buffer.concat(s.got).toString()).toBe('good');
    expect(s.circ.isOpen).toBe(false);
    expect(s.closed).toEqual(['RELAY_PROTOCOL']);
  });
  it('an END(DONE) from the rendezvous point (or a middle hop) is no clean end of a stream: the circuit closes (RELAY_PROTOCOL)', async () => {
    for (const hop of [2, 1]) {
      const s = withStream();
      s.fromHop(hop, RelayCommand.END, 1, encodeEnd(EndReason.DONE));
      await settle();
      expect(s.ended()).toBe(false);
      expect(s.closed).toEqual(['RELAY_PROTOCOL']);
    }
  });
  it('a stream or circuit SENDME from the rendezvous point closes the circuit (RELAY_PROTOCOL); DROP (padding) is ignored', () => {
    const s = withStream();
    s.fromHop(2, RelayCommand.DROP, 0, Buffer.alloc(0));
    expect(s.circ.isOpen).toBe(true);
    s.fromHop(2, RelayCommand.SENDME, 1, Buffer.alloc(0));
    expect(s.closed).toEqual(['RELAY_PROTOCOL']);
  });
});

describe('the client\'s attempt to reach a hidden node (SPEC.md §9.21.5)', () => {
  /** A client-side circuit (fake): answers ESTABLISH_RENDEZVOUS and INTRODUCE1 at once. */
  class FakeClientSide extends EventEmitter {
    onControl: ((command: number, data: Buffer) => void) | null = null;
    sent: Array<{ command: number; data: Buffer }> = [];
    isOpen = true;
    joined = false;
    /**
     * `ack`: 'none', an introduction point that never answers INTRODUCE1 (passing it on or not,
     * `onIntroduce` says); 'sent', ACK 0 at once.
     */
    constructor(private readonly onIntroduce?: (body: Buffer) => void, private readonly ack: 'sent' | 'none' = 'sent') { super(); }
    sendControl(command: number, data: Uint8Array): void {
      this.sent.push({ command, data: Buffer.from(data) });
      if (command === RelayCommand.INTRODUCE1 && this.ack === 'none') { this.onIntroduce?.(Buffer.from(data)); return; }
      const answer = (c: number, d: Buffer) => void Promise.resolve().then(() => this.onControl?.(c, d));
      if (command === RelayCommand.ESTABLISH_RENDEZVOUS) answer(RelayCommand.RENDEZVOUS_ESTABLISHED, encodeStatus(RendezvousStatus.OK));
      if (command === RelayCommand.INTRODUCE1) { answer(RelayCommand.INTRODUCE_ACK, encodeStatus(IntroduceAckStatus.SENT)); this.onIntroduce?.(Buffer.from(data)); }
    }
    addVirtualHop(): void { this.joined = true; }
    destroy(): void {
      if (!this.isOpen) return;
      this.isOpen = false;
      this.emit('close', err('CIRCUIT_DESTROYED', 'destroyed'));
    }
  }

  /**
   * A hidden node with `n` introduction points; building to one takes `buildMs(i)` for the i-th
   * build; the node answers an introduction after `answerMs` (never when null). The i-th build
   * may end at an introduction point that never sends INTRODUCE_ACK: `ip(i)` 'swallow' (nor
   * passes INTRODUCE1 on) or 'no_ack' (passes it on).
   */
  function world(o: { n: number; buildMs: (i: number) => number; answerMs: number | null; ip?: (i: number) => 'ok' | 'swallow' | 'no_ack' }) {
    const identity = ed25519Generate(), ntorKey = x25519Generate();
    const node = consensusRelay(identity.publicKey);
    const rp = { ...consensusRelay(), onionKey: randomBytes(32) } as ConsensusRelay;
    const ips = Array.from({ length: o.n }, () => ({ relay: consensusRelay(), auth: ed25519Generate(), enc: x25519Generate() }));
    const desc = makeHsDescriptor({
      identity, period: hsPeriodOf(NOW), revision: 1, inner: {
        ntorKey: ntorKey.publicKey,
        intros: ips.map((ip) => ({ linkSpecifiers: [{ type: 'ipv4' as const, addr: ip.relay.address, port: ip.relay.orPort }, { type: 'ed25519' as const, id: ip.relay.identity }], authKey: ip.auth.publicKey, encKey: ip.enc.publicKey })),
      },
    });
    const rpCirc = new FakeClientSide();
    const introductions: number[] = [];
    const introduced = (body: Buffer) => {
      introductions.push(Date.now());
      const m = decodeIntroduce(body);
      const ip = ips.find((i) => i.auth.publicKey.equals(m.authKey))!;
      const p = openIntroduce(m, ip.enc);
      const hs = relayCryptoHandshake('tor1');
      const { reply } = ntorServerRespond({ onionskin: p.onionskin, id: identity.publicKey, onionKeys: [ntorKey], protoid: hs.protoid, keyLength: hs.keyLength });
      if (o.answerMs !== null) setTimeout(() => rpCirc.onControl?.(RelayCommand.RENDEZVOUS2, reply), o.answerMs);
    };
    let builds = 0;
    const buildTo = (last: ConsensusRelay) => {
      if (last === rp) return Promise.resolve(rpCirc as unknown as ClientCircuit);
      const i = builds++;
      const ms = o.buildMs(i);
      return new Promise<ClientCircuit>((r) => setTimeout(() => {
        const mode = o.ip?.(i) ?? 'ok';
        r(new FakeClientSide(mode === 'swallow' ? undefined : introduced, mode === 'ok' ? 'sent' : 'none') as unknown as ClientCircuit);
      }, ms));
    };
    const attempt = connectHidden({
      node, relays: () => [rp, ...ips.map((i) => i.relay)], buildTo, fetchDescriptor: () => Promise.resolve(desc), now: () => NOW,
    });
    attempt.catch(() => {});
    return { attempt, rpCirc, introductions, started: Date.now() };
  }

  it('the 30 s bound runs from the first introduction: a circuit to the introduction point that takes 25 s and an answer 10 s later still join', async () => {
    vi.useFakeTimers();
    try {
      const w = world({ n: 1, buildMs: () => 25_000, answerMs: 10_000 });
      await vi.advanceTimersByTimeAsync(40_000);
      expect(w.introductions.map((t) => t - w.started)).toEqual([25_000]);
      await expect(w.attempt).resolves.toBe(w.rpCirc);
      expect(w.rpCirc.joined).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
  it('no introduction is sent once the bound has passed, even when a circuit to the next introduction point was under way', async () => {
    vi.useFakeTimers();
    try {
      const w = world({ n: 3, buildMs: (i) => (i === 0 ? 0 : 25_000), answerMs: null });
      await vi.advanceTimersByTimeAsync(120_000);
      await expect(w.attempt).rejects.toMatchObject({ code: 'HIDDEN_RENDEZVOUS_TIMEOUT' });
      expect(w.introductions.map((t) => t - w.started)).toEqual([0]); // the second circuit was ready at 33 s
      expect(w.rpCirc.isOpen).toBe(false);
    } finally {
      vi.useRealTimers();
    }
  });
  it('an introduction point that never answers INTRODUCE1 costs one introduction wait (8 s), not the attempt: the next one joins', async () => {
    vi.useFakeTimers();
    try {
      const w = world({ n: 2, buildMs: () => 0, answerMs: 1_000, ip: (i) => (i === 0 ? 'swallow' : 'ok') });
      await vi.advanceTimersByTimeAsync(20_000);
      // The silent point swallowed the first INTRODUCE1 (not counted here); the second went out 8 s
      // later (and a millisecond for its circuit's build).
      expect(w.introductions).toHaveLength(1);
      expect(w.introductions[0] - w.started).toBeGreaterThanOrEqual(8_000);
      expect(w.introductions[0] - w.started).toBeLessThan(8_100);
      await expect(w.attempt).resolves.toBe(w.rpCirc);
      expect(w.rpCirc.joined).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
  it('a late RENDEZVOUS2 answering an introduction whose ACK never came still joins', async () => {
    vi.useFakeTimers();
    try {
      // One introduction point: it passes INTRODUCE1 on but never sends the ACK; the node answers after 12 s.
      const w = world({ n: 1, buildMs: () => 0, answerMs: 12_000, ip: () => 'no_ack' });
      let outcome: unknown = 'pending';
      w.attempt.then((c) => { outcome = c; }, (e) => { outcome = e; });
      await vi.advanceTimersByTimeAsync(20_000);
      expect(w.introductions).toHaveLength(1);
      expect(outcome).toBe(w.rpCirc);
      expect(w.rpCirc.joined).toBe(true);
    } finally {
      vi.useRealTimers();
    }
  });
});
