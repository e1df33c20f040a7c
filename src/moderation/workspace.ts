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
import { fingerprint, loadEd25519Secret, saveEd25519SecretExclusive, DATA_DIR_MODE } from '../crypto/keys';
import { ed25519Generate, type Ed25519KeyPair } from '../crypto/primitives';
import { writeFileAtomic, mkdirDurable } from '../ops/fsutil';
import { advancePolicy, nextPolicyContent, stateBundle, type BundleLimits, type PolicyState } from './chain';
import { allowEntry, denyEntry, DENY_ENTRY_BYTES } from './denylist';
import { checkContentClass, checkTag, checkTags, ContentClass, isPublicClass, POLICY_LIMITS, POLICY_MAX_LIFETIME_MS, signPolicy, type ClassRule } from './policy';

export const MODERATOR_KEY_FILE = 'moderator.key';
export const WORKING_POLICY_FILE = 'policy.json';
export const PUBLISHED_FILE = 'published.bundle';
export const DEFAULT_LIFETIME_DAYS = 30;

/** One approved file in the working policy (SPEC.md §10.3.2). */
export interface WorkingApproval {
  /** 64 hex. */
  manifestId: string;
  contentClass: string;
  tags: string[];
  /** Allowlist entries of the file's ids (allowEntry, 64 hex each). */
  allow: string[];
}

export interface WorkingPolicy {
  name: string;
  classes: ClassRule[];
  maxShareBytes: number;
  /** Double-hashed entries, 64 hex each, sorted. */
  deny: string[];
  /** Approved files, by manifest id. */
  approved?: WorkingApproval[];
}

const HEX64 = /^[0-9a-f]{64}$/;

function bad(file: string, why: string, detail: Record<string, unknown> = {}): never {
  throw err('CONFIG_INVALID', `${file}: ${why}`, { file, ...detail });
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
  if (j.approved !== undefined && !Array.isArray(j.approved)) bad(file, 'approved must be a list');
  const approved = ((j.approved ?? []) as unknown[]).map((x) => {
    const a = x as Record<string, unknown>;
    if (typeof a.manifestId !== 'string' || !HEX64.test(a.manifestId)) bad(file, 'approved[].manifestId is 64 hex');
    if (!Array.isArray(a.tags) || !Array.isArray(a.allow)) bad(file, 'approved[].tags and approved[].allow are lists');
    const manifestId = a.manifestId;
    const allow = (a.allow as unknown[]).map((e) => { if (typeof e !== 'string' || !HEX64.test(e)) bad(file, 'approved[].allow entries are 64 hex'); return e; });
    // Each tag is checked here; how many there are only at publish (refuseOverTagged): an entry saved
    // before the bound of 16 existed must not keep the workspace from opening, or `moderator
    // approve` could not replace it (docs/moderators.md).
    const tags = [...new Set((a.tags as unknown[]).map((t) => {
      try { return checkTag(t, 'CONFIG_INVALID'); } catch (e) { return bad(file, `approved entry ${manifestId}: ${isBitcloudError(e) ? e.message.replace(/^[A-Z_]+: /, '') : String(e)}`, { manifestId }); }
    }))].sort();
    return { manifestId, contentClass: checkContentClass(a.contentClass, 'CONFIG_INVALID'), tags, allow };
  });
  return { name, classes, maxShareBytes, deny, approved };
}

/** A moderator's data directory. */
export class ModeratorWorkspace {
  private constructor(readonly dir: string, readonly key: Ed25519KeyPair, public working: WorkingPolicy, public published: PolicyState | null) {}

  get fingerprint(): string { return fingerprint(this.key.publicKey); }

  /** Make a new key and a working policy admitting encrypted-private. Refuses to replace a key (MODERATOR_KEY_EXISTS). */
  static async create(dir: string, name = ''): Promise<ModeratorWorkspace> {
    await mkdirDurable(dir, DATA_DIR_MODE);
    const keyFile = path.join(dir, MODERATOR_KEY_FILE);
    const key = ed25519Generate();
    // Written only where no file is (SPEC.md §10.9): of two keygens at once, one makes the key and
    // the other refuses, as when the key was there before; neither replaces the key on disk.
    if (!await saveEd25519SecretExclusive(keyFile, key)) {
      throw err('MODERATOR_KEY_EXISTS', `${keyFile} exists; a moderator key is never replaced (nodes subscribe to it)`, { file: keyFile });
    }
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
    this.working.approved?.sort((a, b) => (a.manifestId < b.manifestId ? -1 : a.manifestId > b.manifestId ? 1 : 0));
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

  /**
   * Approve a public file (SPEC.md §10.3.2) with tags: its manifest id is listed in the clear with
   * the tags, and the allowlist gets an entry for each of its ids (`ids`: manifest id, manifest
   * shares, data shares). Approving again replaces the tags. Returns true when it was new.
   */
  approve(manifestId: Buffer, contentClass: string, ids: Buffer[], tags: string[]): boolean {
    if (!isPublicClass(contentClass)) {
      throw err('POLICY_NOT_PUBLIC', `only public content can be approved (its manifest id is published for anyone to read it); this file is ${contentClass}`, { contentClass });
    }
    const distinct = checkTags(tags, 'POLICY_BAD_TAG');
    const hex = manifestId.toString('hex');
    const list = (this.working.approved ??= []);
    const i = list.findIndex((a) => a.manifestId === hex);
    const entry = { manifestId: hex, contentClass, tags: distinct, allow: [...new Set(ids.map((id) => allowEntry(id).toString('hex')))].sort() };
    if (i >= 0) list[i] = entry; else list.push(entry);
    return i < 0;
  }

  /**
   * SPEC.md §10.2: at most 16 tags per approval. A working file saved before that bound existed
   * may hold an entry with more: it opens, but is not published until it is approved again with at
   * most 16 tags (which replaces it), withdrawn, or edited (CONFIG_INVALID naming file and entry).
   */
  private refuseOverTagged(): void {
    const over = (this.working.approved ?? []).find((a) => a.tags.length > POLICY_LIMITS.tagsPerApproval);
    if (!over) return;
    const max = POLICY_LIMITS.tagsPerApproval;
    bad(path.join(this.dir, WORKING_POLICY_FILE), `approved entry ${over.manifestId} has ${over.tags.length} tags, at most ${max} per file can be published; `
      + `run \`bitcloud moderator approve\` on it again with at most ${max} --tag (this replaces its tags), \`bitcloud moderator unapprove ${over.manifestId}\`, `
      + 'or edit its tags in the file', { manifestId: over.manifestId, tags: over.tags.length });
  }

  /** Withdraw approvals by manifest id; returns how many were listed. */
  unapprove(manifestIds: Buffer[]): number {
    const drop = new Set(manifestIds.map((b) => b.toString('hex')));
    const n = this.working.approved?.length ?? 0;
    this.working.approved = (this.working.approved ?? []).filter((a) => !drop.has(a.manifestId));
    return n - this.working.approved.length;
  }

  /** Admit a class (SPEC.md §10.1), with a share size limit for it: 0..2^32−1 (§10.2), checked before anything changes. */
  allow(cls: string, maxShareBytes = 0): void {
    checkContentClass(cls, 'POLICY_BAD_CLASS');
    if (!Number.isInteger(maxShareBytes) || maxShareBytes < 0 || maxShareBytes > 0xffff_ffff) {
      throw err('CONFIG_INVALID', 'max-share-bytes must be 0..4294967295 bytes', { maxShareBytes: String(maxShareBytes) });
    }
    this.working.classes = this.working.classes.filter((c) => c.name !== cls);
    this.working.classes.push({ name: cls, maxShareBytes });
  }

  disallow(cls: string): boolean {
    const n = this.working.classes.length;
    this.working.classes = this.working.classes.filter((c) => c.name !== cls);
    return this.working.classes.length !== n;
  }

  /**
   * Sign the next version from the working policy (a delta on the published chain when possible,
   * a snapshot when a delta would take the chain past a bundle's limits, SPEC.md §10.5), check it
   * as a node would, and save the new chain. Returns the new state. A policy too large for one
   * version is POLICY_LIST_TOO_LARGE, before anything is signed or saved.
   */
  async signNext(o: { now?: number; lifetimeDays?: number; snapshot?: boolean; maxChain?: number; limits?: BundleLimits } = {}): Promise<PolicyState> {
    this.refuseOverTagged();
    // SPEC.md §10.2: a version counts as valid for at most 366 days; a longer lifetime would be
    // signed and then cut by every holder, so it is refused before anything is signed.
    const days = o.lifetimeDays ?? DEFAULT_LIFETIME_DAYS;
    if (!(days > 0 && days * 86_400_000 <= POLICY_MAX_LIFETIME_MS)) {
      throw err('CONFIG_INVALID', `lifetime-days must be above 0 and at most ${POLICY_MAX_LIFETIME_MS / 86_400_000}`, { lifetimeDays: String(days) });
    }
    const now = o.now ?? Date.now();
    const content = nextPolicyContent(this.published, {
      name: this.working.name, classes: this.working.classes, maxShareBytes: this.working.maxShareBytes,
      deny: this.working.deny.map((h) => Buffer.from(h, 'hex')).filter((b) => b.length === DENY_ENTRY_BYTES),
      approvals: (this.working.approved ?? []).map((a) => ({ manifestId: Buffer.from(a.manifestId, 'hex'), contentClass: a.contentClass, tags: a.tags })),
      allow: [...new Set((this.working.approved ?? []).flatMap((a) => a.allow))].map((h) => Buffer.from(h, 'hex')),
    }, { snapshot: o.snapshot, maxChain: o.maxChain, limits: o.limits });
    const raw = signPolicy(content, this.key, { validAfter: now, validUntil: now + Math.round(days * 86_400_000) });
    const prior = this.published?.chain.map((v) => v.raw) ?? [];
    const { state } = advancePolicy(this.published, [...(content.previous ? prior : []), raw], { moderator: this.fingerprint, now, limits: o.limits });
    await writeFileAtomic(path.join(this.dir, PUBLISHED_FILE), stateBundle(state), 0o600);
    this.published = state;
    return state;
  }
}
