// SPEC.md §10.7.1: the policies an authority keeps and serves. Anyone may upload a moderator's
// bundle; it is kept only if it verifies and is newer than what is held (advancePolicy), so an
// authority can be made to serve nothing false. Kept on disk, one file per moderator, reloaded
// at start. Bounded: at most `maxModerators` moderators.
import fs from 'node:fs';
import path from 'node:path';
import { err } from '../errors';
import { writeFileAtomicSync, mkdirDurableSync } from '../ops/fsutil';
import { advancePolicy, encodeBundle, stateBundle, versionsAfter, type PolicyState } from './chain';
import { parseModerator } from './policy';

export const DEFAULT_MAX_MODERATORS = 10_000;

export type ServeAnswer = { status: 200; bundle: Buffer; seq: number } | { status: 304 } | { status: 404 };

export class PolicyStore {
  private readonly states = new Map<string, PolicyState>();

  constructor(private readonly dir: string | null, private readonly o: { maxModerators?: number; skewMs?: number; now?: () => number } = {}) {
    if (!dir || !fs.existsSync(dir)) return;
    for (const f of fs.readdirSync(dir)) {
      const m = /^([0-9a-f]{64})\.bundle$/.exec(f);
      if (!m) continue;
      try {
        this.states.set(m[1], advancePolicy(null, fs.readFileSync(path.join(dir, f)), { moderator: m[1], now: this.now(), checkWindow: false }).state);
      } catch { /* a damaged file is dropped; the moderator uploads again */ }
    }
  }

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
    if (!held && this.states.size >= (this.o.maxModerators ?? DEFAULT_MAX_MODERATORS)) {
      throw err('POLICY_STORE_FULL', 'this authority keeps no more moderators');
    }
    const r = advancePolicy(held, bundle, { moderator, now: this.now(), skewMs: this.o.skewMs });
    if (r.result === 'updated') {
      if (this.dir) {
        mkdirDurableSync(this.dir, 0o700);
        writeFileAtomicSync(path.join(this.dir, `${moderator}.bundle`), stateBundle(r.state), 0o644);
      }
      this.states.set(moderator, r.state);
    }
    return { result: r.result, seq: r.state.seq };
  }

  /** What to answer GET /bitcloud/policy/<fp>[?after=SEQ&digest=HEX]. */
  serve(moderator: string, after?: number, afterDigest?: Buffer): ServeAnswer {
    const s = this.states.get(moderator);
    if (!s) return { status: 404 };
    if (after !== undefined && after >= s.seq) return { status: 304 };
    const versions = versionsAfter(s, after, afterDigest);
    return { status: 200, bundle: encodeBundle(versions.map((v) => v.raw)), seq: s.seq };
  }
}
