// SPEC.md §9.13: the two ways a storage stream reaches this node. (1) Circuits: the node runs the
// circuit-endpoint half of the relay code (src/circuit CircuitSwitch) on its OR port: it answers
// CREATE2 and recognized relay cells, has no extend hook (EXTEND2 is refused) and no exit (BEGIN
// and BEGIN_DIR are refused); each BEGIN_STORAGE stream is served by serveStorageStream. (2) Direct
// sessions on the storage port (src/storage/direct.ts). Both feed the same handler.
import type { Duplex } from 'node:stream';
import type { NodeKeys } from '../src/crypto/keys';
import { CircuitSwitch } from '../src/circuit/switch';
import type { IncomingStream } from '../src/circuit/types';
import { CircuitMetrics } from '../src/circuit/metrics';
import { createLinkListener, createLinkMetrics, type Channel, type LinkListener } from '../src/link';
import { createStorageDirectListener, type StorageDirectListener } from '../src/storage/direct';
import { EndReason } from '../src/wire/messages';
import { silentLogger, type Logger } from '../src/ops/log';
import type { Registry } from '../src/ops/metrics';
import { allowAll, type PolicyCheck } from './handler';
import { serveStorageStream } from './session';
import type { ShareStore } from './share-store';
import type { NodeBandwidth } from '../src/bandwidth/node-bandwidth';

export interface StorageEndpointOptions {
  keys: () => NodeKeys;
  store: ShareStore;
  host: string;
  orPort: number;
  storagePort: number;
  policyCheck?: PolicyCheck;
  maxDirectSessions?: number;
  /** Proof of bandwidth (SPEC.md §8.3, last paragraph): a storage node counts its links with relays like a relay. */
  bandwidth?: Pick<NodeBandwidth, 'attach' | 'onLinkCell' | 'beforeClose'>;
  registry?: Registry;
  log?: Logger;
}

export class StorageEndpoint {
  readonly switch: CircuitSwitch<Channel>;
  private links: LinkListener | null = null;
  private direct: StorageDirectListener | null = null;
  private readonly sessions = new Set<Duplex>();
  private readonly log: Logger;
  private closed = false;

  constructor(private readonly o: StorageEndpointOptions) {
    this.log = o.log ?? silentLogger;
    this.switch = new CircuitSwitch<Channel>({
      identity: o.keys().identity.publicKey,
      onionKeys: () => { const k = o.keys(); return k.previousOnion ? [k.onion, k.previousOnion] : [k.onion]; },
      metrics: o.registry ? CircuitMetrics.for(o.registry) : new CircuitMetrics(),
      log: this.log,
      onLinkCell: o.bandwidth ? (ch, cell) => o.bandwidth!.onLinkCell(ch, cell) : undefined,
      // No `extend` hook: a storage node never extends (SPEC.md §9.13); no exit, no directory.
      hooks: { onStream: (inc) => this.onStream(inc) },
    });
  }

  get orPort(): number { return this.links?.port ?? 0; }
  get storagePort(): number { return this.direct?.port ?? 0; }
  /** Storage streams being served now (circuit and direct). */
  get sessionCount(): number { return this.sessions.size; }

  async start(): Promise<void> {
    const identity = this.o.keys().identity;
    this.links = await createLinkListener({
      host: this.o.host, port: this.o.orPort, identity,
      onChannel: (ch) => {
        if (this.closed) { ch.close('shutting down'); return; }
        this.switch.attach(ch);
        this.o.bandwidth?.attach(ch); // counted only when the initiator (a relay) proved its identity
      },
      metrics: this.o.registry ? createLinkMetrics(this.o.registry) : undefined, log: this.log,
    });
    this.direct = await createStorageDirectListener({
      host: this.o.host, port: this.o.storagePort, identity, maxConnections: this.o.maxDirectSessions,
      onSession: (socket) => this.serve(socket, false),
      onError: (code) => this.o.store.metrics.errors.inc({ code }),
      log: this.log,
    });
  }

  private onStream(inc: IncomingStream): void {
    if (inc.kind !== 'begin_storage' || this.closed) {
      inc.refuse(inc.kind === 'begin' ? EndReason.EXITPOLICY : inc.kind === 'begin_dir' ? EndReason.NOTDIRECTORY : EndReason.HIBERNATING);
      return;
    }
    inc.accept();
    // A one-hop circuit (an anonymous client's CREATE2 straight to us) is as direct as the storage port.
    this.serve(inc.stream, !inc.oneHop);
  }

  private serve(stream: Duplex, viaCircuit: boolean): void {
    this.sessions.add(stream);
    void serveStorageStream(stream, this.o.store, { ctx: { viaCircuit }, policyCheck: this.o.policyCheck ?? allowAll, log: this.log })
      .finally(() => this.sessions.delete(stream));
  }

  /** Stop accepting; destroy circuits and sessions; close the listeners. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.switch.close();
    for (const s of this.sessions) s.destroy();
    // The links relays opened to us stay up a moment: ask their initiators to propose for the
    // segment so far (RECEIPT_REQUEST, SPEC.md §8.3 item 11), so closing mid-epoch is still paid.
    await this.o.bandwidth?.beforeClose().catch(() => {});
    await Promise.all([this.links?.close(), this.direct?.close()]);
  }
}
