// Hostile peers at a relay, over real TLS links on 127.0.0.1 with the real relay code
// (RelayCircuits) and the real client circuit code: circuit ids from the wrong half (SPEC.md §1.5),
// self-made identities claiming to be relays (SPEC.md §7b.7), RESOLVED/CONNECTED from a middle
// hop (SPEC.md §7b.6).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CellCommand, type Cell } from '../../src/wire/cell';
import { RelayCommand } from '../../src/wire/relay-msg';
import { encodeConnected, encodeResolved } from '../../src/wire/messages';
import { DestroyReason, decodeDestroy, encodeCreate2 } from '../../src/wire/messages';
import { ntorClientCreate } from '../../src/crypto/ntor';
import { ed25519Generate } from '../../src/crypto/primitives';
import { connectLink } from '../../src/link';
import { ClientCircuit, ClientLink } from '../../src/client/client-circuit';
import type { ConsensusRelay } from '../../src/dir/types';
import { manualCircuit, rawLink, startRelay, startEchoServer, type TestRelay } from '../helpers/inprocess-relays';

let guard: TestRelay, middle: TestRelay, exit: TestRelay;
const listed: ConsensusRelay[] = [];
let echo: Awaited<ReturnType<typeof startEchoServer>>; let echoPort = 0;

beforeAll(async () => {
  guard = await startRelay('guard', ['Guard']);
  middle = await startRelay('middle', []);
  // This exit knows a consensus: guard, middle and itself are the relays it lists.
  exit = await startRelay('exit', ['Exit'], {
    exitPolicy: ['accept 127.0.0.1:*', 'reject *:*'], consensus: () => ({ relays: listed }),
    // Names under .slow.test never resolve: the client's RESOLVE stays pending at the exit.
    lookup: (host) => (host.endsWith('.slow.test') ? new Promise(() => {}) : Promise.resolve([{ address: '127.0.0.1', family: 4 as const }])),
  });
  listed.push(guard.info, middle.info, exit.info);
  echo = await startEchoServer();
  echoPort = echo.port;
});

afterAll(async () => {
  for (const r of [guard, middle, exit]) await r?.stop();
  await echo?.close();
});

describe('"the previous hop is a relay" needs an identity the consensus lists (SPEC.md §7b.7)', () => {
  it('a client with a self-made identity on a one-hop circuit gets no BEGIN and no RESOLVE; through listed relays it does', async () => {
    const selfMade = new ClientLink(await connectLink({ host: '127.0.0.1', port: exit.info.orPort, expectedIdentity: exit.info.identity, identity: ed25519Generate() }));
    const c = ClientCircuit.allocate(selfMade);
    await c.create(exit.info);
    await expect(c.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort })).rejects.toMatchObject({ code: 'EXIT_POLICY_REJECTED' });
    expect((await c.resolve('localhost'))[0].type).toBe('error-nontransient');
    c.destroy();
    selfMade.ch.close();
    const ok = await manualCircuit([guard, middle, exit]);
    const { stream } = await ok.openStream({ kind: 'begin', host: '127.0.0.1', port: echoPort });
    stream.end();
    ok.destroy();
  });
});

describe('circuit ids (SPEC.md §1.5)', () => {
  it('a CREATE2 with an id from the responder\'s half is refused with DESTROY(PROTOCOL); the link stays', async () => {
    const link = await rawLink(guard);
    const wrong = 0x0000_1234; // high bit clear: the responder's half
    const answers: Cell[] = [];
    link.ch.on('cell', (c: Cell) => { if (c.circId === wrong) answers.push(c); });
    // A valid ntor onionskin: only the id is wrong.
    const { onionskin } = ntorClientCreate({ id: guard.info.identity, onionKey: guard.info.onionKey });
    link.send(wrong, CellCommand.CREATE2, encodeCreate2({ htype: 2, hdata: onionskin }));
    for (let i = 0; i < 500 && answers.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(answers.map((c) => c.command)).toEqual([CellCommand.DESTROY]);
    expect(decodeDestroy(answers[0].payload)).toBe(DestroyReason.PROTOCOL);
    expect(await guard.registry.getSingleMetricAsString('bitcloud_circuit_errors_total')).toContain('code="CIRCUIT_ID_WRONG_HALF"');
    expect(link.ch.closed).toBe(false);
    link.ch.close();
  });
});

describe('answers only from the last hop (SPEC.md §7b.6)', () => {
  /** The middle relay's circuit for `c` (the only one it carries in this test). */
  const middleCircuit = () => [...middle.rc.switch.circuits].find((x) => !x.isClosed)!;

  it('a RESOLVED forged by a middle hop is a protocol violation: the circuit closes, the answer is never believed', async () => {
    const c = await manualCircuit([guard, middle, exit]);
    const answer = c.resolve('victim.slow.test');
    const streamId = [...(c as unknown as { resolves: Map<number, unknown> }).resolves.keys()][0];
    middleCircuit().sendRelay(RelayCommand.RESOLVED, streamId, encodeResolved([{ type: 'ipv4', value: '6.6.6.6', ttl: 60 }]));
    try {
      await expect(answer).rejects.toMatchObject({ code: expect.stringMatching(/RELAY_PROTOCOL|CIRCUIT_/) });
    } finally {
      c.destroy();
    }
    for (let i = 0; i < 500 && middle.rc.switch.circuits.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
  });

  it('a CONNECTED forged by a middle hop closes the circuit too', async () => {
    const c = await manualCircuit([guard, middle, exit]);
    const opening = c.openStream({ kind: 'begin', host: 'x.slow.test', port: 80 });
    const streamId = [...c.edge.streams.keys()][0];
    middleCircuit().sendRelay(RelayCommand.CONNECTED, streamId, encodeConnected({}));
    await expect(opening).rejects.toBeTruthy();
    c.destroy();
  });
});

describe('onion keys rotate while the relay runs (SPEC.md §3.3)', () => {
  it('a running relay makes a new onion key when the old one is due, and still answers CREATE2 for the previous one', async () => {
    const os = await import('node:os');
    const path = await import('node:path');
    const fsp = await import('node:fs/promises');
    const { parseRelayConfig } = await import('../../relay/config');
    const { RelayDaemon } = await import('../../relay/daemon');
    const { loadOrCreateNodeKeys, fingerprint } = await import('../../src/crypto/keys');
    const { silentLogger } = await import('../../src/ops/log');
    const { createRegistry } = await import('../../src/ops/metrics');
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-rotate-'));
    const cfg = parseRelayConfig({
      dataDir: dir, orPort: 0, metricsPort: 0, identityPow: 'local', onionKeyRotationSeconds: 6, // long enough that a loaded machine opens both circuits before the next rotation
      authorities: [{ name: 'a', identity: 'ab'.repeat(32), address: '127.0.0.1:1' }],
    }, dir);
    const d = new RelayDaemon(cfg, silentLogger, createRegistry('relay-rotate'));
    await d.start();
    try {
      const first = await loadOrCreateNodeKeys(dir);
      let now = first;
      for (let i = 0; i < 3000 && now.onion.publicKey.equals(first.onion.publicKey); i++) {
        await new Promise((r) => setTimeout(r, 10));
        now = await loadOrCreateNodeKeys(dir);
      }
      expect(now.onion.publicKey.equals(first.onion.publicKey)).toBe(false);
      expect(now.previousOnion?.publicKey.equals(first.onion.publicKey)).toBe(true);
      // Both the new key and the one just replaced open circuits at the running relay.
      for (const onionKey of [now.onion.publicKey, first.onion.publicKey]) {
        const target = {
          identity: now.identity.publicKey, fingerprint: fingerprint(now.identity.publicKey), onionKey, address: '127.0.0.1', orPort: d.ports.orPort,
        };
        const link = new ClientLink(await connectLink({ host: '127.0.0.1', port: d.ports.orPort, expectedIdentity: now.identity.publicKey }));
        const c = ClientCircuit.allocate(link);
        await c.create(target);
        c.destroy();
        link.ch.close();
      }
    } finally {
      await d.stop();
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
