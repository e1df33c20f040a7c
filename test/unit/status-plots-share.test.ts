// SPEC.md §6.10: the status page's plots draw each listed relay's share of the proven cells per
// epoch, of `provenTotal`. A sample lists the proven cells of its 32 relays with most only, so a
// relay missing from a full list has a share the sample does not give: it is drawn as a gap, not
// as 0. A list of fewer than 32 holds every relay with some, so one missing from it has none.
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { SAMPLE_RELAYS, type HistoryJson } from '../../directory/status-history';

type Drawn = Record<string, { labels: string[]; data: Array<Array<number | null>> }>;

/** Runs directory/static/status-plots.js on `h` with a stand-in document and uPlot; what each plot got. */
async function draw(h: HistoryJson): Promise<Drawn> {
  const drawn: Drawn = {};
  const boxes = new Map<string, { id: string; textContent: string; setAttribute: () => void }>();
  const document = {
    getElementById: (id: string) => {
      if (!boxes.has(id)) boxes.set(id, { id, textContent: '', setAttribute: () => {} });
      return boxes.get(id);
    },
    body: { clientWidth: 900 },
    documentElement: { classList: { add: () => {} } },
  };
  function uPlot(o: { series: Array<{ label: string }> }, data: Array<Array<number | null>>, box: { id: string }) {
    drawn[box.id] = { labels: o.series.slice(1).map((s) => s.label), data };
  }
  const fetch = () => Promise.resolve({ json: () => Promise.resolve(h) });
  const src = fs.readFileSync(path.join(__dirname, '../../directory/static/status-plots.js'), 'utf8');
  vm.runInNewContext(src, { document, uPlot, fetch, setInterval: () => 0, Object, Math });
  // The script's fetch → json → draw chain runs on already-resolved promises: it has drawn once the
  // microtask queue is empty, which setImmediate waits for.
  await new Promise<void>((r) => setImmediate(r));
  return drawn;
}

const fp = (i: number) => i.toString(16).padStart(8, '0').padEnd(64, '0');

describe('status plots: each listed relay\'s share of the proven cells (SPEC.md §6.10)', () => {
  it('draws a gap, not 0, for a relay a full proven list leaves out, and 0 for one a short list leaves out', async () => {
    const full = (t: number, epoch: number, extra: number): HistoryJson['samples'][number] => {
      const proven: Record<string, number> = {};
      for (let i = 0; i < SAMPLE_RELAYS; i++) proven[fp(extra + i)] = 100;
      return { t, relays: 100, storage: 0, provenEpoch: epoch, weights: {}, proven, provenTotal: 10_000 };
    };
    // Epoch 1: relays 0..31 listed. Epoch 2: relays 1..32 listed, relay 0 fell to 33rd place (it
    // may hold up to 100 cells of the 10 000). Epoch 3: a short list, relay 0 has no proven cells.
    const short = { t: 3000, relays: 2, storage: 0, provenEpoch: 3, weights: {}, proven: { [fp(1)]: 50 }, provenTotal: 50 };
    const drawn = await draw({ samples: [full(1000, 1, 0), full(2000, 2, 1), short], blocks: [], names: {} });
    const share = drawn['plot-share'];
    expect(share).toBeDefined();
    const series = (i: number) => share.data[1 + share.labels.findIndex((l) => l.endsWith(fp(i).slice(0, 8)))];
    expect(series(0)).toEqual([0.01, null, 0]);
    expect(series(1)).toEqual([0.01, 0.01, 1]);
    expect(drawn['plot-proven'].data[1]).toEqual([10_000, 10_000, 50]);
  });
});
