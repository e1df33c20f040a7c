// Shared by dirauth-receipts.test.ts and dirauth-measure.test.ts: one authority (N = 1), three
// relays with real identity keys, the consensus of epoch E listing two of them, countersigned
// receipts, and an Authority object over a temporary data directory (never started unless a test
// says so). The clock is a variable the tests move.
import fs from 'node:fs';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { onTestFinished } from 'vitest';
import { ed25519Generate, x25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { buildDescriptor, verifyDescriptor, type VerifiedDescriptor } from '../../src/dir/descriptor';
import { makeKeyCertificate } from '../../src/dir/certificate';
import { verifyConsensus } from '../../src/dir/consensus';
import type { VerifiedConsensus } from '../../src/dir/types';
import { parseAuthorityList } from '../../src/dir/authorities';
import { FLAG_BITS } from '../../src/dir/types';
import { makeSignature, sealEnvelope } from '../../src/wire/envelope';
import type { IdentityProofMsg } from '../../src/wire/docs';
import { countersign, encodeReceipt, signReceipt, type Receipt, type ReceiptBody } from '../../src/bandwidth/receipt';
import { createRegistry } from '../../src/ops/metrics';
import { Authority, type AuthorityDeps } from '../../directory/authority';
import { parseAuthorityConfig } from '../../directory/config';
import { computeConsensus } from '../../directory/compute';
import { createAuthorityMetrics } from '../../directory/metrics';
import { createAuthorityServer } from '../../directory/http';
import type { Signer, VoteInput } from '../../directory/vote';

export const P = 60;
/** The epoch whose consensus the fixture builds. */
export const E = 30_000_000;
export const epochStart = (e: number): number => e * P * 1000;
export const silentLog = pino({ level: 'silent' });

export interface RelayKey { key: Ed25519KeyPair; fp: string; descriptor: VerifiedDescriptor }

export function makeRelay(i: number, o: { address?: string; family?: string[]; bw?: number; key?: Ed25519KeyPair; identityProof?: IdentityProofMsg } = {}): RelayKey {
  const key = o.key ?? ed25519Generate();
  const descriptor = verifyDescriptor(buildDescriptor({
    identity: key, onionKey: x25519Generate().publicKey, nickname: `m${i}`, address: o.address ?? `10.${i}.0.1`, orPort: 9000 + i,
    declaredBandwidth: o.bw ?? 1_000_000, family: o.family ?? [], roles: ['relay'], version: 'bitcloud-0.1.0',
    published: epochStart(E) - 60_000, lifetimeMs: 6 * 86_400_000, identityProof: o.identityProof,
  }), { now: epochStart(E) });
  return { key, fp: key.publicKey.toString('hex'), descriptor };
}

export function makeSigner(): Signer {
  const id = ed25519Generate();
  const sk = ed25519Generate();
  return { identity: id.publicKey, signingKey: sk, certificate: makeKeyCertificate(id, sk.publicKey, epochStart(E) - 86_400_000, epochStart(E) + 5 * 86_400_000) };
}

/** A consensus for the period starting at epochStart(e), signed by `signer` alone (N = 1). */
export function consensusFor(signer: Signer, e: number, votes: VoteInput[]): { raw: Buffer; info: VerifiedConsensus } {
  const c = computeConsensus(votes, { totalAuthorities: 1, periodStart: epochStart(e), periodSeconds: P, lifetimePeriods: 3 });
  const raw = sealEnvelope(c.body, [makeSignature(c.body, signer.identity, signer.signingKey)], [signer.certificate]);
  const info = verifyConsensus(raw, parseAuthorityList([{ name: 'a', identity: signer.identity.toString('hex'), address: '127.0.0.1:1' }]), epochStart(e) + 1000);
  return { raw, info };
}

export function voteOf(signer: Signer, relays: RelayKey[], measured = 500): VoteInput {
  return { authority: signer.identity, knownFlags: 0x7f, entries: relays.map((r) => ({ descriptor: r.descriptor, flags: FLAG_BITS.Running | FLAG_BITS.Valid, measured })) };
}

/** A receipt countersigned by both ends. */
export function receipt(ini: RelayKey, res: RelayKey, o: Partial<ReceiptBody> = {}): Receipt {
  const body: ReceiptBody = { epoch: E, initiator: ini.key.publicKey, responder: res.key.publicKey, cellsI2R: 1000, cellsR2I: 2000, serial: 1, ...o };
  const r = countersign(signReceipt(body, ini.key), { cellsI2R: body.cellsI2R, cellsR2I: body.cellsR2I }, res.key, 0);
  if (!r.ok) throw new Error('countersign failed');
  return r.receipt;
}
export const record = (r: Receipt): Buffer => encodeReceipt(r);

export interface Fixture {
  dir: string;
  signer: Signer;
  relays: RelayKey[];
  clock: { now: number };
  consensus: { raw: Buffer; info: VerifiedConsensus };
  makeAuthority(extra?: Record<string, unknown>, deps?: Partial<AuthorityDeps>): { authority: Authority; registry: ReturnType<typeof createRegistry>; metrics: ReturnType<typeof createAuthorityMetrics>; tested: string[] };
  cleanup(): void;
}

/**
 * The one authority of a test network, keeping its files in `dir` (`extra`: further config keys).
 * The fixture's relays sit on 10.x addresses: a test network (SPEC.md §6.4 check 7).
 */
export function soloAuthority(dir: string, signer: Signer, deps: Partial<AuthorityDeps> = {}, extra: Record<string, unknown> = {}, registryName = 'dirauth-test'): {
  authority: Authority; registry: ReturnType<typeof createRegistry>; metrics: ReturnType<typeof createAuthorityMetrics>;
} {
  const fp = signer.identity.toString('hex');
  const config = parseAuthorityConfig({
    identity: fp, dataDir: dir, listen: { host: '127.0.0.1', port: 0 }, period: P,
    authorities: [{ name: 'a', identity: fp, address: '127.0.0.1:1' }], testNetwork: true, ...extra,
  }, dir);
  const registry = createRegistry(registryName);
  const metrics = createAuthorityMetrics(registry, { relaysKnown: () => 0, relaysRunning: () => 0, consensus: () => null });
  const authority = new Authority({ config, signer, log: silentLog, metrics, now: () => Date.now(), reachabilityTest: () => new Promise(() => {}), ...deps });
  return { authority, registry, metrics };
}

/** Relays 0 and 1 are listed in the consensus of E; relay 2 is not. */
export function makeFixture(): Fixture {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-dirauth-measure-'));
  const signer = makeSigner();
  const relays = [makeRelay(1), makeRelay(2), makeRelay(3)];
  const consensus = consensusFor(signer, E, [voteOf(signer, relays.slice(0, 2))]);
  // Inside epoch E + 1: E's window is open (it closes at epochStart(E + 2)).
  const clock = { now: epochStart(E + 1) + 5000 };
  const makeAuthority = (extra: Record<string, unknown> = {}, deps: Partial<AuthorityDeps> = {}) => {
    const tested: string[] = [];
    const made = soloAuthority(dir, signer, {
      now: () => clock.now,
      reachabilityTest: async (d: { address: string }) => { tested.push(d.address); return { ok: true as const }; },
      ...deps,
    }, extra);
    return { ...made, tested };
  };
  return { dir, signer, relays, clock, consensus, makeAuthority, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** Serves `made` over HTTP on 127.0.0.1 at a free port; the server is closed when the test finishes. */
export async function listenAuthority(made: ReturnType<Fixture['makeAuthority']>, log: pino.Logger = silentLog): Promise<{ server: http.Server; port: number; url: string }> {
  const server = createAuthorityServer(made.authority, made.registry, made.metrics, log);
  onTestFinished(() => new Promise<void>((r) => { server.close(() => r()); server.closeAllConnections(); }));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return { server, port, url: `http://127.0.0.1:${port}` };
}
