// `npm run bench -- --only directory`: consensus computation for 3 and 9 authorities over
// 10,000 synthetic relays, consensus size (raw, gzip, brotli; per relay, beside Tor's ~84 B per
// relay for its compressed microdescriptor consensus), and client verification time.
import zlib from 'node:zlib';
import { performance } from 'node:perf_hooks';
import { ed25519Generate, randomBytes, sha256 } from '../../src/crypto/primitives';
import { makeKeyCertificate } from '../../src/dir/certificate';
import { parseAuthorityList } from '../../src/dir/authorities';
import { verifyConsensus } from '../../src/dir/consensus';
import type { VerifiedDescriptor } from '../../src/dir/descriptor';
import { FLAG_BITS, ROLE_BITS } from '../../src/dir/types';
import { makeSignature, sealEnvelope } from '../../src/wire/envelope';
import { computeConsensus } from '../../directory/compute';
import type { VoteInput } from '../../directory/vote';
import type { BenchModule, BenchRow } from './types';

const RELAYS = 10_000;
const TOR_BYTES_PER_RELAY = 84; // 564 KB / ~6,700 relays, Tor's compressed microdesc consensus

/** A small deterministic PRNG so every run measures the same network. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}

const WORDS = ['tor', 'relay', 'node', 'onion', 'cloud', 'bit', 'free', 'speech', 'privacy', 'exit', 'guard', 'fast', 'home', 'lab', 'net', 'berlin', 'paris', 'nyc', 'box', 'pi'];
const POLICIES = [
  ['reject private:*', 'accept *:80', 'accept *:443', 'reject *:*'],
  ['reject private:*', 'reject *:25', 'accept *:*'],
  ['reject private:*', 'accept *:443', 'reject *:*'],
  ['reject private:*', 'accept *:20-23', 'accept *:43', 'accept *:53', 'accept *:79-81', 'accept *:88', 'accept *:110', 'accept *:143', 'accept *:194', 'accept *:220', 'accept *:389', 'accept *:443', 'accept *:464', 'accept *:531', 'accept *:543-544', 'accept *:554', 'accept *:563', 'accept *:636', 'accept *:706', 'accept *:749', 'accept *:873', 'accept *:902-904', 'accept *:981', 'accept *:989-995', 'reject *:*'],
];
const VERSIONS = ['bitcloud-0.1.0', 'bitcloud-0.1.1', 'bitcloud-0.2.0', 'bitcloud-0.2.1', 'bitcloud-0.3.0'];

export function syntheticRelays(n: number, rnd: () => number): VerifiedDescriptor[] {
  const out: VerifiedDescriptor[] = [];
  for (let i = 0; i < n; i++) {
    const identity = randomBytes(32);
    const exit = rnd() < 0.2;
    const storage = rnd() < 0.1;
    const addr = randomBytes(4);
    const r = rnd();
    const orPort = r < 0.6 ? 9001 : r < 0.8 ? 443 : 1024 + Math.floor(rnd() * 60000);
    const nick = `${WORDS[Math.floor(rnd() * WORDS.length)]}${rnd() < 0.5 ? WORDS[Math.floor(rnd() * WORDS.length)] : ''}${rnd() < 0.6 ? Math.floor(rnd() * 100) : ''}`.slice(0, 19);
    out.push({
      identity, fingerprint: identity.toString('hex'), onionKey: randomBytes(32), nickname: nick,
      address: [...addr].join('.'), addressBytes: addr, orPort, dirPort: rnd() < 0.3 ? 9030 : 0, storagePort: storage ? 7000 : 0,
      declaredBandwidth: Math.floor(Math.exp(rnd() * 12) * 1000), exitPolicy: exit ? POLICIES[Math.floor(rnd() * POLICIES.length)] : ['reject *:*'],
      family: [], roles: [], rolesMask: ROLE_BITS.relay | (exit ? ROLE_BITS.exit : 0) | (storage ? ROLE_BITS.storage : 0),
      moderators: [], version: VERSIONS[Math.floor(rnd() * VERSIONS.length)], published: 1_800_000_000_000 - Math.floor(rnd() * 3600_000),
      expires: 1_900_000_000_000, digest: randomBytes(32), raw: Buffer.alloc(0),
    });
  }
  // 10% of relays in families of 2 to 5 (mutually declared).
  for (let i = 0; i + 5 < n * 0.1; i += 5) {
    const size = 2 + Math.floor(rnd() * 4);
    const members = out.slice(i, i + size);
    for (const m of members) m.family = members.filter((x) => x !== m).map((x) => x.fingerprint).sort();
  }
  return out;
}

export function syntheticVotes(relays: VerifiedDescriptor[], authorities: number, rnd: () => number): VoteInput[] {
  return Array.from({ length: authorities }, () => ({
    authority: randomBytes(32),
    knownFlags: 0x7f,
    entries: relays.filter(() => rnd() < 0.97).map((d) => {
      let flags = FLAG_BITS.Running | FLAG_BITS.Valid | FLAG_BITS.Fast;
      if (d.rolesMask & ROLE_BITS.exit) flags |= FLAG_BITS.Exit;
      if (d.storagePort) flags |= FLAG_BITS.Storage;
      if (rnd() < 0.6) flags |= FLAG_BITS.Stable;
      if (rnd() < 0.3) flags |= FLAG_BITS.Guard;
      return { descriptor: d, flags, measured: Math.max(1, Math.min(1000, Math.floor(d.declaredBandwidth / 1000 * (0.9 + rnd() * 0.2)))) };
    }),
  }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[(s.length - 1) >> 1];
}

function time(runs: number, f: () => void): number {
  const t: number[] = [];
  for (let i = 0; i < runs; i++) { const a = performance.now(); f(); t.push(performance.now() - a); }
  return median(t);
}

const mod: BenchModule = {
  name: 'directory',
  async run({ quick }) {
    const rows: BenchRow[] = [];
    const runs = quick ? 1 : 5;
    const rnd = prng(42);
    const relays = syntheticRelays(RELAYS, rnd);
    const params = { periodStart: 1_800_000_000_000, periodSeconds: 3600, lifetimePeriods: 3 };

    for (const n of [3, 9]) {
      const votes = syntheticVotes(relays, n, rnd);
      const entries = votes.reduce((s, v) => s + v.entries.length, 0);
      let computed = computeConsensus(votes, { ...params, totalAuthorities: n });
      const ms = time(runs, () => { computed = computeConsensus(votes, { ...params, totalAuthorities: n }); });
      // Baseline: sorting every vote entry by identity, a lower bound for any merge of the votes.
      const ids = votes.flatMap((v) => v.entries.map((e) => e.descriptor.fingerprint));
      const sortMs = time(runs, () => { [...ids].sort(); });
      rows.push({ group: 'directory', name: `consensus computation, ${n} authorities, ${RELAYS} relays`, value: ms, unit: 'ms',
        baseline: { name: `sort ${entries} vote entries by identity`, value: sortMs, unit: 'ms' }, note: 'target < 1000 ms' });

      // Sign with every authority and measure the client's verification.
      const keys = Array.from({ length: n }, () => ({ id: ed25519Generate(), sk: ed25519Generate() }));
      const list = parseAuthorityList(keys.map((k, i) => ({ name: `a${i}`, identity: k.id.publicKey.toString('hex'), address: `127.0.0.1:${7000 + i}` })));
      const now = params.periodStart + 1000;
      const raw = sealEnvelope(computed.body,
        keys.map((k) => makeSignature(computed.body, k.id.publicKey, k.sk)),
        keys.map((k) => makeKeyCertificate(k.id, k.sk.publicKey, now - 86_400_000, now + 86_400_000)));
      let listed = 0;
      const vms = time(runs, () => { listed = verifyConsensus(raw, list, now).relays.length; });
      const hashMs = time(runs, () => { sha256(raw); });
      rows.push({ group: 'directory', name: `client verification, ${n} signatures, ${listed} relays`, value: vms, unit: 'ms',
        baseline: { name: 'SHA-256 over the same consensus', value: hashMs, unit: 'ms' }, note: 'target < 50 ms' });

      if (n === 3) {
        const gz = zlib.gzipSync(raw, { level: 9 }).length;
        const br = zlib.brotliCompressSync(raw, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 9 } }).length;
        const tor = { name: 'Tor compressed microdesc consensus (reference figure, not measured)', value: TOR_BYTES_PER_RELAY, unit: 'B/relay' };
        rows.push({ group: 'directory', name: `consensus size raw (${listed} relays, ${(raw.length / 1024).toFixed(0)} KiB)`, value: raw.length / listed, unit: 'B/relay', baseline: tor });
        rows.push({ group: 'directory', name: `consensus size gzip-9 (${(gz / 1024).toFixed(0)} KiB)`, value: gz / listed, unit: 'B/relay', baseline: tor });
        rows.push({ group: 'directory', name: `consensus size brotli-9 (${(br / 1024).toFixed(0)} KiB)`, value: br / listed, unit: 'B/relay', baseline: tor,
          note: '64 B/relay of keys are incompressible' });
      }
    }
    return rows;
  },
};

export default mod;
