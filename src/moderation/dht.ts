// SPEC.md §10.7.2: policies on the DHT (BEP 44). A BEP 44 value holds under 1000 bytes, so the
// bundle (the chain since the last snapshot, chain.ts) is cut into parts of PART_BYTES, each stored
// as an *immutable* item (target = SHA-1 of its bencoding, checked by every getter), and a
// *mutable* item signed by the moderator key itself (BEP 44 uses Ed25519, like moderators) is the
// head that names them:
//
//   head target = SHA-1(moderator key | "bitcloud-policy-v1")      (BEP 44: SHA-1(k | salt))
//   head seq    = the newest policy version's seq
//   head v      = SHA-256(bundle) [32] | bundle length (u32) | part targets [20 each]
//
// A delta appends to the bundle, so every part but the last keeps its target: a node that held the
// previous bundle fetches one or two new parts. The head fits at most HEAD_MAX_PARTS parts.
import { err } from '../errors';
import { oncePerRegistry, prom, type Registry } from '../ops/metrics';
import { ed25519Sign, ed25519Verify, sha1, sha256, type Ed25519KeyPair } from '../crypto/primitives';
import { BUNDLE_LIMITS, decodeBundle, type PolicyState } from './chain';
import { parseModerator } from './policy';
import type { PolicySource } from './sources';
import { nameTarget, signDhtItem } from '../storage/name-record';
import type { DhtItem } from '../storage/protocol';

export const DHT_SALT = Buffer.from('bitcloud-policy-v1', 'ascii');
export const PART_BYTES = 960;
const HEAD_FIXED = 36;
export const HEAD_MAX_PARTS = Math.floor((999 - HEAD_FIXED) / 20);
export const DHT_MAX_BUNDLE_BYTES = HEAD_MAX_PARTS * PART_BYTES;

/** The part of the bittorrent-dht API this module uses. */
export interface DhtLike {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the library's option objects
  put(opts: any, cb: (e: Error | null, key: Buffer, n: number) => void): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  get(key: Buffer, opts: any, cb: (e: Error | null, value: any) => void): void;
}
export interface DhtValue { v?: Buffer; seq?: number; k?: Buffer; sig?: Buffer; salt?: Buffer }

/** SHA-1 of the bencoding of a byte string: the target of an immutable item. */
export function immutableTarget(v: Uint8Array): Buffer {
  return sha1(Buffer.from(`${v.length}:`, 'ascii'), v);
}

export function headTarget(moderatorKey: Uint8Array): Buffer {
  return nameTarget(moderatorKey, DHT_SALT);
}

export interface PolicyHead { digest: Buffer; length: number; parts: Buffer[] }

export function encodeHead(h: PolicyHead): Buffer {
  const fixed = Buffer.alloc(HEAD_FIXED);
  h.digest.copy(fixed, 0);
  fixed.writeUInt32BE(h.length, 32);
  return Buffer.concat([fixed, ...h.parts]);
}

/** Decode a head; anything inconsistent → POLICY_MALFORMED. */
export function decodeHead(v: Uint8Array): PolicyHead {
  const b = Buffer.from(v.buffer, v.byteOffset, v.length);
  if (b.length < HEAD_FIXED + 20 || (b.length - HEAD_FIXED) % 20 !== 0) throw err('POLICY_MALFORMED', 'DHT policy head has a bad length');
  const length = b.readUInt32BE(32);
  const parts: Buffer[] = [];
  for (let o = HEAD_FIXED; o < b.length; o += 20) parts.push(b.subarray(o, o + 20));
  if (parts.length > HEAD_MAX_PARTS || length < 1 || Math.ceil(length / PART_BYTES) !== parts.length) {
    throw err('POLICY_MALFORMED', 'DHT policy head: length and parts disagree');
  }
  return { digest: b.subarray(0, 32), length, parts };
}

/** Cut a bundle into parts and make its head. POLICY_TOO_LARGE_FOR_DHT above DHT_MAX_BUNDLE_BYTES. */
export function splitBundle(bundle: Buffer): { head: PolicyHead; parts: Buffer[] } {
  if (bundle.length > DHT_MAX_BUNDLE_BYTES) {
    throw err('POLICY_TOO_LARGE_FOR_DHT', `bundle of ${bundle.length} bytes exceeds the ${DHT_MAX_BUNDLE_BYTES} a DHT head can name; publish a smaller denylist or use the authorities`);
  }
  const parts: Buffer[] = [];
  for (let o = 0; o < bundle.length; o += PART_BYTES) parts.push(bundle.subarray(o, o + PART_BYTES));
  return { head: { digest: sha256(bundle), length: bundle.length, parts: parts.map(immutableTarget) }, parts };
}

function put(dht: DhtLike, opts: Record<string, unknown>): Promise<number> {
  return new Promise((resolve, reject) => {
    dht.put(opts, (e, _key, n) => (e ? reject(err('DHT_PUT_FAILED', `DHT put failed: ${e.message}`)) : resolve(n ?? 0)));
  });
}

function get(dht: DhtLike, key: Buffer, opts: Record<string, unknown>): Promise<DhtValue | null> {
  return new Promise((resolve, reject) => {
    dht.get(key, opts, (e, v) => (e ? reject(err('DHT_GET_FAILED', `DHT get failed: ${e.message}`)) : resolve(v ?? null)));
  });
}

const verify = (sig: Uint8Array, msg: Uint8Array, pk: Uint8Array): boolean => ed25519Verify(sig, msg, pk);

/**
 * Publish a bundle: every part as an immutable item, then the head signed by the moderator key
 * with BEP 44 seq = the newest version's seq. Resolves with the number of nodes that took the head.
 */
export async function publishPolicyToDht(dht: DhtLike, key: Ed25519KeyPair, bundle: Buffer, seq: number): Promise<number> {
  const { head, parts } = splitBundle(bundle);
  await Promise.all(parts.map((p) => put(dht, { v: p })));
  return put(dht, { k: key.publicKey, salt: DHT_SALT, seq, v: encodeHead(head), sign: (m: Buffer) => ed25519Sign(m, key.secretKey) });
}

/** Where a policy's items go (SPEC.md §10.7.2): a client sends them as DhtPuts over circuits (§9.14.1). */
export interface PolicyPutter {
  immutable(value: Buffer): Promise<number>;
  signed(item: DhtItem): Promise<number>;
}

/**
 * Publish a bundle without a DHT socket: every part as an immutable item, then the head signed
 * here by the moderator key (BEP 44 signed bytes, seq = the newest version's seq), each through
 * `putter`. Resolves with the number of DHT nodes that took the head.
 */
export async function publishPolicyVia(putter: PolicyPutter, key: Ed25519KeyPair, bundle: Buffer, seq: number): Promise<number> {
  const { head, parts } = splitBundle(bundle);
  for (const p of parts) await putter.immutable(p);
  return putter.signed(signDhtItem(key, DHT_SALT, encodeHead(head), seq));
}

/** SPEC.md §10.7.2: one DHT lookup of a policy reader (the head or one part) is given at most this long. */
export const DHT_POLICY_GET_MS = 30_000;
/** SPEC.md §10.7.2: one fetch of a moderator's policy from the DHT (head and parts) ends within this long. */
export const DHT_POLICY_FETCH_MS = 120_000;

/**
 * SPEC.md §10.7.2: at most this many lookups of a policy reader run in the DHT library at once,
 * counting those its callers gave up on (they cannot be cancelled and run until they end).
 */
export const MAX_DHT_LOOKUPS = 16;

interface DhtLookupMetrics {
  running: prom.Gauge;
  refused: prom.Counter;
}

const dhtLookupMetrics = oncePerRegistry((reg: Registry): DhtLookupMetrics => ({
  running: new prom.Gauge({ name: 'bitcloud_moderation_dht_lookups', help: 'Policy DHT lookups running in the DHT library, including those past their deadline (they cannot be cancelled)', registers: [reg] }),
  refused: new prom.Counter({ name: 'bitcloud_moderation_dht_lookups_refused_total', help: 'Policy DHT lookups refused because MAX_DHT_LOOKUPS were already running', registers: [reg] }),
}));

/**
 * SPEC.md §10.7.2: the lookups a reader has running in the DHT library, by target. A lookup past a
 * caller's deadline goes on in the library until it ends by itself, so a DHT that never answers
 * would otherwise have each refresh start one more per target: a request for a target whose
 * lookup still runs joins it, and one that would make more than `max` run at once fails at once.
 */
class DhtLookups {
  private readonly running = new Map<string, Promise<DhtValue | null>>();

  constructor(private readonly dht: DhtLike, private readonly max: number, private readonly metrics: DhtLookupMetrics | null) {}

  lookup(key: Buffer, opts: Record<string, unknown>, what: string): Promise<DhtValue | null> {
    const hex = key.toString('hex');
    const joined = this.running.get(hex);
    if (joined) return joined;
    if (this.running.size >= this.max) {
      this.metrics?.refused.inc();
      return Promise.reject(err('POLICY_FETCH_FAILED', `DHT lookup of ${what} refused: ${this.running.size} DHT lookups already running`));
    }
    const p = get(this.dht, key, opts).finally(() => {
      this.running.delete(hex);
      this.metrics?.running.dec();
    });
    p.catch(() => {}); // a failure that ends after every caller gave up has no one left to tell
    this.running.set(hex, p);
    this.metrics?.running.inc();
    return p;
  }
}

/**
 * A lookup of `lookups`, failed with POLICY_FETCH_FAILED when it has not answered by `until`
 * (performance.now()) or within `perGetMs`. The library cannot cancel a lookup: it goes on (and a
 * later request for its target joins it) and its answer is dropped.
 */
function getBy(lookups: DhtLookups, key: Buffer, opts: Record<string, unknown>, until: number, perGetMs: number, what: string): Promise<DhtValue | null> {
  const ms = Math.min(perGetMs, until - performance.now());
  if (ms <= 0) return Promise.reject(err('POLICY_FETCH_FAILED', `DHT policy fetch out of time before ${what}`));
  let timer: NodeJS.Timeout | undefined;
  const lookup = lookups.lookup(key, opts, what);
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(err('POLICY_FETCH_FAILED', `DHT lookup of ${what} did not finish within ${Math.round(ms)} ms`));
    }, ms);
    timer.unref?.();
  });
  return Promise.race([lookup, deadline]).finally(() => clearTimeout(timer));
}

/**
 * A PolicySource reading the DHT. Parts already fetched are kept (by target), so after a delta
 * only the changed tail is fetched again. SPEC.md §10.7.2: a lookup walks on as long as DHT nodes
 * answer with closer ones, so a hostile DHT peer handing out ever new unreachable addresses could
 * hold one for minutes, and a fetch of 48 parts, with the subscription refresh waiting on it
 * (every moderator after it, every source after it), for hours: each lookup is given
 * DHT_POLICY_GET_MS and the whole fetch DHT_POLICY_FETCH_MS (POLICY_FETCH_FAILED beyond; parts
 * fetched by then stay kept, so the next refresh goes on from there). A lookup past its deadline
 * still runs in the library: at most one runs per target (a new request joins it) and at most
 * `maxLookups` (MAX_DHT_LOOKUPS) at once; a request beyond fails at once with POLICY_FETCH_FAILED.
 */
export function dhtSource(dht: DhtLike, o: { name?: string; cacheParts?: number; getMs?: number; fetchMs?: number; maxLookups?: number; registry?: Registry } = {}): PolicySource {
  const cache = new Map<string, Buffer>();
  const lookups = new DhtLookups(dht, o.maxLookups ?? MAX_DHT_LOOKUPS, o.registry ? dhtLookupMetrics(o.registry) : null);
  const limit = o.cacheParts ?? 4096;
  const perGet = o.getMs ?? DHT_POLICY_GET_MS;
  return {
    name: o.name ?? 'dht',
    async fetch(moderator: string, held: PolicyState | null): Promise<Buffer | null> {
      const k = parseModerator(moderator);
      const until = performance.now() + (o.fetchMs ?? DHT_POLICY_FETCH_MS);
      const h = await getBy(lookups, headTarget(k), { salt: DHT_SALT, verify, cache: false }, until, perGet, `the policy head of moderator ${moderator}`); // never a stale local copy
      if (!h?.v || !h.k || !Buffer.from(h.k).equals(k)) return null;
      if (typeof h.seq !== 'number' || !Number.isSafeInteger(h.seq)) throw err('POLICY_MALFORMED', 'DHT policy head has a bad seq');
      if (held && h.seq <= held.seq) return null;
      const head = decodeHead(h.v);
      const parts: Buffer[] = [];
      for (const t of head.parts) {
        const hex = t.toString('hex');
        let p = cache.get(hex);
        if (!p) {
          const r = await getBy(lookups, t, {}, until, perGet, `DHT part ${hex} of moderator ${moderator}`);
          if (!r?.v || !immutableTarget(r.v).equals(t)) throw err('POLICY_FETCH_FAILED', `DHT part ${hex} of moderator ${moderator} not found`);
          p = Buffer.from(r.v);
          if (cache.size >= limit) cache.delete(cache.keys().next().value!);
          cache.set(hex, p);
        }
        parts.push(p);
      }
      const bundle = Buffer.concat(parts);
      if (bundle.length !== head.length || bundle.length > BUNDLE_LIMITS.bytes || !sha256(bundle).equals(head.digest)) {
        throw err('POLICY_MALFORMED', `DHT bundle of moderator ${moderator} does not match its head`);
      }
      decodeBundle(bundle); // framing check; verification is advancePolicy's
      return bundle;
    },
  };
}
