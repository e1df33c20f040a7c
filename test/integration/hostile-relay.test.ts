// Hostile peers at a relay, over real TLS links on 127.0.0.1 with the real relay code
// (RelayCircuits) and the real client circuit code: circuit ids from the wrong half (SPEC.md §1.5),
// self-made identities claiming to be relays (SPEC.md §7b.7), RESOLVED/CONNECTED from a middle
// hop (SPEC.md §7b.6).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CellCommand, type Cell } from '../../src/wire/cell';
import { DestroyReason, decodeDestroy, encodeCreate2 } from '../../src/wire/messages';
import { ntorClientCreate } from '../../src/crypto/ntor';
import { rawLink, startRelay, type TestRelay } from '../helpers/inprocess-relays';

let guard: TestRelay;

beforeAll(async () => {
  guard = await startRelay('guard', ['Guard']);
});

afterAll(async () => {
  await guard?.stop();
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
