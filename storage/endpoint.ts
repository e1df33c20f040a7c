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
import { createLinkListener, createLinkMetrics, type Channel, type LinkAdmission, type LinkListener } from '../src/link';
import { createStorageDirectListener, DEFAULT_DIRECT_REQUEST_MS, type StorageDirectListener } from '../src/storage/direct';
import { EndReason } from '../src/wire/messages';
import { silentLogger, type Logger } from '../src/ops/log';
import type { Registry } from '../src/ops/metrics';
import { allowAll, type PolicyCheck } from './handler';
import { serveStorageStream } from './session';
import type { ShareStore } from './share-store';
import type { NameService } from './name-service';
import type { NodeBandwidth } from '../src/bandwidth/node-bandwidth';
import { KeyCounts } from '../src/ops/key-counts';
import { DosGuard, MAX_LINKS_PER_IDENTITY, creationSource, isExemptHandshake, listsAddress, resolveRelayLimits, type RelayLimits } from '../src/circuit/dos-limits';
import { hostOf } from '../src/wire/address-key';

export interface StorageEndpointOptions {
  keys: () => NodeKeys;
  store: ShareStore;
  host: string;
  orPort: number;
  storagePort: number;
  policyCheck?: PolicyCheck;
  /** Name lookups for clients (SPEC.md §9.14.1). */
  names?: NameService;
  maxDirectSessions?: number;
  /** SPEC.md §9.13.2: direct sessions one client address key may hold (default 16). */
  maxDirectSessionsPerAddress?: number;
  /** SPEC.md §9.13.2: a direct session with no byte either way this long is closed (default 60 s). */
  directIdleMs?: number;
  /** SPEC.md §9.6.1, §9.13.2: a request on any storage stream (circuit or direct) not received in full this long after its first byte closes it (default 120 s). */
  directRequestMs?: number;
  /** The per-address key of a direct session (default clientAddressKey: this host's own connections count under none). */
  directAddressKey?: (remote: string | undefined, local: string | undefined) => string | null;
  /** Proof of bandwidth (SPEC.md §8.3, last paragraph): a storage node counts its links with relays like a relay. */
  bandwidth?: Pick<NodeBandwidth, 'attach' | 'onLinkCell' | 'beforeClose'>;
  registry?: Registry;
  log?: Logger;
  /**
   * The node's verified consensus (SPEC.md §7b.7): a circuit counts as coming through a relay only
   * when the previous hop's identity is listed in it. Absent: any proved identity counts (tests).
   */
  consensus?: () => { relays: readonly { identity: Buffer; address: string }[] } | null;
  /**
   * SPEC.md §7b.9 on the storage OR port too: the relay's per-address DoS limits (circuit-creation
   * bucket, connections per address counted from the TCP accept); listed relays are exempt.
   * Defaults: the relay's.
   */
  limits?: Partial<RelayLimits>;
  /**
   * Fetch the consensus now (SPEC.md §9.13): called when a peer that proved a relay identity not in
   * the consensus held opens a link (a relay newer than that consensus), at most every 5 s.
   */
  refreshConsensus?: () => Promise<void>;
}


export class StorageEndpoint {
  readonly switch: CircuitSwitch<Channel>;
  private links: LinkListener | null = null;
  private direct: StorageDirectListener | null = null;
  private readonly sessions = new Set<Duplex>();
  private readonly log: Logger;
  private closed = false;
  readonly dos: DosGuard;

  constructor(private readonly o: StorageEndpointOptions) {
    this.log = o.log ?? silentLogger;
    const limits = resolveRelayLimits(o.limits);
    this.dos = new DosGuard(limits);
    this.switch = new CircuitSwitch<Channel>({
      identity: o.keys().identity.publicKey,
      onionKeys: () => { const k = o.keys(); return k.previousOnion ? [k.onion, k.previousOnion] : [k.onion]; },
      metrics: o.registry ? CircuitMetrics.for(o.registry) : new CircuitMetrics(),
      log: this.log,
      onLinkCell: o.bandwidth ? (ch, cell) => o.bandwidth!.onLinkCell(ch, cell) : undefined,
      // No `extend` hook: a storage node never extends (SPEC.md §9.13); no exit, no directory.
      limits: {
        maxCircuitsPerLink: limits.maxCircuitsPerLink, maxStreamsPerCircuit: limits.maxStreamsPerCircuit,
        // SPEC.md §7b.9: BEGIN_STORAGE takes a token of the circuit's stream-creation bucket here too.
        streamCreationRate: limits.streamCreationRate, streamCreationBurst: limits.streamCreationBurst,
      },
      hooks: {
        // SPEC.md §7b.9: the relay's CREATE2 rate limit per address, listed relays exempt.
        allowCircuit: (ch) => this.isListedRelay(ch) || this.dos.allowCircuit(hostOf(ch.remoteAddress)),
        onStream: (inc) => this.onStream(inc),
        creationSource: (ch) => creationSource(ch.remoteAddress, this.isListedRelay(ch) ? ch.peerIdentity : null),
        isListedRelay: o.consensus ? (ch) => this.isListedRelay(ch) : undefined,
      },
    });
  }

  private listedIndex: { of: object; ids: Set<string> } | null = null;
  private isListedRelay(ch: Channel): boolean {
    const id = ch.peerIdentity;
    const c = this.o.consensus?.();
    if (!id || !c) return false;
    if (this.listedIndex?.of !== c) this.listedIndex = { of: c, ids: new Set(c.relays.map((r) => r.identity.toString('hex'))) };
    return this.listedIndex.ids.has(id.toString('hex'));
  }

  /**
   * SPEC.md §7b.9, as a relay does: a TCP connection the OR port accepted, before TLS or the link
   * handshake. One from an address the consensus lists a relay at is exempt until its handshake
   * ends, under the separate cap on such handshakes per address; any other takes a place under its
   * address's connection cap (handshaking and open links alike), or is refused (null: closed at
   * once, counted as a relay counts it). The place is given back once.
   */
  private admitConnection(address: string): LinkAdmission | null {
    if (this.closed) return null;
    const c = this.o.consensus?.();
    if (c && c !== this.lastConsensus) this.onConsensus(c);
    const place = listsAddress(c, address) ? this.dos.admitExemptHandshake(address) : this.dos.admit(address);
    if (!place) this.switch.metrics.refused('connections_per_address');
    return place;
  }

  /** Open links by the identity they proved (hex), for MAX_LINKS_PER_IDENTITY (SPEC.md §7b.9). */
  private readonly linksByIdentity = new KeyCounts();

  /** Links under the per-address cap, with their places (SPEC.md §7b.9). */
  private readonly countedLinks = new Map<Channel, LinkAdmission>();
  /** The consensus the counted links were last looked at against. */
  private lastConsensus: object | null = null;

  /**
   * SPEC.md §7b.9, as a relay does: a new consensus, noticed at the next accept (nothing else calls
   * this), so counted links are re-checked only when the next link is accepted. Addresses it lists
   * are exempt from then on; a counted link from a relay it lists leaves the count, so that relay's
   * address has its places back.
   */
  onConsensus(c: { relays: readonly { identity: Buffer; address: string }[] }): void {
    this.lastConsensus = c;
    for (const [ch, place] of this.countedLinks) {
      if (this.isListedRelay(ch)) { this.countedLinks.delete(ch); place.release(); }
    }
  }

  get orPort(): number { return this.links?.port ?? 0; }
  get storagePort(): number { return this.direct?.port ?? 0; }
  /** Storage streams being served now (circuit and direct). */
  get sessionCount(): number { return this.sessions.size; }

  /** SPEC.md §9.21: a stream a client opened over a rendezvous circuit (hidden node). */
  acceptHiddenStream(inc: IncomingStream): void {
    this.onStream(inc);
  }

  /** `listen: false` (a hidden node, SPEC.md §9.21): no link or direct-session listener at all. */
  async start(o: { listen?: boolean } = {}): Promise<void> {
    if (o.listen === false) return;
    const identity = this.o.keys().identity;
    this.links = await createLinkListener({
      host: this.o.host, port: this.o.orPort, identity,
      // SPEC.md §7b.9: the per-address connection cap is taken at accept, before any handshake.
      admit: (address) => this.admitConnection(address),
      onChannel: (ch, admission) => {
        if (this.closed) { admission?.release(); ch.close('shutting down'); return; }
        // SPEC.md §7b.9: at most MAX_LINKS_PER_IDENTITY open links per proven identity; the one
        // past it is closed right after its handshake, the links in place are kept.
        const id = ch.peerIdentity?.toString('hex');
        if (id !== undefined) {
          if (this.linksByIdentity.get(id) >= MAX_LINKS_PER_IDENTITY) {
            admission?.release();
            this.switch.metrics.refused('links_per_identity');
            ch.close('too many links from one identity');
            return;
          }
          this.linksByIdentity.add(id);
          ch.once('close', () => this.linksByIdentity.remove(id));
        }
        if (this.isListedRelay(ch)) {
          admission?.release(); // a listed relay's link leaves the count
        } else {
          if (ch.peerIdentity) this.refreshForUnknownRelay();
          // SPEC.md §7b.9: an exempt address's exemption ends with the handshake; a link that did
          // not prove a listed relay's identity is counted under its address from now on.
          let place = admission;
          if (!place || isExemptHandshake(place)) {
            place?.release();
            place = this.dos.admit(hostOf(ch.remoteAddress));
            if (!place) {
              this.switch.metrics.refused('connections_per_address');
              ch.close('too many connections from one address');
              return;
            }
          }
          const p = place;
          this.countedLinks.set(ch, p);
          ch.once('close', () => { if (this.countedLinks.delete(ch)) p.release(); });
        }
        this.switch.attach(ch);
        this.o.bandwidth?.attach(ch); // counted only when the initiator (a relay) proved its identity
      },
      metrics: this.o.registry ? createLinkMetrics(this.o.registry) : undefined, log: this.log,
    });
    this.direct = await createStorageDirectListener({
      host: this.o.host, port: this.o.storagePort, identity, maxConnections: this.o.maxDirectSessions,
      maxPerAddress: this.o.maxDirectSessionsPerAddress, idleTimeoutMs: this.o.directIdleMs, addressKey: this.o.directAddressKey,
      onSession: (socket) => this.serve(socket, false, true),
      onError: (code) => this.o.store.metrics.errors.inc({ code }),
      onClosed: (reason) => this.o.store.metrics.directClosed.inc({ reason }),
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
    // While a refresh prompted by an unknown relay is under way, wait for it (bounded) before judging:
    // the relay that built this circuit may be in the newer consensus.
    const pending = inc.oneHop ? this.refreshing : null;
    if (!pending) { this.serve(inc.stream, !inc.oneHop, false); return; }
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => { timer = setTimeout(r, 10_000); timer.unref(); });
    void Promise.race([pending, bound]).finally(() => {
      clearTimeout(timer);
      if (this.closed) { inc.stream.destroy(); return; }
      this.serve(inc.stream, !inc.oneHop, false);
    });
  }

  private refreshing: Promise<void> | null = null;
  private lastUnknownRefresh = 0;
  private refreshForUnknownRelay(): void {
    const refresh = this.o.refreshConsensus;
    const now = Date.now();
    if (!refresh || this.refreshing || now - this.lastUnknownRefresh < 5_000) return;
    this.lastUnknownRefresh = now;
    this.log.debug('a relay not in the consensus held opened a link; fetching the consensus');
    const p = refresh().catch(() => {}).finally(() => { if (this.refreshing === p) this.refreshing = null; });
    this.refreshing = p;
  }

  /**
   * SPEC.md §9.6.1: every storage stream, circuit or direct, has the request deadline
   * (`directRequestSeconds`, default 120 s); a direct session closed by it is counted (§9.13.2).
   */
  private serve(stream: Duplex, viaCircuit: boolean, direct: boolean): void {
    this.sessions.add(stream);
    const requestDeadlineMs = this.o.directRequestMs ?? DEFAULT_DIRECT_REQUEST_MS;
    const onRequestDeadline = direct ? () => this.o.store.metrics.directClosed.inc({ reason: 'request_deadline' }) : undefined;
    void serveStorageStream(stream, this.o.store, {
      ctx: { viaCircuit }, policyCheck: this.o.policyCheck ?? allowAll, names: this.o.names, log: this.log, requestDeadlineMs, onRequestDeadline,
    })
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
