// bitcloud-relay status: each part stands alone — missing bandwidth.json, unreachable authorities,
// no identity — and the command says which part is missing instead of failing whole.
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, it, expect } from 'vitest';
import { loadOrCreateNodeKeys, fingerprint } from '../../src/crypto/keys';
import { parseAuthorityList } from '../../src/dir/authorities';
import { nodeStatus, nodeStatusCommand } from '../../src/client/commands/node-status';
import { processStartId } from '../../src/ops/file-lock';
import { ed25519Generate, type Ed25519KeyPair } from '../../src/crypto/primitives';
import { signPolicy } from '../../src/moderation/policy';
import { advancePolicy, nextPolicyContent, stateBundle, type PolicyState } from '../../src/moderation/chain';
import { POLICY_DIR, POLICY_STATUS_FILE, PolicySubscriptions } from '../../src/moderation/subscription';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true }); });
/** A data folder of one test, removed after it. */
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-status-'));
  dirs.push(d);
  return d;
}

const authorities = parseAuthorityList([{ name: 'a1', identity: 'aa'.repeat(32), address: '127.0.0.1:1' }]);

/** `key`'s policy named `name`, signed for `window` and held at `now`: the first, or the one after `prev`. */
function policyState(key: Ed25519KeyPair, window: { validAfter: number; validUntil: number }, now: number, name = 'm', prev: PolicyState | null = null): PolicyState {
  const content = nextPolicyContent(prev, { name, classes: [{ name: 'encrypted-private', maxShareBytes: 0 }], maxShareBytes: 0, deny: [] });
  return advancePolicy(prev, [signPolicy(content, key, window)], { moderator: fingerprint(key.publicKey), now }).state;
}

describe('node status', () => {
  it('with keys but no bandwidth.json and no reachable authority: identity known, each part says why it is missing', async () => {
    const dir = tmp();
    const keys = await loadOrCreateNodeKeys(dir);
    const v = await nodeStatus({ kind: 'relay', dataDir: dir, authorities, timeoutMs: 1000 });
    expect(v.ok).toBe(true);
    expect(v.fingerprint).toBe(fingerprint(keys.identity.publicKey));
    expect(v.countersigned.available).toBe(false);
    expect(v.consensus.available).toBe(false);
    expect(v.consensus.error).toMatch(/127\.0\.0\.1:1/);
    expect(v.rewards.available).toBe(false);
    const lines: string[] = [];
    const code = await nodeStatusCommand({ kind: 'relay', dataDir: dir, authorities, timeoutMs: 1000 }, { out: (s) => lines.push(s), err: (s) => lines.push(s) });
    expect(code).toBe(0);
    expect(lines.join('\n')).toMatch(/consensus: not available/);
    expect(lines.join('\n')).toMatch(/bandwidth\.json not written yet/);
  });

  it('reads countersigned epochs from bandwidth.json; no identity at all exits 1', async () => {
    const dir = tmp();
    const lines: string[] = [];
    expect(await nodeStatusCommand({ kind: 'relay', dataDir: dir, authorities, timeoutMs: 500 }, { out: (s) => lines.push(s), err: (s) => lines.push(s) })).toBe(1);
    expect(lines.join('\n')).toMatch(/no identity key/);
    // SPEC.md §9.10: with --json the failure is the one failure document, error: {code, message}.
    const json: string[] = [];
    expect(await nodeStatusCommand({ kind: 'relay', dataDir: dir, authorities, timeoutMs: 500, json: true }, { out: (s) => json.push(s), err: () => {} })).toBe(1);
    expect(JSON.parse(json[0])).toMatchObject({ ok: false, fingerprint: null, error: { code: 'KEY_NOT_FOUND', message: expect.stringContaining('no identity key') as unknown } });
    fs.writeFileSync(path.join(dir, 'bandwidth.json'), JSON.stringify({
      version: 1, identity: 'bb'.repeat(32), periodSeconds: 5,
      epochs: [{ epoch: 7, receipts: 2, cellsSent: 100, cellsReceived: 50, peers: 2 }, { epoch: 8, receipts: 1, cellsSent: 1, cellsReceived: 2, peers: 1 }],
      disagreements: { COUNTS_MISMATCH: 1 },
    }));
    const v = await nodeStatus({ kind: 'relay', dataDir: dir, authorities, timeoutMs: 500 });
    expect(v.fingerprint).toBe('bb'.repeat(32));
    expect(v.countersigned).toMatchObject({ available: true, totalCells: 153, disagreements: { COUNTS_MISMATCH: 1 } });
  });

  it('a storage node\'s status shows each subscribed moderator\'s saved policy with `expired` (SPEC.md §10.6.1)', async () => {
    const dir = tmp();
    await loadOrCreateNodeKeys(dir);
    const now = Date.now();
    // A policy saved by the node: one whose valid_until has passed (still enforced), one current.
    const save = (window: { validAfter: number; validUntil: number }) => {
      const key = ed25519Generate();
      const fp = fingerprint(key.publicKey);
      const state = policyState(key, window, window.validAfter + 1);
      fs.mkdirSync(path.join(dir, POLICY_DIR), { recursive: true });
      fs.writeFileSync(path.join(dir, POLICY_DIR, `${fp}.bundle`), stateBundle(state));
      return fp;
    };
    const old = save({ validAfter: now - 7_200_000, validUntil: now - 3_600_000 });
    const current = save({ validAfter: now - 1000, validUntil: now + 3_600_000 });
    const none = fingerprint(ed25519Generate().publicKey);
    const o = { kind: 'storage node', dataDir: dir, authorities, timeoutMs: 500, subscribedModerators: [old, current, none] };
    const v = await nodeStatus(o);
    expect(v.policies).toEqual([
      expect.objectContaining({ moderator: old, seq: 1, expired: true }),
      expect.objectContaining({ moderator: current, seq: 1, expired: false }),
      expect.objectContaining({ moderator: none, seq: null, expired: false }),
    ]);
    const lines: string[] = [];
    await nodeStatusCommand(o, { out: (s) => lines.push(s), err: (s) => lines.push(s) });
    expect(lines.find((l) => l.includes(old))).toMatch(/expired: true \(still enforced/);
    expect(lines.find((l) => l.includes(current))).toMatch(/expired: false/);
    // A relay shows no policies.
    expect((await nodeStatus({ kind: 'relay', dataDir: dir, authorities, timeoutMs: 500 })).policies).toBeUndefined();
  });

  it('a storage node\'s status with a corrupt saved policy, or a folder in its place, shows it unreadable, with its code, apart from none saved, and does not fail (SPEC.md §10.6.1)', async () => {
    const dir = tmp();
    await loadOrCreateNodeKeys(dir);
    const corrupt = fingerprint(ed25519Generate().publicKey);
    const folder = fingerprint(ed25519Generate().publicKey);
    const none = fingerprint(ed25519Generate().publicKey);
    fs.mkdirSync(path.join(dir, POLICY_DIR, `${folder}.bundle`), { recursive: true });
    fs.writeFileSync(path.join(dir, POLICY_DIR, `${corrupt}.bundle`), Buffer.alloc(1 << 20, 0xff));
    const o = { kind: 'storage node', dataDir: dir, authorities, timeoutMs: 500, subscribedModerators: [corrupt, folder, none] };
    const v = await nodeStatus(o);
    expect(v.policies).toEqual([
      expect.objectContaining({ moderator: corrupt, seq: null, expired: false, error: { code: 'POLICY_MALFORMED', message: expect.any(String) as unknown } }),
      expect.objectContaining({ moderator: folder, seq: null, expired: false, error: { code: 'IO_STATE_UNREADABLE', message: expect.stringContaining('not a regular file') as unknown } }),
      expect.objectContaining({ moderator: none, seq: null, expired: false }),
    ]);
    expect(v.policies![2].error).toBeUndefined();
    const lines: string[] = [];
    await nodeStatusCommand(o, { out: (s) => lines.push(s), err: (s) => lines.push(s) });
    const unreadable = /saved policy unreadable \((POLICY_MALFORMED|IO_STATE_UNREADABLE): .+\); the node uses none from it: until it fetches the moderator's policy, it refuses every upload \(POLICY_UNAVAILABLE\) and denies nothing from that moderator's list$/;
    expect(lines.find((l) => l.includes(corrupt))).toMatch(unreadable);
    expect(lines.find((l) => l.includes(corrupt))).toMatch(/\(POLICY_MALFORMED: /);
    expect(lines.find((l) => l.includes(folder))).toMatch(/\(IO_STATE_UNREADABLE: /);
    expect(lines.find((l) => l.includes(none))).toMatch(/: none saved yet$/);
  });

  it('--json: a saved policy that does not verify carries error {code, message} next to seq null; none saved carries no error; a fetched policy clears it (SPEC.md §10.6.1)', async () => {
    const dir = tmp();
    await loadOrCreateNodeKeys(dir);
    const key = ed25519Generate();
    const bad = fingerprint(key.publicKey);
    const none = fingerprint(ed25519Generate().publicKey);
    fs.mkdirSync(path.join(dir, POLICY_DIR), { recursive: true });
    // A policy signed by another key, saved under this moderator's name: it does not verify.
    const now = Date.now();
    const window = { validAfter: now - 1000, validUntil: now + 3_600_000 };
    const foreign = policyState(ed25519Generate(), window, now);
    fs.writeFileSync(path.join(dir, POLICY_DIR, `${bad}.bundle`), stateBundle(foreign));
    const json: string[] = [];
    await nodeStatusCommand({ kind: 'storage node', dataDir: dir, authorities, timeoutMs: 500, json: true, subscribedModerators: [bad, none] }, { out: (s) => json.push(s), err: () => {} });
    const policies = (JSON.parse(json[0]) as { policies: Record<string, unknown>[] }).policies;
    expect(policies[0]).toMatchObject({ moderator: bad, seq: null, error: { code: expect.stringMatching(/^POLICY_/) as unknown, message: expect.any(String) as unknown } });
    expect(policies[1]).toMatchObject({ moderator: none, seq: null });
    expect(policies[1]).not.toHaveProperty('error');
    // The node, once it fetches the moderator's policy, holds it and no longer reports the saved one.
    const subs = PolicySubscriptions.open({ moderators: [bad], dataDir: dir });
    try {
      expect(subs.status()[0].error?.code).toMatch(/^POLICY_/);
      expect(await subs.offer(bad, stateBundle(policyState(key, window, now)))).toBe('updated');
      expect(subs.status()[0]).toMatchObject({ seq: 1 });
      expect(subs.status()[0].error).toBeUndefined();
    } finally {
      await subs.close();
    }
  });

  it('a running node enforcing policy P: status shows P as enforced (from the node, with its digest and load time) though a folder, a corrupt file or another version sits at P\'s path, and flags that saved copy with its code; once the node stops, the disk (SPEC.md §10.6.1)', async () => {
    const dir = tmp();
    const key = ed25519Generate();
    const m = fingerprint(key.publicKey);
    const subs = PolicySubscriptions.open({ moderators: [m], dataDir: dir, sources: [] });
    try {
      await loadOrCreateNodeKeys(dir);
      const now = Date.now();
      const window = { validAfter: now - 1000, validUntil: now + 3_600_000 };
      const p1 = policyState(key, window, now, 'p');
      await subs.start();
      expect(await subs.offer(m, stateBundle(p1))).toBe('updated');
      const o = { kind: 'storage node', dataDir: dir, authorities, timeoutMs: 500, subscribedModerators: [m] };
      const file = path.join(dir, POLICY_DIR, `${m}.bundle`);
      const enforced = { moderator: m, seq: 1, name: 'p', from: 'daemon', digest: p1.digest.toString('hex'), loadedAt: expect.any(Number) as unknown, expired: false };

      // The saved copy is the one enforced: nothing flagged.
      let v = await nodeStatus(o);
      expect(v.policies).toEqual([expect.objectContaining(enforced)]);
      expect(v.policies![0].saved).toBeUndefined();

      // A folder at P's path.
      fs.rmSync(file);
      fs.mkdirSync(file);
      v = await nodeStatus(o);
      expect(v.policies).toEqual([expect.objectContaining({ ...enforced, saved: { code: 'IO_STATE_UNREADABLE', message: expect.stringContaining('not a regular file') as unknown } })]);
      let lines: string[] = [];
      await nodeStatusCommand(o, { out: (s) => lines.push(s), err: (s) => lines.push(s) });
      expect(lines.join('\n')).toMatch(new RegExp(`policy of moderator ${m}: the running node enforces seq 1 \\(p\\), digest [0-9a-f]{16}…, loaded \\d{4}-`));
      expect(lines.join('\n')).toMatch(/saved copy not the one enforced \(IO_STATE_UNREADABLE: .*not a regular file/);

      // A corrupt file at P's path.
      fs.rmdirSync(file);
      fs.writeFileSync(file, Buffer.alloc(4096, 0xff));
      v = await nodeStatus(o);
      expect(v.policies).toEqual([expect.objectContaining({ ...enforced, saved: { code: 'POLICY_MALFORMED', message: expect.any(String) as unknown } })]);

      // Another valid version of the moderator's policy at P's path.
      const p2 = policyState(key, window, now, 'p2', p1);
      fs.writeFileSync(file, stateBundle(p2));
      v = await nodeStatus(o);
      expect(v.policies).toEqual([expect.objectContaining({ ...enforced, saved: { code: 'POLICY_SAVED_DIFFERS', message: expect.stringContaining('seq 2') as unknown } })]);

      // The node stops: status shows the disk, as a start would read it.
      fs.writeFileSync(file, Buffer.alloc(4096, 0xff));
      await subs.close();
      v = await nodeStatus(o);
      expect(v.policies).toEqual([expect.objectContaining({ moderator: m, seq: null, from: 'disk', loadedAt: null, error: { code: 'POLICY_MALFORMED', message: expect.any(String) as unknown } })]);
      lines = [];
      await nodeStatusCommand(o, { out: (s) => lines.push(s), err: (s) => lines.push(s) });
      expect(lines.find((l) => l.includes(m))).toMatch(/saved policy unreadable \(POLICY_MALFORMED: /);

      // A valid saved copy with no node running: no node took it into memory, so no load time.
      fs.writeFileSync(file, stateBundle(p2));
      v = await nodeStatus(o);
      expect(v.policies).toEqual([expect.objectContaining({ moderator: m, seq: 2, from: 'disk', loadedAt: null })]);
    } finally {
      await subs.close();
    }
  });

  it('a policy-status.json that is a FIFO, a folder, too large, JSON null or entries of the wrong shape: status neither hangs nor throws, and shows the disk (SPEC.md §10.6.1)', async () => {
    const dir = tmp();
    await loadOrCreateNodeKeys(dir);
    const m = fingerprint(ed25519Generate().publicKey);
    const o = { kind: 'storage node', dataDir: dir, authorities, timeoutMs: 500, subscribedModerators: [m] };
    const file = path.join(dir, POLICY_STATUS_FILE);
    const pid = process.pid;
    const entry = { moderator: m, seq: 1, name: 'p', classes: [], denylistEntries: 0, approvals: 0, validUntil: Date.now() + 60_000, expired: false, digest: 'ab'.repeat(32), loadedAt: Date.now() };
    const cases: (() => void)[] = [
      () => fs.writeFileSync(file, 'null'),
      () => fs.writeFileSync(file, '7'),
      () => fs.writeFileSync(file, JSON.stringify({ pid, policies: [null] })),
      () => fs.writeFileSync(file, JSON.stringify({ pid, policies: [{ ...entry, digest: 5 }] })),
      () => fs.writeFileSync(file, JSON.stringify({ pid, policies: [{ ...entry, validUntil: 'soon' }] })),
      () => fs.writeFileSync(file, JSON.stringify({ pid, policies: [{ ...entry, moderator: '../../x' }] })),
      () => fs.writeFileSync(file, JSON.stringify({ pid, policies: [entry], pad: 'x'.repeat(2 << 20) })),
      () => fs.mkdirSync(file),
    ];
    if (process.platform !== 'win32') cases.push(() => execFileSync('mkfifo', [file]));
    for (const make of cases) {
      fs.rmSync(file, { recursive: true, force: true });
      make();
      const v = await nodeStatus(o);
      expect(v.policies).toEqual([expect.objectContaining({ moderator: m, seq: null, from: 'disk' })]);
      const lines: string[] = [];
      expect(await nodeStatusCommand(o, { out: (s) => lines.push(s), err: (s) => lines.push(s) })).toBe(0);
      expect(lines).toContain(`policy of moderator ${m}: none saved yet`);
    }
    // The same entry in a regular file of a running process: what the node enforces.
    fs.rmSync(file, { recursive: true, force: true });
    fs.writeFileSync(file, JSON.stringify({ pid, writtenAt: Date.now(), policies: [entry] }));
    const v = await nodeStatus(o);
    expect(v.policies).toEqual([expect.objectContaining({ moderator: m, seq: 1, from: 'daemon', digest: 'ab'.repeat(32), saved: expect.objectContaining({ code: 'POLICY_SAVED_DIFFERS' }) as unknown })]);
  });

  it('a policy-status.json left by a node that crashed, whose process id another process now has: status shows the disk, not the dead node\'s policies (SPEC.md §10.6.1)', async () => {
    const dir = tmp();
    const key = ed25519Generate();
    const m = fingerprint(key.publicKey);
    const subs = PolicySubscriptions.open({ moderators: [m], dataDir: dir, sources: [] });
    try {
      await loadOrCreateNodeKeys(dir);
      const now = Date.now();
      const p1 = policyState(key, { validAfter: now - 1000, validUntil: now + 3_600_000 }, now, 'p');
      await subs.start();
      expect(await subs.offer(m, stateBundle(p1))).toBe('updated');
      const o = { kind: 'storage node', dataDir: dir, authorities, timeoutMs: 500, subscribedModerators: [m] };
      const file = path.join(dir, POLICY_STATUS_FILE);
      const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { pid: number; started: string | null };
      expect(doc.pid).toBe(process.pid);
      expect(doc.started).toBe(processStartId(process.pid));
      expect((await nodeStatus(o)).policies).toEqual([expect.objectContaining({ moderator: m, seq: 1, from: 'daemon' })]);
      // The node stops without removing its file (a crash); the saved copy is then removed, and its
      // process id is taken by a process that started at another time (this one stands in for it).
      await subs.close();
      fs.writeFileSync(file, JSON.stringify({ ...doc, started: doc.started === null ? null : `${doc.started}0` }));
      fs.rmSync(path.join(dir, POLICY_DIR, `${m}.bundle`));
      if (doc.started !== null) expect((await nodeStatus(o)).policies).toEqual([expect.objectContaining({ moderator: m, seq: null, from: 'disk' })]);
    } finally {
      await subs.close();
    }
  });
});
