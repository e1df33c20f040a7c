// SPEC.md §3: fingerprints, key files (format, mode 0600, refusal of corrupt or exposed files)
// and a node's keys in its data directory, with onion key rotation.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isBitcloudError, type ErrorCode } from '../../src/errors';
import {
  DEFAULT_ONION_ROTATION_MS, ED25519_SECRET_FILE_LEN, ED25519_SECRET_TAG, KEY_FILE_HEADER_LEN,
  X25519_SECRET_FILE_LEN, X25519_SECRET_TAG,
  fingerprint, loadEd25519Secret, loadOrCreateNodeKeys, loadX25519Secret, parseFingerprint,
  readX25519SecretFile, saveEd25519Secret, saveX25519Secret, startNodeKeys, type NodeKeys,
} from '../../src/crypto/keys';
import { ed25519Generate, ed25519Sign, ed25519Verify, x25519, x25519Generate } from '../../src/crypto/primitives';

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  let thrown: unknown;
  try { await p; } catch (e) { thrown = e; }
  expect(isBitcloudError(thrown), `expected ${code}, got ${String(thrown)}`).toBe(true);
  expect((thrown as { code: string }).code).toBe(code);
}

function expectCodeSync(fn: () => unknown, code: ErrorCode): void {
  let thrown: unknown;
  try { fn(); } catch (e) { thrown = e; }
  expect(isBitcloudError(thrown, code), `expected ${code}, got ${String(thrown)}`).toBe(true);
}

let dir: string;
beforeEach(async () => { dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'bitcloud-keys-')); });
afterEach(async () => { await fsp.rm(dir, { recursive: true, force: true }); });

const mode = (f: string) => fs.statSync(f).mode & 0o777;

describe('fingerprints', () => {
  it('are 64 lowercase hex characters of the identity key, and parse back', () => {
    const kp = ed25519Generate();
    const fp = fingerprint(kp.publicKey);
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    expect(parseFingerprint(fp).equals(kp.publicKey)).toBe(true);
  });

  it('refuse anything but the canonical form (KEY_BAD_FINGERPRINT)', () => {
    const fp = fingerprint(ed25519Generate().publicKey);
    for (const bad of [fp.toUpperCase(), fp.slice(1), fp + '0', ` ${fp}`, fp.replace(/^./, 'g'), '', `$${fp.slice(1)}`]) {
      expectCodeSync(() => parseFingerprint(bad), 'KEY_BAD_FINGERPRINT');
    }
    expectCodeSync(() => fingerprint(Buffer.alloc(31)), 'KEY_BAD_FINGERPRINT');
  });
});

describe('key files', () => {
  it('an Ed25519 identity round-trips through a 0600 file with the documented layout', async () => {
    const f = path.join(dir, 'id.key');
    const kp = ed25519Generate();
    await saveEd25519Secret(f, kp);
    expect(mode(f)).toBe(0o600);
    const raw = fs.readFileSync(f);
    expect(raw.length).toBe(ED25519_SECRET_FILE_LEN);
    expect(raw.length).toBe(96);
    expect(raw.subarray(0, KEY_FILE_HEADER_LEN).toString('ascii').replace(/\0+$/, '')).toBe(ED25519_SECRET_TAG);
    expect(raw.subarray(64).equals(kp.publicKey)).toBe(true);
    const back = await loadEd25519Secret(f);
    expect(back.publicKey.equals(kp.publicKey)).toBe(true);
    expect(back.secretKey.equals(kp.secretKey)).toBe(true);
    const msg = Buffer.from('signed with the loaded key');
    expect(ed25519Verify(ed25519Sign(msg, back.secretKey), msg, kp.publicKey)).toBe(true);
  });

  it('an X25519 onion key round-trips with its creation time', async () => {
    const f = path.join(dir, 'onion.key');
    const kp = x25519Generate();
    await saveX25519Secret(f, kp, 1_700_000_000_123);
    expect(mode(f)).toBe(0o600);
    expect(fs.statSync(f).size).toBe(X25519_SECRET_FILE_LEN);
    expect(fs.readFileSync(f).subarray(0, KEY_FILE_HEADER_LEN).toString('ascii').replace(/\0+$/, '')).toBe(X25519_SECRET_TAG);
    const back = await readX25519SecretFile(f);
    expect(back.createdAt).toBe(1_700_000_000_123);
    expect(back.keyPair.secretKey.equals(kp.secretKey)).toBe(true);
    const loaded = await loadX25519Secret(f);
    expect(loaded.publicKey.equals(kp.publicKey)).toBe(true);
    const peer = x25519Generate();
    expect(x25519(loaded.secretKey, peer.publicKey).equals(x25519(peer.secretKey, kp.publicKey))).toBe(true);
  });

  it('a missing file is KEY_NOT_FOUND', async () => {
    await expectCode(loadEd25519Secret(path.join(dir, 'nope.key')), 'KEY_NOT_FOUND');
    await expectCode(loadX25519Secret(path.join(dir, 'nope.key')), 'KEY_NOT_FOUND');
  });

  it('a group- or other-accessible file is KEY_BAD_MODE, and is left as it was', async () => {
    const f = path.join(dir, 'id.key');
    await saveEd25519Secret(f, ed25519Generate());
    const before = fs.readFileSync(f);
    for (const m of [0o640, 0o604, 0o660, 0o644, 0o606]) {
      fs.chmodSync(f, m);
      await expectCode(loadEd25519Secret(f), 'KEY_BAD_MODE');
      expect(mode(f)).toBe(m);
      expect(fs.readFileSync(f).equals(before)).toBe(true);
    }
  });

  it('a wrong header, a wrong length or a damaged key is KEY_CORRUPT, and nothing is touched', async () => {
    const idFile = path.join(dir, 'id.key');
    const onionFile = path.join(dir, 'onion.key');
    await saveEd25519Secret(idFile, ed25519Generate());
    await saveX25519Secret(onionFile, x25519Generate());
    const id = fs.readFileSync(idFile);
    const onion = fs.readFileSync(onionFile);
    const cases: [string, Buffer, (f: string) => Promise<unknown>][] = [
      ['truncated', id.subarray(0, id.length - 1), loadEd25519Secret],
      ['extended', Buffer.concat([id, Buffer.alloc(1)]), loadEd25519Secret],
      ['empty', Buffer.alloc(0), loadEd25519Secret],
      ['header byte flipped', Buffer.concat([Buffer.from([id[0] ^ 1]), id.subarray(1)]), loadEd25519Secret],
      ['seed and public key disagree', Buffer.concat([id.subarray(0, 40), Buffer.from([id[40] ^ 1]), id.subarray(41)]), loadEd25519Secret],
      ['an X25519 file read as Ed25519', onion, loadEd25519Secret],
      ['an Ed25519 file read as X25519', id, loadX25519Secret],
      ['X25519 public key damaged', Buffer.concat([onion.subarray(0, onion.length - 1), Buffer.from([onion[onion.length - 1] ^ 1])]), loadX25519Secret],
    ];
    for (const [name, bytes, load] of cases) {
      const f = path.join(dir, `case-${name.replace(/\W+/g, '-')}.key`);
      fs.writeFileSync(f, bytes, { mode: 0o600 });
      const st = fs.statSync(f);
      await expectCode(load(f), 'KEY_CORRUPT');
      expect(fs.readFileSync(f).equals(bytes), name).toBe(true);
      expect(fs.statSync(f).mtimeMs).toBe(st.mtimeMs);
    }
    // A directory where a key file should be.
    fs.mkdirSync(path.join(dir, 'adir.key'), { mode: 0o700 });
    await expectCode(loadEd25519Secret(path.join(dir, 'adir.key')), 'KEY_CORRUPT');
  });

  it.skipIf(process.platform === 'win32')('a FIFO where a key file should be is KEY_CORRUPT at once, without waiting for a writer (SPEC.md §3.2.3)', async () => {
    const fifo = path.join(dir, 'identity.key');
    execFileSync('mkfifo', ['-m', '600', fifo]);
    let settled = false;
    const load = loadEd25519Secret(fifo).finally(() => { settled = true; });
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<'hang'>((r) => { timer = setTimeout(() => r('hang'), 20_000); });
    try {
      const first = await Promise.race([load.then(() => 'loaded', (e: unknown) => e), hang]);
      expect(first, 'the load waited for a writer').not.toBe('hang');
      expect(isBitcloudError(first, 'KEY_CORRUPT'), String(first)).toBe(true);
      expect(fs.statSync(fifo).isFIFO()).toBe(true);
    } finally {
      clearTimeout(timer);
      if (!settled) { // release the blocked open so the worker thread is not left waiting
        fs.closeSync(fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK));
        await load.catch(() => undefined);
      }
    }
  });
});

describe('loadOrCreateNodeKeys', () => {
  const DAY = 24 * 3600 * 1000;

  it('two starts at once on an empty data folder serve the identity and onion key on disk (SPEC.md §3.3 steps 2, 4)', async () => {
    const dataDir = path.join(dir, 'twice');
    const [a, b] = await Promise.all([loadOrCreateNodeKeys(dataDir), loadOrCreateNodeKeys(dataDir)]);
    const id = await loadEd25519Secret(path.join(dataDir, 'identity.key'));
    const onion = await loadX25519Secret(path.join(dataDir, 'onion.key'));
    for (const k of [a, b]) {
      expect(k.identity.publicKey.equals(id.publicKey)).toBe(true);
      expect(k.onion.publicKey.equals(onion.publicKey)).toBe(true);
    }
  });

  it('creates the folder (0700) and the key files (0600) on first start, then loads the same keys', async () => {
    const dataDir = path.join(dir, 'node', 'data');
    const t0 = 1_800_000_000_000;
    const a = await loadOrCreateNodeKeys(dataDir, { now: t0 });
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(path.join(dataDir, 'identity.key'))).toBe(0o600);
    expect(mode(path.join(dataDir, 'onion.key'))).toBe(0o600);
    expect(fs.existsSync(path.join(dataDir, 'onion.key.old'))).toBe(false);
    expect(a.previousOnion).toBeUndefined();
    expect(a.onionCreatedAt).toBe(t0);
    const b = await loadOrCreateNodeKeys(dataDir, { now: t0 + DAY });
    expect(b.identity.secretKey.equals(a.identity.secretKey)).toBe(true);
    expect(b.onion.secretKey.equals(a.onion.secretKey)).toBe(true);
    expect(b.onionCreatedAt).toBe(t0);
  });

  it('rotates the onion key after the rotation period (default 7 days) and keeps the previous one for one rotation', async () => {
    const t0 = 1_800_000_000_000;
    const a = await loadOrCreateNodeKeys(dir, { now: t0 });
    const early = await loadOrCreateNodeKeys(dir, { now: t0 + DEFAULT_ONION_ROTATION_MS - 1 });
    expect(early.onion.publicKey.equals(a.onion.publicKey)).toBe(true);

    const b = await loadOrCreateNodeKeys(dir, { now: t0 + DEFAULT_ONION_ROTATION_MS });
    expect(b.onion.publicKey.equals(a.onion.publicKey)).toBe(false);
    expect(b.previousOnion?.publicKey.equals(a.onion.publicKey)).toBe(true);
    expect(b.onionCreatedAt).toBe(t0 + DEFAULT_ONION_ROTATION_MS);
    expect(b.identity.publicKey.equals(a.identity.publicKey)).toBe(true);
    expect(mode(path.join(dir, 'onion.key.old'))).toBe(0o600);

    // A restart within the period keeps both.
    const b2 = await loadOrCreateNodeKeys(dir, { now: t0 + DEFAULT_ONION_ROTATION_MS + DAY });
    expect(b2.onion.publicKey.equals(b.onion.publicKey)).toBe(true);
    expect(b2.previousOnion?.publicKey.equals(a.onion.publicKey)).toBe(true);

    // The next rotation drops the oldest key.
    const c = await loadOrCreateNodeKeys(dir, { now: t0 + 2 * DEFAULT_ONION_ROTATION_MS });
    expect(c.previousOnion?.publicKey.equals(b.onion.publicKey)).toBe(true);
    expect(c.onion.publicKey.equals(a.onion.publicKey)).toBe(false);
  });

  it('honours a custom rotation period', async () => {
    const a = await loadOrCreateNodeKeys(dir, { now: 1000, onionRotationMs: 60_000 });
    const b = await loadOrCreateNodeKeys(dir, { now: 61_000, onionRotationMs: 60_000 });
    expect(b.onion.publicKey.equals(a.onion.publicKey)).toBe(false);
  });

  it('refuses a corrupt or exposed key file instead of replacing it', async () => {
    await loadOrCreateNodeKeys(dir, { now: 1000 });
    const idFile = path.join(dir, 'identity.key');
    const original = fs.readFileSync(idFile);
    fs.chmodSync(idFile, 0o644);
    await expectCode(loadOrCreateNodeKeys(dir, { now: 2000 }), 'KEY_BAD_MODE');
    expect(fs.readFileSync(idFile).equals(original)).toBe(true);
    fs.chmodSync(idFile, 0o600);
    const onionFile = path.join(dir, 'onion.key');
    fs.truncateSync(onionFile, 10);
    await expectCode(loadOrCreateNodeKeys(dir, { now: 2000 }), 'KEY_CORRUPT');
    expect(fs.statSync(onionFile).size).toBe(10);
  });

  it('a running node never makes a new identity: with identity.key deleted, the periodic check keeps the loaded one and warns (SPEC.md §3.2.3, §3.3)', async () => {
    const warnings: string[] = [];
    const log = { info: () => undefined, warn: (_o: object, msg: string) => { warnings.push(msg); } };
    const rotated: NodeKeys[] = [];
    let onRotate: () => void = () => undefined;
    const { keys, rotation } = await startNodeKeys(dir, 1, log, (k) => { rotated.push(k); onRotate(); });
    try {
      const idFile = path.join(dir, 'identity.key');
      fs.unlinkSync(idFile);
      // The onion key (period 1 s) rotates at the next check, every second.
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no periodic check within 30 s')), 30_000);
        onRotate = () => { clearTimeout(t); resolve(); };
      });
      expect(fs.existsSync(idFile)).toBe(false);
      expect(rotated[0].identity.publicKey.equals(keys.identity.publicKey)).toBe(true);
      expect(rotated[0].onion.publicKey.equals(keys.onion.publicKey)).toBe(false);
      expect(warnings.some((w) => w.includes('identity.key'))).toBe(true);
    } finally {
      rotation.stop();
    }
  });
});
