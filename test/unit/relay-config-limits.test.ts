// relay/config.ts `limits` (SPEC.md §7b.9 resource limits, docs/operators-directory.md).
import { describe, expect, it } from 'vitest';
import { parseRelayConfig, parseRelayLimits } from '../../relay/config';
import { DEFAULT_RELAY_LIMITS } from '../../src/circuit/dos-limits';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { RelayDaemon } from '../../relay/daemon';
import { loadOrCreateNodeKeys } from '../../src/crypto/keys';
import { familyWithoutSelf } from '../../src/dir/config-fields';
import { silentLogger } from '../../src/ops/log';
import { Registry } from 'prom-client';
import type http from 'node:http';
import net from 'node:net';
import { HTTP_IDLE_TIMEOUT_MS } from '../../src/ops/http-body';
import { exitPolicyAllowsAddress, parseExitPolicy } from '../../src/dir/exit-policy';

const base = { dataDir: 'd', orPort: 0, authorities: [{ name: 'a', identity: 'ab'.repeat(32), address: '127.0.0.1:7000' }] };
const message = (f: () => unknown): string => { try { f(); } catch (e) { return `${(e as { code?: string }).code}: ${(e as Error).message}`; } return 'no error'; };

describe('relay config limits', () => {
  it('defaults to DEFAULT_RELAY_LIMITS when absent', () => {
    expect(parseRelayConfig(base, '/x').limits).toEqual(DEFAULT_RELAY_LIMITS);
    expect(parseRelayLimits(undefined)).toEqual(DEFAULT_RELAY_LIMITS);
  });
  it('--data-dir is resolved against the current directory, dataDir in the file against the file\'s folder (SPEC.md §11.5)', () => {
    expect(parseRelayConfig(base, '/etc/bitcloud', { dataDir: 'data' }).dataDir).toBe(path.resolve(process.cwd(), 'data'));
    expect(parseRelayConfig(base, '/etc/bitcloud').dataDir).toBe('/etc/bitcloud/d');
  });
  it('overrides only the keys given', () => {
    const l = parseRelayConfig({ ...base, limits: { maxConnectionsPerAddress: 500, circuitRate: 0.5 } }, '/x').limits;
    expect(l).toEqual({ ...DEFAULT_RELAY_LIMITS, maxConnectionsPerAddress: 500, circuitRate: 0.5 });
  });
  it('streamCreationRate / streamCreationBurst: 100 and 300 by default, 0 allowed (off), negative or fractional burst refused (SPEC.md §7b.9)', () => {
    expect(DEFAULT_RELAY_LIMITS).toMatchObject({ streamCreationRate: 100, streamCreationBurst: 300 });
    expect(parseRelayLimits({ streamCreationRate: 0.5, streamCreationBurst: 0 })).toEqual({ ...DEFAULT_RELAY_LIMITS, streamCreationRate: 0.5, streamCreationBurst: 0 });
    expect(message(() => parseRelayLimits({ streamCreationRate: -1 }))).toMatch(/limits\.streamCreationRate: must be between 0/);
    expect(message(() => parseRelayLimits({ streamCreationBurst: 2.5 }))).toMatch(/limits\.streamCreationBurst: must be an integer/);
  });
  it('names an unknown key', () => {
    expect(message(() => parseRelayConfig({ ...base, limits: { maxConections: 5 } }, '/x'))).toMatch(/CONFIG_INVALID: unknown key "limits\.maxConections"$/);
  });
  it('names a bad value', () => {
    expect(message(() => parseRelayLimits({ circuitBurst: 2.5 }))).toMatch(/limits\.circuitBurst: must be an integer/);
    expect(message(() => parseRelayLimits({ maxQueuedCellsPerCircuit: 10 }))).toMatch(/limits\.maxQueuedCellsPerCircuit: must be between 1000/);
    expect(message(() => parseRelayLimits({ circuitRate: 'fast' }))).toMatch(/limits\.circuitRate: must be a number/);
    expect(message(() => parseRelayLimits([1]))).toMatch(/CONFIG_INVALID: limits/);
  });
  it('family and moderators: at most as many as a descriptor lists (32 and 16, SPEC.md §6.4)', () => {
    const fps = (n: number) => Array.from({ length: n }, (_, i) => (i + 1).toString(16).padStart(64, '0'));
    expect(parseRelayConfig({ ...base, family: fps(32), moderators: fps(16) }, '/x').family).toHaveLength(32);
    // One more than a descriptor lists: the node's own fingerprint may be among them.
    expect(parseRelayConfig({ ...base, family: fps(33) }, '/x').family).toHaveLength(33);
    expect(message(() => parseRelayConfig({ ...base, family: fps(34) }, '/x'))).toMatch(/CONFIG_INVALID: family: at most 33 entries/);
    expect(message(() => parseRelayConfig({ ...base, moderators: fps(17) }, '/x'))).toMatch(/CONFIG_INVALID: moderators: at most 16 moderators/);
  });
  it('family: one list of 33 serves every node, as each leaves itself out; 33 others is CONFIG_INVALID at start (SPEC.md §6.4)', async () => {
    const fps = (n: number) => Array.from({ length: n }, (_, i) => (i + 1).toString(16).padStart(64, '0'));
    const self = 'ff'.repeat(32);
    expect(familyWithoutSelf([...fps(32), self], self)).toEqual(fps(32));
    expect(message(() => familyWithoutSelf(fps(33), self))).toMatch(/CONFIG_INVALID: family: at most 32 family members besides this node/);
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-family-'));
    try {
      await loadOrCreateNodeKeys(dataDir);
      const d = new RelayDaemon(parseRelayConfig({ ...base, dataDir, family: fps(33) }, '/x'), silentLogger, new Registry());
      await expect(d.start()).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
      await d.stop();
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
  it('exitPolicy: at most 64 rules, as many as a descriptor lists (SPEC.md §6.4)', () => {
    const rules = (n: number) => Array.from({ length: n }, (_, i) => `accept *:${i + 1}`);
    expect(parseRelayConfig({ ...base, roles: ['relay', 'exit'], exitPolicy: rules(64), exitPolicyRejectPrivate: false }, '/x').exitPolicy).toHaveLength(64);
    // The `reject private:*` put first by default counts too (SPEC.md §7.6.1).
    expect(parseRelayConfig({ ...base, roles: ['relay', 'exit'], exitPolicy: rules(63) }, '/x').exitPolicy).toHaveLength(64);
    expect(message(() => parseRelayConfig({ ...base, roles: ['relay', 'exit'], exitPolicy: rules(64) }, '/x'))).toMatch(/CONFIG_INVALID: exitPolicy: at most 64 rules.*exitPolicyRejectPrivate/);
    expect(message(() => parseRelayConfig({ ...base, roles: ['relay', 'exit'], exitPolicy: rules(65) }, '/x'))).toMatch(/CONFIG_INVALID: exitPolicy: at most 64 rules/);
    // Rules a line separates with commas count one by one.
    expect(message(() => parseRelayConfig({ ...base, roles: ['relay', 'exit'], exitPolicy: [rules(65).join(',')] }, '/x'))).toMatch(/CONFIG_INVALID: exitPolicy: at most 64 rules/);
  });
});

describe('an exit\'s configured policy is preceded by reject private:* (SPEC.md §7.6.1, Tor\'s ExitPolicyRejectPrivate)', () => {
  const exit = { ...base, address: '198.51.100.7', roles: ['relay', 'exit'] };
  const own = (c: { address: string; exitPolicy: string[] }) => parseExitPolicy(c.exitPolicy, { ownAddresses: [c.address] });
  it('a policy written without it reaches neither private ranges nor the relay\'s own address, by any spelling', () => {
    const c = parseRelayConfig({ ...exit, exitPolicy: ['accept *:*'] }, '/x');
    expect(c.exitPolicy).toEqual(['reject private:*', 'accept *:*']);
    const p = own(c);
    for (const ip of ['127.0.0.1', '10.1.2.3', '169.254.169.254', '192.168.1.1', '::1', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '198.51.100.7']) {
      expect(exitPolicyAllowsAddress(p, ip, 80), ip).toBe(false);
    }
    expect(exitPolicyAllowsAddress(p, '93.184.216.34', 80)).toBe(true);
    const narrow = parseRelayConfig({ ...exit, exitPolicy: ['accept *:443', 'reject *:*'] }, '/x');
    expect(exitPolicyAllowsAddress(own(narrow), '169.254.169.254', 443)).toBe(false);
    expect(exitPolicyAllowsAddress(own(narrow), '93.184.216.34', 443)).toBe(true);
  });
  it('is not repeated when the policy starts with it, and only an exit gets it', () => {
    expect(parseRelayConfig(exit, '/x').exitPolicy).toEqual(['reject private:*', 'reject *:25', 'accept *:*']);
    expect(parseRelayConfig({ ...exit, exitPolicy: ['reject private:*', 'accept *:443', 'reject *:*'] }, '/x').exitPolicy).toEqual(['reject private:*', 'accept *:443', 'reject *:*']);
    expect(parseRelayConfig(base, '/x').exitPolicy).toEqual(['reject *:*']);
  });
  it('exitPolicyRejectPrivate: false keeps the policy as written (a test network\'s loopback exit)', () => {
    const c = parseRelayConfig({ ...exit, exitPolicy: ['accept 127.0.0.1:*', 'reject *:*'], exitPolicyRejectPrivate: false }, '/x');
    expect(c.exitPolicy).toEqual(['accept 127.0.0.1:*', 'reject *:*']);
    expect(exitPolicyAllowsAddress(own(c), '127.0.0.1', 80)).toBe(true);
    expect(message(() => parseRelayConfig({ ...exit, exitPolicyRejectPrivate: 'no' }, '/x'))).toMatch(/CONFIG_INVALID: exitPolicyRejectPrivate/);
  });
});

describe('idle connections at the relay\'s dir port (SPEC.md §6.10, §9.21.8)', () => {
  it('the dir port drops a connection idle either way for 60 s (an answer passed on that nobody reads is not held)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-dirport-'));
    const d = new RelayDaemon(parseRelayConfig({ ...base, dataDir, listenHost: '127.0.0.1' }, '/x'), silentLogger, new Registry());
    // The dir port's server alone (startHttp), without starting the rest of the relay.
    const inner = d as unknown as { startHttp(): Promise<void>; http: http.Server | null };
    try {
      await inner.startHttp();
      expect(inner.http?.timeout).toBe(HTTP_IDLE_TIMEOUT_MS);
      expect(HTTP_IDLE_TIMEOUT_MS).toBe(60_000);
      expect(inner.http?.listenerCount('timeout')).toBe(0);
    } finally {
      await new Promise<void>((r) => { if (inner.http) inner.http.close(() => r()); else r(); });
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('request targets at the relay\'s dir port (SPEC.md §6.10, §9.21.8)', () => {
  it('a request target that is not a valid path or URL is 400 HTTP_BAD_REQUEST, as at an authority (SPEC.md §6.10)', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bc-dirport-'));
    const d = new RelayDaemon(parseRelayConfig({ ...base, dataDir, listenHost: '127.0.0.1' }, '/x'), silentLogger, new Registry());
    const inner = d as unknown as { startHttp(): Promise<void>; http: http.Server | null; dirPort: number };
    const ask = async (target: string): Promise<string> => {
      const c = net.connect(inner.dirPort, '127.0.0.1');
      c.on('error', () => {});
      let reply = '';
      c.on('data', (b: Buffer) => { reply += b.toString('latin1'); });
      const closed = new Promise<void>((r) => c.on('close', () => r()));
      c.write(`GET ${target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
      await closed;
      return reply;
    };
    try {
      await inner.startHttp();
      for (const target of ['http://[', '//[', `http://[/bitcloud/policy/${'cd'.repeat(32)}`]) {
        const reply = await ask(target);
        expect(reply).toMatch(/^HTTP\/1\.1 400 /);
        expect(reply).toMatch(/"code":"HTTP_BAD_REQUEST"/);
      }
      expect(await ask('/no/such/path')).toMatch(/^HTTP\/1\.1 404 /);
    } finally {
      await new Promise<void>((r) => { if (inner.http) inner.http.close(() => r()); else r(); });
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
