// The moderator's side (docs/moderators.md): a data directory holding
//   moderator.key     the Ed25519 moderator key (SPEC.md §3.2 key file, mode 0600)
//   policy.json       the working policy: what the next `publish` will sign
//   published.bundle  the chain published so far (SPEC.md §10.5), the base of the next delta
// The working policy stores denylist entries already double-hashed (§10.3): the moderator's own
// files do not list what they block either.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { err, isBitcloudError } from '../errors';
import { fingerprint, loadEd25519Secret, saveEd25519Secret, DATA_DIR_MODE } from '../crypto/keys';
import { ed25519Generate, type Ed25519KeyPair } from '../crypto/primitives';
import { writeFileAtomic } from '../ops/fsutil';
import { advancePolicy, nextPolicyContent, stateBundle, type PolicyState } from './chain';
import { denyEntry, DENY_ENTRY_BYTES } from './denylist';
import { checkContentClass, ContentClass, signPolicy, type ClassRule } from './policy';

export const MODERATOR_KEY_FILE = 'moderator.key';
export const WORKING_POLICY_FILE = 'policy.json';
export const PUBLISHED_FILE = 'published.bundle';
export const DEFAULT_LIFETIME_DAYS = 30;

export interface WorkingPolicy {
  name: string;
  classes: ClassRule[];
  maxShareBytes: number;
  /** Double-hashed entries, 64 hex each, sorted. */
  deny: string[];
}

const HEX64 = /^[0-9a-f]{64}$/;

function bad(file: string, why: string): never {
  throw err('CONFIG_INVALID', `${file}: ${why}`, { file });
}

function parseWorking(text: string, file: string): WorkingPolicy {
  let j: Record<string, unknown>;
  try { j = JSON.parse(text); } catch { bad(file, 'not JSON'); }
  if (typeof j !== 'object' || j === null) bad(file, 'not an object');
  const name = typeof j.name === 'string' ? j.name : '';
  if (!Array.isArray(j.classes) || !Array.isArray(j.deny)) bad(file, 'classes and deny must be lists');
  const classes = (j.classes as unknown[]).map((c) => {
    const r = c as { name?: unknown; maxShareBytes?: unknown };
    const n = Number(r.maxShareBytes ?? 0);
    if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) bad(file, 'classes[].maxShareBytes must be 0..4294967295');
    return { name: checkContentClass(r.name, 'CONFIG_INVALID'), maxShareBytes: n };
  });
  const deny = (j.deny as unknown[]).map((d) => { if (typeof d !== 'string' || !HEX64.test(d)) bad(file, 'deny entries are 64 hex'); return d; });
  const maxShareBytes = Number(j.maxShareBytes ?? 0);
  if (!Number.isInteger(maxShareBytes) || maxShareBytes < 0 || maxShareBytes > 0xffff_ffff) bad(file, 'maxShareBytes must be 0..4294967295');
  return { name, classes, maxShareBytes, deny };
}

/** A moderator's data directory. */
export class ModeratorWorkspace {
  private constructor(readonly dir: string, readonly key: Ed25519KeyPair, public working: WorkingPolicy, public published: PolicyState | null) {}

  get fingerprint(): string { return fingerprint(this.key.publicKey); }

  /** Make a new key and a working policy admitting encrypted-private. Refuses to replace a key (MODERATOR_KEY_EXISTS). */
  static async create(dir: string, name = ''): Promise<ModeratorWorkspace> {
    await fsp.mkdir(dir, { recursive: true, mode: DATA_DIR_MODE });
    const keyFile = path.join(dir, MODERATOR_KEY_FILE);
    if (fs.existsSync(keyFile)) throw err('MODERATOR_KEY_EXISTS', `${keyFile} exists; a moderator key is never replaced (nodes subscribe to it)`, { file: keyFile });
    const key = ed25519Generate();
    await saveEd25519Secret(keyFile, key);
    const ws = new ModeratorWorkspace(dir, key, { name, classes: [{ name: ContentClass.ENCRYPTED_PRIVATE, maxShareBytes: 0 }], maxShareBytes: 0, deny: [] }, null);
    await ws.saveWorking();
    return ws;
  }

  static async open(dir: string): Promise<ModeratorWorkspace> {
    let key: Ed25519KeyPair;
    try {
      key = await loadEd25519Secret(path.join(dir, MODERATOR_KEY_FILE));
    } catch (e) {
      if (isBitcloudError(e, 'KEY_NOT_FOUND')) throw err('MODERATOR_NO_KEY', `no moderator key in ${dir}; run \`bitcloud moderator keygen\` first`, { dir });
      throw e;
    }
    const wf = path.join(dir, WORKING_POLICY_FILE);
    const working = fs.existsSync(wf) ? parseWorking(await fsp.readFile(wf, 'utf8'), wf) : { name: '', classes: [], maxShareBytes: 0, deny: [] };
    const pf = path.join(dir, PUBLISHED_FILE);
    let published: PolicyState | null = null;
    if (fs.existsSync(pf)) {
      published = advancePolicy(null, await fsp.readFile(pf), { moderator: fingerprint(key.publicKey), now: Date.now(), checkWindow: false }).state;
    }
    return new ModeratorWorkspace(dir, key, working, published);
  }

  async saveWorking(): Promise<void> {
    this.working.deny = [...new Set(this.working.deny)].sort();
    this.working.classes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    await writeFileAtomic(path.join(this.dir, WORKING_POLICY_FILE), JSON.stringify(this.working, null, 2) + '\n', 0o600);
  }

  /** Add raw ids (hashed here); returns how many were new. */
  addDeny(ids: Buffer[]): number {
    const before = new Set(this.working.deny);
    for (const id of ids) this.working.deny.push(denyEntry(id).toString('hex'));
    return new Set(this.working.deny).size - before.size;
  }

  /** Remove raw ids; returns how many were listed. */
  removeDeny(ids: Buffer[]): number {
    const drop = new Set(ids.map((id) => denyEntry(id).toString('hex')));
    const n = this.working.deny.length;
    this.working.deny = this.working.deny.filter((e) => !drop.has(e));
    return n - this.working.deny.length;
  }

  allow(cls: string, maxShareBytes = 0): void {
    checkContentClass(cls, 'POLICY_BAD_CLASS');
    this.working.classes = this.working.classes.filter((c) => c.name !== cls);
    this.working.classes.push({ name: cls, maxShareBytes });
  }

  disallow(cls: string): boolean {
    const n = this.working.classes.length;
    this.working.classes = this.working.classes.filter((c) => c.name !== cls);
    return this.working.classes.length !== n;
  }

  /**
   * Sign the next version from the working policy (a delta on the published chain when possible),
   * check it as a node would, and save the new chain. Returns the new state.
   */
  async signNext(o: { now?: number; lifetimeDays?: number; snapshot?: boolean; maxChain?: number } = {}): Promise<PolicyState> {
    const now = o.now ?? Date.now();
    const content = nextPolicyContent(this.published, {
      name: this.working.name, classes: this.working.classes, maxShareBytes: this.working.maxShareBytes,
      deny: this.working.deny.map((h) => Buffer.from(h, 'hex')).filter((b) => b.length === DENY_ENTRY_BYTES),
    }, { snapshot: o.snapshot, maxChain: o.maxChain });
    const raw = signPolicy(content, this.key, { validAfter: now, validUntil: now + (o.lifetimeDays ?? DEFAULT_LIFETIME_DAYS) * 86_400_000 });
    const prior = this.published?.chain.map((v) => v.raw) ?? [];
    const { state } = advancePolicy(this.published, [...(content.previous ? prior : []), raw], { moderator: this.fingerprint, now });
    await writeFileAtomic(path.join(this.dir, PUBLISHED_FILE), stateBundle(state), 0o600);
    this.published = state;
    return state;
  }
}
