// Hostile clients at an exit, over real TLS links on 127.0.0.1 with the real relay code
// (RelayCircuits) and the real client circuit code: the exit must never reach its own host or a
// private network through an address that is not a public unicast destination (SPEC.md §7.6.2),
// whether the client names it literally or a name resolves to it (the address actually connected
// to is the one checked).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { DEFAULT_EXIT_POLICY, formatExitPolicy } from '../../src/dir/exit-policy';
import { manualCircuit, startRelay, type TestRelay } from '../helpers/inprocess-relays';
import type { ResolvedAnswer } from '../../src/wire/messages';

/** Polls `cond` every 10 ms; fails after 10 s (a hang, not a speed threshold). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond(), what).toBe(true);
}

/** Names that resolve only when the test says so: a resolver that hangs, as a slow DNS server does. */
const slow: Array<() => void> = [];
const slowLookup = (host: string) => (host.endsWith('.slow.test')
  ? new Promise<{ address: string; family: 4 }[]>((resolve) => slow.push(() => resolve([{ address: '192.0.2.1', family: 4 }])))
  : Promise.reject(Object.assign(new Error('not found'), { code: 'ENOTFOUND' })));
const releaseSlow = () => { for (const f of slow.splice(0)) f(); };

const DEFAULT = formatExitPolicy(DEFAULT_EXIT_POLICY);
const NAMES: Record<string, string> = {
  'zero.test': '::', 'mapped.test': '::ffff:127.0.0.1', 'nat64.test': '64:ff9b::7f00:1', 'compat.test': '::127.0.0.1',
  'sixtofour.test': '2002:7f00:1::1', 'any4.test': '0.0.0.0',
};

let guard: TestRelay, middle: TestRelay, exit: TestRelay, small: TestRelay;
let v6: net.Server; let v6Port = 0; let v4: net.Server; let v4Port = 0;
let reached = 0;

beforeAll(async () => {
  guard = await startRelay('guard', ['Guard']);
  middle = await startRelay('middle', []);
  exit = await startRelay('exit', ['Exit'], {
    exitPolicy: DEFAULT,
    lookup: async (host) => {
      if (host.endsWith('.slow.test')) return slowLookup(host);
      const a = NAMES[host];
      if (!a) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      return [{ address: a, family: a.includes(':') ? 6 : 4 }];
    },
  });
  // An exit that runs at most 3 name resolutions at once.
  small = await startRelay('small', ['Exit'], { exitPolicy: DEFAULT, lookup: slowLookup, limits: { maxConcurrentResolves: 3 } });
  // Services on the exit's own loopback, which no client may reach through it.
  v6 = net.createServer((s) => { reached++; s.end('secret'); });
  await new Promise<void>((r) => v6.listen(0, '::1', r));
  v6Port = (v6.address() as net.AddressInfo).port;
  v4 = net.createServer((s) => { reached++; s.end('secret'); });
  await new Promise<void>((r) => v4.listen(0, '0.0.0.0', r));
  v4Port = (v4.address() as net.AddressInfo).port;
});

afterAll(async () => {
  releaseSlow();
  for (const r of [guard, middle, exit, small]) await r?.stop();
  await new Promise<void>((r) => v6?.close(() => r()));
  await new Promise<void>((r) => v4?.close(() => r()));
});

describe('an exit with the default policy never reaches its own loopback (SPEC.md §7.6.2)', () => {
  it('BEGIN [::], [::ffff:127.0.0.1], NAT64/6to4/IPv4-compatible forms and 0.0.0.0 are refused by policy', async () => {
    const c = await manualCircuit([guard, middle, exit]);
    for (const host of ['::', '0:0::0', '::ffff:127.0.0.1', '64:ff9b::7f00:1', '::127.0.0.1', '2002:7f00:1::1']) {
      await expect(c.openStream({ kind: 'begin', host, port: v6Port }), host).rejects.toMatchObject({ code: 'EXIT_POLICY_REJECTED' });
    }
    await expect(c.openStream({ kind: 'begin', host: '0.0.0.0', port: v4Port })).rejects.toMatchObject({ code: 'EXIT_POLICY_REJECTED' });
    expect(reached).toBe(0);
    c.destroy();
  });

  it('a name that resolves to such an address is refused after resolution: the address connected to is checked', async () => {
    const c = await manualCircuit([guard, middle, exit]);
    for (const host of Object.keys(NAMES)) {
      await expect(c.openStream({ kind: 'begin', host, port: host === 'any4.test' ? v4Port : v6Port }), host).rejects.toMatchObject({ code: 'EXIT_POLICY_REJECTED' });
    }
    expect(reached).toBe(0);
    c.destroy();
  });
});

describe('RESOLVE cannot starve an exit (SPEC.md §7b.7)', () => {
  it('a circuit has at most maxResolvesPerCircuit (4) resolves pending; the rest are answered at once with a transient error', async () => {
    const c = await manualCircuit([guard, middle, exit]);
    const answers: ResolvedAnswer[][] = [];
    const all = Array.from({ length: 10 }, (_, i) => c.resolve(`n${i}.slow.test`).then((a) => { answers.push(a); return a; }));
    await until(() => answers.length === 6, 'six RESOLVEs refused while four wait');
    expect(answers.every((a) => a[0].type === 'error-transient')).toBe(true);
    expect(slow.length).toBe(4);
    releaseSlow();
    const got = await Promise.all(all);
    expect(got.filter((a) => a[0].type === 'ipv4')).toHaveLength(4);
    // The circuit is fine and its budget is back.
    expect((await c.resolve('zero.test'))[0]).toMatchObject({ type: 'ipv6', value: '::' });
    c.destroy();
  });

  it('a one-hop circuit from an anonymous client gets no RESOLVE answered', async () => {
    const c = await manualCircuit([exit]);
    expect((await c.resolve('zero.test'))[0].type).toBe('error-nontransient');
    c.destroy();
  });

  it('an exit runs at most maxConcurrentResolves resolutions, RESOLVE and BEGIN alike; others are refused, not queued', async () => {
    const c1 = await manualCircuit([guard, middle, small]);
    const c2 = await manualCircuit([guard, middle, small]);
    const pending = [c1.resolve('a.slow.test'), c1.resolve('b.slow.test'), c2.resolve('c.slow.test')];
    await until(() => slow.length === 3, 'three resolutions running');
    expect((await c2.resolve('d.slow.test'))[0].type).toBe('error-transient');
    await expect(c2.openStream({ kind: 'begin', host: 'e.slow.test', port: 80 })).rejects.toMatchObject({ detail: { endReason: 11 } }); // RESOURCELIMIT
    expect(slow.length).toBe(3);
    releaseSlow();
    expect((await Promise.all(pending)).map((a) => a[0].type)).toEqual(['ipv4', 'ipv4', 'ipv4']);
    c1.destroy();
    c2.destroy();
  });
});
