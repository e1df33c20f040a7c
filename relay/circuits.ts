// The relay's circuit engine (SPEC.md §7b): the CircuitSwitch of src/circuit with what only a
// relay does — extend to the next relay (checking it against the consensus, reusing links),
// exit to TCP under the exit policy, serve BEGIN_DIR from its mirror — plus the DoS limits.
// The daemon's listener asks admitConnection() about every TCP connection it accepts, hands every
// link whose handshake completed to acceptChannel(), and the daemon calls close() at shutdown.
import { err } from '../src/errors';
import type { Channel } from '../src/link/channel';
import { connectLink, type LinkAdmission, type LinkTuning } from '../src/link';
import type { LinkMetrics } from '../src/link/metrics';
import type { NodeKeys } from '../src/crypto/keys';
import { fingerprint } from '../src/crypto/keys';
import { parseExitPolicy, type ExitPolicy } from '../src/dir/exit-policy';
import type { ConsensusRelay } from '../src/dir/types';
import { CircuitSwitch } from '../src/circuit/switch';
import type { ExtendTarget, IncomingStream } from '../src/circuit/types';
import { CircuitMetrics } from '../src/circuit/metrics';
import { QueueBudget } from '../src/circuit/cell-queue';
import { UNSERVED_STREAM_REFUSAL } from '../src/circuit/end-reasons';
import { silentLogger, type Logger } from '../src/ops/log';
import type { Registry } from '../src/ops/metrics';
import { DosGuard, MAX_LINKS_PER_IDENTITY, creationSource, isExemptHandshake, listsAddress, resolveRelayLimits, type RelayLimits } from '../src/circuit/dos-limits';
import { hostOf } from '../src/wire/address-key';
import { ExitConnections, createExitHandler, createResolver, ResolveGate, type Lookup } from './exit';
import { DirSplices, createDirStreamHandler, type DirTarget } from './dir-stream';
import { RendezvousRelay } from '../src/circuit/rendezvous';
import type { NodeBandwidth } from '../src/bandwidth/node-bandwidth';
import { prom } from '../src/ops/metrics';
import { DEFAULT_LINK_WARMING, LinkWarmer, warmingMetrics, type LinkWarmingSettings } from './link-warming';

export interface RelayCircuitsOptions {
  /** The node's keys; a function so that onion key rotation is picked up. */
  keys: NodeKeys | (() => NodeKeys);
  /** Exit policy (rule lines or parsed); null/absent = not an exit (BEGIN refused with EXITPOLICY). */
  exitPolicy?: readonly string[] | ExitPolicy | null;
  /** This relay's own addresses, for the policy's "private" rule (Tor's ExitPolicyRejectMyAddresses). */
  ownAddresses?: string[];
  /** Where BEGIN_DIR goes; null/absent = not a mirror (END NOTDIRECTORY). */
  dirTarget?: () => DirTarget | null;
  /** The current verified consensus, or null if none yet. */
  consensus?: () => { relays: readonly ConsensusRelay[] } | null;
  /**
   * Refuse EXTEND2 to relays missing from the consensus or listed at another address/port.
   * Default true; tests without a consensus turn it off.
   */
  requireConsensusForExtend?: boolean;
  /**
   * SPEC.md §7b.3 item 2: an EXTEND2 target the consensus does not list (or lists at another
   * address) first has the consensus fetched out of schedule (coalesced, rate-limited and bounded
   * by a deadline: ConsensusMirror.refreshForExtend); it settles when the extension may check again.
   * Absent: refused at once.
   */
  refreshConsensus?: () => Promise<void>;
  /** BEGIN_STORAGE (a storage node's hook); absent = refused. */
  onStorageStream?: (inc: IncomingStream) => void;
  limits?: Partial<RelayLimits>;
  /** DNS at the exit (tests substitute their own). */
  lookup?: Lookup;
  /** Refuse BEGIN and RESOLVE on circuits that came from a client link, not a listed relay. Default true. */
  refuseOneHopExit?: boolean;
  /** Proof of bandwidth (SPEC.md §8): counts authenticated links, routes RECEIPT_* cells. Absent = not counted. */
  bandwidth?: Pick<NodeBandwidth, 'attach' | 'onLinkCell' | 'beforeClose'> & Partial<Pick<NodeBandwidth, 'beforeClosing'>>;
  /**
   * SPEC.md §1.9: relay links kept warm ahead of circuits, and the idle timeout. Absent: no
   * warming and no idle timeout (links stay until they fail, as in tests without a consensus).
   */
  linkWarming?: LinkWarmingSettings;
  linkTuning?: LinkTuning;
  linkMetrics?: LinkMetrics;
  registry?: Registry;
  log?: Logger;
}

const consensusIndex = new WeakMap<object, Map<string, ConsensusRelay>>();


export class RelayCircuits {
  readonly switch: CircuitSwitch<Channel>;
  readonly dos: DosGuard;
  readonly limits: RelayLimits;
  readonly metrics: CircuitMetrics;
  /** SPEC.md §9.21: this relay as introduction and rendezvous point. */
  readonly rendezvous: RendezvousRelay;
  private readonly log: Logger;
  private readonly keys: () => NodeKeys;
  /** Open links by peer identity (fingerprint), inbound or outbound, for EXTEND2 reuse; the first opened first. */
  private readonly byPeer = new Map<string, Channel[]>();
  private readonly connecting = new Map<string, Promise<Channel>>();
  private readonly outbound = new Set<Channel>();
  private closed = false;
  /** SPEC.md §1.9; null without `linkWarming`. */
  readonly warmer: LinkWarmer<Channel> | null = null;
  private readonly extendLinks?: prom.Counter<'link'>;
  /**
   * Accepted links counted against their address's connection limit (SPEC.md §7b.9), with their
   * place under it. A relay that links to us before our consensus lists it (§1.9) is counted at
   * first; a later consensus that lists it takes it off the count.
   */
  private readonly countedLinks = new Map<Channel, LinkAdmission>();

  constructor(private readonly opts: RelayCircuitsOptions) {
    this.log = opts.log ?? silentLogger;
    this.limits = resolveRelayLimits(opts.limits);
    this.dos = new DosGuard(this.limits);
    this.metrics = opts.registry ? CircuitMetrics.for(opts.registry) : new CircuitMetrics();
    const k = opts.keys;
    this.keys = typeof k === 'function' ? k : () => k;
    const policy: ExitPolicy | null = opts.exitPolicy == null ? null
      : Array.isArray(opts.exitPolicy) ? parseExitPolicy(opts.exitPolicy as string[], { ownAddresses: opts.ownAddresses }) : opts.exitPolicy as ExitPolicy;
    // SPEC.md §7b.7: one bound on the name resolutions this exit runs at once, BEGIN and RESOLVE alike.
    const gate = new ResolveGate(this.limits.maxConcurrentResolves);
    const exit = policy ? createExitHandler({
      policy, lookup: opts.lookup, connectTimeoutMs: this.limits.exitConnectTimeoutMs,
      refuseOneHop: opts.refuseOneHopExit, metrics: this.metrics, log: this.log, gate,
      // SPEC.md §7b.9: one bound on the exit's target connections, whatever circuit they serve.
      connections: new ExitConnections(this.limits.maxExitConnections),
    }) : null;
    // SPEC.md §7b.9: one bound on the BEGIN_DIR streams spliced to the dir port, whatever circuit they came on.
    const dir = opts.dirTarget ? createDirStreamHandler(opts.dirTarget, {
      splices: new DirSplices(this.limits.maxDirStreams), onRefused: () => this.metrics.refused('dir_streams'),
    }) : null;
    const storage = opts.onStorageStream ?? null;
    this.rendezvous = new RendezvousRelay(() => this.keys().identity.publicKey, { onError: (code) => this.metrics.error(code), onRefused: (kind) => this.metrics.refused(kind) });

    this.switch = new CircuitSwitch<Channel>({
      identity: this.keys().identity.publicKey,
      onionKeys: () => { const nk = this.keys(); return nk.previousOnion ? [nk.onion, nk.previousOnion] : [nk.onion]; },
      limits: this.limits,
      budget: new QueueBudget(this.limits.maxQueuedBytes),
      metrics: this.metrics,
      log: this.log,
      onLinkCell: opts.bandwidth ? (ch, cell) => opts.bandwidth!.onLinkCell(ch, cell) : undefined,
      hooks: {
        allowCircuit: (ch) => this.isKnownRelay(ch) || this.dos.allowCircuit(hostOf(ch.remoteAddress)),
        // SPEC.md §7b.7: "the previous hop is a relay" only for identities the consensus lists.
        creationSource: (ch) => creationSource(ch.remoteAddress, this.isKnownRelay(ch) ? ch.peerIdentity : null),
        isListedRelay: opts.consensus ? (ch) => this.isKnownRelay(ch) : undefined,
        extend: (t, from) => this.extend(t, from),
        onStream: (inc) => {
          const h = inc.kind === 'begin' ? exit : inc.kind === 'begin_dir' ? dir : storage;
          if (h) h(inc);
          else inc.refuse(UNSERVED_STREAM_REFUSAL[inc.kind]);
        },
        rendezvous: this.rendezvous,
        resolve: policy ? createResolver({ lookup: opts.lookup, gate, refuseOneHop: opts.refuseOneHopExit, metrics: this.metrics }) : undefined,
      },
    });
    const reg = opts.registry;
    if (reg) {
      // eslint-disable-next-line @typescript-eslint/no-this-alias
      const self = this;
      this.extendLinks = new prom.Counter({ name: 'bitcloud_relay_extend_links_total', help: 'Links EXTEND2 went out on: reused (open), waited (an attempt under way), opened (for it) (SPEC.md §7b.3, §1.9)', labelNames: ['link'], registers: [reg] });
      new prom.Gauge({
        name: 'bitcloud_relay_links_open', help: 'Open links whose peer proved an identity (relays, storage nodes), by who opened them (SPEC.md §1.9)', labelNames: ['direction'], registers: [reg],
        collect() { const n = self.relayLinkCounts(); this.set({ direction: 'outbound' }, n.outbound); this.set({ direction: 'inbound' }, n.inbound); },
      });
    }
    if (opts.linkWarming) {
      const s = { ...DEFAULT_LINK_WARMING, ...opts.linkWarming };
      this.warmer = new LinkWarmer<Channel>({
        self: () => fingerprint(this.keys().identity.publicKey),
        linkTo: (fp) => this.openLinkTo(fp),
        connecting: (fp) => this.connecting.has(fp),
        open: (r) => this.connectTo(r.fingerprint, r.identity, r.address, r.orPort),
        outboundLinks: () => [...this.outbound].filter((ch) => ch.peerIdentity).map((ch) => ({ link: ch, fp: fingerprint(ch.peerIdentity!) })),
        circuitsOn: (ch) => this.switch.linkOf(ch)?.circuits.size ?? 0,
        closeIdle: async (ch) => {
          // SPEC.md §8.3 step 10: propose first. Cells counted after the proposal's cut (a circuit
          // opened and closed again during the wait) would be lost with the link: not idle then.
          const settled = await opts.bandwidth?.beforeClosing?.(ch) ?? true;
          // An EXTEND2 may have put a circuit on it meanwhile: then it is not idle any more.
          if (!settled || ch.closed || (this.switch.linkOf(ch)?.circuits.size ?? 0) > 0) return false;
          ch.close('idle relay link');
          return true;
        },
      }, s, warmingMetrics(reg), { log: this.log });
      this.warmer.start();
    }
  }

  /** A new verified consensus (SPEC.md §1.9): choose the warm set, open missing links in the background. */
  onConsensus(c: { relays: readonly ConsensusRelay[] }): void {
    if (this.closed) return;
    for (const [ch, place] of this.countedLinks) {
      if (this.isKnownRelay(ch)) { this.countedLinks.delete(ch); place.release(); }
    }
    this.warmer?.onConsensus(c.relays);
  }

  private relayLinkCounts(): { outbound: number; inbound: number } {
    let outbound = 0, inbound = 0;
    for (const list of this.byPeer.values()) for (const ch of list) { if (this.outbound.has(ch)) outbound++; else inbound++; }
    return { outbound, inbound };
  }

  /** An open link to this identity, either direction (the oldest), or null. */
  private openLinkTo(fp: string): Channel | null {
    const list = this.byPeer.get(fp);
    if (!list) return null;
    for (const ch of list) if (!ch.closed) return ch;
    return null;
  }

  /**
   * SPEC.md §7b.9: a TCP connection the listener accepted, before TLS or the link handshake. One
   * from an address the consensus lists a relay at is exempt until its handshake ends, under the
   * separate cap on such handshakes per address; any other takes a place under its address's
   * connection cap (handshaking and open links alike). null: refused (closed at once). The place
   * is given back once, when the connection closes (or when acceptChannel trades it).
   */
  admitConnection(address: string): LinkAdmission | null {
    if (this.closed) return null;
    const place = listsAddress(this.opts.consensus?.(), address) ? this.dos.admitExemptHandshake(address) : this.dos.admit(address);
    // Counted under the address's key (an IPv4 address or an IPv6 /64, §7b.9): the key allowCircuit reads too.
    if (!place) this.metrics.refused('connections_per_address');
    return place;
  }

  /**
   * Serve a link the listener accepted, with the place admitConnection gave its connection
   * (SPEC.md §7b.9). A link from a relay the consensus lists by identity leaves the count; any
   * other link whose connection is not counted yet (an exempt address's handshake, or none given)
   * takes a place under its address's cap now, and is closed at once over it. A link proving an
   * identity that already holds MAX_LINKS_PER_IDENTITY open links with this relay (inbound and
   * outbound) is closed right after its handshake; the links in place are kept.
   */
  acceptChannel(ch: Channel, admission: LinkAdmission | null = null): void {
    if (this.closed) { admission?.release(); ch.close('shutting down'); return; }
    if (ch.peerIdentity && (this.byPeer.get(fingerprint(ch.peerIdentity))?.length ?? 0) >= MAX_LINKS_PER_IDENTITY) {
      admission?.release();
      this.metrics.refused('links_per_identity');
      ch.close('too many links from one identity');
      return;
    }
    if (this.isKnownRelay(ch)) {
      admission?.release();
    } else {
      let place = admission;
      if (!place || isExemptHandshake(place)) {
        place?.release();
        place = this.dos.admit(hostOf(ch.remoteAddress));
        if (!place) {
          this.metrics.refused('connections_per_address');
          ch.close('too many connections from one address');
          return;
        }
      }
      const p = place;
      this.countedLinks.set(ch, p);
      ch.once('close', () => { if (this.countedLinks.delete(ch)) p.release(); });
    }
    this.track(ch);
    this.switch.attach(ch);
    this.opts.bandwidth?.attach(ch); // SPEC.md §8.1: counted only if the initiator proved an identity
  }

  get circuitCount(): number { return this.switch.circuitCount; }

  /**
   * Destroy every circuit and close the links this relay opened — after proposing a receipt on
   * each for the current epoch and sending RECEIPT_REQUEST on the links it accepted, giving the
   * answers one bounded moment (SPEC.md §8.3 steps 10–11).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.warmer?.stop();
    this.switch.close();
    this.rendezvous.close();
    await this.opts.bandwidth?.beforeClose([...this.outbound]);
    for (const ch of this.outbound) ch.close('relay shutting down');
  }

  private track(ch: Channel): void {
    if (!ch.peerIdentity) return;
    const fp = fingerprint(ch.peerIdentity);
    const list = this.byPeer.get(fp);
    if (list) list.push(ch); else this.byPeer.set(fp, [ch]);
    ch.once('close', () => {
      const l = this.byPeer.get(fp);
      if (!l) return;
      const i = l.indexOf(ch);
      if (i >= 0) l.splice(i, 1);
      if (l.length === 0) this.byPeer.delete(fp);
    });
  }

  private isKnownRelay(ch: Channel): boolean {
    return ch.peerIdentity !== null && this.listed(ch.peerIdentity) !== undefined;
  }

  /** The consensus entry for an identity (indexed once per consensus). */
  private listed(identity: Buffer): ConsensusRelay | undefined {
    const c = this.opts.consensus?.();
    if (!c) return undefined;
    let idx = consensusIndex.get(c);
    if (!idx) { idx = new Map(c.relays.map((r) => [r.identity.toString('hex'), r])); consensusIndex.set(c, idx); }
    return idx.get(identity.toString('hex'));
  }

  /**
   * SPEC.md §7b.3 item 2: where an EXTEND2 target is to be reached — the address and ORPort the
   * consensus lists for its identity, if the EXTEND2 names them — or the refusal's code.
   */
  private extendAddress(t: ExtendTarget): { host: string; port: number } | 'EXTEND_IDENTITY_UNKNOWN' | 'EXTEND_ADDRESS_MISMATCH' {
    const listed = this.listed(t.identity);
    if (listed) {
      if (!t.addresses.some((a) => a.host === listed.address && a.port === listed.orPort)) return 'EXTEND_ADDRESS_MISMATCH';
      return { host: listed.address, port: listed.orPort };
    }
    if (this.opts.requireConsensusForExtend !== false) return 'EXTEND_IDENTITY_UNKNOWN';
    const a = t.addresses[0];
    return { host: a.host, port: a.port };
  }

  /**
   * SPEC.md §7b.3: the EXTEND2 target must be in our consensus at the address and port the
   * client named (unless that check is turned off); reuse any open link to that identity,
   * else open one as an authenticated initiator that insists on that identity.
   */
  private async extend(t: ExtendTarget, _from: Channel): Promise<Channel> {
    if (this.closed) throw err('CIRCUIT_EXTEND_REFUSED', 'relay shutting down');
    const fp = fingerprint(t.identity);
    let target = this.extendAddress(t);
    // SPEC.md §7b.3 item 2: the client may hold a newer consensus than ours (we refetch up to a
    // period later); a miss has the consensus fetched now, and the target checked again against it.
    if (typeof target === 'string' && this.opts.refreshConsensus) {
      await this.opts.refreshConsensus();
      if (this.closed) throw err('CIRCUIT_EXTEND_REFUSED', 'relay shutting down');
      // The circuit may have closed (or been truncated) during the wait: no link is opened for it.
      if (t.wanted && !t.wanted()) throw err('CIRCUIT_EXTEND_REFUSED', 'the circuit closed while the consensus was fetched');
      target = this.extendAddress(t);
    }
    if (target === 'EXTEND_ADDRESS_MISMATCH') throw err(target, 'EXTEND2 names an address the consensus does not list for that identity');
    if (target === 'EXTEND_IDENTITY_UNKNOWN') throw err(target, 'EXTEND2 target is not in the consensus');
    const { host, port } = target;
    const open = this.openLinkTo(fp);
    const pending = open ? null : this.connecting.get(fp);
    this.extendLinks?.inc({ link: open ? 'reused' : pending ? 'waited' : 'opened' });
    if (open) return open;
    if (pending) return pending;
    return this.connectTo(fp, t.identity, host, port);
  }

  /**
   * Open a link to a relay as an authenticated initiator insisting on its identity (SPEC.md
   * §7b.3 item 3, §1.9); concurrent callers for one identity share the attempt.
   */
  private connectTo(fp: string, identity: Buffer, host: string, port: number): Promise<Channel> {
    const pending = this.connecting.get(fp);
    if (pending) return pending;
    const p = connectLink({
      host, port, expectedIdentity: identity, identity: this.keys().identity,
      timeoutMs: 10_000, metrics: this.opts.linkMetrics, log: this.log, ...this.opts.linkTuning,
    }).then((ch) => {
      this.connecting.delete(fp);
      if (this.closed) { ch.close('relay shutting down'); throw err('CIRCUIT_EXTEND_REFUSED', 'relay shutting down'); }
      this.outbound.add(ch);
      ch.once('close', () => this.outbound.delete(ch));
      this.track(ch);
      this.switch.attach(ch);
      this.opts.bandwidth?.attach(ch); // we authenticated, and connectLink checked the responder
      return ch;
    }, (e) => {
      this.connecting.delete(fp);
      throw e;
    });
    this.connecting.set(fp, p);
    return p;
  }
}
