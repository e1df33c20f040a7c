// SPEC.md §6.10: a relay mirror polls the authorities only when something new can be there.
import { describe, expect, it, vi } from 'vitest';
import { authorityFetchOrder, canonicalConsensus, ConsensusMirror } from '../../relay/mirror';
import type { AuthorityInfo } from '../../src/dir/authorities';
import type { VerifiedConsensus } from '../../src/dir/types';
import { silentLogger } from '../../src/ops/log';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseAuthorityList } from '../../src/dir/authorities';
import { fetchVerifiedConsensus, type TunnelSource } from '../../src/dir/consensus-fetch';
import { CONSENSUS_CACHE_FILE, currentConsensus, saveConsensusCache } from '../../src/dir/consensus-cache';
import { consensusIfModifiedSince, verifyConsensus } from '../../src/dir/consensus';
import { makeSignature, sealEnvelope } from '../../src/wire/envelope';
import { decodeEnvelope, encodeEnvelope, LIMITS } from '../../src/wire/docs';
import { fingerprint } from '../../src/crypto/keys';
import { computeConsensus } from '../../directory/compute';
import { servedConsensus, serveDocument } from '../../src/dir/http-serve';
import { consensusFor, E, epochStart, makeRelay, makeSigner, P, voteOf } from './dirauth-measure-fixture';

const auths = [{ url: 'http://a' }, { url: 'http://b' }] as unknown as AuthorityInfo[];

function mirrorHolding(c: Partial<VerifiedConsensus> | null): ConsensusMirror {
  const m = new ConsensusMirror(auths, '/nonexistent', silentLogger, 2000);
  if (c) Object.defineProperty(m, 'current', { get: () => c });
  return m;
}

describe('consensus mirror poll schedule', () => {
  it('polls every interval while it holds no consensus', () => {
    expect(mirrorHolding(null).nextPollDelay(0)).toBe(2000);
  });

  it('polls every interval while signatures may still be added', () => {
    expect(mirrorHolding({ signers: ['a'], freshUntil: 60_000 }).nextPollDelay(0)).toBe(2000);
  });

  it('waits for fresh-until once the consensus is complete, spread by at most one interval', () => {
    const m = mirrorHolding({ signers: ['a', 'b'], freshUntil: 60_000 });
    for (let i = 0; i < 50; i++) {
      const d = m.nextPollDelay(0);
      expect(d).toBeGreaterThanOrEqual(60_000);
      expect(d).toBeLessThan(62_000);
    }
  });

  it('past fresh-until, polls every interval until the next one arrives', () => {
    const m = mirrorHolding({ signers: ['a', 'b'], freshUntil: 60_000 });
    expect(m.nextPollDelay(90_000)).toBe(2000);
  });
});

describe('consensus mirror fetch order', () => {
  it('puts each authority first about equally often, whatever Math.random does', () => {
    const three = [{ url: 'http://a' }, { url: 'http://b' }, { url: 'http://c' }] as unknown as AuthorityInfo[];
    const real = Math.random;
    Math.random = () => 0.25; // the order must come from the CSPRNG, not from Math.random
    try {
      const first = new Map<string, number>();
      for (let i = 0; i < 300; i++) {
        const o = authorityFetchOrder(three);
        expect([...o].sort()).toEqual(['http://a', 'http://b', 'http://c']);
        first.set(o[0], (first.get(o[0]) ?? 0) + 1);
      }
      // 100 expected each (standard deviation 8.2); below 50 is more than 6 of them off.
      for (const u of ['http://a', 'http://b', 'http://c']) expect(first.get(u) ?? 0).toBeGreaterThan(50);
    } finally {
      Math.random = real;
    }
  });
});

describe('conditional GET of the consensus (SPEC.md §6.10)', () => {
  it('a holder of the consensus gets 304 from a server that published it mid-period; a holder of the previous one gets it', async () => {
    const signer = makeSigner();
    const auth = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const relays = [makeRelay(1), makeRelay(2)];
    const prev = consensusFor(signer, E - 1, [voteOf(signer, relays)]);
    const c = consensusFor(signer, E, [voteOf(signer, relays)]);
    const now = () => epochStart(E) + 1000;
    const fetchFrom = async (publishedMs: number, have: VerifiedConsensus) => {
      // An authority publishes at P/2 into the period, a late signature top-up just before the next one.
      const doc = servedConsensus(c.raw, c.info, publishedMs);
      const server = http.createServer((req, res) => { serveDocument(req, res, doc, 'CONSENSUS_NOT_AVAILABLE', 'none'); });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
      try {
        const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
        return await fetchVerifiedConsensus([url], auth, { now, have, ifModifiedSince: consensusIfModifiedSince(have) });
      } finally {
        await new Promise<void>((r) => server.close(() => r()));
      }
    };
    // The last: a mirror whose clock runs ten periods behind dates its intake before the period began.
    for (const published of [epochStart(E) + (P * 1000) / 2, epochStart(E + 1) - 1, epochStart(E + 1) + 5000, epochStart(E) - 10 * P * 1000]) {
      const same = await fetchFrom(published, c.info);
      expect(same.notModified).toHaveLength(1);
      expect(same.consensus).toBeNull();
      const older = await fetchFrom(published, prev.info);
      expect(older.consensus?.digest.equals(c.info.digest)).toBe(true);
    }
  });

  it('a one-shot command holding a consensus asks with its fresh_until and keeps it on 304 (SPEC.md §6.10.1 step 2)', async () => {
    const signer = makeSigner();
    const auth = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]);
    const prev = consensusFor(signer, E - 1, [voteOf(signer, [makeRelay(1)])]);
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-cc-'));
    try {
      await saveConsensusCache(path.join(dataDir, CONSENSUS_CACHE_FILE), prev.info);
      const asked: (number | undefined)[] = [];
      const source: TunnelSource = { label: 'mirror', fetch: async (o) => { asked.push(o.ifModifiedSince); return null; } };
      const c = await currentConsensus({ dataDir, authorities: auth, sources: [source], now: () => epochStart(E) + 1000 });
      expect(asked).toEqual([prev.info.freshUntil]);
      expect(c.digest.equals(prev.info.digest)).toBe(true);
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('of several sources, an equally new consensus with more signatures is kept (SPEC.md §6.8)', async () => {
    const signers = [makeSigner(), makeSigner(), makeSigner(), makeSigner(), makeSigner()];
    const auth = parseAuthorityList(signers.map((s, i) => ({ name: `a${i}`, identity: s.identity.toString('hex'), address: '127.0.0.1:1' })));
    const c = computeConsensus([voteOf(signers[0], [makeRelay(1)])], { totalAuthorities: 5, periodStart: epochStart(E), periodSeconds: P, lifetimePeriods: 3 });
    const sealed = (n: number) => sealEnvelope(c.body, signers.slice(0, n).map((s) => makeSignature(c.body, s.identity, s.signingKey)), signers.slice(0, n).map((s) => s.certificate));
    const now = () => epochStart(E) + 1000;
    const have = verifyConsensus(sealed(3), auth, now());
    const source = (label: string, raw: Buffer): TunnelSource => ({ label, fetch: async () => raw });
    const r = await fetchVerifiedConsensus([source('three', sealed(3)), source('five', sealed(5))], auth, { now, have });
    expect(r.consensus?.signers).toHaveLength(5);
    expect(r.source).toBe('five');
  });
});


describe('a mirror serves what it verified (SPEC.md §6.10)', () => {
  /** `raw` with an unknown field (number 15, length-delimited) of `n` bytes appended: protobuf decoding skips it. */
  const padded = (raw: Buffer, n: number): Buffer => {
    const len: number[] = [];
    for (let v = n; ; v >>>= 7) { if (v < 0x80) { len.push(v); break; } len.push((v & 0x7f) | 0x80); }
    return Buffer.concat([raw, Buffer.from([(15 << 3) | 2, ...len]), Buffer.alloc(n, 0x5a)]);
  };

  it('an upstream that pads a valid consensus with unknown fields: the mirror serves and keeps the canonical envelope', async () => {
    const signer = makeSigner();
    const c = consensusFor(signer, E, [voteOf(signer, [makeRelay(1), makeRelay(2)])]);
    const junk = padded(c.raw, 1024 * 1024);
    const server = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'application/octet-stream' }); res.end(junk); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-mirror-'));
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(epochStart(E) + 1000);
    const auth = parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: `127.0.0.1:${(server.address() as { port: number }).port}` }]);
    const m = new ConsensusMirror(auth, dir, silentLogger, 60_000);
    try {
      // The padded envelope verifies: its body and signature are the authority's.
      expect(verifyConsensus(junk, auth, epochStart(E) + 1000).digest).toEqual(c.info.digest);
      const got = new Promise<VerifiedConsensus>((r) => m.onConsensus(r));
      await m.start();
      const installed = await got;
      expect(installed.envelopeBytes.equals(c.raw)).toBe(true);
      expect(m.served!.raw.equals(c.raw)).toBe(true);
      expect(m.current!.digest).toEqual(c.info.digest);
      // What it keeps on disk is the same canonical envelope.
      await vi.waitFor(() => expect(fs.readFileSync(path.join(dir, CONSENSUS_CACHE_FILE)).equals(c.raw)).toBe(true));
    } finally {
      m.stop();
      vi.useRealTimers();
      await new Promise<void>((r) => server.close(() => r()));
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps every signature and certificate, also those of authorities the mirror does not know: a client with another list counts them; a path can still add such entries (SPEC.md §6.10)', () => {
    const [a, b, stranger] = [makeSigner(), makeSigner(), makeSigner()];
    const c = computeConsensus([voteOf(a, [makeRelay(1)])], { totalAuthorities: 2, periodStart: epochStart(E), periodSeconds: P, lifetimePeriods: 3 });
    const now = epochStart(E) + 1000;
    const list = (...s: typeof a[]) => parseAuthorityList(s.map((x, i) => ({ name: `x${i}`, identity: x.identity.toString('hex'), address: '127.0.0.1:1' })));
    // As an upstream sent it: a's and b's signatures, and one by a key no client knows, out of order.
    const arrived = encodeEnvelope({
      body: c.body,
      signatures: [makeSignature(c.body, stranger.identity, stranger.signingKey), makeSignature(c.body, b.identity, b.signingKey), makeSignature(c.body, a.identity, a.signingKey)],
      certificates: [stranger.certificate, b.certificate, a.certificate],
    });
    const served = canonicalConsensus(verifyConsensus(arrived, list(a), now)).envelopeBytes;
    const env = decodeEnvelope(served, LIMITS.consensusBytes);
    expect(env.signatures.map((s) => s.signer.toString('hex')).sort()).toEqual([a, b, stranger].map((s) => s.identity.toString('hex')).sort());
    expect(env.certificates).toHaveLength(3);
    // A client that trusts b alone accepts the mirror's copy.
    expect(verifyConsensus(served, list(b), now).signers).toEqual([fingerprint(b.identity)]);
  });

  it('canonicalConsensus returns an envelope already canonical as it is', () => {
    const signer = makeSigner();
    const c = consensusFor(signer, E, [voteOf(signer, [makeRelay(1)])]);
    expect(canonicalConsensus(c.info)).toBe(c.info);
  });
});
