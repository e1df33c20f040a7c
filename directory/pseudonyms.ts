// SPEC.md §9.21.7 on an authority: POST /bitcloud/hs/pseudonym (a hidden node's pseudonym
// registration, sealed to this authority's signing key, passed on by a relay mirror) and the
// registrations kept in <dataDir>/hs-pseudonyms.bin (200-byte registrations back to back, mode
// 0600, written atomically before the answer), loaded again at start before stored receipts are
// re-judged (directory/measurement.ts), so a restarted authority measures hidden nodes' receipts
// as before.
import fs from 'node:fs';
import path from 'node:path';
import type { Ed25519KeyPair } from '../src/crypto/primitives';
import { hsPeriodOf } from '../src/crypto/blind';
import { err, errorCode } from '../src/errors';
import { writeFileAtomic } from '../src/ops/fsutil';
import type { Logger } from '../src/ops/log';
import { PseudonymRegistry, openPseudonymUpload, type RegistryContext } from '../src/hidden/pseudonym';
import { PSEUDONYM_REGISTRATION_LEN } from '../src/wire/pseudonym';

export const PSEUDONYMS_FILE = 'hs-pseudonyms.bin';

/** SPEC.md §9.21.7: the HTTP status of each refusal. */
export const PSEUDONYM_REFUSAL_STATUS: Readonly<Record<string, number>> = {
  HIDDEN_PSEUDONYM_MALFORMED: 400,
  HIDDEN_PSEUDONYM_UNSEALED: 400,
  HIDDEN_PSEUDONYM_BAD_SIGNATURE: 400,
  HIDDEN_PSEUDONYM_STALE: 400,
  HIDDEN_PSEUDONYM_UNKNOWN_NODE: 403,
  HIDDEN_PSEUDONYM_TAKEN: 409,
  HIDDEN_PSEUDONYM_TOO_MANY: 429,
  HIDDEN_PSEUDONYM_NOT_SAVED: 503,
};

export interface PseudonymStoreOptions {
  dataDir: string;
  /** This authority's current signing key (§6.3): registrations are sealed to it. */
  signingKey: () => Ed25519KeyPair;
  isHiddenNode: RegistryContext['isHiddenNode'];
  isListedRelay: RegistryContext['isListedRelay'];
  now: () => number;
  log: Logger;
}

export class PseudonymStore {
  readonly registry = new PseudonymRegistry();
  private writing: Promise<void> = Promise.resolve();
  /** New registrations whose write is under way, by `${period}:${pseudonym hex}`. */
  private readonly saving = new Map<string, Promise<void>>();
  /** The same writes by pseudonym (hex); each leaves this set before it settles. */
  private readonly savingByPseudonym = new Map<string, Set<Promise<void>>>();

  constructor(private readonly o: PseudonymStoreOptions) {}

  get file(): string { return path.join(this.o.dataDir, PSEUDONYMS_FILE); }

  /** Registrations from the last run (each re-verified; a torn or bad record is dropped). Call before the receipts are loaded. */
  load(): number {
    let buf: Buffer;
    try { buf = fs.readFileSync(this.file); } catch { return 0; }
    const oldest = hsPeriodOf(this.o.now()) - 2;
    let n = 0;
    for (let off = 0; off + PSEUDONYM_REGISTRATION_LEN <= buf.length; off += PSEUDONYM_REGISTRATION_LEN) {
      try { this.registry.restore(buf.subarray(off, off + PSEUDONYM_REGISTRATION_LEN)); n++; } catch (e) {
        this.o.log.warn({ code: errorCode(e) }, 'stored pseudonym registration not usable; dropped');
      }
    }
    this.registry.prune(oldest);
    return n;
  }

  /**
   * Open, check and keep one upload. Resolves 'new' or 'unchanged' once a new registration is on
   * disk; throws the HIDDEN_PSEUDONYM_* refusal.
   */
  async accept(body: Uint8Array): Promise<{ result: 'new' | 'unchanged'; period: number }> {
    const r = openPseudonymUpload(body, this.o.signingKey());
    const pseudonym = r.pseudonym.toString('hex');
    // SPEC.md §9.21.7 step 4: while another identity's registration of this pseudonym is being
    // written, the pseudonym is not yet taken (that write may fail): wait for its outcome.
    for (let w = this.savingByPseudonym.get(pseudonym); w && this.registry.ownerOf(pseudonym) !== r.identity.toString('hex'); w = this.savingByPseudonym.get(pseudonym)) {
      await Promise.allSettled(w);
    }
    const period = hsPeriodOf(this.o.now());
    const result = this.registry.register(r, { period, isHiddenNode: this.o.isHiddenNode, isListedRelay: this.o.isListedRelay });
    const key = `${r.period}:${pseudonym}`;
    if (result === 'new') {
      this.registry.prune(period - 2);
      const writes = this.savingByPseudonym.get(pseudonym) ?? new Set<Promise<void>>();
      this.savingByPseudonym.set(pseudonym, writes);
      const done = (): void => {
        writes.delete(saved);
        if (writes.size === 0 && this.savingByPseudonym.get(pseudonym) === writes) this.savingByPseudonym.delete(pseudonym);
      };
      const saved: Promise<void> = this.save().then(done, (e: unknown) => {
        done();
        // SPEC.md §9.21.7 step 4: a registration is kept only once it is on disk. One that is not
        // is forgotten and refused, so the node's retry is new and written again.
        this.registry.forget(r.period, pseudonym);
        throw err('HIDDEN_PSEUDONYM_NOT_SAVED', `the registration could not be saved (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); retry later`);
      });
      writes.add(saved);
      this.saving.set(key, saved);
      try {
        await saved;
      } finally {
        if (this.saving.get(key) === saved) this.saving.delete(key);
      }
    } else {
      // The same registration again while its write is under way (a retry sent before the first
      // was answered) is 'unchanged' only once it is on disk; if that write fails, refused too.
      await this.saving.get(key);
    }
    return { result, period: r.period };
  }

  /** The identity a pseudonym stands for in `period` (or the period before). */
  identityOf(pseudonym: string, period: number): string | undefined {
    return this.registry.identityOf(pseudonym, period);
  }

  /** Write every registration held, after the writes before; rejects when this write fails (the next still runs). */
  private save(): Promise<void> {
    const bytes = Buffer.concat(this.registry.entries().map((e) => e.registration));
    const write = this.writing.then(() => writeFileAtomic(this.file, bytes, 0o600));
    this.writing = write.catch((e: Error) => this.o.log.error({ err: e.message }, 'saving pseudonym registrations failed'));
    return write;
  }
}
