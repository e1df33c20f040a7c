// SPEC.md §9.21.5, the client's side of reaching a hidden storage node: fetch and open its
// descriptor (over a 3-hop circuit to a relay mirror, §9.21.3), park a circuit at a rendezvous point under a cookie,
// introduce itself through one of the node's introduction points (sealed INTRODUCE1 carrying the
// rendezvous point and an ntor handshake with the node), wait for RENDEZVOUS2, add the virtual
// hop, and open BEGIN_STORAGE on the joined circuit.
import { err, errorCode, isBitcloudError, type BitcloudError } from '../errors';
import { shuffle } from '../crypto/primitives';
import { blindPublicKey, hsPeriodOf } from '../crypto/blind';
import { ntorClientCreate, ntorClientFinish } from '../crypto/ntor';
import { relayCryptoHandshake } from '../crypto/relay-crypto';
import { RelayCommand } from '../wire/relay-msg';
import {
  HS_DESC_MAX, IntroduceAckStatus, RendezvousStatus, decodeRendezvous2, decodeStatus, encodeCookie, encodeIntroduce,
  type HsIntroPoint,
} from '../wire/hidden';
import type { ConsensusRelay } from '../dir/types';
import type { ClientCircuit } from '../client/client-circuit';
import type { CircuitStream } from '../circuit/stream';
import { isRunningValid, canBeHop } from '../client/weighting';
import { openHsDescriptor } from './descriptor';
import { sealIntroduce } from './introduce';
import { HS_DESC_PATH } from './store';
import { httpRequest, type HttpResponse } from '../dir/fetch';
import type { Duplex } from 'node:stream';
import { newCookie } from './service';

const WAIT_MS = 30_000;
/** How long one introduction may go unanswered before the next introduction point is tried (SPEC.md §9.21.5). */
export const INTRO_WAIT_MS = 8_000;

export interface HiddenConnectOptions {
  /** The hidden node (a consensus entry with the hidden role). */
  node: ConsensusRelay;
  relays: () => readonly ConsensusRelay[] | null;
  /** Build a 3-hop circuit ending at `last` (guard → middle → last). */
  buildTo: (last: ConsensusRelay) => Promise<ClientCircuit>;
  /** GET a descriptor by blinded key (hex) over a 3-hop circuit to a relay mirror (§9.21.3); its bytes. */
  fetchDescriptor: (blindedKeyHex: string) => Promise<Buffer>;
  now?: () => number;
  /** The whole attempt's bound (RENDEZVOUS2 after the first introduction); default 30 s. */
  timeoutMs?: number;
  /** One introduction's wait for its INTRODUCE_ACK, then for RENDEZVOUS2, before the next introduction point; default INTRO_WAIT_MS. */
  introWaitMs?: number;
  /** Called for each introduction an introduction point accepted (ACK 0). */
  onIntroduced?: (ip: ConsensusRelay) => void;
}

export interface MirrorCircuitOptions {
  relays: () => readonly ConsensusRelay[] | null;
  /** Build a 3-hop circuit ending at `last` (guard → middle → last). */
  buildTo: (last: ConsensusRelay) => Promise<ClientCircuit>;
  timeoutMs?: number;
  /** Mirrors tried (each on a new circuit); default 3. */
  tries?: number;
}

/**
 * One HTTP request to a relay's directory mirror over a 3-hop circuit ending there (BEGIN_DIR
 * at the mirror, SPEC.md §9.21.3, §9.21.8): the mirror sees the request, not who sent it.
 * `accept` turns an answer (and the mirror that gave it) into a result, or throws to try the next
 * mirror (random order).
 */
export async function overMirrorCircuit<T>(o: MirrorCircuitOptions, req: { method: 'GET' | 'POST'; path: string; body?: Buffer; maxBytes: number }, accept: (r: HttpResponse, mirror: ConsensusRelay) => T): Promise<T> {
  const mirrors = shuffle((o.relays() ?? []).filter((r) => isRunningValid(r) && canBeHop(r) && r.dirPort > 0));
  let last: unknown = err('DIR_FETCH_FAILED', 'no relay mirror to ask');
  for (const m of mirrors.slice(0, o.tries ?? 3)) {
    let circ: ClientCircuit | null = null;
    try {
      circ = await o.buildTo(m);
      const { stream } = await circ.openStream({ kind: 'begin_dir' }, o.timeoutMs ?? WAIT_MS);
      const r = await httpRequest(`http://127.0.0.1${req.path}`, {
        method: req.method, body: req.body, maxBytes: req.maxBytes, timeoutMs: o.timeoutMs ?? WAIT_MS, createConnection: () => stream as unknown as Duplex,
      });
      return accept(r, m);
    } catch (e) {
      last = e;
    } finally {
      circ?.destroy();
    }
  }
  throw last;
}

/**
 * SPEC.md §9.21.3: GET the descriptor over a 3-hop circuit whose last hop is a relay mirror
 * (BEGIN_DIR there): neither the guard nor the authorities see which node the client wants.
 */
export function mirrorDescriptorFetcher(o: MirrorCircuitOptions): (blindedKeyHex: string) => Promise<Buffer> {
  return async (key) => {
    if ((o.relays() ?? []).every((r) => !(isRunningValid(r) && canBeHop(r) && r.dirPort > 0))) throw err('HIDDEN_DESC_NOT_FOUND', 'no relay mirror to ask');
    return overMirrorCircuit(o, { method: 'GET', path: `${HS_DESC_PATH}/${key}`, maxBytes: HS_DESC_MAX }, (r) => {
      if (r.status === 200) return r.body;
      throw err('HIDDEN_DESC_NOT_FOUND', `mirror answered HTTP ${r.status}`);
    });
  };
}

/** The descriptor's introduction points after the full check (SPEC.md §9.21.3). */
export async function fetchHiddenDescriptor(o: Pick<HiddenConnectOptions, 'node' | 'fetchDescriptor' | 'now'>): Promise<{ ntorKey: Buffer; intros: HsIntroPoint[] }> {
  const now = (o.now ?? Date.now)();
  const key = blindPublicKey(o.node.identity, hsPeriodOf(now)).toString('hex');
  const bytes = await o.fetchDescriptor(key);
  return openHsDescriptor(bytes, o.node.identity, now).inner;
}

/** Wait for one control message on `circ` that `pick` accepts (returns non-undefined). */
function awaitControl<T>(circ: ClientCircuit, pick: (cmd: number, data: Buffer) => T | undefined, timeoutMs: number, timeoutCode: 'HIDDEN_RENDEZVOUS_TIMEOUT' | 'HIDDEN_NO_INTRO'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const done = () => { clearTimeout(timer); circ.off('close', onClose); circ.onControl = null; };
    const onClose = (e: BitcloudError) => { done(); reject(e); };
    const timer = setTimeout(() => { done(); reject(err(timeoutCode, `no answer within ${timeoutMs} ms`)); }, timeoutMs);
    circ.once('close', onClose);
    circ.onControl = (cmd, data) => {
      const v = pick(cmd, data);
      if (v === undefined) throw err('RELAY_PROTOCOL', `unexpected relay command ${cmd}`);
      done();
      resolve(v);
    };
  });
}

/** ESTABLISH_RENDEZVOUS on `circ` with `cookie`; HIDDEN_COOKIE_REUSED if the RP refuses it. */
export async function establishRendezvous(circ: ClientCircuit, cookie: Buffer, timeoutMs = WAIT_MS): Promise<void> {
  const answer = awaitControl(circ, (cmd, data) => (cmd === RelayCommand.RENDEZVOUS_ESTABLISHED ? decodeStatus(data, 'RENDEZVOUS_ESTABLISHED') : undefined), timeoutMs, 'HIDDEN_RENDEZVOUS_TIMEOUT');
  circ.sendControl(RelayCommand.ESTABLISH_RENDEZVOUS, encodeCookie(cookie));
  const status = await answer;
  if (status === RendezvousStatus.COOKIE_REUSED) throw err('HIDDEN_COOKIE_REUSED', 'the rendezvous point refused the cookie: in use or used before');
  if (status !== RendezvousStatus.OK) throw err('MSG_MALFORMED', `RENDEZVOUS_ESTABLISHED status ${status}`);
}

/** INTRODUCE1 `body` on `circ` (ending at an introduction point); resolves with the ACK status. */
export async function sendIntroduce1(circ: ClientCircuit, body: Buffer, timeoutMs = WAIT_MS): Promise<number> {
  const ack = awaitControl(circ, (cmd, data) => (cmd === RelayCommand.INTRODUCE_ACK ? decodeStatus(data, 'INTRODUCE_ACK') : undefined), timeoutMs, 'HIDDEN_NO_INTRO');
  circ.sendControl(RelayCommand.INTRODUCE1, body);
  return ack;
}

function relayFor(ip: HsIntroPoint, relays: readonly ConsensusRelay[]): ConsensusRelay | null {
  const id = ip.linkSpecifiers.find((s) => s.type === 'ed25519');
  if (!id || id.type !== 'ed25519') return null;
  return relays.find((r) => r.identity.equals(id.id)) ?? null;
}

/**
 * A joined circuit to the hidden node (its virtual hop added), ready for streams. Tries the
 * introduction points in random order; the last failure is thrown when none leads to a rendezvous.
 */
export async function connectHidden(o: HiddenConnectOptions): Promise<ClientCircuit> {
  const relays = o.relays() ?? [];
  const desc = await fetchHiddenDescriptor(o);
  const timeoutMs = o.timeoutMs ?? WAIT_MS;
  const introRelays = new Set(desc.intros.map((i) => relayFor(i, relays)?.fingerprint).filter(Boolean));
  const rpCandidates = shuffle(relays.filter((r) => isRunningValid(r) && canBeHop(r) && r.orPort > 0 && !introRelays.has(r.fingerprint)));
  const rp = rpCandidates[0];
  if (!rp) throw err('PATH_NO_RELAYS', 'no relay to use as a rendezvous point');
  const rpCirc = await o.buildTo(rp);
  try {
    const cookie = newCookie();
    await establishRendezvous(rpCirc, cookie, timeoutMs);
    // One RENDEZVOUS2 waiter for the whole attempt, set up as the first INTRODUCE1 goes out: the
    // attempt's bound (timeoutMs) runs from the first introduction (SPEC.md §9.21.5), not from
    // before its circuit was built; a control message on the rendezvous circuit is only ever
    // RENDEZVOUS2 from then on. `settled`: the answer came or the bound passed; either way no
    // further introduction is sent (the node would build a rendezvous circuit for nothing).
    const hs = relayCryptoHandshake('tor1');
    let rendezvous2: Promise<Buffer> | null = null;
    let settled = false;
    const awaitRendezvous2 = (): Promise<Buffer> => {
      const p = awaitControl(rpCirc, (cmd, data) => (cmd === RelayCommand.RENDEZVOUS2 ? decodeRendezvous2(data) : undefined), timeoutMs, 'HIDDEN_RENDEZVOUS_TIMEOUT');
      p.then(() => { settled = true; }, () => { settled = true; });
      return p;
    };
    // SPEC.md §9.21.5: an introduction the node drops (or never gets) is given up after
    // introWaitMs and the next introduction point is tried on the same rendezvous circuit; the
    // handshakes of earlier introductions stay valid, so a late answer to one of them still joins.
    const introWaitMs = Math.min(o.introWaitMs ?? INTRO_WAIT_MS, timeoutMs);
    const pending: ReturnType<typeof ntorClientCreate>['state'][] = [];
    let reply: Buffer | null = null;
    let last: unknown = err('HIDDEN_NO_INTRO', 'the descriptor names no usable introduction point');
    for (const ip of shuffle([...desc.intros])) {
      if (settled) break;
      const ipRelay = relayFor(ip, relays);
      if (!ipRelay) continue;
      const { state, onionskin } = ntorClientCreate({ id: o.node.identity, onionKey: desc.ntorKey, protoid: hs.protoid });
      const body = encodeIntroduce(sealIntroduce(ip.authKey, ip.encKey, {
        cookie, onionskin, rpOnionKey: rp.onionKey,
        rpLinkSpecifiers: [{ type: 'ipv4', addr: rp.address, port: rp.orPort }, { type: 'ed25519', id: rp.identity }],
      }));
      let ipCirc: ClientCircuit | null = null;
      try {
        ipCirc = await o.buildTo(ipRelay);
        if (settled) break; // the bound passed (or the answer came) while this circuit was built
        rendezvous2 ??= awaitRendezvous2();
        // SPEC.md §9.21.5: the ACK is awaited for one introduction wait, not the attempt's bound: an
        // introduction point that never answers INTRODUCE1 costs that wait, and the next one is
        // tried. The introduction may have gone through all the same, so its handshake stays
        // pending for a late RENDEZVOUS2.
        const status = await sendIntroduce1(ipCirc, body, introWaitMs).catch((e: unknown) => {
          if (errorCode(e) === 'HIDDEN_NO_INTRO') pending.push(state);
          throw e;
        });
        if (status !== IntroduceAckStatus.SENT) throw err('HIDDEN_INTRO_REFUSED', `introduction point answered status ${status}`);
        pending.push(state);
        o.onIntroduced?.(ipRelay);
      } catch (e) {
        last = e;
        if (!rpCirc.isOpen) throw e;
        continue;
      } finally {
        ipCirc?.destroy();
      }
      reply = await waitAtMost(rendezvous2, introWaitMs);
      if (reply) break;
      last = err('HIDDEN_RENDEZVOUS_TIMEOUT', `no RENDEZVOUS2 within ${introWaitMs} ms of an introduction; trying the next introduction point`);
    }
    if (pending.length === 0 || !rendezvous2) throw last;
    // Every introduction point tried (or the bound passed): what is left of the attempt's bound for a late answer.
    reply ??= await rendezvous2;
    rpCirc.addVirtualHop({ identity: o.node.identity, fingerprint: o.node.fingerprint, onionKey: desc.ntorKey, address: '0.0.0.0', orPort: 0 }, finishAny(pending, reply, hs.keyLength));
    return rpCirc;
  } catch (e) {
    rpCirc.destroy();
    throw e;
  }
}

/** The keys of whichever pending handshake `reply` answers (NTOR_BAD_AUTH when none). */
function finishAny(pending: readonly ReturnType<typeof ntorClientCreate>['state'][], reply: Buffer, keyLength: number): Buffer {
  let last: unknown = err('NTOR_BAD_AUTH', 'no introduction is waiting for this answer');
  for (const state of [...pending].reverse()) {
    try { return ntorClientFinish(state, reply, keyLength); } catch (e) { last = e; }
  }
  throw last;
}

/** `p`'s value, or null when it has not settled within `ms` (its rejection is passed on). */
function waitAtMost<T>(p: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<null>((r) => { timer = setTimeout(() => r(null), ms); })]).finally(() => clearTimeout(timer));
}

/** connectHidden, then one BEGIN_STORAGE stream on the joined circuit. */
export async function openHiddenStorageStream(o: HiddenConnectOptions): Promise<CircuitStream> {
  const circ = await connectHidden(o);
  try {
    return (await circ.openStream({ kind: 'begin_storage' }, o.timeoutMs ?? WAIT_MS)).stream;
  } catch (e) {
    circ.destroy();
    throw isBitcloudError(e) ? e : err('STORAGE_CONNECT_FAILED', errorCode(e));
  }
}
