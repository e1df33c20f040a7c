// SPEC.md §9.14.2: names at relay mirrors, used when the consensus lists no public storage node
// (every storage node hidden, or none), so there is no DHT to ask through. The 3 relays with a
// directory mirror whose identity is closest, by XOR, to SHA-256("bitcloud-name" ‖ target) hold a
// name's record. The client publishes to all 3 and resolves from all 3, each over its own 3-hop
// circuit ending at the mirror (BEGIN_DIR there), so a mirror sees the record and its target but
// never the client's address. Mirrors are trusted with availability only: every record is checked
// here (signature, key, salt, and a seq not below the newest this client has verified).
import type { Duplex } from 'node:stream';
import { err, errorCode, isBitcloudError } from '../errors';
import { sha256, type Ed25519KeyPair } from '../crypto/primitives';
import { httpRequest, type HttpResponse } from '../dir/fetch';
import type { ConsensusRelay } from '../dir/types';
import { silentLogger, type Logger } from '../ops/log';
import type { Capability } from '../storage/capability';
import { decodeNameValue, encodeNameValue, formatName, nameSalt } from '../storage/name';
import { checkDhtAnswer, itemWins, signDhtItem } from '../storage/name-record';
import { NAME_MIRROR_PATH } from '../storage/name-mirror-store';
import type { DhtItem } from '../storage/protocol';
import { NAME_RECORD_MAX_BYTES, decodeNameRecord, encodeNameRecord, nameTarget } from '../wire/name-record';
import type { ClientCircuit } from './client-circuit';
import { nameNotFound, type NameLookup, type NameLookups } from './circuit-names';
import { NamesSeen } from './names-seen';
import { canBeHop, isRunningValid } from './weighting';

/** SPEC.md §9.14.2: the mirrors that hold one name's record. */
export const NAME_MIRRORS_PER_NAME = 3;
/** SPEC.md §9.14.2: the ring position of a target is SHA-256(NAME_RING_PREFIX ‖ target). */
export const NAME_RING_PREFIX = Buffer.from('bitcloud-name', 'ascii');
const WAIT_MS = 30_000;

/** Relays that run a directory mirror: Running, Valid, a hop, a directory port (as §9.21.3). */
export function nameMirrorsOf(relays: readonly ConsensusRelay[]): ConsensusRelay[] {
  return relays.filter((r) => isRunningValid(r) && canBeHop(r) && r.dirPort > 0);
}

/** SPEC.md §9.14.2: where a target sits on the ring. */
export function ringPosition(target: Uint8Array): Buffer {
  return sha256(NAME_RING_PREFIX, target);
}

function xorDistance(a: Buffer, fingerprintHex: string): Buffer {
  const b = Buffer.alloc(a.length);
  Buffer.from(fingerprintHex, 'hex').copy(b, 0, 0, a.length);
  for (let i = 0; i < a.length; i++) b[i] ^= a[i];
  return b;
}

/**
 * SPEC.md §9.14.2: the `n` mirrors of `relays` whose identity fingerprints are closest to the
 * target's ring position by XOR (ties, which need equal fingerprints, by fingerprint order).
 */
export function responsibleMirrors(relays: readonly ConsensusRelay[], target: Uint8Array, n = NAME_MIRRORS_PER_NAME): ConsensusRelay[] {
  const pos = ringPosition(target);
  return nameMirrorsOf(relays)
    .map((r) => ({ r, d: xorDistance(pos, r.fingerprint.toLowerCase()) }))
    .sort((x, y) => Buffer.compare(x.d, y.d) || x.r.fingerprint.localeCompare(y.r.fingerprint))
    .slice(0, n)
    .map((x) => x.r);
}

export interface MirrorNamesOptions {
  relays: () => readonly ConsensusRelay[] | null;
  /** Build a 3-hop circuit ending at `last` (guard → middle → last). */
  buildTo: (last: ConsensusRelay) => Promise<ClientCircuit>;
  dataDir?: string;
  timeoutMs?: number;
  log?: Logger;
}

export class MirrorNames implements NameLookups {
  readonly via = 'mirrors';
  private readonly log: Logger;
  private readonly seen: NamesSeen;

  constructor(private readonly o: MirrorNamesOptions) {
    this.log = o.log ?? silentLogger;
    this.seen = new NamesSeen(o.dataDir, this.log);
    if (nameMirrorsOf(o.relays() ?? []).length === 0) {
      throw err('NAME_NO_MIRRORS', 'the consensus lists no public storage node and no relay with a directory mirror: names cannot be published or resolved');
    }
  }

  async resolve(publisher: Buffer, label: string): Promise<{ cap: Capability; seq: number } | null> {
    const { found: item, invalid } = await this.lookup(publisher, label);
    if (!item && invalid.length) throw nameNotFound(formatName({ publisher, label }), invalid);
    return item ? { cap: decodeNameValue(item.value), seq: item.seq } : null;
  }

  /** As CircuitNames.publish: seq above the current one, signed here, sent to the 3 mirrors. */
  async publish(keys: Ed25519KeyPair, label: string, cap: Capability, o: { seq?: number } = {}): Promise<{ seq: number; nodes: number }> {
    // SPEC.md §9.14.2: invalid answers are dropped, so a mirror answering a forged record cannot
    // block a first publication; honest mirrors refuse a seq below theirs (DHT_SEQ_STALE).
    const current = (await this.lookup(keys.publicKey, label)).found;
    const seq = await this.seen.nextSeq(formatName({ publisher: keys.publicKey, label }), current ? current.seq : -1, o.seq);
    const item = signDhtItem(keys, nameSalt(label), encodeNameValue(cap), seq);
    const nodes = await this.put({ item });
    await this.seen.remember(formatName({ publisher: keys.publicKey, label }), seq);
    return { seq, nodes };
  }

  /**
   * Store a signed item at its 3 mirrors (each over its own circuit, at once). Resolves with how
   * many took it. None: DHT_SEQ_STALE when one refused it as older, else the refusal all shared
   * (NAME_STORE_FULL, …), else NAME_MIRROR_FAILED. An immutable item has no place at a mirror.
   */
  async put(req: { item: DhtItem } | { immutable: Buffer }): Promise<number> {
    if (!('item' in req)) throw err('DHT_NO_NODES', 'immutable items need a storage node with a public address; name mirrors keep signed records only (SPEC.md §9.14.2)');
    const body = encodeNameRecord(req.item);
    const mirrors = this.mirrorsFor(nameTarget(req.item.publisher, req.item.salt));
    const answers = await Promise.allSettled(mirrors.map((m) => this.request(m, { method: 'POST', path: NAME_MIRROR_PATH, body })));
    let took = 0;
    const codes: string[] = [];
    for (const a of answers) {
      if (a.status === 'fulfilled' && a.value.status === 200) { took++; continue; }
      codes.push(a.status === 'fulfilled' ? bodyCode(a.value) : errorCode(a.reason));
    }
    this.log.debug({ took, refused: codes }, 'name record sent to its mirrors');
    if (took > 0) return took;
    if (codes.includes('DHT_SEQ_STALE')) throw err('DHT_SEQ_STALE', `sequence number ${req.item.seq} is not above the one a mirror holds`, { seq: req.item.seq });
    if (codes.length > 0 && codes.every((c) => c === codes[0]) && (codes[0] === 'NAME_STORE_FULL' || codes[0] === 'NAME_RECORD_TOO_LARGE')) {
      throw err(codes[0], 'every name mirror of this name refused the record');
    }
    throw err('NAME_MIRROR_FAILED', `no name mirror took the record (${codes.join(', ') || 'no mirror'})`, { codes });
  }

  /**
   * Ask the 3 mirrors at once; keep the verified record that wins (the highest seq; at an equal
   * seq, `itemWins`). An invalid answer (malformed, bad signature, other key or salt, a rollback)
   * is dropped and its code counted in `invalid` (logged); when every mirror failed outright,
   * NAME_MIRROR_FAILED.
   */
  async lookup(publisher: Buffer, label: string): Promise<NameLookup<DhtItem>> {
    const salt = nameSalt(label);
    const name = formatName({ publisher, label });
    const minSeq = await this.seen.min(name);
    const target = nameTarget(publisher, salt);
    const mirrors = this.mirrorsFor(target);
    const answers = await Promise.allSettled(mirrors.map(async (m) => {
      const r = await this.request(m, { method: 'GET', path: `${NAME_MIRROR_PATH}/${target.toString('hex')}` });
      if (r.status === 404) return null;
      if (r.status !== 200) throw err('NAME_MIRROR_FAILED', `the name mirror answered HTTP ${r.status} ${bodyCode(r)}`);
      return checkDhtAnswer({ publisher, salt }, decodeNameRecord(r.body), minSeq);
    }));
    let best: DhtItem | null = null;
    const invalid: string[] = [];
    const failed: string[] = [];
    for (const a of answers) {
      if (a.status === 'fulfilled') {
        if (a.value && (!best || itemWins(a.value, best))) best = a.value;
        continue;
      }
      const e = a.reason as unknown;
      if (isBitcloudError(e) && e.code.startsWith('NAME_') && e.code !== 'NAME_MIRROR_FAILED') { invalid.push(e.code); continue; }
      failed.push(errorCode(e));
      this.log.debug({ code: errorCode(e) }, 'name mirror failed to answer');
    }
    // SPEC.md §9.14.1, §11.6: the name looked up is what this user visits: the warning holds the
    // codes only; the name goes at debug.
    if (invalid.length) {
      this.log.warn({ invalidAnswers: invalid.length, codes: invalid }, 'invalid name answers dropped');
      this.log.debug({ name }, 'the name whose answers were dropped');
    }
    if (best) { await this.seen.remember(name, best.seq); return { found: best, invalid }; }
    if (failed.length === answers.length) throw err('NAME_MIRROR_FAILED', `no name mirror of this name answered (${failed.join(', ')})`, { codes: failed });
    return { found: null, invalid };
  }

  async close(): Promise<void> { /* every request builds and destroys its own circuit */ }

  private mirrorsFor(target: Buffer): ConsensusRelay[] {
    const m = responsibleMirrors(this.o.relays() ?? [], target);
    if (m.length === 0) throw err('NAME_NO_MIRRORS', 'the consensus lists no relay with a directory mirror');
    return m;
  }

  /**
   * One HTTP request to `mirror` over a fresh 3-hop circuit ending there (BEGIN_DIR), then the
   * circuit is destroyed. A circuit or stream that fails before an answer is tried once more on a
   * new circuit (another guard or middle may carry it); an HTTP answer is final.
   */
  private async request(mirror: ConsensusRelay, req: { method: 'GET' | 'POST'; path: string; body?: Buffer }): Promise<HttpResponse> {
    try {
      return await this.requestOnce(mirror, req);
    } catch (e) {
      this.log.debug({ code: errorCode(e), mirror: mirror.fingerprint.slice(0, 16) }, 'name mirror not reached; one more circuit');
      return this.requestOnce(mirror, req);
    }
  }

  private async requestOnce(mirror: ConsensusRelay, req: { method: 'GET' | 'POST'; path: string; body?: Buffer }): Promise<HttpResponse> {
    const circ = await this.o.buildTo(mirror);
    try {
      const ms = this.o.timeoutMs ?? WAIT_MS;
      const { stream } = await circ.openStream({ kind: 'begin_dir' }, ms);
      return await httpRequest(`http://127.0.0.1${req.path}`, {
        method: req.method, body: req.body, maxBytes: NAME_RECORD_MAX_BYTES + 1024, timeoutMs: ms, createConnection: () => stream as unknown as Duplex,
      });
    } finally {
      circ.destroy();
    }
  }
}

/** The `code` of a mirror's JSON error body, else `HTTP_<status>`. */
function bodyCode(r: HttpResponse): string {
  try {
    const c = (JSON.parse(r.body.toString('utf8')) as { code?: unknown }).code;
    if (typeof c === 'string' && /^[A-Z0-9_]{1,64}$/.test(c)) return c;
  } catch { /* not JSON */ }
  return `HTTP_${r.status}`;
}
