// Every input the fuzzer ever found failing (test/fuzz-corpus/<target>/*.bin, written by
// `npm run fuzz`) is replayed through the same target: each must now decode or be refused with a
// typed BitcloudError, within the allocation bound of scripts/fuzz/engine.ts. The seeds of every
// target (valid encodings) are replayed too.
import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TARGETS, targetByName, prepareTargets, cleanupTargets } from '../../scripts/fuzz/targets';
import { runOne } from '../../scripts/fuzz/engine';

const corpus = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fuzz-corpus');
const cases: { target: string; file: string }[] = [];
for (const dir of fs.existsSync(corpus) ? fs.readdirSync(corpus).sort() : []) {
  const full = path.join(corpus, dir);
  if (!fs.statSync(full).isDirectory()) continue;
  for (const f of fs.readdirSync(full).sort()) if (f.endsWith('.bin')) cases.push({ target: dir, file: path.join(full, f) });
}

afterAll(() => cleanupTargets());

describe('fuzz regressions (test/fuzz-corpus)', () => {
  it('every corpus folder names a fuzz target', () => {
    for (const c of cases) expect(targetByName(c.target), c.target).toBeDefined();
  });

  for (const c of cases) {
    it(`${c.target}/${path.basename(c.file)} decodes or is refused with a typed error`, async () => {
      await prepareTargets();
      const f = await runOne(targetByName(c.target)!, fs.readFileSync(c.file));
      expect(f, f ? `${f.kind}: ${f.detail}` : '').toBeNull();
    });
  }

  for (const t of TARGETS) {
    it(`${t.name}: its seeds decode or are refused with a typed error`, async () => {
      await prepareTargets();
      const seeds = t.seeds();
      expect(seeds.length).toBeGreaterThan(0);
      for (const s of seeds) {
        const f = await runOne(t, s);
        expect(f, f ? `${f.kind}: ${f.detail}` : '').toBeNull();
      }
    });
  }
});
