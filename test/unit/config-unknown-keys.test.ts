// SPEC.md §11.5: every config file refuses a key its readers do not know (CONFIG_INVALID naming the
// key, the file, and the closest known key within edit distance 2); `_`/`#` keys are comments. The
// "full" configs are those scripts/localnet.ts (`npm start`) writes, with every optional key it adds.
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadRelayConfig } from '../../relay/config';
import { loadAuthorityConfig } from '../../directory/config';
import { loadStorageConfig } from '../../storage/config';
import { readProxyConfig } from '../../src/client/commands/proxy';
import { readStorageClientConfig } from '../../src/client/storage-client-setup';
import { loadDirClientConfig } from '../../src/dir/client-config';
import { closestKey, editDistance } from '../../src/dir/config-fields';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-config-keys-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const FP = 'ab'.repeat(32);
const authorityList = [{ name: 'auth1', identity: FP, address: '127.0.0.1:7000' }];
let n = 0;
function write(o: Record<string, unknown>): string {
  const file = path.join(tmp, `c${n++}.json`);
  fs.writeFileSync(file, JSON.stringify(o, null, 2));
  return file;
}
function refusal(f: () => unknown): { code?: string; message: string; detail?: Record<string, unknown> } {
  try { f(); } catch (e) { return e as { code?: string; message: string }; }
  return { message: 'no error' };
}

// As scripts/localnet.ts writes them (every optional branch taken).
const authority = {
  identity: FP, dataDir: 'auth1', listen: { host: '127.0.0.1', port: 7000 }, period: 15,
  authorities: authorityList, reachability: { timeoutMs: 3000 }, stableAfterSeconds: 15,
  bandwidthBounds: 'local', unmeasuredCapKBps: 10_000,
  probe: { enabled: true, seconds: 5, maxBytes: 64 << 20, inFlight: 256, keepPeriods: 2 },
  metricsPort: 9100, metricsHost: '127.0.0.1', testNetwork: true,
  rateLimit: { uploadsPerMinute: 600, burst: 40 }, identityPow: 'local', consensusParams: { 'funding-v2': 1 },
};
const relay = {
  dataDir: 'relay1', nickname: 'relay1', address: '127.0.0.1', orPort: 7100, dirPort: 7101,
  metricsPort: 9101, metricsHost: '127.0.0.1', roles: ['relay', 'exit'], bandwidth: 10_000_000,
  exitPolicy: ['accept 127.0.0.1:*', 'reject *:*'], exitPolicyRejectPrivate: false,
  authorities: authorityList, publishIntervalSeconds: 15, descriptorLifetimeSeconds: 3600, mirrorIntervalSeconds: 5,
  identityPow: 'local',
};
const storage = {
  dataDir: 'store1', nickname: 'store1', address: '127.0.0.1', orPort: 7200, storagePort: 7201,
  metricsPort: 9102, metricsHost: '127.0.0.1', quota: '1GiB', bandwidth: 100_000,
  authorities: authorityList, publishIntervalSeconds: 15, descriptorLifetimeSeconds: 3600, announceIntervalSeconds: 30, identityPow: 'local',
  moderators: ['cd'.repeat(32)], policyRefreshSeconds: 5, hidden: true, enforceDistinctSubnets: false,
};
const client = {
  authorities: authorityList, dataDir: 'client', mirrors: ['127.0.0.1:7101'],
  socksPort: 9050, metricsPort: 9103, enforceDistinctSubnets: false, relayCrypto: 'tor1',
  // what the tests and benchmarks add (startExtraProxy, writeClientConfig)
  preemptiveCircuits: 0, isolateDestPort: true, maxOpenCircuits: 2,
};

const cases: Array<{ name: string; full: Record<string, unknown>; load: (file: string) => unknown; typo: [string, string] }> = [
  { name: 'relay', full: relay, load: (f) => loadRelayConfig(f), typo: ['dirMaxConnection', 'dirMaxConnections'] },
  { name: 'authority', full: authority, load: (f) => loadAuthorityConfig(f), typo: ['httpMaxConnection', 'httpMaxConnections'] },
  { name: 'storage node', full: storage, load: (f) => loadStorageConfig(f), typo: ['maxDirectSesions', 'maxDirectSessions'] },
  { name: 'proxy (client)', full: client, load: (f) => readProxyConfig(f), typo: ['maxOpenCircuit', 'maxOpenCircuits'] },
  { name: 'storage commands (client)', full: client, load: (f) => readStorageClientConfig(f), typo: ['leaseSecond', 'leaseSeconds'] },
  { name: 'directory client (client)', full: client, load: (f) => loadDirClientConfig(f), typo: ['mirror', 'mirrors'] },
];

describe('unknown config keys are refused (SPEC.md §11.5)', () => {
  for (const c of cases) {
    describe(c.name, () => {
      it('accepts the full config the local network writes', () => {
        expect(() => c.load(write(c.full))).not.toThrow();
      });
      it('refuses an unknown key with CONFIG_INVALID naming the key and the file', () => {
        const file = write({ ...c.full, frobnicate: 1 });
        const e = refusal(() => c.load(file));
        expect(e.code).toBe('CONFIG_INVALID');
        expect(e.message).toBe(`CONFIG_INVALID: unknown key "frobnicate" in ${file}`);
        expect(e.detail).toMatchObject({ key: 'frobnicate', file });
      });
      it('suggests the known key a near miss was meant to be', () => {
        const [typo, meant] = c.typo;
        const file = write({ ...c.full, [typo]: 1 });
        const e = refusal(() => c.load(file));
        expect(e.code).toBe('CONFIG_INVALID');
        expect(e.message).toBe(`CONFIG_INVALID: unknown key "${typo}" in ${file} (did you mean "${meant}"?)`);
      });
      it('accepts `_` and `#` keys as comments', () => {
        expect(() => c.load(write({ _comment: 'a note', '#': 'another', '#ports': [1, 2], ...c.full }))).not.toThrow();
      });
    });
  }

  it('names a nested unknown key with its path and the suggestion', () => {
    const file = write({ ...relay, limits: { maxStreamPerCircuit: 5 } });
    expect(refusal(() => loadRelayConfig(file)).message).toBe(`CONFIG_INVALID: unknown key "limits.maxStreamPerCircuit" in ${file} (did you mean "limits.maxStreamsPerCircuit"?)`);
    const afile = write({ ...authority, probe: { enabled: true, second: 5 } });
    expect(refusal(() => loadAuthorityConfig(afile)).message).toBe(`CONFIG_INVALID: unknown key "probe.second" in ${afile} (did you mean "probe.seconds"?)`);
  });

  it('names the file for an unknown key in every nested object, as at the top level', () => {
    const nested: Array<[string, Record<string, unknown>, (f: string) => unknown, string]> = [
      ['relay receipts', { ...relay, receipts: { jitterSecond: 1 } }, (f) => loadRelayConfig(f), 'receipts.jitterSecond'],
      ['relay linkWarming', { ...relay, linkWarming: { maxLink: 1 } }, (f) => loadRelayConfig(f), 'linkWarming.maxLink'],
      ['relay identityPow', { ...relay, identityPow: { op: 1 } }, (f) => loadRelayConfig(f), 'identityPow.op'],
      ['relay authorities', { ...relay, authorities: [{ ...authorityList[0], nmae: 'x' }] }, (f) => loadRelayConfig(f), 'authorities[0].nmae'],
      ['storage receipts', { ...storage, receipts: { jitterSecond: 1 } }, (f) => loadStorageConfig(f), 'receipts.jitterSecond'],
      ['storage identityPow', { ...storage, identityPow: { op: 1 } }, (f) => loadStorageConfig(f), 'identityPow.op'],
      ['storage authorities', { ...storage, authorities: [{ ...authorityList[0], nmae: 'x' }] }, (f) => loadStorageConfig(f), 'authorities[0].nmae'],
      ['authority identityPow', { ...authority, identityPow: { op: 1 } }, (f) => loadAuthorityConfig(f), 'identityPow.op'],
      ['authority authorities', { ...authority, authorities: [{ ...authorityList[0], nmae: 'x' }] }, (f) => loadAuthorityConfig(f), 'authorities[0].nmae'],
      ['client authorities', { ...client, authorities: [{ ...authorityList[0], nmae: 'x' }] }, (f) => loadDirClientConfig(f), 'authorities[0].nmae'],
    ];
    for (const [what, cfg, load, key] of nested) {
      const file = write(cfg);
      const e = refusal(() => load(file));
      expect(e.code, what).toBe('CONFIG_INVALID');
      expect(e.message, what).toContain(`unknown key "${key}" in ${file}`);
      expect(e.detail, what).toMatchObject({ key, file });
    }
  });
});

describe('edit distance for suggestions', () => {
  it('is Levenshtein distance; a suggestion needs distance 2 at most', () => {
    expect(editDistance('', '')).toBe(0);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('maxOpenCircuit', 'maxOpenCircuits')).toBe(1);
    expect(editDistance('perdio', 'period')).toBe(2);
    expect(closestKey('perdio', ['period', 'logLevel'])).toBe('period');
    expect(closestKey('colour', ['period', 'logLevel'])).toBeUndefined();
    expect(closestKey('ab', ['abc', 'abd'])).toBe('abc');
  });

  it('a huge unknown key gets no suggestion, and keys whose lengths differ by more than 2 are not suggested', () => {
    const known = ['maxOpenCircuits', 'maxCircuitDirtinessSeconds', 'enforceDistinctSubnets', 'gatewayCacheBytes'];
    const huge = 'x'.repeat(1_000_000);
    expect(closestKey(huge, known)).toBeUndefined();
    expect(closestKey(`${huge}s`, known)).toBeUndefined();
    expect(closestKey('maxOpenCircuitsXY', known)).toBe('maxOpenCircuits');
    expect(closestKey('maxOpenCircuitsXYZ', known)).toBeUndefined();
  });

  it('reads no character of an unknown key whose length is more than 2 from every known key\'s', () => {
    // The cost guard itself, with no clock: a key that counts the characters read of it. The edit
    // distance table reads each one per known key compared, so a key of any length is refused
    // after reading none when no known key is within 2 of its length.
    const known = ['maxOpenCircuits', 'maxCircuitDirtinessSeconds', 'enforceDistinctSubnets', 'gatewayCacheBytes'];
    const counted = (s: string) => {
      const seen = { reads: 0 };
      const key = new Proxy({ length: s.length }, {
        get: (o, p) => { if (p === 'length') return o.length; seen.reads++; return s[Number(p)]; },
      }) as unknown as string;
      return { key, seen };
    };
    const far = counted('x'.repeat(10_000));
    expect(closestKey(far.key, known)).toBeUndefined();
    expect(far.seen.reads).toBe(0);
    // A key near one known key's length is compared (its characters read) and gets its suggestion.
    const near = counted('maxOpenCircuit');
    expect(closestKey(near.key, known)).toBe('maxOpenCircuits');
    expect(near.seen.reads).toBeGreaterThan(0);
  });
});
