// SPEC.md §6.5, §6.8: what this authority signed, per period, kept on disk so that a restart never
// signs a second, different vote or consensus body for a period it already signed (two bodies with
// one authority's signature would let an attacker show different views to different clients).
// `signed-periods.json` holds the digests of the last few periods' own vote and consensus, each
// list in the order its records were made (oldest first);
// `own-vote.bin` the envelope of the newest own vote, served again after a restart in its period.
import fs from 'node:fs';
import path from 'node:path';
import { err } from '../src/errors';
import { writeFileAtomicSync } from '../src/ops/fsutil';

export const SIGNED_PERIODS_FILE = 'signed-periods.json';
export const OWN_VOTE_FILE = 'own-vote.bin';
/**
 * Records kept per kind: the 8 highest periods (a clock set back still finds them) and the 8 most
 * recently recorded (the period just signed is kept even when a clock set back far makes it the
 * lowest): at most 16.
 */
export const SIGNED_PERIODS_KEPT = 8;

export type SignedKind = 'vote' | 'consensus';

interface Stored { version: 1; vote: { period: number; digest: string }[]; consensus: { period: number; digest: string }[] }

export class SignedPeriods {
  private readonly rec: Record<SignedKind, Map<number, string>> = { vote: new Map(), consensus: new Map() };

  constructor(private readonly dataDir: string) {}

  /**
   * Read the record. No file: nothing signed yet. A file that is not one this class wrote is
   * IO_STATE_UNREADABLE: the authority does not start, since it could hide a period it signed.
   */
  load(): void {
    const file = path.join(this.dataDir, SIGNED_PERIODS_FILE);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err('IO_STATE_UNREADABLE', `cannot read ${file}`, undefined, e);
    }
    const bad = (why: string, cause?: unknown): never => {
      throw err('IO_STATE_UNREADABLE', `${file}: ${why}; it records the periods this authority signed (SPEC.md §6.5): remove it only once the periods it may name have passed`, undefined, cause);
    };
    let s: Stored;
    try { s = JSON.parse(text) as Stored; } catch (e) { return bad('not JSON', e); }
    if (!s || typeof s !== 'object' || s.version !== 1) return bad('unknown layout');
    for (const kind of ['vote', 'consensus'] as const) {
      const list: unknown = s[kind];
      if (!Array.isArray(list)) return bad(`no ${kind} list`);
      for (const r of list as { period?: unknown; digest?: unknown }[]) {
        if (!r || !Number.isSafeInteger(r.period) || (r.period as number) < 0 || typeof r.digest !== 'string' || !/^[0-9a-f]{64}$/.test(r.digest)) {
          return bad(`a ${kind} record is not { period, digest }`);
        }
        this.rec[kind].set(r.period as number, r.digest);
      }
    }
  }

  /** Digest (hex) of the `kind` this authority signed for the period starting at `period`, or null. */
  signed(kind: SignedKind, period: number): string | null {
    return this.rec[kind].get(period) ?? null;
  }

  /**
   * Record, durably (written atomically and fsynced), that `digest` was signed for `period`;
   * called before the signature leaves this authority. For a vote, `raw` (its envelope) is
   * written first, to be served again after a restart in the same period.
   */
  record(kind: SignedKind, period: number, digest: Buffer, raw?: Buffer): void {
    if (this.rec[kind].get(period) === digest.toString('hex')) return;
    if (raw) writeFileAtomicSync(path.join(this.dataDir, OWN_VOTE_FILE), raw, 0o600);
    // A map keeps its insertion order: the order records were made, this one last.
    const next = new Map(this.rec[kind]);
    next.delete(period);
    next.set(period, digest.toString('hex'));
    const highest = new Set([...next.keys()].sort((a, b) => b - a).slice(0, SIGNED_PERIODS_KEPT));
    const newest = new Set([...next.keys()].slice(-SIGNED_PERIODS_KEPT));
    const trimmed = new Map([...next].filter(([p]) => highest.has(p) || newest.has(p)));
    const other: SignedKind = kind === 'vote' ? 'consensus' : 'vote';
    const list = (m: Map<number, string>) => [...m].map(([p, d]) => ({ period: p, digest: d }));
    const out = { version: 1, [kind]: list(trimmed), [other]: list(this.rec[other]) } as unknown as Stored;
    writeFileAtomicSync(path.join(this.dataDir, SIGNED_PERIODS_FILE), JSON.stringify(out), 0o600);
    this.rec[kind] = trimmed;
  }

  /** The stored own vote envelope, or null when none was kept (or it cannot be read). */
  ownVote(): Buffer | null {
    try { return fs.readFileSync(path.join(this.dataDir, OWN_VOTE_FILE)); } catch { return null; }
  }
}
