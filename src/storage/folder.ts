// SPEC.md §9.15: folders. A folder is a *listing* — a JSON document mapping relative paths to the
// capabilities of files — stored like any file, with the manifest content type FOLDER_CONTENT_TYPE.
// The listing is flat (every file at any depth is one entry), its entries name files only, never
// folders, so a listing can neither nest nor loop. Every rule is checked on decode.
import { err } from '../errors';
import { formatCapability, parseCapability, type Capability } from './capability';

export const FOLDER_CONTENT_TYPE = 'application/vnd.bitcloud.folder+json';
export const FOLDER_VERSION = 1;
/** At most this many entries, and this many bytes of listing (SPEC.md §9.15). */
export const MAX_FOLDER_ENTRIES = 65_536;
export const MAX_FOLDER_BYTES = 16 * 1024 * 1024;
export const MAX_FOLDER_PATH_BYTES = 1024;

export interface FolderEntry {
  /** Relative path, components joined by "/" (SPEC.md §9.15 rules). */
  path: string;
  cap: Capability;
  size: number;
}

export interface Folder {
  entries: FolderEntry[];
}

/** A UTF-16 surrogate without its other half (text no UTF-8 can carry). */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * The path rules: 1..1024 UTF-8 bytes; components separated by "/", each non-empty, not "." or
 * "..", no "\\", no NUL or other control character. Returns the reason it fails, or null.
 */
export function folderPathProblem(p: string): string | null {
  if (typeof p !== 'string' || p.length === 0) return 'empty path';
  // SPEC.md §9.15: a path is UTF-8 text. A lone surrogate (a JSON "\ud800") has no UTF-8 form:
  // encoded it turns into U+FFFD, so "a\ud800" and "a\udc00" would name one file twice.
  if (LONE_SURROGATE.test(p)) return 'lone surrogate in path (not UTF-8 text)';
  if (Buffer.byteLength(p, 'utf8') > MAX_FOLDER_PATH_BYTES) return `path longer than ${MAX_FOLDER_PATH_BYTES} bytes`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f\\]/.test(p)) return 'control character or backslash in path';
  for (const c of p.split('/')) {
    if (c === '') return 'empty path component (leading, trailing or double "/")';
    if (c === '.' || c === '..') return '"." or ".." in path';
  }
  return null;
}

export function encodeFolder(f: Folder): Buffer {
  const seen = new Set<string>();
  for (const e of f.entries) {
    const bad = folderPathProblem(e.path);
    if (bad) throw err('FOLDER_PATH_INVALID', `${JSON.stringify(e.path)}: ${bad}`);
    if (seen.has(e.path)) throw err('FOLDER_PATH_INVALID', `${JSON.stringify(e.path)} listed twice`);
    seen.add(e.path);
  }
  if (f.entries.length > MAX_FOLDER_ENTRIES) throw err('FOLDER_TOO_LARGE', `a folder holds at most ${MAX_FOLDER_ENTRIES} files`, { entries: f.entries.length });
  // SPEC.md §9.15: the encoder refuses what every reader would (a file beside a folder of its name).
  const clash = fileAndFolder(seen);
  if (clash !== null) throw err('FOLDER_PATH_INVALID', `${JSON.stringify(clash)} is both a file and a folder`);
  const entries = [...f.entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((e) => ({ path: e.path, cap: formatCapability(e.cap), size: e.size }));
  const out = Buffer.from(JSON.stringify({ version: FOLDER_VERSION, entries }), 'utf8');
  if (out.length > MAX_FOLDER_BYTES) throw err('FOLDER_TOO_LARGE', `the listing exceeds ${MAX_FOLDER_BYTES} bytes`, { bytes: out.length });
  return out;
}

/** Decode and check a listing; anything wrong is FOLDER_MALFORMED (FOLDER_TOO_LARGE for size). */
export function decodeFolder(b: Uint8Array): Folder {
  if (b.length > MAX_FOLDER_BYTES) throw err('FOLDER_TOO_LARGE', `the listing exceeds ${MAX_FOLDER_BYTES} bytes`, { bytes: b.length });
  // SPEC.md §9.15: the listing is UTF-8; bytes that are not are refused, not turned into U+FFFD.
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(b);
  } catch {
    throw err('FOLDER_MALFORMED', 'the listing is not UTF-8');
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw err('FOLDER_MALFORMED', 'the listing is not JSON');
  }
  const o = v as { version?: unknown; entries?: unknown };
  if (!o || typeof o !== 'object' || o.version !== FOLDER_VERSION) throw err('FOLDER_MALFORMED', 'unsupported listing version', { version: o?.version });
  if (!Array.isArray(o.entries)) throw err('FOLDER_MALFORMED', 'entries must be a list');
  if (o.entries.length > MAX_FOLDER_ENTRIES) throw err('FOLDER_TOO_LARGE', `a folder holds at most ${MAX_FOLDER_ENTRIES} files`, { entries: o.entries.length });
  const seen = new Set<string>();
  const entries: FolderEntry[] = o.entries.map((e: unknown, i: number) => {
    const x = e as { path?: unknown; cap?: unknown; size?: unknown };
    if (!x || typeof x !== 'object' || typeof x.path !== 'string' || typeof x.cap !== 'string') throw err('FOLDER_MALFORMED', `entry ${i}: path and cap must be strings`);
    const bad = folderPathProblem(x.path);
    if (bad) throw err('FOLDER_MALFORMED', `entry ${i}: ${bad}`, { index: i });
    if (seen.has(x.path)) throw err('FOLDER_MALFORMED', `entry ${i}: path listed twice`, { index: i });
    seen.add(x.path);
    if (!Number.isSafeInteger(x.size) || (x.size as number) < 0) throw err('FOLDER_MALFORMED', `entry ${i}: size must be a non-negative integer`, { index: i });
    let cap: Capability;
    try { cap = parseCapability(x.cap); } catch { throw err('FOLDER_MALFORMED', `entry ${i}: not a capability`, { index: i }); }
    return { path: x.path, cap, size: x.size as number };
  });
  const clash = fileAndFolder(seen);
  if (clash !== null) throw err('FOLDER_MALFORMED', `${JSON.stringify(clash)} is both a file and a folder`);
  return { entries };
}

/**
 * A path of `paths` that is also a folder of another ("a" beside "a/b"), or null. SPEC.md §9.15: no
 * path is a prefix-folder of another. Linear in the listing's size bar the sort (a hostile listing
 * of deep paths cannot stall the reader): the paths are compared as UTF-8 with "/" turned into the
 * lowest byte, 0 (paths hold no control characters). In that order every path between p and
 * p + "/" + x starts with p + "/", so if p is a folder of any path it is a folder of the next one.
 */
function fileAndFolder(paths: Iterable<string>): string | null {
  const sorted = Array.from(paths, (path) => {
    const key = Buffer.from(path, 'utf8');
    for (let i = key.indexOf(0x2f); i !== -1; i = key.indexOf(0x2f, i + 1)) key[i] = 0;
    return { path, key };
  }).sort((a, b) => Buffer.compare(a.key, b.key));
  for (let i = 0; i + 1 < sorted.length; i++) {
    const p = sorted[i].key, q = sorted[i + 1].key;
    if (q.length > p.length && q[p.length] === 0 && q.subarray(0, p.length).equals(p)) return sorted[i].path;
  }
  return null;
}

/** Look a path up: the entry, or whether it names a folder inside the listing (a prefix). */
export function lookupFolder(f: Folder, p: string): { entry: FolderEntry } | { dir: true } | null {
  const hit = f.entries.find((e) => e.path === p);
  if (hit) return { entry: hit };
  if (p === '' || f.entries.some((e) => e.path.startsWith(p + '/'))) return { dir: true };
  return null;
}
