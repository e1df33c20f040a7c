// SPEC.md §9.21.5 step 5, §5.6.1: a client whose circuits are CGO still reaches a hidden node. The
// virtual hop after the rendezvous point is keyed by the node's tor1 ntor handshake (72 bytes), so
// it is a tor1 layer on top of the CGO hops of the circuit to the rendezvous point.
import { describe, expect, it } from 'vitest';
import { hopTarget, keyedCircuit } from '../helpers/client-circuit-fixture';
import { createRelayHop, relayCryptoKeyLen } from '../../src/crypto/relay-crypto';
import { randomBytes } from '../../src/crypto/primitives';
import { CellCommand } from '../../src/wire/cell';
import { RelayCommand, decodeRelayPayload, encodeRelayPayload } from '../../src/wire/relay-msg';

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('a CGO circuit with a tor1 virtual hop (SPEC.md §9.21.5 step 5)', () => {
  for (const batched of [false, true]) {
    it(`takes the 72 tor1 bytes; cells go to the virtual hop and come back from it, in order (link ${batched ? 'batching' : 'not batching'} reads)`, async () => {
      const { circ, out, relaySides } = keyedCircuit(3, null, { alg: 'cgo', batched });
      const keys = randomBytes(relayCryptoKeyLen('tor1'));
      const node = createRelayHop(Buffer.from(keys), 'tor1');
      circ.addVirtualHop(hopTarget(3), Buffer.from(keys));
      expect(circ.length).toBe(4);
      const controls: Buffer[] = [];
      circ.onControl = (command, data) => { if (command === RelayCommand.INTRODUCE_ACK) controls.push(data); };

      for (let n = 0; n < 5; n++) {
        // Outbound: the CGO hops do not recognize it (the RP passes it across the join); the node does.
        circ.sendControl(RelayCommand.RENDEZVOUS1, Buffer.from([n]));
        await tick(); // an origin run (batching link) is written at the end of the task
        const cells = out.splice(0);
        expect(circ.closedWith).toBeNull();
        expect(cells.map((c) => c.command)).toEqual([CellCommand.RELAY]);
        const p = cells[0].payload;
        for (const r of relaySides) expect(r.decryptOutbound(p, CellCommand.RELAY)).toBe(false);
        expect(node.decryptOutbound(p, CellCommand.RELAY)).toBe(true);
        const m = decodeRelayPayload(p);
        expect([m.command, [...m.data]]).toEqual([RelayCommand.RENDEZVOUS1, [n]]);

        // Inbound: the node originates, every hop adds its layer; the client's last hop recognizes it.
        const q = encodeRelayPayload(RelayCommand.INTRODUCE_ACK, 0, Buffer.from([n, 0]));
        node.originate(q);
        node.encryptInbound(q, CellCommand.RELAY);
        for (let i = relaySides.length - 1; i >= 0; i--) relaySides[i].encryptInbound(q, CellCommand.RELAY);
        circ.onCell(CellCommand.RELAY, q);
        expect(circ.closedWith).toBeNull();
        expect(controls.map((d) => [...d])).toEqual([[n, 0]]);
        controls.length = 0;
      }
    });
  }
});
