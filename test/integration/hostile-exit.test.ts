// Hostile clients at an exit, over real TLS links on 127.0.0.1 with the real relay code
// (RelayCircuits) and the real client circuit code: the exit must never reach its own host or a
// private network through an address that is not a public unicast destination (SPEC.md §7.6.2),
// whether the client names it literally or a name resolves to it (the address actually connected
// to is the one checked).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { DEFAULT_EXIT_POLICY, formatExitPolicy } from '../../src/dir/exit-policy';
import { manualCircuit, startRelay, type TestRelay } from '../helpers/inprocess-relays';

const DEFAULT = formatExitPolicy(DEFAULT_EXIT_POLICY);
const NAMES: Record<string, string> = {
  'zero.test': '::', 'mapped.test': '::ffff:127.0.0.1', 'nat64.test': '64:ff9b::7f00:1', 'compat.test': '::127.0.0.1',
  'sixtofour.test': '2002:7f00:1::1', 'any4.test': '0.0.0.0',
};

let guard: TestRelay, middle: TestRelay, exit: TestRelay;
let v6: net.Server; let v6Port = 0; let v4: net.Server; let v4Port = 0;
let reached = 0;

beforeAll(async () => {
  guard = await startRelay('guard', ['Guard']);
  middle = await startRelay('middle', []);
  exit = await startRelay('exit', ['Exit'], {
    exitPolicy: DEFAULT,
    lookup: async (host) => {
      const a = NAMES[host];
      if (!a) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
      return [{ address: a, family: a.includes(':') ? 6 : 4 }];
    },
  });
  // Services on the exit's own loopback, which no client may reach through it.
  v6 = net.createServer((s) => { reached++; s.end('secret'); });
  await new Promise<void>((r) => v6.listen(0, '::1', r));
  v6Port = (v6.address() as net.AddressInfo).port;
  v4 = net.createServer((s) => { reached++; s.end('secret'); });
  await new Promise<void>((r) => v4.listen(0, '0.0.0.0', r));
  v4Port = (v4.address() as net.AddressInfo).port;
});

afterAll(async () => {
  for (const r of [guard, middle, exit]) await r?.stop();
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
