// SPEC.md §3 (keys and key files): Ed25519 identity keys, X25519 onion keys, fingerprints,
// and the on-disk key file format. SPEC.md §3.3: onion keys rotate (default weekly) and the
// previous one is kept for one rotation so that clients holding an older consensus still succeed.
import { constants as fsConstants } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { err, errorCode, isBitcloudError } from '../errors';
import { writeFileAtomic, writeFileAtomicExclusive, mkdirDurable } from '../ops/fsutil';
import { Reader, Writer } from '../wire/bytes';
import {
  constantTimeEqual, ed25519FromSeed, ed25519Generate, wipe, x25519Generate, x25519Public,
  ED25519_PUBLIC_BYTES, ED25519_SEED_BYTES, X25519_BYTES,
  type Ed25519KeyPair, type X25519KeyPair,
} from './primitives';

export type { Ed25519KeyPair, X25519KeyPair } from './primitives';

// ---- fingerprints (SPEC.md §0, §3.1) ----

const FINGERPRINT_RE = /^[0-9a-f]{64}$/;

/** SPEC.md §3.1: the fingerprint is the 64 lowercase hex characters of the 32-byte Ed25519 identity key. */
export function fingerprint(publicKey: Uint8Array): string {
  if (publicKey.length !== ED25519_PUBLIC_BYTES) {
    throw err('KEY_BAD_FINGERPRINT', `an identity key is ${ED25519_PUBLIC_BYTES} bytes, got ${publicKey.length}`);
  }
  return Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.length).toString('hex');
}

/** Parse a fingerprint; only the canonical form (64 lowercase hex) is accepted. */
export function parseFingerprint(s: string): Buffer {
  if (typeof s !== 'string' || !FINGERPRINT_RE.test(s)) {
    throw err('KEY_BAD_FINGERPRINT', 'a fingerprint is exactly 64 lowercase hexadecimal characters');
  }
  return Buffer.from(s, 'hex');
}

// ---- key files (SPEC.md §3.2) ----

/** Every key file starts with a 32-byte type header: an ASCII tag padded with NUL bytes. */
export const KEY_FILE_HEADER_LEN = 32;
export const ED25519_SECRET_TAG = '== bitcloud-ed25519v1-secret ==';
export const X25519_SECRET_TAG = '== bitcloud-x25519v1-secret ==';
/** header | seed (32) | public key (32) */
export const ED25519_SECRET_FILE_LEN = KEY_FILE_HEADER_LEN + ED25519_SEED_BYTES + ED25519_PUBLIC_BYTES; // 32 + 32 + 32 = 96
/** header | created-at (u64 BE, ms since the epoch) | secret scalar (32) | public key (32) */
export const X25519_SECRET_FILE_LEN = KEY_FILE_HEADER_LEN + 8 + X25519_BYTES + X25519_BYTES; // 32 + 8 + 32 + 32 = 104
/** Key files are written 0600; a file readable or writable by group or others is refused. */
export const KEY_FILE_MODE = 0o600;
export const DATA_DIR_MODE = 0o700;

function header(tag: string): Buffer {
  const h = Buffer.alloc(KEY_FILE_HEADER_LEN);
  if (h.write(tag, 'ascii') !== tag.length) throw err('KEY_MALFORMED', `key file tag too long: ${tag}`);
  return h;
}
const ED25519_HEADER = header(ED25519_SECRET_TAG);
const X25519_HEADER = header(X25519_SECRET_TAG);

/**
 * Read a key file after checking it is a regular file of the exact expected size whose mode
 * gives group and others nothing. Reads through one file handle so the checks apply to the
 * bytes read. Never writes, renames or deletes anything.
 */
async function readKeyFile(file: string, expectedLen: number): Promise<Buffer> {
  let fh: fsp.FileHandle;
  try {
    // SPEC.md §3.2.3: O_NONBLOCK so that a FIFO (or a device) opens at once and is refused as
    // not a regular file below, instead of blocking until a writer appears. It changes nothing
    // for a regular file.
    fh = await fsp.open(file, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw err('KEY_NOT_FOUND', `no key file at ${file}`, { file }, e);
    if (code === 'EACCES' || code === 'EPERM') throw err('KEY_BAD_MODE', `cannot read key file ${file}`, { file }, e);
    throw err('KEY_CORRUPT', `cannot open key file ${file}: ${code ?? String(e)}`, { file }, e);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw err('KEY_CORRUPT', `${file} is not a regular file`, { file });
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      throw err('KEY_BAD_MODE', `key file ${file} has mode ${(st.mode & 0o777).toString(8)}; it must not be accessible to group or others (use 600)`, { file, mode: st.mode & 0o777 });
    }
    if (st.size !== expectedLen) {
      throw err('KEY_CORRUPT', `key file ${file} is ${st.size} bytes, expected ${expectedLen}`, { file, size: st.size });
    }
    const buf = Buffer.alloc(expectedLen);
    const { bytesRead } = await fh.read(buf, 0, expectedLen, 0);
    if (bytesRead !== expectedLen) throw err('KEY_CORRUPT', `key file ${file} shrank while being read`, { file });
    return buf;
  } finally {
    await fh.close();
  }
}

function checkHeader(buf: Buffer, expected: Buffer, file: string): void {
  if (!buf.subarray(0, KEY_FILE_HEADER_LEN).equals(expected)) {
    throw err('KEY_CORRUPT', `key file ${file} does not start with the expected type header`, { file });
  }
}

export async function saveEd25519Secret(file: string, kp: Ed25519KeyPair): Promise<void> {
  const body = ed25519SecretFile(kp);
  try {
    await writeFileAtomic(file, body, KEY_FILE_MODE);
  } finally {
    wipe(body);
  }
}

/**
 * Writes the key file only if `file` does not exist (never replaces one, whoever made it in the
 * meantime). Resolves true when this call made it, false when a file was there (nothing written).
 */
export async function saveEd25519SecretExclusive(file: string, kp: Ed25519KeyPair): Promise<boolean> {
  const body = ed25519SecretFile(kp);
  try {
    return await writeFileAtomicExclusive(file, body, KEY_FILE_MODE);
  } finally {
    wipe(body);
  }
}

function ed25519SecretFile(kp: Ed25519KeyPair): Buffer {
  if (kp.secretKey.length !== 64 || kp.publicKey.length !== ED25519_PUBLIC_BYTES) throw err('KEY_MALFORMED', 'not an Ed25519 key pair');
  return new Writer(ED25519_SECRET_FILE_LEN, 'Ed25519 key file', { malformed: 'KEY_MALFORMED' })
    .bytes(ED25519_HEADER).bytes(kp.secretKey.subarray(0, ED25519_SEED_BYTES)).bytes(kp.publicKey).finish();
}

export async function loadEd25519Secret(file: string): Promise<Ed25519KeyPair> {
  const buf = await readKeyFile(file, ED25519_SECRET_FILE_LEN);
  try {
    checkHeader(buf, ED25519_HEADER, file);
    const r = new Reader(buf, `key file ${file}`, { truncated: 'KEY_CORRUPT', malformed: 'KEY_CORRUPT', detail: { file } });
    r.view(KEY_FILE_HEADER_LEN, 'header');
    const seed = r.view(ED25519_SEED_BYTES, 'seed');
    const storedPublic = r.view(ED25519_PUBLIC_BYTES, 'public key');
    const kp = ed25519FromSeed(seed);
    // The stored public key is redundant; a mismatch means the file was damaged.
    if (!constantTimeEqual(kp.publicKey, storedPublic)) throw err('KEY_CORRUPT', `key file ${file}: public key does not match the secret seed`, { file });
    return kp;
  } finally {
    wipe(buf);
  }
}

/** Save an X25519 key pair with its creation time (ms since the epoch; default now). */
export async function saveX25519Secret(file: string, kp: X25519KeyPair, createdAt: number = Date.now()): Promise<void> {
  const body = x25519SecretFile(kp, createdAt);
  try {
    await writeFileAtomic(file, body, KEY_FILE_MODE);
  } finally {
    wipe(body);
  }
}

/** saveX25519Secret, only if `file` does not exist: resolves true when this call made it, false when a file was there (nothing written). */
export async function saveX25519SecretExclusive(file: string, kp: X25519KeyPair, createdAt: number = Date.now()): Promise<boolean> {
  const body = x25519SecretFile(kp, createdAt);
  try {
    return await writeFileAtomicExclusive(file, body, KEY_FILE_MODE);
  } finally {
    wipe(body);
  }
}

function x25519SecretFile(kp: X25519KeyPair, createdAt: number): Buffer {
  if (kp.secretKey.length !== X25519_BYTES || kp.publicKey.length !== X25519_BYTES) throw err('KEY_MALFORMED', 'not an X25519 key pair');
  if (!Number.isSafeInteger(createdAt) || createdAt < 0) throw err('KEY_MALFORMED', `bad key creation time ${createdAt}`);
  return new Writer(X25519_SECRET_FILE_LEN, 'X25519 key file', { malformed: 'KEY_MALFORMED' })
    .bytes(X25519_HEADER).u64(createdAt, 'created-at').bytes(kp.secretKey).bytes(kp.publicKey).finish();
}

/** Load an X25519 key file together with its recorded creation time. */
export async function readX25519SecretFile(file: string): Promise<{ keyPair: X25519KeyPair; createdAt: number }> {
  const buf = await readKeyFile(file, X25519_SECRET_FILE_LEN);
  try {
    checkHeader(buf, X25519_HEADER, file);
    const r = new Reader(buf, `key file ${file}`, { truncated: 'KEY_CORRUPT', malformed: 'KEY_CORRUPT', detail: { file } });
    r.view(KEY_FILE_HEADER_LEN, 'header');
    const createdAt = r.u64('creation time');
    const secretKey = r.bytes(X25519_BYTES, 'secret key');
    const publicKey = x25519Public(secretKey);
    if (!constantTimeEqual(publicKey, r.view(X25519_BYTES, 'public key'))) {
      wipe(secretKey);
      throw err('KEY_CORRUPT', `key file ${file}: public key does not match the secret key`, { file });
    }
    return { keyPair: { publicKey, secretKey }, createdAt };
  } finally {
    wipe(buf);
  }
}

export async function loadX25519Secret(file: string): Promise<X25519KeyPair> {
  return (await readX25519SecretFile(file)).keyPair;
}

// ---- a node's keys in its data directory (SPEC.md §3.3) ----

export interface NodeKeys {
  identity: Ed25519KeyPair;
  onion: X25519KeyPair;
  /** The onion key replaced at the last rotation, still accepted in CREATE2 for one more period. */
  previousOnion?: X25519KeyPair;
  /** When the current onion key was made (ms since the epoch). */
  onionCreatedAt: number;
}

export const IDENTITY_KEY_FILE = 'identity.key';
export const ONION_KEY_FILE = 'onion.key';
export const PREVIOUS_ONION_KEY_FILE = 'onion.key.old';
export const DEFAULT_ONION_ROTATION_MS = 7 * 24 * 3600 * 1000;

async function loadOr<T>(load: () => Promise<T>): Promise<T | undefined> {
  try {
    return await load();
  } catch (e) {
    if (isBitcloudError(e, 'KEY_NOT_FOUND')) return undefined;
    throw e;
  }
}

/**
 * What a running node found at identity.key (SPEC.md §3.3): the identity it loaded at start
 * ('same'), no file, a valid file holding another key, or a file refused by §3.2.3.
 */
export type IdentityFileState = 'same' | 'missing' | 'changed' | 'refused';

/**
 * SPEC.md §3.3: rotate the onion key while the node runs. Every `checkMs` (default: a tenth of the
 * rotation period, at most an hour and at least a second) it calls recheckNodeKeys, which
 * rotates a key that has reached `onionRotationMs`; when the onion key changed it hands the new keys to `onRotate` (the
 * daemon swaps them in and republishes its descriptor). The identity is always the one in
 * `current()`: identity.key is never created or replaced while running (SPEC.md §3.2.3); when it
 * is missing, changed or refused, `onIdentityFile` hears so, once per change of what was found.
 * Errors are reported, never thrown.
 */
export function startOnionRotation(dataDir: string, o: {
  onionRotationMs?: number; checkMs?: number; current: () => NodeKeys;
  onRotate: (keys: NodeKeys) => void; onError?: (e: unknown) => void;
  onIdentityFile?: (state: IdentityFileState, e?: unknown) => void;
}): { stop(): void } {
  const rotation = o.onionRotationMs ?? DEFAULT_ONION_ROTATION_MS;
  const every = o.checkMs ?? Math.max(1000, Math.min(3_600_000, Math.floor(rotation / 10)));
  let busy = false;
  let lastState: IdentityFileState = 'same';
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    const cur = o.current();
    recheckNodeKeys(dataDir, cur.identity, { onionRotationMs: rotation }).then(({ keys: k, identityFile, identityError }) => {
      if (identityFile !== lastState) { lastState = identityFile; o.onIdentityFile?.(identityFile, identityError); }
      if (!k.onion.publicKey.equals(cur.onion.publicKey)) o.onRotate(k);
    }, (e) => o.onError?.(e)).finally(() => { busy = false; });
  }, every);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/**
 * Load a node's keys from `dataDir` at start, creating what is missing (the folder with mode
 * 0700, key files 0600). When the onion key is at least `onionRotationMs` old (default 7 days) it
 * is rotated: the current key moves to onion.key.old and a new one is made. A corrupt or
 * wrong-mode key file is an error, never silently replaced. A running node checks again with
 * recheckNodeKeys, which never makes an identity.
 */
export async function loadOrCreateNodeKeys(dataDir: string, opts: { onionRotationMs?: number; now?: number } = {}): Promise<NodeKeys> {
  const rotation = opts.onionRotationMs ?? DEFAULT_ONION_ROTATION_MS;
  const now = opts.now ?? Date.now();
  if (!(rotation > 0)) throw err('KEY_MALFORMED', `onion key rotation period must be positive, got ${rotation}`);
  await mkdirDurable(dataDir, DATA_DIR_MODE);

  const idFile = path.join(dataDir, IDENTITY_KEY_FILE);
  let identity = await loadOr(() => loadEd25519Secret(idFile));
  if (!identity) {
    // SPEC.md §3.3 step 2: created once, never replaced. Another process starting on this folder
    // may have made it since the look above; the identity on disk is then the node's.
    const made = ed25519Generate();
    identity = await saveEd25519SecretExclusive(idFile, made) ? made : await loadEd25519Secret(idFile);
  }
  return { identity, ...await loadOrRotateOnion(dataDir, rotation, now) };
}

/**
 * SPEC.md §3.3, while the node runs: the periodic check. It keeps `identity` (the one the node
 * loaded at start) whatever identity.key now holds and never writes identity.key (SPEC.md
 * §3.2.3: a running node does not change its fingerprint), reporting what it found there. The
 * onion key is loaded and rotated as at start.
 */
export async function recheckNodeKeys(dataDir: string, identity: Ed25519KeyPair, opts: { onionRotationMs?: number; now?: number } = {}): Promise<{
  keys: NodeKeys; identityFile: IdentityFileState; identityError?: unknown;
}> {
  const rotation = opts.onionRotationMs ?? DEFAULT_ONION_ROTATION_MS;
  const now = opts.now ?? Date.now();
  if (!(rotation > 0)) throw err('KEY_MALFORMED', `onion key rotation period must be positive, got ${rotation}`);
  await mkdirDurable(dataDir, DATA_DIR_MODE);
  let identityFile: IdentityFileState;
  let identityError: unknown;
  try {
    const onDisk = await loadEd25519Secret(path.join(dataDir, IDENTITY_KEY_FILE));
    identityFile = constantTimeEqual(onDisk.publicKey, identity.publicKey) ? 'same' : 'changed';
    wipe(onDisk.secretKey);
  } catch (e) {
    if (!isBitcloudError(e)) throw e;
    identityFile = isBitcloudError(e, 'KEY_NOT_FOUND') ? 'missing' : 'refused';
    identityError = e;
  }
  return { keys: { identity, ...await loadOrRotateOnion(dataDir, rotation, now) }, identityFile, identityError };
}

/** SPEC.md §3.3 steps 3–4: load onion.key.old and onion.key, creating or rotating onion.key. */
async function loadOrRotateOnion(dataDir: string, rotation: number, now: number): Promise<Omit<NodeKeys, 'identity'>> {
  const onionFile = path.join(dataDir, ONION_KEY_FILE);
  const oldFile = path.join(dataDir, PREVIOUS_ONION_KEY_FILE);
  let current = await loadOr(() => readX25519SecretFile(onionFile));
  let previous = (await loadOr(() => readX25519SecretFile(oldFile)))?.keyPair;
  if (!current) {
    // SPEC.md §3.3 step 4: a missing onion.key is made exclusively; one made meanwhile by another
    // process is the key on disk and is used instead, so no node serves a key that is not there.
    const made = { keyPair: x25519Generate(), createdAt: now };
    current = await saveX25519SecretExclusive(onionFile, made.keyPair, now) ? made : await readX25519SecretFile(onionFile);
  } else {
    const age = now - current.createdAt;
    // A creation time far in the future means a broken clock at creation; rotate as if expired.
    if (age >= rotation || age < -rotation) {
      // Old first: a crash between the two writes leaves both files holding the same
      // (still valid) key, and the next start simply rotates again.
      await saveX25519Secret(oldFile, current.keyPair, current.createdAt);
      previous = current.keyPair;
      current = { keyPair: x25519Generate(), createdAt: now };
      await saveX25519Secret(onionFile, current.keyPair, now);
    }
  }
  return { onion: current.keyPair, previousOnion: previous, onionCreatedAt: current.createdAt };
}

const IDENTITY_FILE_WARNING: Record<Exclude<IdentityFileState, 'same'>, string> = {
  missing: 'identity.key is missing; serving on with the identity loaded at start (restore the file before the next start, or the node starts with a new identity)',
  changed: 'identity.key now holds another identity; serving on with the identity loaded at start (the file takes effect at the next start)',
  refused: 'identity.key cannot be loaded; serving on with the identity loaded at start (the node will not start until it is repaired)',
};

/**
 * A running node's keys (SPEC.md §3.3): load or create them, then rotate the onion key on schedule
 * while the node runs (the previous key keeps answering CREATE2 for one more period). `onRotate`
 * hears each new set, after it is logged; the node republishes its descriptor there. The identity
 * stays the one loaded here for as long as the node runs (SPEC.md §3.2.3).
 */
export async function startNodeKeys(
  dataDir: string, rotationSeconds: number,
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void },
  onRotate: (keys: NodeKeys) => void,
): Promise<{ keys: NodeKeys; rotation: { stop(): void } }> {
  const onionRotationMs = rotationSeconds * 1000;
  let keys = await loadOrCreateNodeKeys(dataDir, { onionRotationMs });
  const rotation = startOnionRotation(dataDir, {
    onionRotationMs, current: () => keys,
    onRotate: (k) => {
      keys = k;
      log.info({ createdAt: new Date(k.onionCreatedAt).toISOString() }, 'onion key rotated');
      onRotate(k);
    },
    onError: (e) => log.warn({ code: errorCode(e) }, 'onion key rotation failed; keeping the current key'),
    onIdentityFile: (state, e) => {
      if (state === 'same') log.info({}, 'identity.key again holds the identity this node serves with');
      else log.warn({ state, code: e === undefined ? undefined : errorCode(e) }, IDENTITY_FILE_WARNING[state]);
    },
  });
  return { keys, rotation };
}
