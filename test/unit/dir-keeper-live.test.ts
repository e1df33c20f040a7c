// SPEC.md §9.21.1: a hidden node (DirKeeper tunnelOnly) restarted with a cached consensus that
// expired less than 24 hours ago verifies it as of its own valid-until and builds its directory
// circuits from it (guards' mirrors, then relay mirrors over 3 hops) before any direct fetch; one
// expired longer ago is not used and the node bootstraps directly.
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ed25519FromSeed, ed25519Generate, x25519Generate } from '../../src/crypto/primitives';
import { makeKeyCertificate } from '../../src/dir/certificate';
import { buildDescriptor, verifyDescriptor } from '../../src/dir/descriptor';
import { parseAuthorityList } from '../../src/dir/authorities';
import { FLAG_BITS } from '../../src/dir/types';
import { makeSignature, sealEnvelope } from '../../src/wire/envelope';
import { computeConsensus } from '../../directory/compute';
import { CONSENSUS_CACHE_FILE } from '../../src/dir/consensus-cache';
import { DirKeeper, REASONABLY_LIVE_MS } from '../../src/client/dir-keeper';
import type { TunnelSource } from '../../src/dir/consensus-fetch';

const P = 60;
const NOW = Date.now();
const ids = [1, 2, 3].map((i) => ed25519FromSeed(Buffer.alloc(32, 40 + i)));
const sks = [1, 2, 3].map((i) => ed25519FromSeed(Buffer.alloc(32, 50 + i)));
const certs = ids.map((id, i) => makeKeyCertificate(id, sks[i].publicKey, NOW - 3 * 86_400_000, NOW + 86_400_000));
// Port 1 on loopback: a direct fetch fails at once (connection refused).
const authorities = parseAuthorityList(ids.map((k, i) => ({ name: `a${i}`, identity: k.publicKey.toString('hex'), address: '127.0.0.1:1' })));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-dir-live-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A dataDir whose cache holds a consensus of 3 relays that expired `agoMs` ago. */
function cacheExpired(name: string, agoMs: number): string {
  const periodStart = Math.floor((NOW - agoMs - 3 * P * 1000) / (P * 1000)) * P * 1000;
  const descriptors = [0, 1, 2].map((i) => verifyDescriptor(buildDescriptor({
    identity: ed25519Generate(), onionKey: x25519Generate().publicKey, nickname: `relay${i}`, address: `10.0.0.${i + 1}`, orPort: 9000 + i, dirPort: 9100 + i,
    declaredBandwidth: 1_000_000, exitPolicy: [], family: [], roles: ['relay'], version: 'bitcloud-0.1.0', published: periodStart - 1000,
  })));
  const flags = FLAG_BITS.Running | FLAG_BITS.Valid;
  const votes = ids.map((id) => ({ authority: id.publicKey, knownFlags: 0x7f, entries: descriptors.map((d) => ({ descriptor: d, flags, measured: 100 })) }));
  const c = computeConsensus(votes, { totalAuthorities: 3, periodStart, periodSeconds: P, lifetimePeriods: 3 });
  const env = sealEnvelope(c.body, ids.map((id, i) => makeSignature(c.body, id.publicKey, sks[i])), certs);
  const dataDir = path.join(tmp, name);
  fs.mkdirSync(dataDir, { recursive: true });
  fs.writeFileSync(path.join(dataDir, CONSENSUS_CACHE_FILE), env);
  return dataDir;
}

function hiddenKeeper(dataDir: string, asked: string[]): DirKeeper {
  const source = (label: string): TunnelSource => ({ label, fetch: async () => { asked.push(label); throw new Error('down'); } });
  return new DirKeeper({
    authorities, dataDir, refreshMs: 3_600_000, tunnelOnly: true,
    guardSources: () => [source('guard')], circuitSources: () => [source('circuit')],
  });
}

describe('a hidden node restarted with an expired cache (SPEC.md §9.21.1)', () => {
  it('expired an hour ago: its relays build the directory circuits, tried before the direct bootstrap', async () => {
    const asked: string[] = [];
    const k = hiddenKeeper(cacheExpired('hour', 3_600_000), asked);
    await k.start();
    k.stop();
    expect(k.consensus()).toBe(null);
    expect(k.tunnelRelays()?.map((r) => r.nickname).sort()).toEqual(['relay0', 'relay1', 'relay2']);
    expect(asked).toEqual(['guard', 'circuit']);
    expect(k.lastVia).toBe('direct'); // both failed: only then the authorities (refused here)
  });

  it('expired more than a day ago: not used; a direct bootstrap only', async () => {
    const asked: string[] = [];
    const k = hiddenKeeper(cacheExpired('day', REASONABLY_LIVE_MS + 3_600_000), asked);
    await k.start();
    k.stop();
    expect(k.tunnelRelays()).toBe(null);
    expect(asked).toEqual([]);
    expect(k.lastVia).toBe('direct');
  });
});
