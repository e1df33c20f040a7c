// The storage node's config (storage/config.ts): defaults, sizes, and refusals that name the key.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { parseSize, parseStorageConfig } from '../../storage/config';
import { StorageDaemon, loadOrCreateX25519 } from '../../storage/daemon';
import { loadOrCreateNodeKeys, loadX25519Secret } from '../../src/crypto/keys';
import { silentLogger } from '../../src/ops/log';
import { GuardSet } from '../../src/client/guards';

const AUTH = [{ name: 'a1', identity: 'a'.repeat(64), address: '127.0.0.1:7000' }];
const base = { dataDir: 'node', orPort: 9001, storagePort: 9002, authorities: AUTH };

describe('storage node config', () => {
  it('fills defaults and resolves the data dir against the config folder', () => {
    const c = parseStorageConfig(base, '/etc/bitcloud');
    expect(c.dataDir).toBe('/etc/bitcloud/node');
    // SPEC.md §11.5: a --data-dir flag is resolved against the current directory, not the file's folder.
    expect(parseStorageConfig(base, '/etc/bitcloud', { dataDir: 'node' }).dataDir).toBe(path.resolve(process.cwd(), 'node'));
    expect(c.listenHost).toBe('127.0.0.1');
    expect(c.quotaBytes).toBe(10 * 2 ** 30);
    expect(c.defaultLeaseSeconds).toBe(7 * 86_400);
    expect(c.maxLeaseSeconds).toBe(90 * 86_400);
    expect(c.metricsPort).toBe(9036); // SPEC.md §6.10: a local-only MetricsPort by default
    expect(c.metricsPortExplicit).toBe(false);
    expect(c.metricsHost).toBe('127.0.0.1');
    expect(c.authorities[0].url).toBe('http://127.0.0.1:7000');
    expect(c.approvedOnly).toEqual([]);
    expect(c.maxReadBytesInFlight).toBe(256 * 2 ** 20); // SPEC.md §9.6.1
    expect(parseStorageConfig({ ...base, maxReadBytesInFlight: 4096 }, '/x').maxReadBytesInFlight).toBe(4096);
    expect(parseStorageConfig({ ...base, moderators: ['b'.repeat(64)], approvedOnly: ['public-lecture'] }, '/x').approvedOnly).toEqual(['public-lecture']);
  });

  it('reads sizes as bytes or with units', () => {
    expect(parseSize('512MiB', 'quota', 0)).toBe(512 * 2 ** 20);
    expect(parseSize('10 GB', 'quota', 0)).toBe(10e9);
    expect(parseSize(12345, 'quota', 0)).toBe(12345);
    expect(parseSize(undefined, 'quota', 7)).toBe(7);
    expect(() => parseSize('lots', 'quota', 0)).toThrow(/CONFIG_INVALID: quota/);
  });

  it('refuses bad settings, naming the key', () => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...base, colour: 'red' }, /unknown key "colour"/],
      [{ ...base, storagePort: 9001 }, /storagePort: must differ/],
      [{ ...base, quota: '1MiB' }, /quota: must be at least one maximal share/],
      [{ ...base, defaultLeaseSeconds: 100_000, maxLeaseSeconds: 1000 }, /defaultLeaseSeconds/],
      [{ ...base, address: 'example.org' }, /address: must be an IPv4 address/],
      [{ ...base, authorities: [] }, /authorities/],
      [{ ...base, orPort: undefined }, /orPort/],
      [{ ...base, approvedOnly: ['public-lecture'] }, /approvedOnly: needs at least one entry in moderators/],
      [{ ...base, moderators: ['b'.repeat(64)], approvedOnly: ['Public Lecture'] }, /approvedOnly\[0\]: a content class/],
      [{ ...base, moderators: Array.from({ length: 17 }, (_, i) => i.toString(16).padStart(64, '0')) }, /moderators: at most 16 moderators/],
      [{ ...base, family: Array.from({ length: 34 }, (_, i) => i.toString(16).padStart(64, '0')) }, /family: at most 33 entries/],
      [{ ...base, maxReadBytesInFlight: 0 }, /maxReadBytesInFlight: must be between 1/],
      [{ ...base, maxReadBytesInFlight: 1.5 }, /maxReadBytesInFlight: must be an integer/],
      [{ ...base, maxReadBytesInFlight: '256MiB' }, /maxReadBytesInFlight: must be an integer/],
    ];
    for (const [raw, re] of bad) expect(() => parseStorageConfig(raw, '/x')).toThrow(re);
  });

  it('family: 33 load; 33 besides the node itself is CONFIG_INVALID at start (SPEC.md §6.4)', async () => {
    const fps = Array.from({ length: 33 }, (_, i) => (i + 1).toString(16).padStart(64, '0'));
    expect(parseStorageConfig({ ...base, family: fps }, '/x').family).toHaveLength(33);
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-family-'));
    try {
      await loadOrCreateNodeKeys(dataDir);
      const d = new StorageDaemon(parseStorageConfig({ ...base, dataDir, family: fps }, '/x'), silentLogger, new Registry());
      await expect(d.start()).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
      await d.stop();
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('stop does not wait for state.json.lock: with the lock held by a live process, the hidden node\'s guards are not saved and stop returns (SPEC.md §7.2)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-hsguards-'));
    try {
      const file = path.join(dataDir, 'state.json');
      fs.writeFileSync(file, '{"other":1}\n');
      const guards = new GuardSet(file);
      guards.pickGuard([{ identity: Buffer.alloc(32, 1), fingerprint: '01'.repeat(32), address: '10.1.0.1', orPort: 9001, flags: new Set(['Running', 'Valid', 'Fast', 'Guard']), weight: 100, exitPolicy: [], family: [], roles: ['relay'] }]);
      expect(guards.dirty).toBe(true);
      fs.writeFileSync(`${file}.lock`, String(process.pid)); // another live process holds it
      const d = new StorageDaemon(parseStorageConfig({ ...base, dataDir }, '/x'), silentLogger, new Registry());
      (d as unknown as { hsGuards: GuardSet }).hsGuards = guards;
      await d.stop(); // the test's timeout (under the lock's 30 s) says it waited
      expect(fs.readFileSync(file, 'utf8')).toBe('{"other":1}\n');
      expect(fs.readFileSync(`${file}.lock`, 'utf8')).toBe(String(process.pid));
      expect(guards.dirty).toBe(true);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }, 20_000);

  it('takes up to 16 moderators, as many as a descriptor lists (SPEC.md §6.4)', () => {
    const mods = Array.from({ length: 16 }, (_, i) => i.toString(16).padStart(64, '0'));
    expect(parseStorageConfig({ ...base, moderators: mods }, '/x').moderators).toEqual(mods);
    expect(() => parseStorageConfig({ ...base, moderators: [...mods, 'f'.repeat(64)] }, '/x')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it('flags override the file', () => {
    const c = parseStorageConfig(base, '/x', { orPort: 1, storagePort: 2, metricsPort: 3, dataDir: '/d', nickname: 'n1' });
    expect([c.orPort, c.storagePort, c.metricsPort, c.dataDir, c.nickname]).toEqual([1, 2, 3, '/d', 'n1']);
  });
  it('"hidden": true needs no ports (SPEC.md §9.21); without it both are required and must differ', () => {
    const h = parseStorageConfig({ dataDir: 'node', authorities: AUTH, hidden: true, enforceDistinctSubnets: false }, '/x');
    expect(h.hidden).toBe(true);
    expect([h.orPort, h.storagePort]).toEqual([0, 0]);
    expect(h.enforceDistinctSubnets).toBe(false);
    expect(parseStorageConfig(base, '/x').hidden).toBe(false);
    expect(() => parseStorageConfig({ dataDir: 'node', authorities: AUTH }, '/x')).toThrow(/orPort/);
    expect(() => parseStorageConfig({ ...base, hidden: 'yes' }, '/x')).toThrow(/hidden/);
  });
});

describe('the hidden service ntor key (SPEC.md §9.21.3, §3.3)', () => {
  it('two starts at once on an empty data folder serve the key on disk', async () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-hs-ntor-'));
    try {
      const file = path.join(d, 'hs-ntor.key');
      const [a, b] = await Promise.all([loadOrCreateX25519(file), loadOrCreateX25519(file)]);
      const onDisk = await loadX25519Secret(file);
      expect(a.publicKey.equals(onDisk.publicKey)).toBe(true);
      expect(b.publicKey.equals(onDisk.publicKey)).toBe(true);
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  });
});
