// SPEC.md §6.4.1: identities that cost something. A relay's descriptor carries a memory-hard
// proof of work (argon2id) bound to its identity key and to a recent consensus; authorities check
// it before they list the relay. One argon2id evaluation checks a proof; finding one costs
// 2^difficulty evaluations on average.
import fs from 'node:fs';
import path from 'node:path';
import { err, errorCode } from '../errors';
import type { Logger } from '../ops/log';
import { writeFileAtomic } from '../ops/fsutil';
import { configError, int, noUnknownKeys, obj } from './config-fields';
import { argon2id, ARGON2_SALT_BYTES, sha256 } from '../crypto/primitives';
import type { IdentityProofMsg } from '../wire/docs';
import { parseIPv4, parseIPv6 } from '../wire/addr';
import { KeyCounts } from '../ops/key-counts';

/** Domain separation of the argon2id input and salt (SPEC.md §6.4.1). */
export const POW_TAG = Buffer.from('bitcloud identity pow v1', 'ascii');
const SALT_TAG = Buffer.from('bitcloud identity pow salt v1', 'ascii');

export interface PowParams {
  /** argon2id memory, KiB. */
  memoryKib: number;
  /** argon2id passes. */
  ops: number;
  /** Leading zero bits the 32-byte output must have. */
  difficulty: number;
  /** A proof's anchor consensus may be at most this many voting periods old. */
  anchorPeriods: number;
}

/** SPEC.md §6.4.1 public-network defaults: 64 MiB, 3 passes, 10 bits (≈1024 evaluations). */
export const DEFAULT_POW_PARAMS: PowParams = { memoryKib: 64 * 1024, ops: 3, difficulty: 10, anchorPeriods: 24 };
/** Local networks and tests: one cheap evaluation per proof. */
export const LOCAL_POW_PARAMS: PowParams = { memoryKib: 8 * 1024, ops: 1, difficulty: 1, anchorPeriods: 24 };

/** The consensus a proof is anchored to: its valid_after and digest (SHA-256 of its body). */
export interface PowAnchor { validAfter: number; digest: Buffer }
/** Before any consensus exists: valid_after 0, 32 zero bytes (SPEC.md §6.4.1 bootstrap). */
export const GENESIS_ANCHOR: PowAnchor = { validAfter: 0, digest: Buffer.alloc(32) };

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** The argon2id password: TAG | identity (32) | anchor valid_after (u64 BE) | anchor digest (32) | nonce (u64 BE). */
export function powInput(identity: Buffer, anchor: PowAnchor, nonce: number): Buffer {
  return Buffer.concat([POW_TAG, identity, u64(anchor.validAfter), anchor.digest, u64(nonce)]);
}

/** The argon2id salt: the first 16 bytes of SHA-256(SALT_TAG | identity). */
export function powSalt(identity: Buffer): Buffer {
  return sha256(SALT_TAG, identity).subarray(0, ARGON2_SALT_BYTES);
}

/** Number of leading zero bits of `b`. */
export function leadingZeroBits(b: Uint8Array): number {
  let n = 0;
  for (const x of b) {
    if (x === 0) { n += 8; continue; }
    return n + Math.clz32(x) - 24;
  }
  return n;
}

export interface MineOptions {
  /** First nonce to try (default 0). */
  startNonce?: number;
  /** Give up after this many evaluations (default unbounded). */
  maxAttempts?: number;
  /** Checked between evaluations; true stops the search with POW_ABORTED. */
  aborted?: () => boolean;
}

/**
 * Search nonces until argon2id has `difficulty` leading zero bits. Each evaluation runs on the
 * libuv thread pool, so the event loop never blocks.
 */
export async function mineIdentityProof(identity: Buffer, anchor: PowAnchor, p: PowParams, o: MineOptions = {}): Promise<IdentityProofMsg> {
  const salt = powSalt(identity);
  const start = o.startNonce ?? 0;
  const max = o.maxAttempts ?? Number.MAX_SAFE_INTEGER;
  for (let i = 0; i < max; i++) {
    if (o.aborted?.()) throw err('IDENTITY_POW_ABORTED', 'identity proof search stopped');
    const nonce = start + i;
    const h = await argon2id(powInput(identity, anchor, nonce), salt, p.memoryKib, p.ops);
    if (leadingZeroBits(h) >= p.difficulty) {
      return { anchorValidAfter: anchor.validAfter, anchorDigest: Buffer.from(anchor.digest), memoryKib: p.memoryKib, ops: p.ops, difficulty: p.difficulty, nonce };
    }
  }
  throw err('IDENTITY_POW_ABORTED', `no identity proof in ${max} attempts`);
}

/** What a verifier knows: the consensuses it accepts as anchors, and the minimum parameters. */
export interface PowVerifyContext {
  params: PowParams;
  periodSeconds: number;
  now: number;
  /** Digest of the consensus with this valid_after, if the verifier knows it. */
  anchorDigest(validAfter: number): Buffer | undefined;
  /** True while the verifier knows no consensus at all: then only the genesis anchor is accepted. */
  bootstrap: boolean;
}

/**
 * SPEC.md §6.4.1: check the cheap parts of a proof (parameters, anchor). Throws IDENTITY_POW_MISSING,
 * IDENTITY_POW_WEAK, IDENTITY_POW_STALE. The argon2id evaluation is `checkIdentityProofWork`.
 */
export function checkIdentityProofFields(proof: IdentityProofMsg | undefined, ctx: PowVerifyContext): IdentityProofMsg {
  if (!proof) throw err('IDENTITY_POW_MISSING', 'descriptor carries no identity proof (SPEC.md §6.4.1)');
  const p = ctx.params;
  if (proof.memoryKib < p.memoryKib || proof.ops < p.ops || proof.difficulty < p.difficulty) {
    throw err('IDENTITY_POW_WEAK', `identity proof parameters below the minimum: need memory ${p.memoryKib} KiB, ops ${p.ops}, difficulty ${p.difficulty}`, {
      memoryKib: p.memoryKib, ops: p.ops, difficulty: p.difficulty,
    });
  }
  // Above the minimum, a proof still must not cost the verifier more than 4× the minimum memory and ops.
  if (proof.memoryKib > 4 * p.memoryKib || proof.ops > 4 * p.ops) {
    throw err('IDENTITY_POW_WEAK', 'identity proof parameters exceed 4× the minimum; refusing to evaluate', { memoryKib: p.memoryKib, ops: p.ops });
  }
  const genesis = proof.anchorValidAfter === 0;
  if (genesis) {
    if (!ctx.bootstrap) throw err('IDENTITY_POW_STALE', 'identity proof anchored to genesis, but a consensus exists: re-mine on a recent consensus');
    if (!proof.anchorDigest.equals(GENESIS_ANCHOR.digest)) throw err('IDENTITY_POW_INVALID', 'genesis anchor digest must be zero');
    return proof;
  }
  const age = ctx.now - proof.anchorValidAfter;
  if (age > p.anchorPeriods * ctx.periodSeconds * 1000) {
    throw err('IDENTITY_POW_STALE', `identity proof anchor is older than ${p.anchorPeriods} periods`, { anchorValidAfter: proof.anchorValidAfter });
  }
  const known = ctx.anchorDigest(proof.anchorValidAfter);
  if (!known) throw err('IDENTITY_POW_STALE', 'identity proof anchor names no consensus this authority knows', { anchorValidAfter: proof.anchorValidAfter });
  if (!known.equals(proof.anchorDigest)) throw err('IDENTITY_POW_INVALID', 'identity proof anchor digest is not that consensus\'s digest');
  return proof;
}

/** One argon2id evaluation: throws IDENTITY_POW_INVALID unless the output has the claimed difficulty. */
export async function checkIdentityProofWork(identity: Buffer, proof: IdentityProofMsg): Promise<void> {
  const anchor = { validAfter: proof.anchorValidAfter, digest: proof.anchorDigest };
  const h = await argon2id(powInput(identity, anchor, proof.nonce), powSalt(identity), proof.memoryKib, proof.ops);
  if (leadingZeroBits(h) < proof.difficulty) throw err('IDENTITY_POW_INVALID', 'identity proof does not meet its difficulty for this identity');
}

/** Cache key of a verified proof: identity, anchor, parameters and nonce. */
export function proofKey(identity: Buffer, proof: IdentityProofMsg): string {
  return [identity.toString('hex'), proof.anchorValidAfter, proof.anchorDigest.toString('hex'), proof.memoryKib, proof.ops, proof.difficulty, proof.nonce].join(':');
}

/**
 * SPEC.md §6.4.1 "Authority intake": the address group a proof waiting to be checked is counted
 * under — the /24 of an IPv4 address (an IPv4-mapped IPv6 address is its IPv4 address), the /48
 * of an IPv6 address, or '?' when the address is unknown or does not parse. One host commonly holds
 * a /64 and a site a /48, so addresses drawn from one allocation share a group.
 */
export function proofQueueGroup(address: string | undefined): string {
  if (!address) return '?';
  const a = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const v4 = parseIPv4(a);
  if (v4) return `${v4[0]}.${v4[1]}.${v4[2]}.0/24`;
  const v6 = parseIPv6(a);
  if (!v6) return '?';
  if (v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) return `${v6[12]}.${v6[13]}.${v6[14]}.0/24`;
  return `${v6.subarray(0, 6).toString('hex')}::/48`;
}

/** Who sent a proof (SPEC.md §6.4.1 "Authority intake"): whether the newest consensus lists its identity, and its address group. */
export interface ProofSource {
  /** The identity is listed in the authority's newest consensus: it waits in the listed room. */
  listed: boolean;
  /** proofQueueGroup of the uploader's socket address (unlisted proofs only). */
  group: string;
}

interface Waiter { group: string; resolve: () => void; reject: (e: Error) => void }
/** A proof waiting in the listed room: at most one per identity (SPEC.md §6.4.1 "Authority intake"). */
interface ListedWaiter extends Waiter { identity: string }

/**
 * The authority side: checks proofs, remembering those that verified (per identity, so a flood of
 * re-published descriptors costs one evaluation per identity and anchor) and evaluating at most
 * `concurrency` at a time. SPEC.md §6.4.1 "Authority intake": further checks wait in two rooms of
 * `maxQueued` places together: `listedQueued` of them for identities the newest consensus lists,
 * checked first, at most one per identity, the others for unlisted ones, shared fairly by address
 * group (a newcomer to a full room evicts the newest proof of the group holding the most places if
 * its own group holds fewer; otherwise, when the listed room is full, and for a further proof of an
 * identity already waiting in the listed room, IDENTITY_POW_BUSY).
 */
export class IdentityProofVerifier {
  private readonly verified = new Map<string, string>(); // identity hex -> proofKey
  private running = 0;
  /** Listed identities' proofs waiting, oldest first. */
  private readonly listedWaiting: ListedWaiter[] = [];
  /** Unlisted identities' proofs waiting, oldest first. */
  private readonly unlistedWaiting: Waiter[] = [];
  /** Places of the unlisted room held, by address group. */
  private readonly byGroup = new KeyCounts();
  constructor(private readonly o: { concurrency?: number; maxQueued?: number; listedQueued?: number; maxEntries?: number } = {}) {}

  /**
   * Verify `proof` for `identity` under `ctx`; resolves when it is good, rejects with IDENTITY_POW_*.
   * `from` places it in a waiting room (default: unlisted, group '?').
   */
  async verify(identity: Buffer, proof: IdentityProofMsg | undefined, ctx: PowVerifyContext, from?: ProofSource): Promise<void> {
    const p = checkIdentityProofFields(proof, ctx);
    const id = identity.toString('hex');
    const key = proofKey(identity, p);
    if (this.verified.get(id) === key) return;
    await this.slot(id, from ?? { listed: false, group: '?' });
    try {
      await checkIdentityProofWork(identity, p);
    } finally {
      this.release();
    }
    if (this.verified.size >= (this.o.maxEntries ?? 100_000)) this.verified.delete(this.verified.keys().next().value as string);
    this.verified.set(id, key);
  }

  /** Proofs waiting: listed and unlisted. */
  get waiting(): { listed: number; unlisted: number } {
    return { listed: this.listedWaiting.length, unlisted: this.unlistedWaiting.length };
  }

  private async slot(identity: string, from: ProofSource): Promise<void> {
    if (this.running < (this.o.concurrency ?? 1)) { this.running++; return; }
    const maxQueued = this.o.maxQueued ?? 64;
    const listedMax = Math.min(maxQueued, this.o.listedQueued ?? Math.floor(maxQueued / 2));
    const busy = () => err('IDENTITY_POW_BUSY', 'too many identity proofs waiting to be checked; retry later');
    if (from.listed) {
      if (this.listedWaiting.length >= listedMax) throw busy();
      // SPEC.md §6.4.1: one waiting proof per identity, so that one listed relay cannot take the
      // room with proofs of its own identity (other nonces); the one already waiting keeps its place.
      if (this.listedWaiting.some((w) => w.identity === identity)) {
        throw err('IDENTITY_POW_BUSY', 'a proof of this identity is already waiting to be checked; retry later');
      }
      await new Promise<void>((resolve, reject) => this.listedWaiting.push({ identity, group: from.group, resolve, reject }));
      return;
    }
    if (this.unlistedWaiting.length >= maxQueued - listedMax) {
      // The room is full: the newest proof of the group holding the most places (the one with the
      // newest proof among equals) makes way for a newcomer whose group holds fewer.
      const most = this.byGroup.max();
      if (this.byGroup.get(from.group) >= most) throw busy();
      let i = this.unlistedWaiting.length - 1;
      while (i > 0 && this.byGroup.get(this.unlistedWaiting[i].group) !== most) i--;
      const [out] = this.unlistedWaiting.splice(i, 1);
      this.byGroup.remove(out.group);
      out.reject(err('IDENTITY_POW_BUSY', 'too many identity proofs waiting to be checked from this address group; retry later', { evicted: true }));
    }
    this.byGroup.add(from.group);
    await new Promise<void>((resolve, reject) => this.unlistedWaiting.push({ group: from.group, resolve, reject }));
  }

  /** Hand the evaluation place to the oldest listed proof waiting, else the oldest unlisted one. */
  private release(): void {
    const listed = this.listedWaiting.shift();
    if (listed) { listed.resolve(); return; }
    const next = this.unlistedWaiting.shift();
    if (!next) { this.running--; return; }
    this.byGroup.remove(next.group);
    next.resolve();
  }
}

// ---- the relay side: keep a proof whose anchor is recent, re-mining in the background ----

/** The consensus a relay holds, as far as anchoring is concerned. */
export interface AnchorSource {
  current(): { validAfter: number; digest: Buffer; periodSeconds: number } | null;
}

export const PROOF_FILE = 'identity-proof.json';

/**
 * SPEC.md §6.4.1 (relay side): a proof is made once per identity and anchor. While the held proof's
 * anchor is younger than anchorPeriods/2 periods it is used as is; older (but still accepted) it is
 * used while a new one is mined in the background; unusable (none, stale, or genesis once a consensus
 * exists) the caller waits for a new one. Mining runs on the thread pool, never on the event loop.
 * The proof is kept in the data directory so a restart does not mine again.
 */
export class IdentityProofKeeper {
  private held: IdentityProofMsg | null = null;
  /** The proof read from the data directory, until checkLoaded() has checked it. */
  private loaded: IdentityProofMsg | null = null;
  private loadedCheck: Promise<void> | null = null;
  private mining: { key: string; done: Promise<IdentityProofMsg> } | null = null;
  private stopped = false;
  /** An authority answered IDENTITY_POW_STALE to the held proof: the next proof is mined on the newest anchor. */
  private staleRefused = false;

  constructor(private readonly o: {
    identity: Buffer;
    /** The relay's configured parameters: used while the consensus held carries none. */
    params: PowParams;
    /** SPEC.md §6.4.1: the parameters of the consensus held, when it carries them (they win). */
    consensusParams?: () => PowParams | null;
    anchors: AnchorSource; dataDir: string; log: Logger; now?: () => number;
  }) {
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(fs.readFileSync(path.join(o.dataDir, PROOF_FILE), 'utf8')) as Record<string, unknown>;
    } catch { return; /* none yet, or unreadable: mine a new one */ }
    if (j?.identity !== o.identity.toString('hex')) return;
    // SPEC.md §6.4.1: each field as the descriptor's identity_proof carries it (§6.4); the work
    // itself is checked once, by the first proof().
    const n = (v: unknown, min: number, max: number): number | null => (Number.isSafeInteger(v) && (v as number) >= min && (v as number) <= max ? v as number : null);
    const anchorValidAfter = n(j.anchorValidAfter, 0, Number.MAX_SAFE_INTEGER), nonce = n(j.nonce, 0, Number.MAX_SAFE_INTEGER);
    const memoryKib = n(j.memoryKib, 8, 4 * 1024 * 1024), ops = n(j.ops, 1, 64), difficulty = n(j.difficulty, 0, 64);
    const digestHex = typeof j.anchorDigest === 'string' && /^[0-9a-f]{64}$/.test(j.anchorDigest) ? j.anchorDigest : null;
    if (anchorValidAfter === null || nonce === null || memoryKib === null || ops === null || difficulty === null || digestHex === null
      || (anchorValidAfter === 0 && digestHex !== '0'.repeat(64))) {
      o.log.warn({ file: PROOF_FILE }, 'identity proof kept on disk is malformed; mining a new one');
      return;
    }
    this.loaded = { anchorValidAfter, anchorDigest: Buffer.from(digestHex, 'hex'), memoryKib, ops, difficulty, nonce };
  }

  /**
   * SPEC.md §6.4.1: the proof read at start is used only once it passes the check authorities run
   * (one argon2id evaluation); one that fails is discarded and a new one mined, as when none was kept.
   */
  private checkLoaded(): Promise<void> {
    const l = this.loaded;
    if (!l) return Promise.resolve();
    const p = this.params();
    this.loadedCheck ??= (async () => {
      try {
        // Above 4× the minimum it is not used anyway (proof()): not worth its evaluation.
        if (l.memoryKib > 4 * p.memoryKib || l.ops > 4 * p.ops) return;
        await checkIdentityProofWork(this.o.identity, l);
        this.held ??= l;
      } catch (e) {
        this.o.log.warn({ file: PROOF_FILE, code: errorCode(e) }, 'identity proof kept on disk does not verify; mining a new one');
      } finally {
        this.loaded = null;
      }
    })();
    return this.loadedCheck;
  }

  stop(): void { this.stopped = true; }

  /**
   * An authority refused the held proof as IDENTITY_POW_STALE (SPEC.md §6.4.1): it does not know the
   * anchor (it may have missed publishing that consensus) or finds it too old. The next `proof()`
   * mines on the newest consensus held unless the held proof is already anchored there.
   */
  refusedAsStale(): void { this.staleRefused = true; }

  /** The proof to put in the next descriptor. */
  async proof(): Promise<IdentityProofMsg> {
    if (this.loaded) await this.checkLoaded();
    const now = (this.o.now ?? Date.now)();
    const c = this.o.anchors.current();
    const anchor: PowAnchor = c ? { validAfter: c.validAfter, digest: c.digest } : GENESIS_ANCHOR;
    const h = this.held;
    const p = this.params();
    // Meets the minimum, and not above 4× it (authorities refuse to evaluate such a proof): the
    // parameters may have changed with the consensus since the proof was made.
    const strongEnough = h !== null && h.memoryKib >= p.memoryKib && h.ops >= p.ops && h.difficulty >= p.difficulty
      && h.memoryKib <= 4 * p.memoryKib && h.ops <= 4 * p.ops;
    const staleRefused = this.staleRefused;
    this.staleRefused = false;
    if (h && strongEnough && staleRefused && h.anchorValidAfter !== anchor.validAfter) return this.mine(anchor);
    if (h && strongEnough) {
      if (h.anchorValidAfter === 0 ? c === null : c !== null) {
        const age = c ? now - h.anchorValidAfter : 0;
        const periodMs = (c?.periodSeconds ?? 0) * 1000;
        if (age <= (p.anchorPeriods / 2) * periodMs) return h;
        if (age <= (p.anchorPeriods - 1) * periodMs) {
          void this.mine(anchor).catch(() => {});
          return h;
        }
      }
    }
    return this.mine(anchor);
  }

  /** The parameters to mine at: the consensus's when it carries them, else the configuration's. */
  params(): PowParams {
    return this.o.consensusParams?.() ?? this.o.params;
  }

  private mine(anchor: PowAnchor): Promise<IdentityProofMsg> {
    const p = this.params();
    const key = `${anchor.validAfter}:${anchor.digest.toString('hex')}:${p.memoryKib}:${p.ops}:${p.difficulty}`;
    if (this.mining?.key === key) return this.mining.done;
    const started = (this.o.now ?? Date.now)();
    const done = mineIdentityProof(this.o.identity, anchor, p, { aborted: () => this.stopped }).then(async (pr) => {
      this.held = pr;
      this.o.log.info({ anchorValidAfter: pr.anchorValidAfter, nonce: pr.nonce, memoryKib: pr.memoryKib, ops: pr.ops, difficulty: pr.difficulty, ms: (this.o.now ?? Date.now)() - started }, 'identity proof made');
      await writeFileAtomic(path.join(this.o.dataDir, PROOF_FILE), JSON.stringify({
        identity: this.o.identity.toString('hex'), anchorValidAfter: pr.anchorValidAfter, anchorDigest: pr.anchorDigest.toString('hex'),
        memoryKib: pr.memoryKib, ops: pr.ops, difficulty: pr.difficulty, nonce: pr.nonce,
      }), 0o600).catch((e: Error) => this.o.log.warn({ err: e.message }, 'saving the identity proof failed'));
      return pr;
    }).finally(() => { if (this.mining?.done === done) this.mining = null; });
    this.mining = { key, done };
    return done;
  }
}

/**
 * The `identityPow` configuration key of authorities, relays and storage nodes: "default"
 * (DEFAULT_POW_PARAMS, the public network), "local" (LOCAL_POW_PARAMS) or an object
 * { memoryKib, ops, difficulty, anchorPeriods } (authorities raise the minimum this way).
 */
export function parsePowParams(v: unknown, field = 'identityPow', file?: string): PowParams {
  if (v === undefined || v === 'default') return DEFAULT_POW_PARAMS;
  if (v === 'local') return LOCAL_POW_PARAMS;
  if (typeof v === 'string') configError(field, 'must be "default", "local" or an object');
  const o = obj(v, field);
  noUnknownKeys(o, ['memoryKib', 'ops', 'difficulty', 'anchorPeriods'], field, file);
  return {
    memoryKib: int(o.memoryKib, `${field}.memoryKib`, 8, 4 * 1024 * 1024, DEFAULT_POW_PARAMS.memoryKib),
    ops: int(o.ops, `${field}.ops`, 1, 16, DEFAULT_POW_PARAMS.ops),
    difficulty: int(o.difficulty, `${field}.difficulty`, 0, 32, DEFAULT_POW_PARAMS.difficulty),
    anchorPeriods: int(o.anchorPeriods, `${field}.anchorPeriods`, 2, 24 * 30, DEFAULT_POW_PARAMS.anchorPeriods),
  };
}
