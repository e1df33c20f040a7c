// Protocol violations the client detects on its circuits are counted (SPEC.md §7b.5, §7b.10):
// `bitcloud_client_circuit_violations_total{reason}`, by the violation's error code.
import { describe, expect, it } from 'vitest';
import { hopTarget, keyedCircuit } from '../helpers/client-circuit-fixture';
import { clientViolationCounter } from '../../src/client/client-circuit';
import { CellCommand, CELL_PAYLOAD_LEN } from '../../src/wire/cell';
import { RelayCommand } from '../../src/wire/relay-msg';
import { prom, type Registry } from '../../src/ops/metrics';

const target = hopTarget;
/** A client circuit counting into `reg`, with `nHops` hops already keyed. */
const circuit = (nHops: number, reg: Registry) => keyedCircuit(nHops, clientViolationCounter(reg));

async function counts(reg: Registry): Promise<Record<string, number>> {
  const m = reg.getSingleMetric('bitcloud_client_circuit_violations_total');
  expect(m).toBeDefined();
  const got: Record<string, number> = {};
  for (const v of (await m!.get()).values) got[String(v.labels.reason)] = v.value;
  return got;
}

describe('bitcloud_client_circuit_violations_total (SPEC.md §7b.10)', () => {
  it('DATA before CONNECTED closes the circuit and is counted once as RELAY_PROTOCOL', async () => {
    const reg = new prom.Registry();
    const { circ, fromHop, toHop } = circuit(3, reg);
    const opened = circ.openStream({ kind: 'begin', host: 'example.com', port: 80 }, 5_000);
    opened.catch(() => {});
    const [begin] = toHop(2);
    fromHop(2, RelayCommand.DATA, begin.streamId, Buffer.from('forged'));
    // The circuit is gone: a second hostile cell changes nothing.
    fromHop(2, RelayCommand.DATA, begin.streamId, Buffer.from('forged'));
    expect(circ.isOpen).toBe(false);
    expect(await counts(reg)).toEqual({ RELAY_PROTOCOL: 1 });
  });

  it('a malformed CREATED2 is counted under its decoding error code', async () => {
    const reg = new prom.Registry();
    const { circ } = circuit(0, reg);
    const creating = circ.create(target(0));
    creating.catch(() => {});
    const bad = Buffer.alloc(CELL_PAYLOAD_LEN);
    bad.writeUInt16BE(0xffff, 0);
    circ.onCell(CellCommand.CREATED2, bad);
    expect(circ.closedWith?.code).toBe('MSG_TRUNCATED');
    expect(await counts(reg)).toEqual({ MSG_TRUNCATED: 1 });
  });

  it('a code outside the declared set is counted as INTERNAL, never as given', async () => {
    const reg = new prom.Registry();
    const { circ } = circuit(1, reg);
    circ.violation('ERR_SOMETHING_ELSE', 'a thrown value that is not a BitcloudError');
    expect(circ.closedWith?.code).toBe('INTERNAL');
    expect(await counts(reg)).toEqual({ INTERNAL: 1 });
  });

  it('one counter per registry: circuits of two builders on one registry share it', () => {
    const reg = new prom.Registry();
    expect(clientViolationCounter(reg)).toBe(clientViolationCounter(reg));
  });
});
