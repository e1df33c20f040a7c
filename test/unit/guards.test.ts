import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { COMMAND_LOCK_TIMEOUT_MS, GuardSet } from '../../src/client/guards';
import type { Relay } from '../../src/client/weighting';
import type { Logger } from '../../src/ops/log';

const fp = (i: number) => i.toString(16).padStart(64, '0');
function relay(i: number, o: { flags?: string[]; weight?: number; roles?: string[] } = {}): Relay {
  return {
    identity: Buffer.from(fp(i), 'hex'), fingerprint: fp(i), address: `10.${i}.0.1`, orPort: 9000 + i,
    flags: new Set(o.flags ?? ['Running', 'Valid', 'Fast', 'Guard']), weight: o.weight ?? 100,
    exitPolicy: ['reject *:*'], family: [], roles: o.roles ?? ['relay'],
  };
}
function seededRng(seed: number): () => number {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296; };
}

let dir: string;
let clock: number;
const now = () => clock;
beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bitcloud-guards-')); clock = 1_000_000; });
afterEach(() => { fs.rmSync(dir, { recursive: true, force: true }); });

const consensus = [1, 2, 3, 4, 5, 6].map((i) => relay(i));

describe('guard set (SPEC §7.2)', () => {
  it('samples 3 guards by weight and uses the first', () => {
    const g = new GuardSet(null, now, { rng: seededRng(1) });
    const chosen = g.pickGuard(consensus)!;
    expect(g.guards).toHaveLength(3);
    expect(chosen.fingerprint).toBe(g.guards[0].fingerprint);
    for (let i = 0; i < 10; i++) expect(g.pickGuard(consensus)).toBe(chosen);
  });

  it('samples only Guard-flagged, Running, Valid relaying nodes', () => {
    const relays = [relay(1), relay(2, { flags: ['Running', 'Valid', 'Fast'] }), relay(3, { flags: ['Valid', 'Guard'] }),
      relay(4, { flags: ['Running', 'Guard'] }), relay(5, { roles: ['storage'] }), relay(6)];
    for (let s = 0; s < 20; s++) {
      const g = new GuardSet(null, now, { rng: seededRng(s) });
      g.pickGuard(relays);
      expect(g.guards.map((x) => x.fingerprint).sort()).toEqual([fp(1), fp(6)]);
    }
  });

  it('samples heavier guards more often', () => {
    const relays = [relay(1, { weight: 1000 }), ...[2, 3, 4, 5, 6, 7, 8, 9, 10].map((i) => relay(i, { weight: 10 }))];
    let firstIsHeavy = 0;
    for (let s = 0; s < 200; s++) {
      const g = new GuardSet(null, now, { rng: seededRng(s + 100) });
      if (g.pickGuard(relays)!.fingerprint === fp(1)) firstIsHeavy++;
    }
    expect(firstIsHeavy).toBeGreaterThan(150);
  });

  it('after a failure uses the next guard, and returns to the first once its backoff ends', () => {
    const g = new GuardSet(null, now, { rng: seededRng(2), retryBaseMs: 60_000 });
    const first = g.pickGuard(consensus)!;
    g.markFailure(first.fingerprint);
    const second = g.pickGuard(consensus)!;
    expect(second.fingerprint).toBe(g.guards[1].fingerprint);
    clock += 60_000;
    expect(g.pickGuard(consensus)).toBe(first);
  });

  it('backoff doubles per failure up to the ceiling; success resets it', () => {
    const g = new GuardSet(null, now, { rng: seededRng(3), retryBaseMs: 1000, retryMaxMs: 5000 });
    const f = g.pickGuard(consensus)!.fingerprint;
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) { g.markFailure(f); delays.push(g.guards[0].retryAt - clock); }
    expect(delays).toEqual([1000, 2000, 4000, 5000, 5000]);
    g.markSuccess(f);
    expect(g.guards[0]).toMatchObject({ failures: 0, retryAt: 0, confirmed: true, lastSuccessAt: clock });
  });

  it('when every guard is backing off, retries the one due soonest rather than sampling more', () => {
    const g = new GuardSet(null, now, { rng: seededRng(4), retryBaseMs: 1000 });
    g.pickGuard(consensus);
    const [a, b, c] = g.guards.map((x) => x.fingerprint);
    g.markFailure(a); g.markFailure(a); // due in 2 s
    g.markFailure(b);                   // due in 1 s
    g.markFailure(c); g.markFailure(c); g.markFailure(c);
    expect(g.pickGuard(consensus)!.fingerprint).toBe(b);
    expect(g.guards).toHaveLength(3);
  });

  it('keeps an unlisted guard in its place, skipped, samples a replacement, and uses it again when listed again', () => {
    const g = new GuardSet(null, now, { rng: seededRng(5) });
    const first = g.pickGuard(consensus)!;
    const gone = first.fingerprint;
    const next = consensus.filter((r) => r.fingerprint !== gone);
    clock += 5_000;
    const chosen = g.pickGuard(next)!;
    expect(chosen.fingerprint).not.toBe(gone);
    expect(g.guards[0]).toMatchObject({ fingerprint: gone, unlistedSince: clock });
    expect(g.guards.filter((x) => x.unlistedSince === null)).toHaveLength(3);
    // Listed again (a short partition): the first guard is used again, with its record unchanged.
    clock += 60_000;
    expect(g.pickGuard(consensus)!.fingerprint).toBe(gone);
    expect(g.guards[0]).toMatchObject({ fingerprint: gone, unlistedSince: null, addedAt: 1_000_000 });
  });

  it('drops a guard unlisted for longer than removeUnlistedAfterMs (default 20 days)', () => {
    const g = new GuardSet(null, now, { rng: seededRng(5) });
    const gone = g.pickGuard(consensus)!.fingerprint;
    const next = consensus.filter((r) => r.fingerprint !== gone);
    g.pickGuard(next);
    clock += 20 * 86_400_000 - 1;
    g.pickGuard(next);
    expect(g.guards.map((x) => x.fingerprint)).toContain(gone);
    clock += 1;
    g.pickGuard(next);
    expect(g.guards.map((x) => x.fingerprint)).not.toContain(gone);
    expect(g.pickGuard(consensus)!.fingerprint).not.toBe(gone);
  });

  it('persists unlistedSince and reads state files written without it', () => {
    const file = path.join(dir, 'state.json');
    const g = new GuardSet(file, now, { rng: seededRng(5) });
    const gone = g.pickGuard(consensus)!.fingerprint;
    g.pickGuard(consensus.filter((r) => r.fingerprint !== gone));
    g.saveSync();
    expect(GuardSet.load(file, now).guards[0]).toMatchObject({ fingerprint: gone, unlistedSince: clock });
    const old = { guards: { version: 1, sampled: [{ fingerprint: fp(1), addedAt: 1, failures: 0, retryAt: 0, lastSuccessAt: null, confirmed: false }] } };
    fs.writeFileSync(file, JSON.stringify(old));
    const h = GuardSet.load(file, now);
    expect(h.warnings).toEqual([]);
    expect(h.guards[0].unlistedSince).toBeNull();
  });

  it('keeps but skips a listed guard that lost Running, and uses it again when it returns', () => {
    const g = new GuardSet(null, now, { rng: seededRng(6) });
    const first = g.pickGuard(consensus)!;
    const down = consensus.map((r) => (r === first ? relay(parseInt(r.fingerprint, 16), { flags: ['Valid', 'Guard', 'Fast'] }) : r));
    expect(g.pickGuard(down)!.fingerprint).not.toBe(first.fingerprint);
    expect(g.guards[0].fingerprint).toBe(first.fingerprint);
    expect(g.pickGuard(consensus)).toBe(first);
  });

  it('counts a guard listed without Guard as unlisted and drops it after removeUnlistedAfterMs, so a full sample frees its place', () => {
    const g = new GuardSet(null, now, { rng: seededRng(9), sampleSize: 2, maxSampleSize: 3 });
    const all = [1, 2, 3, 4, 5, 6, 7, 8].map((i) => relay(i));
    const sampled = () => new Set(g.guards.map((x) => x.fingerprint));
    /** The consensus with the Guard flag only on `guards`; every other relay stays listed, as a middle. */
    const only = (guards: (fp: string) => boolean) => all.map((r) => (guards(r.fingerprint) ? r : relay(parseInt(r.fingerprint, 16), { flags: ['Running', 'Valid', 'Fast'] })));
    g.pickGuard(all);
    // The sampled guards lose the Guard flag but stay listed: one more is sampled, up to maxSampleSize.
    const start = clock;
    let taken = sampled();
    g.pickGuard(only((f) => !taken.has(f)));
    expect(g.guards).toHaveLength(3);
    expect(g.guards.filter((x) => x.unlistedSince === start)).toHaveLength(2);
    // No relay has the flag: the sample is full of skipped records, no guard.
    clock += 1_000;
    expect(g.pickGuard(only(() => false))).toBeNull();
    // 20 days after the last of them lost the flag, they are removed and the client samples again.
    clock += 20 * 86_400_000;
    taken = sampled();
    const chosen = g.pickGuard(only((f) => !taken.has(f)));
    expect(chosen).not.toBeNull();
    expect(taken.has(chosen!.fingerprint)).toBe(false);
    expect(g.guards.length).toBeLessThanOrEqual(3);
  });

  it('honours exclude without sampling: a guard left out of one path is not missing from the sample', () => {
    const g = new GuardSet(null, now, { rng: seededRng(7) });
    g.pickGuard(consensus);
    const sampled = g.guards.map((x) => x.fingerprint);
    expect(sampled).toHaveLength(3);
    // The first guard failed this build: the retry takes the next sampled one, and samples nobody.
    const chosen = g.pickGuard(consensus, new Set([sampled[0]]))!;
    expect(chosen.fingerprint).toBe(sampled[1]);
    expect(g.guards.map((x) => x.fingerprint)).toEqual(sampled);
    // Every sampled guard excluded for this path: none for it, still no sampling.
    expect(g.pickGuard(consensus, new Set(sampled))).toBeNull();
    expect(g.guards.map((x) => x.fingerprint)).toEqual(sampled);
  });

  it('returns null when the consensus has no guards', () => {
    const g = new GuardSet(null, now);
    expect(g.pickGuard([relay(1, { flags: ['Running', 'Valid', 'Fast'] })])).toBeNull();
    expect(g.pickGuard([])).toBeNull();
  });

  it('persists to the state file and reloads the same guards in order', async () => {
    const file = path.join(dir, 'state.json');
    const g = GuardSet.load(file, now, { rng: seededRng(8) });
    expect(g.guards).toEqual([]);
    const first = g.pickGuard(consensus)!;
    g.markFailure(g.guards[1].fingerprint);
    expect(g.dirty).toBe(true);
    await g.save();
    expect(g.dirty).toBe(false);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const again = GuardSet.load(file, now, { rng: seededRng(999) });
    expect(again.guards).toEqual(g.guards);
    expect(again.pickGuard(consensus)!.fingerprint).toBe(first.fingerprint);
  });

  it('keeps other keys of the shared state file', async () => {
    const file = path.join(dir, 'state.json');
    fs.writeFileSync(file, JSON.stringify({ buildTimes: { version: 1, samples: [] }, other: 42 }));
    const g = GuardSet.load(file, now, { rng: seededRng(9) });
    g.pickGuard(consensus);
    await g.save();
    const state = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(state.other).toBe(42);
    expect(state.buildTimes).toEqual({ version: 1, samples: [] });
    expect(state.guards.sampled).toHaveLength(3);
    g.markSuccess(g.guards[0].fingerprint);
    g.saveSync();
    expect(JSON.parse(fs.readFileSync(file, 'utf8')).other).toBe(42);
    expect(GuardSet.load(file, now).guards[0].confirmed).toBe(true);
  });

  it('sets a corrupt state file aside and starts empty with a warning', () => {
    const file = path.join(dir, 'state.json');
    fs.writeFileSync(file, '{not json');
    const g = GuardSet.load(file, now);
    expect(g.guards).toEqual([]);
    expect(g.warnings[0]).toMatch(/not valid JSON/);
    expect(fs.existsSync(`${file}.corrupt-${clock}`)).toBe(true);
  });

  it('skips malformed guard entries', () => {
    const file = path.join(dir, 'state.json');
    const good = { fingerprint: fp(1), addedAt: 1, failures: 0, retryAt: 0, lastSuccessAt: null, confirmed: false };
    fs.writeFileSync(file, JSON.stringify({ guards: { version: 1, sampled: [good, { fingerprint: 'zz' }, null] } }));
    const g = GuardSet.load(file, now);
    expect(g.guards).toEqual([{ ...good, unlistedSince: null }]);
    expect(g.warnings).toHaveLength(1);
  });

  describe('state.json shared by several client processes (SPEC §7.2 State)', () => {
    const many = Array.from({ length: 20 }, (_, i) => relay(i + 1));
    const fps = (g: GuardSet) => g.guards.map((x) => x.fingerprint);
    const onDisk = (file: string) => (JSON.parse(fs.readFileSync(file, 'utf8')) as { guards: { sampled: { fingerprint: string }[] } }).guards.sampled;

    it('the guard set on disk wins: a second process that sampled on the same fresh file adopts the first one\'s guards', async () => {
      const file = path.join(dir, 'state.json');
      const a = GuardSet.load(file, now, { rng: seededRng(11) });
      const b = GuardSet.load(file, now, { rng: seededRng(12) });
      a.pickGuard(many);
      b.pickGuard(many);
      const aGuards = fps(a);
      expect(aGuards).toHaveLength(3);
      expect(fps(b)).not.toEqual(aGuards);
      await a.save();
      await b.save();
      expect(onDisk(file).map((r) => r.fingerprint)).toEqual(aGuards);
      expect(fps(b)).toEqual(aGuards);
      expect(b.dirty).toBe(false);
      // The adopted set is used at once.
      expect(b.pickGuard(many)!.fingerprint).toBe(aGuards[0]);
      expect(fps(b)).toEqual(aGuards);
    });

    it('keeps a guard this process sampled on top of the shared list (a storage node\'s restrictions)', async () => {
      const file = path.join(dir, 'state.json');
      const a = GuardSet.load(file, now, { rng: seededRng(17) });
      a.pickGuard(many);
      await a.save();
      const b = GuardSet.load(file, now, { rng: seededRng(18) });
      const shared = fps(a);
      const extra = b.pickGuard(many, new Set(), new Set(shared))!.fingerprint;
      expect(fps(b)).toEqual([...shared, extra]);
      await b.save();
      await a.save();
      expect(onDisk(file).map((r) => r.fingerprint)).toEqual([...shared, extra]);
      expect(fps(a)).toEqual([...shared, extra]);
    });

    it('calls onSampled when pickGuard samples, so that the caller saves soon', () => {
      let calls = 0;
      const g = new GuardSet(null, now, { rng: seededRng(19), onSampled: () => { calls++; } });
      g.pickGuard(many);
      expect(calls).toBe(1);
      g.pickGuard(many);
      expect(calls).toBe(1);
    });

    it('merges the status of a guard both processes hold: each process\'s news survives, the newer event wins for one guard', async () => {
      const file = path.join(dir, 'state.json');
      const a = GuardSet.load(file, now, { rng: seededRng(13) });
      a.pickGuard(many);
      await a.save();
      const b = GuardSet.load(file, now, { rng: seededRng(14) });
      const [g0, g1, g2] = fps(a);
      expect(fps(b)).toEqual([g0, g1, g2]);
      a.markFailure(g1);
      a.markFailure(g0);
      clock += 1000;
      b.markSuccess(g2);
      b.markSuccess(g0);
      await a.save();
      await b.save();
      const saved = GuardSet.load(file, now).guards;
      expect(saved.map((x) => x.fingerprint)).toEqual([g0, g1, g2]);
      // Different guards: each process's news is kept.
      expect(saved[1]).toMatchObject({ failures: 1, retryAt: 1_000_000 + 60_000, confirmed: false });
      expect(saved[2]).toMatchObject({ failures: 0, retryAt: 0, lastSuccessAt: clock, confirmed: true });
      // The same guard: the newer event wins (here the success, so no backoff), and both times are kept.
      expect(saved[0]).toMatchObject({ failures: 0, retryAt: 0, lastSuccessAt: clock, lastFailureAt: 1_000_000, confirmed: true });
      expect(b.guards).toEqual(saved);
    });

    for (const order of ['failure first', 'success first'] as const) {
      it(`a newer success by one process beats an older failure by another (saved ${order})`, async () => {
        const file = path.join(dir, 'state.json');
        const a = GuardSet.load(file, now, { rng: seededRng(22) });
        a.pickGuard(many);
        await a.save();
        const b = GuardSet.load(file, now, { rng: seededRng(23) });
        const g0 = fps(a)[0];
        clock = 1000;
        a.markFailure(g0); // backoff until 61 000
        clock = 2000;
        b.markSuccess(g0); // the proxy built a circuit through it afterwards
        const [first, second] = order === 'failure first' ? [a, b] : [b, a];
        await first.save();
        await second.save();
        await first.save(); // the first writer adopts the merged record too
        for (const g of [GuardSet.load(file, now).guards[0], a.guards[0], b.guards[0]]) {
          expect(g).toMatchObject({ fingerprint: g0, failures: 0, retryAt: 0, lastSuccessAt: 2000, confirmed: true });
        }
        // A failure after that success is newer again: its backoff wins.
        clock = 3000;
        a.markFailure(g0);
        await second.save();
        await first.save();
        expect(GuardSet.load(file, now).guards[0]).toMatchObject({ failures: 1, retryAt: 63_000, lastSuccessAt: 2000, lastFailureAt: 3000 });
      });
    }

    it('saveSync skips the save, without throwing, while another live process holds the lock', () => {
      const file = path.join(dir, 'state.json');
      const g = GuardSet.load(file, now, { rng: seededRng(15) });
      g.pickGuard(many);
      g.saveSync();
      const before = fs.readFileSync(file, 'utf8');
      g.markSuccess(g.guards[0].fingerprint);
      fs.writeFileSync(`${file}.lock`, String(process.pid));
      expect(() => g.saveSync()).not.toThrow();
      expect(fs.readFileSync(file, 'utf8')).toBe(before);
      expect(g.dirty).toBe(true);
      expect(fs.readFileSync(`${file}.lock`, 'utf8')).toBe(String(process.pid));
      // A lock left by a process that no longer runs is taken over.
      fs.writeFileSync(`${file}.lock`, '2147483646');
      g.saveSync();
      expect(GuardSet.load(file, now).guards[0].confirmed).toBe(true);
      expect(fs.existsSync(`${file}.lock`)).toBe(false);
    });

    it('save and saveSync create a data folder that does not exist yet, as they did before the lock (SPEC §7.2 State)', async () => {
      const file = path.join(dir, 'new', 'state.json');
      const g = GuardSet.load(file, now, { rng: seededRng(20) });
      g.pickGuard(many);
      await g.save();
      expect(onDisk(file).map((r) => r.fingerprint)).toEqual(fps(g));
      const fileSync = path.join(dir, 'other', 'state.json');
      const h = GuardSet.load(fileSync, now, { rng: seededRng(21) });
      h.pickGuard(many);
      h.saveSync();
      expect(onDisk(fileSync).map((r) => r.fingerprint)).toEqual(fps(h));
      expect(h.dirty).toBe(false);
    });

    it('a failed write leaves the changes dirty, so that the next save tries again (SPEC §7.2 State)', async () => {
      const file = path.join(dir, 'state.json');
      const g = GuardSet.load(file, now, { rng: seededRng(24) });
      g.pickGuard(many);
      // A folder where the file should be: the rename onto it fails (as a full or broken disk would).
      fs.mkdirSync(file);
      await expect(g.save()).rejects.toThrow();
      expect(g.dirty).toBe(true);
      expect(() => g.saveSync()).toThrow();
      expect(g.dirty).toBe(true);
      fs.rmdirSync(file);
      await g.save();
      expect(g.dirty).toBe(false);
      expect(onDisk(file).map((r) => r.fingerprint)).toEqual(fps(g));
    });

    it('a command\'s last save waits 2 s at most for the lock, then skips with a debug line and does not fail', async () => {
      const file = path.join(dir, 'state.json');
      const g = GuardSet.load(file, now, { rng: seededRng(25) });
      g.pickGuard(many);
      g.saveSync();
      const before = fs.readFileSync(file, 'utf8');
      g.markSuccess(g.guards[0].fingerprint);
      fs.writeFileSync(`${file}.lock`, String(process.pid));
      const debugs: unknown[][] = [];
      const log = { debug: (...a: unknown[]) => debugs.push(a) } as unknown as Logger;
      const save = vi.spyOn(g, 'save');
      // the test's timeout (under 30 s) says it did not wait the default 30 s
      expect(await g.saveForCommand(log)).toMatchObject({ status: 'skipped', code: 'IO_STATE_LOCKED' });
      expect(save).toHaveBeenCalledWith({ lockTimeoutMs: COMMAND_LOCK_TIMEOUT_MS });
      expect(COMMAND_LOCK_TIMEOUT_MS).toBe(2_000);
      save.mockRestore();
      expect(fs.readFileSync(file, 'utf8')).toBe(before);
      expect(g.dirty).toBe(true);
      expect(debugs).toHaveLength(1);
      expect((debugs[0][0] as { code?: string }).code).toBe('IO_STATE_LOCKED');
      // With the lock free it saves as save() does; with nothing to save it does nothing.
      fs.rmSync(`${file}.lock`);
      expect(await g.saveForCommand(log)).toEqual({ status: 'saved' });
      expect(g.dirty).toBe(false);
      expect(GuardSet.load(file, now).guards[0].confirmed).toBe(true);
      await g.saveForCommand(log);
      expect(debugs).toHaveLength(1);
    }, 20_000);

    it('save waits while another process holds the lock, and removes its own lock after', async () => {
      const file = path.join(dir, 'state.json');
      const g = GuardSet.load(file, now, { rng: seededRng(16) });
      g.pickGuard(many);
      fs.writeFileSync(`${file}.lock`, String(process.pid));
      // Each try at the lock is one exclusive create; a refused one (EEXIST) is followed by a wait
      // and another try. Two refusals mean the save went once round its wait without writing; a
      // save that does not wait writes the file instead, and then no second refusal comes.
      const open = vi.spyOn(fs, 'openSync');
      const refusals = () => open.mock.calls.filter((c, i) => c[0] === `${file}.lock` && open.mock.results[i].type === 'throw').length;
      try {
        const saving = g.save();
        await vi.waitFor(() => { if (refusals() < 2 && !fs.existsSync(file)) throw new Error('still trying'); }, { timeout: 5_000, interval: 5 });
        expect(fs.existsSync(file)).toBe(false);
        expect(refusals()).toBeGreaterThanOrEqual(2);
        fs.rmSync(`${file}.lock`);
        await saving;
      } finally {
        open.mockRestore();
      }
      expect(onDisk(file).map((r) => r.fingerprint)).toEqual(fps(g));
      expect(fs.existsSync(`${file}.lock`)).toBe(false);
    });
  });
});
