// A small directory network for integration tests: authority keys and configs, relay configs,
// client configs, all on 127.0.0.1 with free ports, in a temporary folder.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { authorityKeygen } from '../../directory/keygen';
import fsp from 'node:fs/promises';
import { storageNodesOf } from '../../src/client/storage-client';
import type { ConsensusRelay } from '../../src/dir/types';
import { freePorts, startDaemon, stopAll, type Daemon } from './daemon';

/** `metricsPort`: the authority's MetricsPort on 127.0.0.1 (SPEC.md §6.10). */
export interface AuthoritySetup { name: string; fingerprint: string; port: number; metricsPort: number; dataDir: string; configFile: string }
export interface DirNet {
  dir: string;
  period: number;
  authorities: AuthoritySetup[];
  /** The `authorities` list every config carries. */
  authorityList: { name: string; identity: string; address: string }[];
}

function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `bitcloud-${prefix}-`));
}

export async function makeDirNet(n: number, period: number, extra: Record<string, unknown> = {}): Promise<DirNet> {
  const dir = tempDir('dirnet');
  const ports = await freePorts(2 * n);
  const auths: AuthoritySetup[] = [];
  for (let i = 0; i < n; i++) {
    const dataDir = path.join(dir, `auth${i + 1}`);
    const k = await authorityKeygen(dataDir);
    auths.push({ name: `auth${i + 1}`, fingerprint: k.fingerprint, port: ports[i], metricsPort: ports[n + i], dataDir, configFile: path.join(dir, `auth${i + 1}.json`) });
  }
  const authorityList = auths.map((a) => ({ name: a.name, identity: a.fingerprint, address: `127.0.0.1:${a.port}` }));
  for (const a of auths) {
    fs.writeFileSync(a.configFile, JSON.stringify({
      identity: a.fingerprint, dataDir: a.dataDir, listen: { host: '127.0.0.1', port: a.port }, period,
      authorities: authorityList, reachability: { timeoutMs: 2000 }, stableAfterSeconds: period,
      // Every node here is on 127.0.0.1 (SPEC.md §6.3 test-network flag); metrics on the MetricsPort (§6.10).
      testNetwork: true, metricsPort: a.metricsPort,
      // SPEC.md §6.5, §8.11.3: every node here decodes version 2 transfers: funding transfers are on.
      consensusParams: { 'funding-v2': 1 },
      identityPow: 'local', ...extra, // SPEC.md §6.4.1: cheap proofs keep tests quick
    }, null, 2));
  }
  return { dir, period, authorities: auths, authorityList };
}

export function startAuthority(a: AuthoritySetup): Daemon {
  return startDaemon('bitcloud-dirauth', ['run', '--config', a.configFile]);
}

export interface RelaySetup { name: string; configFile: string; dataDir: string; orPort: number; dirPort: number; metricsPort: number }

export async function makeRelay(net: DirNet, name: string, o: { authorities?: DirNet['authorityList']; roles?: string[]; dirPort?: boolean; publishIntervalSeconds?: number; identityPow?: unknown } = {}): Promise<RelaySetup> {
  const [orPort, dirPort, metricsPort] = await freePorts(3);
  const dataDir = path.join(net.dir, name);
  const configFile = path.join(net.dir, `${name}.json`);
  const useDir = o.dirPort ?? true;
  fs.writeFileSync(configFile, JSON.stringify({
    dataDir, nickname: name, address: '127.0.0.1', orPort, dirPort: useDir ? dirPort : 0,
    roles: o.roles ?? ['relay'], bandwidth: 500_000,
    authorities: o.authorities ?? net.authorityList,
    publishIntervalSeconds: o.publishIntervalSeconds ?? net.period, descriptorLifetimeSeconds: 3600,
    mirrorIntervalSeconds: 1, metricsPort, identityPow: o.identityPow ?? 'local',
  }, null, 2));
  return { name, configFile, dataDir, orPort, dirPort: useDir ? dirPort : 0, metricsPort };
}

export function startRelay(r: RelaySetup): Daemon {
  return startDaemon('bitcloud-relay', ['run', '--config', r.configFile]);
}

export function writeClientConfig(net: DirNet, name: string, extra: Record<string, unknown> = {}): { configFile: string; dataDir: string } {
  const dataDir = path.join(net.dir, name);
  const configFile = path.join(net.dir, `${name}.json`);
  fs.writeFileSync(configFile, JSON.stringify({ authorities: net.authorityList, dataDir, ...extra }, null, 2));
  return { configFile, dataDir };
}

/** True once consensus `c` lists two fast guards and exactly `storageNodes` storage nodes. */
export function storageNetReady(c: { relays: readonly ConsensusRelay[] } | null | undefined, storageNodes: number): boolean {
  if (!c) return false;
  const guards = c.relays.filter((r) => r.flags.has('Guard') && r.flags.has('Fast')).length;
  return guards >= 2 && storageNodesOf(c.relays).length === storageNodes;
}

/** Stops every daemon the test started, then removes the network's folder. */
export async function tearDownDirNet(net: DirNet | undefined): Promise<void> {
  await stopAll();
  if (net) await fsp.rm(net.dir, { recursive: true, force: true });
}
