// SPEC.md §9.15: putting and getting folders. `putFolder` stores every regular file under a folder
// (each like `bitcloud put FILE`), then the listing that maps their paths to their capabilities,
// itself stored as a file; the listing's capability names the whole folder. `getFolder` reads the
// listing and fetches each file into the output folder, never outside it. Without -o that folder is
// the stored name, and getFolder writes only into one it made itself (SPEC.md §9.9.1): the marker
// FOLDER_GET_MARKER proves it until the whole folder is fetched.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from '../crypto/primitives';
import { err } from '../errors';
import { fsyncDir, isTempNameOf, writeFileAtomic } from '../ops/fsutil';
import { parseCapability, type Capability } from '../storage/capability';
import { ChunkKind } from '../storage/encode';
import { decodeFolder, encodeFolder, FOLDER_CONTENT_TYPE, folderPathProblem, MAX_FOLDER_BYTES, MAX_FOLDER_ENTRIES, type Folder, type FolderEntry } from '../storage/folder';
import type { Manifest } from '../storage/manifest';
import { defaultOutputName, fetchChunk, fetchManifest, getFile, type GetOptions, type GetStats } from './storage-client-get';
import { manifestName, putFile, type PutOptions, type PutResult } from './storage-client-put';
import type { StorageClient } from './storage-client';
import { mkdirOutput, notWritable } from './storage-client-resume';

export interface PutFolderResult extends PutResult {
  /** Files stored (entries of the listing). */
  files: number;
  /** Plaintext bytes of all the files. */
  totalBytes: number;
}

/**
 * Every regular file under `dir`, as folder paths ("/"-joined), sorted. Symlinks and specials are
 * skipped. A get's marker, or the marker's temporary file, anywhere in it is FOLDER_PATH_INVALID
 * (SPEC.md §9.15).
 */
export async function listFolder(dir: string): Promise<string[]> {
  const out: string[] = [];
  // The name of `dir` itself, as the leftover checks read it: `.`, `..` or a link given for a get's
  // temporary folder still names that folder (SPEC.md §9.15).
  const top = path.basename(await fsp.realpath(dir).catch(() => path.resolve(dir)));
  const walk = async (rel: string): Promise<void> => {
    const entries = await fsp.readdir(path.join(dir, rel), { withFileTypes: true });
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(r);
      else if (e.isFile()) {
        // SPEC.md §9.15: a folder holding a get's marker is still being fetched (at its top or in a
        // sub-folder): storing it would store the marker as a file, and a half-fetched folder.
        if (e.name === FOLDER_GET_MARKER) {
          const where = rel ? `${JSON.stringify(rel)} in ${dir}` : dir;
          // A get's temporary folder (`<name>.bitcloud-new-<12 hex>`, by the same rule as the marker's
          // temporary file below) holding it was left by a get stopped before its rename: no get
          // resumes it (SPEC.md §9.9.1), so it can only be removed.
          if (isNewFolderName(rel ? path.basename(rel) : top)) {
            throw err('FOLDER_PATH_INVALID', `${where} is the leftover of a get stopped before it renamed its new folder (it holds ${JSON.stringify(FOLDER_GET_MARKER)}): no get resumes it and nothing fetched is in it; it may be removed`, { path: path.join(dir, ...r.split('/')) });
          }
          throw err('FOLDER_PATH_INVALID', `${where} is an unfinished get (it holds ${JSON.stringify(FOLDER_GET_MARKER)}): finish it with bitcloud get, or remove the marker, then put it`, { path: path.join(dir, ...r.split('/')) });
        }
        // SPEC.md §9.15: the marker's temporary file, left by a get killed before renaming it onto
        // the marker: a leftover of a stopped get (its folder too, when a get's temporary folder
        // holds nothing else), never the reader's file.
        if (isTempNameOf(e.name, FOLDER_GET_MARKER)) throw markerTempLeftover(dir, rel, rel ? path.basename(rel) : top, r, entries);
        const bad = folderPathProblem(r);
        if (bad) throw err('FOLDER_PATH_INVALID', `${JSON.stringify(r)} cannot be stored in a folder: ${bad}`);
        out.push(r);
        if (out.length > MAX_FOLDER_ENTRIES) throw err('FOLDER_TOO_LARGE', `a folder holds at most ${MAX_FOLDER_ENTRIES} files`);
      }
    }
  };
  await walk('');
  return out.sort();
}

/** A get's temporary folder: `<name>.bitcloud-new-<12 hex>` (newFolderName). */
const NEW_FOLDER_NAME = /\.bitcloud-new-[0-9a-f]{12}$/;

/**
 * Whether a folder's base name is a get's temporary folder's (SPEC.md §9.9.1, §9.15): the one
 * rule both leftover checks of listFolder use, so a name only like it is an ordinary folder.
 */
function isNewFolderName(name: string): boolean {
  return NEW_FOLDER_NAME.test(name);
}

/**
 * SPEC.md §9.15: FOLDER_PATH_INVALID for the marker's temporary file found at `r` (in folder
 * `rel`, named `name`, whose `entries` were read): naming the folder when it is a get's temporary folder that
 * holds nothing but such files, else the file.
 */
function markerTempLeftover(dir: string, rel: string, name: string, r: string, entries: fs.Dirent[]): unknown {
  const onlyTemps = entries.every((x) => x.isFile() && isTempNameOf(x.name, FOLDER_GET_MARKER));
  if (onlyTemps && isNewFolderName(name)) {
    const where = rel ? `${JSON.stringify(rel)} in ${dir}` : dir;
    return err('FOLDER_PATH_INVALID', `${where} is the leftover of a get stopped before it renamed its new folder (it holds only the temporary file of ${JSON.stringify(FOLDER_GET_MARKER)}): no get resumes it and nothing fetched is in it; it may be removed`,
      { path: rel ? path.join(dir, ...rel.split('/')) : dir });
  }
  return err('FOLDER_PATH_INVALID', `${JSON.stringify(r)} in ${dir} is the leftover of a stopped get (the temporary file of its marker ${JSON.stringify(FOLDER_GET_MARKER)}): nothing fetched is in it; it may be removed`,
    { path: path.join(dir, ...r.split('/')) });
}

/** Store a folder: each file, then the listing (SPEC.md §9.15). */
export async function putFolder(client: StorageClient, dir: string, o: PutOptions & { onFile?: (p: string, i: number, total: number) => void } = {}): Promise<PutFolderResult> {
  const files = await listFolder(dir);
  const entries: FolderEntry[] = [];
  let shares = 0, bytesSent = 0, relocated = 0, totalBytes = 0;
  for (let i = 0; i < files.length; i++) {
    o.onFile?.(files[i], i, files.length);
    const r = await putFile(client, path.join(dir, ...files[i].split('/')), { ...o, name: undefined, contentType: undefined, fileKey: undefined });
    entries.push({ path: files[i], cap: parseCapability(r.capability), size: r.size });
    shares += r.shares; bytesSent += r.bytesSent; relocated += r.relocated; totalBytes += r.size;
  }
  const listing = encodeFolder({ entries });
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-folder-'));
  try {
    const file = path.join(tmp, 'listing.json');
    await fsp.writeFile(file, listing, { mode: 0o600 });
    // SPEC.md §9.4, §9.15: the listing's name is the folder's base name when a manifest can carry it.
    const r = await putFile(client, file, { ...o, name: manifestName(path.resolve(dir)), contentType: FOLDER_CONTENT_TYPE, fileKey: undefined });
    return { ...r, shares: r.shares + shares, bytesSent: r.bytesSent + bytesSent, relocated: r.relocated + relocated, files: entries.length, totalBytes };
  } finally {
    await fsp.rm(tmp, { recursive: true, force: true });
  }
}

export function isFolderManifest(m: Manifest): boolean {
  return m.contentType === FOLDER_CONTENT_TYPE;
}

/** Read a folder's listing whole (it is at most MAX_FOLDER_BYTES, checked before any chunk is fetched). */
export async function readFolderListing(client: StorageClient, cap: Capability, m: Manifest, stats: GetStats,
  fetch: (i: number) => Promise<Buffer> = (i) => fetchChunk(client, cap.fileKey, m.layout, i, ChunkKind.DATA, stats)): Promise<Folder> {
  if (!isFolderManifest(m)) throw err('FOLDER_MALFORMED', 'not a folder');
  if (m.layout.size > MAX_FOLDER_BYTES) throw err('FOLDER_TOO_LARGE', `the listing exceeds ${MAX_FOLDER_BYTES} bytes`, { bytes: m.layout.size });
  const parts: Buffer[] = [];
  for (let i = 0; i < m.layout.chunks.length; i++) parts.push(await fetch(i));
  return decodeFolder(Buffer.concat(parts));
}

export interface GetFolderResult {
  path: string;
  files: number;
  size: number;
}

/**
 * SPEC.md §9.9.1: the file a folder get without -o writes in the folder it made, holding the
 * listing's manifest id (never the key), removed once every file is fetched.
 */
export const FOLDER_GET_MARKER = '.bitcloud-folder-get';

/**
 * Fetch a folder into `out` (-o; created if missing), or, when `out` is undefined, into the stored
 * name in `o.dir` (default the current folder), which must not exist unless an unfinished get of
 * the same folder made it (IO_OUTPUT_EXISTS, SPEC.md §9.9.1). Every path stays inside the output
 * folder (FOLDER_PATH_INVALID).
 */
export async function getFolder(client: StorageClient, cap: Capability, out: string | undefined, o: { manifest?: Manifest; dir?: string; onFile?: (p: string, i: number, total: number) => void; placementFor?: GetOptions['placementFor'] } = {}): Promise<GetFolderResult> {
  const stats: GetStats = { corruptShares: 0, missingShares: 0, sharesFetched: 0 };
  const m = o.manifest ?? await fetchManifest(client, cap, stats);
  const folder = await readFolderListing(client, cap, m, stats);
  const root = path.resolve(o.dir ?? '.', out ?? defaultOutputName(m, cap.manifestId));
  const marker = path.join(root, FOLDER_GET_MARKER);
  if (out !== undefined) await mkdirOutput(root, 0o700);
  else {
    // The marker is ours: an entry of that name would replace it, and be removed with it; one below
    // a folder of that name would need a folder where the marker is (IO_NOT_A_DIRECTORY once <out>
    // is made, and again at every rerun, which resumes into it).
    if (folder.entries.some((e) => e.path === FOLDER_GET_MARKER || e.path.startsWith(FOLDER_GET_MARKER + '/'))) {
      throw err('FOLDER_PATH_INVALID', `${JSON.stringify(FOLDER_GET_MARKER)} is the name a get gives its own marker; give -o FOLDER to fetch this folder`);
    }
    await claimFolder(root, marker, cap.manifestId.toString('hex'));
  }
  const realRoot = await fsp.realpath(root);
  const insideRoot = (real: string) => real === realRoot || real.startsWith(realRoot + path.sep);
  const checked = new Set<string>([root]);
  // SPEC.md §10.8: the nodes admitting a class come from every moderator's policy; a folder asks
  // once per class for all its files, not once per file. A lookup that failed is not kept: the
  // next file of the class asks again (as a lone get would), rather than every file going without.
  const placements = new Map<string, Promise<readonly string[] | null>>();
  const placementFor = o.placementFor && ((cls: string): Promise<readonly string[] | null> => {
    let p = placements.get(cls);
    if (!p) {
      const q = o.placementFor!(cls);
      placements.set(cls, (p = q));
      q.catch(() => { if (placements.get(cls) === q) placements.delete(cls); });
    }
    return p;
  });
  let size = 0;
  for (let i = 0; i < folder.entries.length; i++) {
    const e = folder.entries[i];
    const target = path.resolve(root, ...e.path.split('/'));
    // decodeFolder refused ".." and separators already; this is the last line of defence.
    if (!target.startsWith(root + path.sep)) throw err('FOLDER_PATH_INVALID', `${JSON.stringify(e.path)} would leave ${root}`);
    o.onFile?.(e.path, i, folder.entries.length);
    // A symlink planted in the output folder must not redirect a write outside it, nor the making of
    // the folders on the way (SPEC.md §9.15: nothing is written there): each folder that exists
    // already must lie inside the output folder before any is made below it.
    await checkFoldersInside(root, path.dirname(target), checked, insideRoot, e.path);
    await mkdirOutput(path.dirname(target), 0o700);
    const real = await fsp.realpath(path.dirname(target));
    if (!insideRoot(real)) throw err('FOLDER_PATH_INVALID', `${JSON.stringify(e.path)} would leave ${root}`);
    const em = await fetchManifest(client, e.cap, stats);
    if (isFolderManifest(em)) throw err('FOLDER_NESTED', `${JSON.stringify(e.path)} names a folder; listings are flat`);
    const r = await getFile(client, e.cap, { output: target, placementFor });
    size += r.size;
  }
  if (out === undefined) {
    await fsp.rm(marker, { force: true });
    await fsyncDir(root);
  }
  return { path: root, files: folder.entries.length, size };
}

/**
 * SPEC.md §9.9.1: a folder get without -o writes only into a folder it made. `root` missing: the
 * folder is made under a temporary name beside it (`<root>.bitcloud-new-<hex>`, newFolderName,
 * made exclusively, 0700), the marker written in it (atomically, 0600) and both fsynced, then it is renamed to `root`
 * once `root` is found missing just before (ENOENT, or ENOTDIR: a folder on the way is no longer
 * one, and the rename then fails ENOTDIR too): a get stopped at any step leaves nothing at `root`,
 * or the marked folder a rerun resumes. The rename can replace only an empty folder made at `root`
 * in between (rename(2) refuses any other; Node has no rename that refuses to replace): no file is
 * lost, but one made by a concurrent `get -o root` is then shared by both gets. `root` there already (anything, a
 * link too, or made meanwhile by another process): only a folder holding the marker of this same
 * capability (an unfinished get of it) is resumed; anything else is IO_OUTPUT_EXISTS, nothing written.
 */
async function claimFolder(root: string, marker: string, id: string): Promise<void> {
  const exists = () => err('IO_OUTPUT_EXISTS', `${root} exists already; give -o ${root} to fetch the folder into it, or -o another path`, { path: root });
  if (!await lexists(root)) {
    const parent = path.dirname(root);
    await mkdirOutput(parent, 0o700);
    const tmp = path.join(parent, newFolderName(path.basename(root)));
    try {
      await fsp.mkdir(tmp, { mode: 0o700 });
    } catch (e) {
      throw notWritable(e, tmp, { nothingKept: true });
    }
    try {
      try {
        await writeFileAtomic(path.join(tmp, FOLDER_GET_MARKER), id + '\n', 0o600, { mkdir: false });
      } catch (e) {
        // Like the get's other output writes: EACCES, EPERM, EROFS, ENOSPC, EDQUOT are IO_NOT_WRITABLE.
        throw notWritable(e, path.join(tmp, FOLDER_GET_MARKER), { nothingKept: true });
      }
      if (await lexists(root)) throw exists();
      try {
        await fsp.rename(tmp, root);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // Made at `root` meanwhile: a folder with entries (ENOTEMPTY, EEXIST), or a file (ENOTDIR).
        if (code === 'ENOTEMPTY' || code === 'EEXIST' || code === 'ENOTDIR') throw exists();
        throw notWritable(e, root, { nothingKept: true });
      }
    } catch (e) {
      // The get's own error is the one to report: a temporary folder that cannot be removed is
      // only a leftover `*.bitcloud-new-*`, which the reader may remove (SPEC.md §9.9.1).
      await fsp.rm(tmp, { recursive: true, force: true }).catch(() => {});
      throw e;
    }
    await fsyncDir(parent);
    return;
  }
  const ours = async (): Promise<boolean> => {
    const st = await fsp.lstat(root);
    if (!st.isDirectory()) return false;
    const ms = await fsp.lstat(marker).catch(() => null);
    return ms !== null && ms.isFile() && (await fsp.readFile(marker, 'utf8')).trim() === id;
  };
  if (await ours().catch(() => false)) return;
  throw exists();
}

/**
 * SPEC.md §9.9.1: the suffix (then random hex) of the folder a get without -o makes before renaming
 * it to `<out>`; one left by a get stopped before the rename holds at most the marker and the
 * marker's temporary file.
 */
export const FOLDER_NEW_SUFFIX = '.bitcloud-new-';

/** The longest file name most filesystems take (NAME_MAX), in bytes. */
const NAME_MAX_BYTES = 255;

/**
 * `<name>.bitcloud-new-<12 hex>`, `name` cut short (at a character boundary) when the whole would
 * pass NAME_MAX_BYTES: a stored name may be 255 bytes itself (SPEC.md §9.4, §9.9.1).
 */
function newFolderName(name: string): string {
  const suffix = `${FOLDER_NEW_SUFFIX}${randomBytes(6).toString('hex')}`;
  const room = NAME_MAX_BYTES - suffix.length;
  let cut = '';
  let bytes = 0;
  for (const ch of name) {
    bytes += Buffer.byteLength(ch, 'utf8');
    if (bytes > room) break;
    cut += ch;
  }
  return cut + suffix;
}

/**
 * Whether anything (a link too, even a dangling one) stands at `p`. Missing (ENOENT), or below a
 * file (ENOTDIR: making the folders on the way then names it, IO_NOT_A_DIRECTORY), is "no".
 */
async function lexists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw notWritable(e, p);
  }
}

/**
 * FOLDER_PATH_INVALID unless every folder on the way from `root` down to `dir` that exists already
 * resolves (through any symlink) inside the output folder; a dangling symlink is refused too. The
 * first missing one ends the walk: what lies below it is made fresh. `checked` holds folders
 * already found inside (they are added here), so each is looked at once.
 */
async function checkFoldersInside(root: string, dir: string, checked: Set<string>, insideRoot: (real: string) => boolean, entry: string): Promise<void> {
  let cur = root;
  for (const part of path.relative(root, dir).split(path.sep)) {
    if (part === '') continue;
    cur = path.join(cur, part);
    if (checked.has(cur)) continue;
    try {
      await fsp.lstat(cur);
    } catch (e) {
      // Missing, or below a file (mkdirOutput then names the file: IO_NOT_A_DIRECTORY).
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw e;
    }
    let real: string;
    try {
      real = await fsp.realpath(cur);
    } catch {
      throw err('FOLDER_PATH_INVALID', `${JSON.stringify(entry)} goes through a broken link in ${root}`);
    }
    if (!insideRoot(real)) throw err('FOLDER_PATH_INVALID', `${JSON.stringify(entry)} would leave ${root}`);
    checked.add(cur);
  }
}

/** Whether a local path is a folder (for `bitcloud put`). */
export function isDirectory(p: string): boolean {
  try { return fs.statSync(p).isDirectory(); } catch { return false; }
}
