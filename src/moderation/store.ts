// SPEC.md §10.7.1: the policies an authority keeps and serves. Anyone may upload a moderator's
// bundle; it is kept only if it verifies and is newer than what is held (advancePolicy), so an
// authority can be made to serve nothing false. Kept on disk, one file per moderator, reloaded
// at start. Bounded: at most `maxModerators` moderators and `maxBytes` of bundles in all, the
// budget checked before an upload is opened; it counts every copy held (SPEC.md §10.7.1).
import fs from 'node:fs';
import path from 'node:path';
import { err } from '../errors';
import { writeFileAtomicSync, mkdirDurableSync } from '../ops/fsutil';
import {
  advancePolicy, answerFromHeld, BUNDLE_LIMITS, chainBundleBytes, decodeBundle, stateBundle, versionsAfter, type PolicyState,
} from './chain';
import { parseModerator } from './policy';

export const DEFAULT_MAX_MODERATORS = 10_000;
/** SPEC.md §10.7.1: the bundles of all the moderators an authority keeps, at most 256 MiB in all. */
export const DEFAULT_MAX_POLICY_BYTES = 256 * 1024 * 1024;

export type ServeAnswer = { status: 200; bundle: Buffer; seq: number } | { status: 304 } | { status: 404 };

export class PolicyStore {
  private readonly states = new Map<string, PolicyState>();
  /**
   * The bundle of each state held, built once per accepted state and handed to every GET of the
   * whole bundle (slow readers share one Buffer instead of pinning a copy each).
   */
  private readonly bundles = new Map<string, Buffer>();
  /**
   * SPEC.md §10.5, §10.7.1: the tails served (the versions after a held one), by moderator and
   * index of their first version. A bundle is `u32 length | envelope` repeated, so a tail is a
   * suffix of the whole bundle: each is a view of it (no bytes of its own, nothing more to count),
   * made once and handed to every GET of it; dropped with the bundle when the chain changes.
   */
  private readonly tails = new Map<string, Map<number, Buffer>>();
  /**
   * SPEC.md §10.7.1: the bytes each state held costs against the budget. An accepted state holds
   * its versions (copied out of the uploads) and, apart, the whole bundle served: twice its bundle's
   * length. A reloaded state whose versions are views of the saved bundle, which is served, once.
   */
  private readonly cost = new Map<string, number>();
  /** The sum of `cost` over the states held. */
  private total = 0;

  constructor(private readonly dir: string | null, private readonly o: { maxModerators?: number; maxBytes?: number; skewMs?: number; now?: () => number } = {}) {
    if (!dir || !fs.existsSync(dir)) return;
    for (const f of fs.readdirSync(dir).sort()) {
      const m = /^([0-9a-f]{64})\.bundle$/.exec(f);
      if (!m) continue;
      try {
        // A restart keeps to the same bounds: files past them are left unread (and unserved).
        const file = path.join(dir, f);
        if (this.states.size >= this.maxModerators || this.total + fs.statSync(file).size > this.maxBytes) continue;
        const saved = fs.readFileSync(file);
        const state = advancePolicy(null, saved, { moderator: m[1], now: this.now(), checkWindow: false }).state;
        // The versions held are views of `saved`; when it is exactly their bundle, it is served (one
        // copy), else a bundle is built when first served, beside it.
        const bundleBytes = chainBundleBytes(state.chain);
        const exact = saved.length === bundleBytes;
        const cost = exact ? saved.length : saved.length + bundleBytes;
        if (this.total + cost > this.maxBytes) continue;
        this.states.set(m[1], state);
        if (exact) this.bundles.set(m[1], saved);
        this.cost.set(m[1], cost);
        this.total += cost;
      } catch { /* a damaged file is dropped; the moderator uploads again */ }
    }
  }

  private get maxModerators(): number { return this.o.maxModerators ?? DEFAULT_MAX_MODERATORS; }
  private get maxBytes(): number { return this.o.maxBytes ?? DEFAULT_MAX_POLICY_BYTES; }

  /** The bytes held for the bundles, over all moderators: every copy (SPEC.md §10.7.1). */
  get bytes(): number { return this.total; }

  private now(): number { return (this.o.now ?? Date.now)(); }

  get size(): number { return this.states.size; }

  get(moderator: string): PolicyState | null {
    return this.states.get(moderator) ?? null;
  }

  moderators(): string[] {
    return [...this.states.keys()].sort();
  }

  /**
   * Take an uploaded bundle for `moderator`. Resolves 'updated' or 'unchanged'; throws the
   * refusal (POLICY_* codes, POLICY_STORE_FULL).
   */
  accept(moderator: string, bundle: Buffer): { result: 'updated' | 'unchanged'; seq: number } {
    parseModerator(moderator);
    const held = this.states.get(moderator) ?? null;
    const raws = decodeBundle(bundle);
    if (held) {
      const quick = answerFromHeld(held, raws, moderator);
      if (quick) return { result: quick.result, seq: quick.state.seq };
    }
    if (!held && this.states.size >= this.maxModerators) {
      throw err('POLICY_STORE_FULL', 'this authority keeps no more moderators');
    }
    // SPEC.md §10.7.1: before anything is opened, the new state's bundle is counted at its
    // largest: the held chain with the whole upload appended, within a bundle's limits (§10.5),
    // twice (its versions and the bundle served), in place of what the held state costs.
    const heldCost = this.cost.get(moderator) ?? 0;
    const largest = Math.min(BUNDLE_LIMITS.bytes, (held ? chainBundleBytes(held.chain) : 0) + bundle.length);
    if (this.total - heldCost + 2 * largest > this.maxBytes) {
      throw err('POLICY_STORE_FULL', `this authority keeps at most ${this.maxBytes} bytes of policy bundles; ${this.total} are held`, { held: this.total, max: this.maxBytes, bundle: bundle.length });
    }
    // A version kept, and what is decoded from it, are views of the bytes it was read from: each is
    // copied out of the upload first, so a version taken from an upload keeps its own bytes alive,
    // not the whole upload (the bytes counted above then bound the bytes held).
    const own = raws.map((x) => { const c = Buffer.allocUnsafeSlow(x.length); x.copy(c); return c; });
    const r = advancePolicy(held, own, { moderator, now: this.now(), skewMs: this.o.skewMs });
    if (r.result === 'updated') {
      const full = stateBundle(r.state);
      if (this.dir) {
        mkdirDurableSync(this.dir, 0o700);
        writeFileAtomicSync(path.join(this.dir, `${moderator}.bundle`), full, 0o644);
      }
      this.states.set(moderator, r.state);
      this.bundles.set(moderator, full);
      this.tails.delete(moderator);
      const cost = 2 * full.length;
      this.cost.set(moderator, cost);
      this.total += cost - heldCost;
    }
    return { result: r.result, seq: r.state.seq };
  }

  /** What to answer GET /bitcloud/policy/<fp>[?after=SEQ&digest=HEX]. */
  serve(moderator: string, after?: number, afterDigest?: Buffer): ServeAnswer {
    const s = this.states.get(moderator);
    if (!s) return { status: 404 };
    if (after !== undefined && after >= s.seq) return { status: 304 };
    const versions = versionsAfter(s, after, afterDigest);
    let full = this.bundles.get(moderator);
    if (!full) { full = stateBundle(s); this.bundles.set(moderator, full); }
    if (versions.length === s.chain.length) return { status: 200, bundle: full, seq: s.seq };
    const from = s.chain.length - versions.length;
    let tails = this.tails.get(moderator);
    if (!tails) { tails = new Map(); this.tails.set(moderator, tails); }
    let tail = tails.get(from);
    if (!tail) { tail = full.subarray(chainBundleBytes(s.chain.slice(0, from))); tails.set(from, tail); }
    return { status: 200, bundle: tail, seq: s.seq };
  }
}
